"""The validator: every example is valid, every invalid example breaks exactly its rule, and
the structural and template rules hold (the event rules are in test_scope.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from journeys.language.loader import journey_files, load_document
from journeys.language.problems import RULES, Problem, UsageError
from journeys.validation.validate import exit_status, validate_file, validate_loaded, validate_paths
from tests.helpers.journey_docs import CATALOG, action, check, delay, journey, merge, profile_date, send

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
INVALID = EXAMPLES / "invalid"
VALID_FILES = sorted(journey_files([EXAMPLES]))
INVALID_FILES = sorted(journey_files([INVALID]))
#: Rules with no file in examples/invalid/, and why (each is tested in test_loader.py instead).
WITHOUT_EXAMPLE = {
    # A bug of a rule, turned into a problem of its file: no journey should cause it.
    "validator-error": "test_a_rule_that_fails_breaks_its_file_only",
    # A journey over MAX_JOURNEY_BYTES (1 MiB) on disk or as JSON: a file of a megabyte has
    # no place in the repository, and no small file comes near it once aliases are refused.
    "too-large": "test_loader.py: a sparse file, and a JSON file under the limit that is over it as JSON",
    # A file that gives no document at all: `validate` exits 2 for it (as for a missing path),
    # so one here would turn `validate examples/invalid` from 1 into 2.
    "unreadable": "test_loader.py and test_validate_paths_reports_every_file",
}
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
    assert sorted(codes) == sorted(RULES.keys() - WITHOUT_EXAMPLE), "one invalid example per rule"
    assert WITHOUT_EXAMPLE.keys() <= RULES.keys()
    assert all(path.stem == expectation(path)[0] for path in INVALID_FILES)


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_invalid_example_breaks_its_rule(path: Path) -> None:
    code, node, field = expectation(path)
    # The folder, not the file alone: duplicate-journey is a rule of a folder's journeys.
    problems = next(found for loaded, found in validate_paths([INVALID]) if loaded.path == str(path))
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


def test_validate_paths_reports_every_file(tmp_path: Path) -> None:
    """An unreadable file is a problem of that file: the files after it are still validated."""
    (tmp_path / "a-broken.yaml").write_text("id: [unclosed\n")
    (tmp_path / "b-date.yaml").write_text("id: j\nname: 2024-02-30\n")
    (tmp_path / "c-empty.yaml").write_text("")
    (tmp_path / "d-latin.json").write_bytes(b'{"id": "caf\xe9"}')
    (tmp_path / "e-dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    (tmp_path / "f-good.yaml").write_text((EXAMPLES / "birthday.yaml").read_text())
    results = validate_paths([tmp_path])
    found = {Path(loaded.path).name: [p.code for p in problems] for loaded, problems in results}
    assert found == {"a-broken.yaml": ["unreadable"], "b-date.yaml": ["unreadable"],
                     "c-empty.yaml": ["bad-value"], "d-latin.json": ["unreadable"],
                     "e-dangling.yaml": ["unreadable"], "f-good.yaml": []}
    assert all(problem.file == loaded.path for loaded, problems in results for problem in problems)
    assert exit_status(results) == 2
    assert exit_status(results[2:3]) == 1 and exit_status(results[-1:]) == 0


def test_an_unlistable_folder_is_a_problem_of_the_folder(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_iterdir, real_listdir = Path.iterdir, os.listdir

    def refuse(path: Any) -> None:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")

    def iterdir(self: Path) -> Any:
        refuse(self)
        return real_iterdir(self)

    def listdir(path: Any = ".") -> list[str]:
        refuse(path)
        return real_listdir(path)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(os, "listdir", listdir)
    [(_, problems)] = validate_paths([locked])
    assert [(p.file, p.code, p.message) for p in problems] == [
        (str(locked), "unreadable", "cannot list: Permission denied")]


def test_an_unreadable_event_catalog_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "event-catalog.yaml").write_text("events: {A: 1, A: 2}\n")
    (tmp_path / "j.yaml").write_text((EXAMPLES / "birthday.yaml").read_text())
    [(_, problems)] = validate_paths([tmp_path])
    assert [(Path(p.file).name, p.code) for p in problems] == [("event-catalog.yaml", "duplicate-key")]


def test_duplicate_journey_ids_in_one_folder(tmp_path: Path) -> None:
    first, other = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    other.mkdir()
    text = (EXAMPLES / "birthday.yaml").read_text()
    for path in (first / "a.yaml", first / "b.yaml", first / "c.json", other / "a.yaml"):
        path.write_text(text if path.suffix == ".yaml" else json.dumps(yaml.safe_load(text)))
    results = validate_paths([first, other, first / "a.yaml"])
    found = [(str(Path(loaded.path).relative_to(tmp_path)), [p.code for p in problems])
             for loaded, problems in results]
    # the same file given twice, and the same id in another folder, are fine
    assert found == [("one/a.yaml", []), ("one/b.yaml", ["duplicate-journey"]),
                     ("one/c.json", ["duplicate-journey"]), ("two/a.yaml", []), ("one/a.yaml", [])]
    message = results[1][1][0].message
    assert "'birthday'" in message and str(first / "a.yaml") in message


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
