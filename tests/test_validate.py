"""The validator: every example is valid, every invalid example breaks exactly its rule, and
the structural and template rules hold (the event rules are in test_scope.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from journeys.loader import journey_files, load_document
from journeys.problems import RULES, Problem, UsageError
from journeys.validate import validate_file, validate_loaded, validate_paths
from tests.journey_docs import CATALOG, action, check, delay, journey, merge, profile_date, send

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
INVALID = EXAMPLES / "invalid"
VALID_FILES = sorted(journey_files([EXAMPLES]))
INVALID_FILES = sorted(journey_files([INVALID]))
EXPECT = re.compile(r"^# expect: (?P<code>[a-z-]+) node=(?P<node>\S+) field=(?P<field>\S+)$")


def expectation(path: Path) -> tuple[str, str | None, str | None]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = EXPECT.match(first)
    assert match, f"{path.name}: the first line must be '# expect: <code> node=<id> field=<f>'"
    node, field = match["node"], match["field"]
    return match["code"], None if node == "-" else node, None if field == "-" else field


# --- the example files ----------------------------------------------------------------------

def test_examples_exist() -> None:
    assert len(VALID_FILES) >= 8
    assert all(path.name != "event-catalog.yaml" for path in VALID_FILES)


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    loaded, problems = validate_file(path)
    assert problems == []
    assert loaded.journey is not None
    assert loaded.catalog, "examples/event-catalog.yaml is loaded beside the examples"


def test_every_rule_has_an_invalid_example() -> None:
    codes = [expectation(path)[0] for path in INVALID_FILES]
    assert sorted(codes) == sorted(RULES), "one invalid example per rule code"
    assert all(path.stem == expectation(path)[0] for path in INVALID_FILES)


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_invalid_example_breaks_its_rule(path: Path) -> None:
    code, node, field = expectation(path)
    _, problems = validate_file(path)
    found = [(p.code, p.node, p.field) for p in problems]
    assert found == [(code, node, field)], "exactly the expected problem, nothing else"
    assert problems[0].file == str(path)
    assert problems[0].message


def test_validate_paths_expands_folders_but_not_subfolders() -> None:
    results = validate_paths([EXAMPLES])
    assert [loaded.path for loaded, _ in results] == [str(p) for p in VALID_FILES]
    assert all(problems == [] for _, problems in results)


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        validate_paths([tmp_path / "nope.yaml"])


def test_unreadable_yaml_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(UsageError, match="cannot read"):
        validate_paths([path])


def test_a_date_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "date.yaml"
    path.write_text("id: j\nname: 2024-02-30\n")
    with pytest.raises(UsageError, match="cannot read"):
        validate_paths([path])


def test_problem_text_format() -> None:
    problem = Problem(file="j.yaml", node="push-1", field="message.body", code="template-syntax",
                      message="line 1: unexpected '}'")
    assert str(problem) == ("j.yaml: node 'push-1' (message.body): line 1: unexpected '}' "
                            "[template-syntax]")
    journey_level = Problem(file="j.yaml", node=None, field="goals", code="too-many-goals",
                            message="4 goals")
    assert str(journey_level) == "j.yaml: journey (goals): 4 goals [too-many-goals]"


# --- structure and templates ---------------------------------------------------------------------

def test_template_syntax_reports_the_line() -> None:
    doc = journey(action("added", "Added To Cart"),
                  send("email", "ok", channel="email"))
    doc["nodes"][1]["message"]["html"] = "<p>\n{{ event.product_name }\n</p>"
    problems = validate_loaded(load_document(doc, "t.yaml", CATALOG))
    assert [(p.code, p.node, p.field) for p in problems] == [
        ("template-syntax", "email", "message.html")]
    assert problems[0].message.startswith("line 2:")


def test_unknown_filter_is_a_template_problem() -> None:
    doc = journey(action("added", "Added To Cart"), send("push", "{{ event.product_name | tittle }}"))
    assert check(doc) == [("template-syntax", "push", "message.body")]


def test_profile_update_templates_are_checked() -> None:
    doc = journey(action("added", "Added To Cart"),
                  {"id": "remember", "type": "profile_update", "set": {"last": "{{ event.x "}})
    assert check(doc) == [("template-syntax", "remember", "set.last")]


def test_split_expression_that_is_a_template_is_rejected() -> None:
    doc = merge("{{ event.product_name }}")
    doc["nodes"][1]["branches"][0]["when"] = "{{ event.plan }}"
    assert check(doc) == [("expression-syntax", "by-plan", "branches[0].when")]


def test_nested_message_fields_are_checked() -> None:
    doc = journey(action("added", "Added To Cart"),
                  {"id": "hook", "type": "engagement", "channel": "webhook",
                   "message": {"url": "https://example.test/{{ event.product_name }}",
                               "headers": {"X-Product": "{{ event.colour }}"}}})
    assert check(doc) == [("unknown-event-property", "hook", "message.headers.X-Product")]


def test_email_needs_html_or_text() -> None:
    doc = journey(action("added", "Added To Cart"),
                  {"id": "email", "type": "engagement", "channel": "email",
                   "message": {"subject": "hi"}})
    assert check(doc) == [("missing-message-field", "email", "message.html")]


def test_manual_intellinode_paths_need_percentages() -> None:
    doc = journey(action("added", "Added To Cart"),
                  {"id": "pick", "type": "intellinode",
                   "paths": [{"next": "a", "percent": 100}, {"next": "b"}]},
                  extra=[{"id": "a", "type": "exit"}, {"id": "b", "type": "exit"}])
    assert check(doc) == [("missing-field", "pick", "paths[1].percent")]


@pytest.mark.parametrize("count, ok", [(2, True), (7, True), (8, False)])
def test_intellinode_path_count(count: int, ok: bool) -> None:
    ends = [{"id": f"end-{i}", "type": "exit"} for i in range(count)]
    doc = journey(action("added", "Added To Cart"),
                  {"id": "pick", "type": "intellinode", "mode": "automated",
                   "paths": [{"next": end["id"]} for end in ends]},
                  extra=ends, goals=["Charged"])
    assert check(doc) == ([] if ok else [("intellinode-paths", "pick", "paths")])


def test_three_goals_are_fine() -> None:
    doc = journey(action("added", "Added To Cart"), goals=["Charged", "Viewed Product", "Signed Up"])
    assert check(doc) == []


def test_date_source_needs_one_source() -> None:
    doc = journey({"id": "when", "type": "date_time"}, send("push", "hi"))
    assert check(doc) == [("date-source", "when", "event")]
    doc["nodes"][0].update(event="Flight Booked")
    assert check(doc) == [("missing-field", "when", "date_property")]


def test_entry_inaction_needs_its_main_event() -> None:
    doc = journey({"id": "idle", "type": "inaction", "not_event": "Charged", "within": "1h"},
                  send("push", "hi"))
    assert ("missing-field", "idle", "event") in check(doc)


def test_timeout_next_needs_within() -> None:
    doc = journey(action("added", "Added To Cart"), action("charged", "Charged", timeout_next="end"),
                  {"id": "end", "type": "exit"})
    assert check(doc) == [("bad-value", "charged", "timeout_next")]


def test_cycle_through_a_split_is_found_and_personalization_skipped() -> None:
    doc = journey(action("added", "Added To Cart"),
                  {"id": "again", "type": "split", "otherwise": "added",
                   "branches": [{"when": "event.price > 3", "next": "push"}]},
                  extra=[send("push", "{{ event.nope }}")])
    found = check(doc)
    assert ("cycle", "again", None) in found
    assert all(code == "cycle" for code, _, _ in found)


def test_self_loop_is_a_cycle() -> None:
    doc = journey(action("added", "Added To Cart"), delay("wait", "1h", next="wait"))
    assert check(doc) == [("cycle", "wait", None)]


# --- the loader's problems ---------------------------------------------------------------------

def test_not_a_mapping() -> None:
    raws: list[Any] = [None, [], "journey", 5]
    for raw in raws:
        problems = validate_loaded(load_document(raw, "t.yaml"))
        assert [(p.code, p.node, p.field) for p in problems] == [("bad-value", None, None)]


def test_missing_node_type() -> None:
    doc = journey(action("added", "Added To Cart"), {"id": "what", "next": None})
    problems = validate_loaded(load_document(doc, "t.yaml"))
    assert [(p.code, p.node, p.field) for p in problems] == [("missing-field", "what", "type")]
    assert problems[0].message == "'type' is required"


def test_node_without_an_id_is_named_by_position() -> None:
    doc = journey(action("added", "Added To Cart"), {"type": "exit"})
    assert check(doc) == [("missing-field", "#2", "id")]


def test_wrong_message_value_type_is_one_problem() -> None:
    doc = journey(action("added", "Added To Cart"), send("push", "x"))
    doc["nodes"][1]["message"]["body"] = 5
    problems = validate_loaded(load_document(doc, "t.yaml"))
    assert [(p.code, p.node, p.field) for p in problems] == [("bad-value", "push", "message.body")]
    assert "string" in problems[0].message


def test_wrong_where_value_type_is_one_problem() -> None:
    doc = journey(action("added", "Added To Cart", where={"price": [1]}))
    assert check(doc) == [("bad-value", "added", "where.price")]


@pytest.mark.parametrize("duration", ["15", "h", "1.5h", "-1h", "15 hours", "99999999999d", ""])
def test_bad_durations(duration: str) -> None:
    doc = journey(action("added", "Added To Cart"), delay("wait", duration))
    assert check(doc) == [("bad-value", "wait", "duration")]


@pytest.mark.parametrize("at", ["9:00", "24:00", "12:60", "noon", "１２:00"])
def test_bad_time_of_day(at: str) -> None:
    doc = journey({**profile_date("birthday"), "at": at}, send("push", "hi"))
    assert check(doc) == [("bad-value", "birthday", "at")]


def test_negative_offset_is_fine_negative_delay_is_not() -> None:
    doc = journey({**profile_date("renewal"), "offset": "-3d"}, send("push", "hi"))
    assert check(doc) == []
