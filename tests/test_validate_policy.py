"""The validator, continued: the graph's labels, quiet hours, outcome paths, and what the rules
cost on large journeys (tests/test_validate.py has the files, the loader and the structure)."""


from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from journeys.funnel.graph import to_mermaid
from journeys.language.loader import load_document
from journeys.validation.validate import validate_file, validate_loaded
from tests.helpers.journey_docs import action, check, delay, journey, send

# --- the graph ---------------------------------------------------------------------------------

def graph_lines(doc: dict[str, Any]) -> list[str]:
    loaded = load_document(doc, "t.yaml")
    assert loaded.journey is not None, loaded.problems
    return to_mermaid(loaded.journey).splitlines()


@pytest.mark.parametrize("name", ['Say "hi" <b>now</b>\n# & done', "a\r\nb|c`d\u2028e\x85f", "<script>"])
def test_graph_labels_are_escaped(name: str) -> None:
    doc = journey(action("added", name),
                  {"id": "by-plan", "type": "split", "otherwise": "push",
                   "branches": [{"when": f"event.plan == {json.dumps(name)} and event.n > 2",
                                 "next": "push"}]},
                  send("push", "hi"), exit_when=[name])
    lines = graph_lines(doc)
    assert len(lines) == 1 + 3 + 3, "one line per node and per edge"
    for line in lines[1:]:
        bare = line.replace("<br/>", "").replace(" --> ", "").replace(" -->|", "")
        assert not set("<>&`\r") & set(bare), line
        label = re.findall(r'"(.*)"', line)
        assert len(label) <= 1 and '"' not in label[0] if label else True
        # every "#" starts an entity code: "#35;" is a "#", never the start of one by accident
        assert not re.search(r"#(?![a-z]+;|\d+;)", line)
    assert 'n_added(["added<br/>action: did ' in lines[1]
    edge = lines[5]
    assert edge.startswith('    n_by_2dplan -->|"event.plan == #quot;') and "event.n #gt; 2\"| n_push" in edge
    if "<b>" in name:
        assert "#quot;hi#quot; #lt;b#gt;now#lt;/b#gt;#10;#35; #amp; done" in lines[1]


def test_graph_of_a_plain_journey_is_unchanged() -> None:
    doc = journey(action("added", "Added To Cart", within=None), delay("wait", "4h"), send("push", "hi"))
    assert graph_lines(doc)[1] == '    n_added(["added<br/>action: did Added To Cart"])'


# --- quiet hours and outcome paths ------------------------------------------------------------

def test_outcome_paths_are_checked_like_next() -> None:
    doc = journey(action("added", "Added To Cart"),
                  send("push", "hi", on={"delivered": "thanks", "capped": "nowhere", "seen": "thanks"}),
                  extra=[{"id": "thanks", "type": "exit"}])
    assert check(doc) == [("unknown-target", "push", "on.capped"),
                          ("unknown-outcome", "push", "on.seen")]


def test_outcome_paths_count_for_reachability_and_cycles() -> None:
    doc = journey(action("added", "Added To Cart"), send("push", "hi", on={"failed": "sms"}),
                  extra=[send("sms", "{{ event.product_name }}")])
    assert check(doc) == []  # sms is reached only by the failed path, with the cart's event
    doc["nodes"][2]["on"] = {"skipped": "push"}
    assert check(doc) == [("cycle", "sms", None)]


def test_an_outcome_path_carries_the_event_like_next() -> None:
    doc = journey(action("added", "Added To Cart"), send("push", "hi", on={"failed": "wait"}),
                  extra=[delay("wait", "2d", next="sms"), send("sms", "{{ event.product_name }}")])
    assert check(doc) == [("event-delay-too-long", "sms", "message.body")]


def test_yaml_reads_on_as_true_and_the_loader_takes_it_back() -> None:
    text = """
id: t
name: Test
entry: added
nodes:
  - {id: added, type: action, event: Added To Cart, next: push}
  - id: push
    type: engagement
    channel: push
    message: {body: hi}
    on: {failed: end}
  - {id: end, type: exit}
"""
    loaded = load_document(yaml.safe_load(text), "t.yaml")
    assert loaded.journey is not None and validate_loaded(loaded) == []
    assert dict(loaded.journey.node("push").targets()) == {"on.failed": "end"}


@pytest.mark.parametrize("quiet, found", [
    ({"start": "22:00", "end": "08:00"}, []),
    ({"start": "22:00", "end": "08:00", "action": "drop"}, []),
    ({"start": "22:00", "end": "22:00"}, [("quiet-hours", "push", "quiet_hours.end")]),
    ({"start": "10pm", "end": "08:00"}, [("bad-value", "push", "quiet_hours.start")]),
    ({"start": 1320, "end": "08:00"}, [("bad-value", "push", "quiet_hours.start")]),
    ({"start": "22:00", "end": "08:00", "action": "skip"}, [("bad-value", "push", "quiet_hours.action")]),
    ({"start": "22:00"}, [("missing-field", "push", "quiet_hours.end")]),
    ({"start": "22:00", "end": "08:00", "until": "x"}, [("unknown-field", "push", "quiet_hours.until")]),
])
def test_quiet_hours_of_a_node(quiet: Any, found: list[Any]) -> None:
    doc = journey(action("added", "Added To Cart"), send("push", "hi", quiet_hours=quiet))
    assert check(doc) == found


def test_a_node_sets_or_ignores_quiet_hours_not_both() -> None:
    doc = journey(action("added", "Added To Cart"),
                  send("push", "hi", quiet_hours={"start": "22:00", "end": "08:00"},
                       ignore_quiet_hours=True), quiet_hours={"start": "21:00", "end": "09:00"})
    assert check(doc) == [("quiet-hours", "push", "ignore_quiet_hours")]
    del doc["nodes"][1]["quiet_hours"]
    assert check(doc) == []


@pytest.mark.parametrize(("unquoted", "example"), [("22:00", "22:00"), ("7:30", "07:30"),
                                                   ("1:00:00", "22:00"), ("24:00", "22:00")])
def test_an_unquoted_time_says_to_quote_it(unquoted: str, example: str) -> None:
    # YAML 1.1: 22:00 is 1320, 1:00:00 is 3600; the example must itself be a time of day
    doc = yaml.safe_load(f"quiet_hours: {{start: {unquoted}, end: '08:00'}}")
    problems = validate_loaded(load_document(journey(action("added", "Added To Cart"), **doc), "t.yaml"))
    assert [(p.code, p.field) for p in problems] == [("bad-value", "quiet_hours.start")]
    assert f"write the time in quotes, e.g. '{example}'" in problems[0].message


@pytest.mark.parametrize("fields, found", [
    ({"timezone": "Europe/Paris", "quiet_hours": {"start": "21:00", "end": "09:00"}}, []),
    ({"timezone": "Europe/Pariss"}, [("unknown-timezone", None, "timezone")]),
    ({"timezone": "../../etc/passwd"}, [("unknown-timezone", None, "timezone")]),
    ({"timezone": "Europe"}, [("unknown-timezone", None, "timezone")]),  # a folder: it crashed
    ({"timezone": "x" * 300}, [("bad-value", None, "timezone")]),
    ({"timezone": "localtime"}, [("unknown-timezone", None, "timezone")]),
    ({"quiet_hours": {"start": "09:00", "end": "09:00"}}, [("quiet-hours", None, "quiet_hours.end")]),
    ({"quiet_hours": False}, [("bad-value", None, "quiet_hours")]),
    ({"ignore_caps": True}, []),
])
def test_journey_quiet_hours_and_timezone(fields: dict[str, Any], found: list[Any]) -> None:
    assert check(journey(action("added", "Added To Cart"), send("push", "hi"), **fields)) == found


def test_the_graph_shows_a_nodes_quiet_hours() -> None:
    doc = journey(action("added", "Added To Cart"),
                  send("push", "hi", quiet_hours={"start": "21:00", "end": "09:00", "action": "drop"}))
    assert graph_lines(doc)[2] == '    n_push["push<br/>push, quiet 21:00-09:00 (drop)"]'


# --- scale -------------------------------------------------------------------------------------

def wide_merge(width: int, tail: dict[str, Any]) -> dict[str, Any]:
    """``width`` action nodes (each its own event source) meet, then ``width`` copies of ``tail``
    in a chain: every source reaches every node of the chain."""
    fan = [action(f"a{i}", "Viewed Product", within="1h", next="t0") for i in range(width)]
    chain_ = [{**tail, "id": f"t{i}", "next": f"t{i + 1}"} for i in range(width - 1)]
    chain_.append({**tail, "id": f"t{width - 1}"})
    return journey(action("start", "Added To Cart", next="split"),
                   {"id": "split", "type": "split", "otherwise": "t0",
                    "branches": [{"when": "event.price > 1", "next": f"a{i}"} for i in range(width)]},
                   extra=[*fan, *chain_])


@pytest.mark.parametrize("tail", [send("x", "{{ event.product_name }}"), delay("x", "30h"),
                                  {"id": "x", "type": "profile_update",
                                   "set": {"p": "{{ event.product_url }}"}}],
                         ids=["sends", "long-delays", "profile-updates"])
def test_the_event_analysis_is_linear(tail: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each source is walked once, not once per node it reaches (that was 6 s for 5,000 nodes)."""
    from journeys.validation import scope

    walked = [0]
    real_sorted, real_after_wait = sorted, scope.Source.after_wait

    def counting_sorted(items: Any, **kwargs: Any) -> list[Any]:
        result = real_sorted(items, **kwargs)
        walked[0] += len(result)
        return result

    def counting_after_wait(self: Any, node_id: str, length: Any) -> Any:
        walked[0] += 1
        return real_after_wait(self, node_id, length)

    monkeypatch.setattr(scope, "sorted", counting_sorted, raising=False)
    monkeypatch.setattr(scope.Source, "after_wait", counting_after_wait)
    for width in (50, 200):
        walked[0] = 0
        found = {code for code, _, _ in check(wide_merge(width, tail))}
        assert found <= {"event-delay-too-long", "unknown-event-property"}
        assert walked[0] <= 10 * width, f"{walked[0]} steps for {width} sources and nodes"


def test_a_rule_that_fails_breaks_its_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash in one rule stopped every command that reads the catalog (`timezone: Europe`
    raised IsADirectoryError): now it is a problem of the journey it failed on."""
    import journeys.validation.validate as validate

    def failing(journey: Any) -> Any:
        raise IsADirectoryError(21, "Is a directory", "Europe")

    monkeypatch.setattr(validate, "node_rules", failing)
    path = tmp_path / "j.yaml"
    path.write_text((Path(__file__).parent.parent / "examples" / "birthday.yaml").read_text())
    _, problems = validate_file(path)
    assert [(p.code, p.node) for p in problems] == [("validator-error", None)]
    assert "IsADirectoryError" in problems[0].message
