"""The command line: validate, preview, schema and graph, as users run them.

The real entry point runs as subprocesses, all started at once (each costs about half a
second); the usage errors go through ``starter.main`` in-process.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import starter
from journeys.funnel.graph import to_mermaid
from journeys.language.loader import journey_files
from journeys.language.models import Journey
from journeys.language.problems import RULES
from tests.test_validate import WITHOUT_EXAMPLE

ROOT = Path(__file__).resolve().parent.parent
CART = {"product_name": "iPhone <14>", "product_image": "https://shop.test/i.png",
        "price": 999, "product_url": "https://shop.test/p/1"}
LINE = re.compile(r"^(?P<file>\S+): (node '(?P<node>[^']+)'|journey)( \((?P<field>[^)]+)\))?: "
                  r"(?P<message>.+) \[(?P<code>[a-z-]+)\]$")

COMMANDS: dict[str, list[str]] = {
    "validate-ok": ["validate", "examples", "examples/abandoned-cart.yaml"],
    "validate-mixed": ["validate", "examples/birthday.yaml", "examples/invalid"],
    "validate-json": ["validate", "--json", "examples/invalid", "examples/birthday.yaml"],
    "validate-missing": ["validate", "examples/birthday.yaml", "examples/no-such-journey.yaml"],
    "preview": ["preview", "examples/abandoned-cart.yaml", "email-product",
                "--event", "Added To Cart", "--props", json.dumps(CART),
                "--profile", '{"first_name": "Ada"}'],
    "preview-json": ["preview", "examples/abandoned-cart.yaml", "push-followup", "--json",
                     "--props", json.dumps(CART)],
    "preview-missing": ["preview", "examples/abandoned-cart.yaml", "email-product",
                        "--props", json.dumps({k: v for k, v in CART.items() if k != "price"})],
    "schema": ["schema"],
    "graph": ["graph", "examples/abandoned-cart.yaml"],
}


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    procs = {name: subprocess.Popen([sys.executable, "starter.py", *args], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in COMMANDS.items()}
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        results[name] = Run(proc.returncode, out, err)
    return results


# --- validate ----------------------------------------------------------------------------

def test_validate_ok(runs: dict[str, Run]) -> None:
    run = runs["validate-ok"]
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    expected = [f"ok {p.relative_to(ROOT)}" for p in journey_files([ROOT / "examples"])]
    assert lines == [*expected, "ok examples/abandoned-cart.yaml"]
    assert run.err == ""


def test_validate_text_lists_each_problem(runs: dict[str, Run]) -> None:
    run = runs["validate-mixed"]
    assert run.code == 1, run.err
    lines = run.out.splitlines()
    assert lines[0] == "ok examples/birthday.yaml"
    problems = [LINE.match(line) for line in lines[1:]]
    assert all(problems), [line for line in lines[1:] if not LINE.match(line)]
    by_file = {m["file"]: m for m in problems if m}
    assert {Path(f).stem for f in by_file} == set(RULES) - WITHOUT_EXAMPLE.keys()
    syntax = by_file["examples/invalid/template-syntax.yaml"]
    assert (syntax["node"], syntax["field"], syntax["code"]) == (
        "email-product", "message.html", "template-syntax")
    assert syntax["message"].startswith("line 2:")
    goals = by_file["examples/invalid/too-many-goals.yaml"]
    assert goals["node"] is None and goals["field"] == "goals"


def test_validate_json(runs: dict[str, Run]) -> None:
    run = runs["validate-json"]
    assert run.code == 1, run.err
    problems = json.loads(run.out)
    assert isinstance(problems, list) and len(problems) == len(RULES) - len(WITHOUT_EXAMPLE)
    assert all(set(p) == {"file", "node", "field", "code", "message"} for p in problems)
    assert {p["code"] for p in problems} == set(RULES) - WITHOUT_EXAMPLE.keys()
    unknown_entry = next(p for p in problems if p["code"] == "unknown-entry")
    assert unknown_entry == {**unknown_entry, "file": "examples/invalid/unknown-entry.yaml",
                             "node": None, "field": "entry"}
    assert not any(p["file"].endswith("birthday.yaml") for p in problems)


def test_validate_missing_file_is_a_usage_error(runs: dict[str, Run]) -> None:
    run = runs["validate-missing"]
    assert run.code == 2
    assert "examples/no-such-journey.yaml" in run.err
    assert "Traceback" not in run.err


def test_validate_unreadable_yaml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: j\nnodes: [\n")
    assert starter.main(["validate", str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_validate_json_when_all_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert starter.main(["validate", "--json", str(ROOT / "examples" / "birthday.yaml")]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_validate_needs_a_path() -> None:
    with pytest.raises(SystemExit) as caught:
        starter.main(["validate"])
    assert caught.value.code == 2


# --- preview -------------------------------------------------------------------------------

def test_preview_text(runs: dict[str, Run]) -> None:
    run = runs["preview"]
    assert run.code == 0, run.err
    assert run.out.startswith("subject: iPhone <14> is still in your cart\n")
    assert "html: <h1>iPhone &lt;14&gt;</h1>" in run.out  # the email html is escaped
    assert "Price: 999 USD" in run.out
    assert "text: iPhone <14> (999 USD): https://shop.test/p/1" in run.out


def test_preview_json(runs: dict[str, Run]) -> None:
    run = runs["preview-json"]
    assert run.code == 0, run.err
    assert json.loads(run.out) == {
        "title": "Your cart misses you, friend",
        "body": "Still interested in iPhone <14>? It's still waiting in your cart; "
                "tap Buy to finish your purchase.",
        "image": "https://shop.test/i.png",
        "deep_link": "https://shop.test/p/1",
    }


def test_preview_missing_value_exits_1_naming_it(runs: dict[str, Run]) -> None:
    run = runs["preview-missing"]
    assert run.code == 1
    assert run.out == ""
    assert "event.price" in run.err
    assert "email-product" in run.err
    assert "Traceback" not in run.err


def test_preview_missing_profile_value(capsys: pytest.CaptureFixture[str]) -> None:
    code = starter.main(["preview", str(ROOT / "examples" / "controller-between.yaml"),
                         "email-product", "--props", json.dumps(CART)])
    assert code == 1
    assert "profile.cart_reminders" in capsys.readouterr().err


def test_preview_says_what_the_send_would_refuse(capsys: pytest.CaptureFixture[str]) -> None:
    big = json.dumps({**CART, "product_name": "x" * 5000})  # over push's 4 KB
    assert starter.main(["preview", "examples/abandoned-cart.yaml", "push-reminder", "--props", big]) == 1
    assert "not sent: body: the message is over the push limit" in capsys.readouterr().err


def test_preview_profile_update(capsys: pytest.CaptureFixture[str]) -> None:
    code = starter.main(["preview", str(ROOT / "examples" / "controller-between.yaml"),
                         "remember-product", "--props", json.dumps(CART),
                         "--profile", '{"cart_reminders": 2}', "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {
        "set.last_reminded_product": "iPhone <14>", "set.cart_reminders": "3"}


def test_preview_profile_only_node_without_event(capsys: pytest.CaptureFixture[str]) -> None:
    code = starter.main(["preview", str(ROOT / "examples" / "birthday.yaml"), "email-greeting",
                         "--profile", '{"first_name": "Ada"}'])
    assert code == 0
    assert "subject: Happy birthday, Ada!" in capsys.readouterr().out


@pytest.mark.parametrize("args, says", [
    (["examples/abandoned-cart.yaml", "nope"], "no node 'nope'"),
    (["examples/abandoned-cart.yaml", "wait-email"], "delay node"),
    (["examples/abandoned-cart.yaml", "push-reminder", "--event", "Charged"], "'Added To Cart'"),
    (["examples/abandoned-cart.yaml", "push-reminder", "--props", "[1]"], "--props"),
    (["examples/abandoned-cart.yaml", "push-reminder", "--profile", "{oops"], "--profile"),
    (["examples/invalid/cycle.yaml", "push-reminder"], "[cycle]"),
    (["examples/nope.yaml", "push-reminder"], "no such file"),
])
def test_preview_usage_errors(args: list[str], says: str, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert starter.main(["preview", *args]) == 2
    assert says in capsys.readouterr().err


# --- schema and graph ------------------------------------------------------------------------

def test_schema(runs: dict[str, Run]) -> None:
    run = runs["schema"]
    assert run.code == 0, run.err
    schema = json.loads(run.out)
    assert schema["title"] == "Journey"
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"id", "name", "entry", "nodes", "events", "goals"} <= set(schema["properties"])
    assert set(schema["required"]) == {"id", "name", "entry", "nodes"}
    mapping = schema["properties"]["nodes"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == {"action", "inaction", "date_time", "delay", "engagement",
                            "profile_update", "intellinode", "split", "trigger_journey", "segment", "exit"}
    delay = schema["$defs"]["DelayNode"]["properties"]["duration"]
    assert delay["type"] == "string" and re.match(delay["pattern"], "15h")


def test_graph(runs: dict[str, Run]) -> None:
    run = runs["graph"]
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == "flowchart TD"
    for node_id in ("cart-abandoned", "push-reminder", "wait-followup", "email-product"):
        assert any(f'"{node_id}<br/>' in line for line in lines), node_id
    assert any("email-product<br/>email" in line for line in lines)
    assert any("push-reminder<br/>push" in line for line in lines)
    assert any("delay 4h" in line for line in lines)
    assert sum("-->" in line for line in lines) == 5


def test_graph_of_an_unloadable_journey_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert starter.main(["graph", str(ROOT / "examples" / "invalid" / "bad-value.yaml")]) == 2
    assert "[bad-value]" in capsys.readouterr().err


def test_graph_keeps_similar_ids_apart() -> None:
    journey = Journey.model_validate({
        "id": "g", "name": "G", "entry": "a-b", "nodes": [
            {"id": "a-b", "type": "action", "event": "E", "next": "a_b"},
            {"id": "a_b", "type": "delay", "duration": "1h", "next": "a.b"},
            {"id": "a.b", "type": "exit"}]})
    lines = to_mermaid(journey).splitlines()
    keys = [line.split('"')[0].strip()[:-2] for line in lines[1:4]]
    assert len(set(keys)) == 3, keys
    assert lines[4:] == [f"    {keys[0]} --> {keys[1]}", f"    {keys[1]} --> {keys[2]}"]


# A bad event is refused at the door: these exit 2 before any connection is tried (the
# address below has no server, so reaching Temporal would fail with another message).
@pytest.mark.parametrize(("args", "says"), [
    (["event", "", "Added To Cart"], "user_id"),
    (["event", "ada", ""], "name"),
    (["event", "ada", "Added To Cart", "--props", "[1, 2]"], "--props: give a JSON object"),
    (["event", "ada", "Added To Cart", "--props", "{bad"], "--props: not JSON"),
    (["event", "ada", "Added To Cart", "--props", '{"price": NaN}'], "NaN is not a JSON number"),
    (["event", "ada", "Added To Cart", "--props", '{"p": -Infinity}'], "-Infinity is not a JSON number"),
    (["event", "ada", "Added To Cart", "--props", '{"a":' * 200 + "1" + "}" * 200],
     "--props nest deeper than 16 levels"),
    (["event", "ada", "Added To Cart", "--props", '{"a":' * 5000 + "1" + "}" * 5000],
     "--props nest deeper than 16 levels"),
    (["event", "ada", "Added To Cart", "--props", '{"a":' * 17 + "1" + "}" * 17],
     "--props nest deeper than 16 levels"),
    (["event", "ada", "Added To Cart", "--props", '{"s": "' + "x" * 40000 + '"}'],
     "over the limit of 32768"),
    (["event", "ada", "Added To Cart", "--profile", '{"s": [' + "1," * 40000 + '1]}'],
     "over the limit of 65536"),
    (["event", "ada", "Added To Cart", "--props", "@/nonexistent/props.json"],
     "--props: cannot read /nonexistent/props.json"),
    (["event", "ada", "Added To Cart", "--profile", "7"], "--profile: give a JSON object"),
    (["event", "ada", "Added To Cart", "--journeys", "examples/invalid"],
     "no journey of the catalog can route events"),
    (["profile", "", "--set", "{}"], "the user id is empty"),
    (["status", "a\x1b[2Jb"], "has control characters"),
    (["event", "nl\nx", "Signed Up"], "the user id 'nl\\nx' has control characters"),
    (["event", "ada", "Signed Up", "--id", ""], "id: String should have at least 1 character"),
])
def test_bad_events_are_refused_before_temporal(args: list[str], says: str,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")
    monkeypatch.setenv("JOURNEYS_DATA_DIR", str(tmp_path))  # no store with entries in it
    assert starter.main(args) == 2
    error = capsys.readouterr().err
    assert says in error and "cannot reach Temporal" not in error


def test_an_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")
    assert starter.main(["status", "ada"]) == 2
    assert "cannot reach Temporal at 127.0.0.1:9" in capsys.readouterr().err


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_stops_early_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """`starter.py schema | head -1`: the closed pipe ends the command quietly, status 0."""
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert starter.main(["schema"]) == 0
