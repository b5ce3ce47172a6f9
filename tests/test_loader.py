"""Reading journey files: what cannot become a document (aliases, duplicate keys, deep nesting,
oversized files) is a problem naming the file and line, found before anything expands it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from journeys.language import limits
from journeys.language.loader import LOADER, PyLoader, ReadError, load_file, parse_text, read_document
from journeys.language.problems import UsageError
from journeys.validation.validate import validate_paths

#: Both strict loaders: libyaml's (used where present) and the pure-Python fallback.
LOADERS = pytest.mark.parametrize("loader", [LOADER, PyLoader], ids=lambda c: c.__name__)


def refused(text: str, name: str = "j.yaml", loader: Any = None) -> tuple[str, str]:
    with pytest.raises(ReadError) as caught:
        parse_text(text, name, loader)
    problem = caught.value.problem
    assert problem.file == name and str(problem) == str(caught.value)
    return problem.code, problem.message


def laughs(levels: int, width: int = 9) -> str:
    """The "billion laughs" shape: each anchored list holds ``width`` aliases of the one before."""
    lines = ["id: lol", "name: Lol", "entry: a", "events:",
             f"  L0: {{properties: &a0 [{', '.join(['x'] * width)}]}}"]
    for i in range(1, levels):
        lines.append(f"  L{i}: {{properties: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]}}")
    return "\n".join([*lines, "nodes:", "  - {id: a, type: action, event: E}", ""])


def test_the_c_loader_is_used_where_present() -> None:
    assert LOADER.__name__ == ("CLoader" if hasattr(yaml, "CSafeLoader") else "PyLoader")


# --- aliases -------------------------------------------------------------------------------------

@LOADERS
@pytest.mark.parametrize("levels, width", [(9, 9), (30, 2)])
def test_nested_aliases_are_refused_at_once(loader: Any, levels: int, width: int) -> None:
    text = laughs(levels, width)
    assert len(text) < 2000  # 9**9 or 2**30 values once expanded
    started = time.perf_counter()
    code, message = refused(text, loader=loader)
    assert time.perf_counter() - started < 1  # it took a minute and 768 MB
    assert code == "yaml-alias"
    assert message.startswith("line 5: ")  # the anchor L0's list, used again by L1


@LOADERS
@pytest.mark.parametrize("text, line", [
    ("a: &x 1\nb: *x\n", 1),  # a scalar
    ("a: &m {k: v}\nb:\n  <<: *m\n", 3),  # a merge key, the aliases' favourite
    ("a: &r [1, *r]\n", 1),  # a recursive alias
    ("a:\n  - x\nb: &s [1]\nc: [*s, *s]\n", 3),
])
def test_any_alias_is_refused(loader: Any, text: str, line: int) -> None:
    code, message = refused(text, loader=loader)
    assert code == "yaml-alias" and message.startswith(f"line {line}: ")


@LOADERS
def test_merge_keys_are_refused_even_inline(loader: Any) -> None:
    assert refused("a:\n  <<: {k: v}\n  j: 1\n", loader=loader) == (
        "yaml-alias", "line 2: merge keys (<<) are refused with anchors and aliases: "
                      "write the fields out")


@LOADERS
def test_an_anchor_used_once_is_fine(loader: Any) -> None:
    assert parse_text("a: &x [1, 2]\nb: 3\n", "j.yaml", loader) == {"a": [1, 2], "b": 3}


# --- duplicate keys ------------------------------------------------------------------------------

@LOADERS
@pytest.mark.parametrize("text, line, first, key", [
    ("id: a\nname: b\nid: c\n", 3, 1, "id"),
    ("nodes:\n  - id: a\n    next: b\n    type: exit\n    next: c\n", 5, 3, "next"),
    ("a: {x: 1, y: 2, x: 3}\n", 1, 1, "x"),
    ("a: 1\n1: 2\n0x1: 3\n", 3, 2, "1"),  # equal once read: 1 and 0x1
])
def test_duplicate_keys_are_refused(loader: Any, text: str, line: int, first: int, key: str) -> None:
    code, message = refused(text, loader=loader)
    assert code == "duplicate-key"
    assert message == (f"line {line}: the key '{key}' is given twice (first at line {first}): "
                       "only the last would count")


@pytest.mark.parametrize("text, key", [
    ('{"id": "a", "id": "b"}', "id"),
    ('{"nodes": [{"id": "a", "type": "exit", "type": "delay"}]}', "type"),
])
def test_duplicate_json_keys_are_refused(text: str, key: str) -> None:
    code, message = refused(text, "j.json")
    assert code == "duplicate-key" and f"'{key}' is given twice" in message


# --- nesting and syntax --------------------------------------------------------------------------

@pytest.mark.parametrize("text, name, loader", [
    ("[" * 100_000 + "]" * 100_000, "j.json", None),
    ('{"a":' * 5000 + "1" + "}" * 5000, "j.json", None),
    ("[" * 100_000 + "]" * 100_000, "j.yaml", LOADER),
    ("- " * 5000 + "x\n", "j.yaml", LOADER),
    ("- " * 5000 + "x\n", "j.yaml", PyLoader),  # the Python composer recurses
    ("a: " + "[" * 500 + "]" * 500, "j.yaml", LOADER),  # parses: refused by depth
    ('{"a": ' + "[" * 500 + "]" * 500 + "}", "j.json", None),
])
def test_deep_nesting_is_a_clear_problem(text: str, name: str, loader: Any) -> None:
    code, message = refused(text, name, loader)
    assert code == "unreadable" and message.startswith("cannot read: ")
    assert "Recursion" not in message and "recursion" not in message


def test_the_deepest_journey_nesting_is_fine() -> None:
    value: Any = 1
    for _ in range(limits.MAX_DEPTH - 1):
        value = [value]
    assert parse_text(json.dumps({"a": value}), "j.json") == {"a": value}
    assert parse_text(yaml.safe_dump({"a": value}), "j.yaml") == {"a": value}


@pytest.mark.parametrize("text, name", [("id: [unclosed\n", "j.yaml"), ("name: 2024-02-30\n", "j.yaml"),
                                        ("{", "j.json"), ('{"a": NaN', "j.json")])
def test_syntax_errors_are_unreadable_on_one_line(text: str, name: str) -> None:
    code, message = refused(text, name)
    assert code == "unreadable" and message.startswith("cannot read: ") and "\n" not in message


def test_a_read_error_is_still_a_usage_error_for_one_file_commands() -> None:
    with pytest.raises(UsageError, match="cannot read"):
        parse_text("id: [", "j.yaml")


# --- files -------------------------------------------------------------------------------------

def problem_of(path: Path) -> tuple[str, str]:
    with pytest.raises(ReadError) as caught:
        read_document(path)
    assert caught.value.problem.file == str(path)
    return caught.value.problem.code, caught.value.problem.message


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as file:  # sparse: no disk used, and never read
        file.truncate(limits.MAX_JOURNEY_BYTES + 1)
    opened: list[Path] = []
    real_open = Path.open

    def recording_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", recording_open)
    size = limits.MAX_JOURNEY_BYTES + 1
    assert problem_of(path) == ("too-large", f"the file is {size} bytes, over the limit of "
                                             f"{limits.MAX_JOURNEY_BYTES} bytes")
    assert opened == []


def test_a_file_at_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "edge.json"
    text = '{"id": "' + "x" * (limits.MAX_JOURNEY_BYTES - 10) + '"}'
    path.write_text(text)
    assert path.stat().st_size == limits.MAX_JOURNEY_BYTES
    assert read_document(path) == {"id": "x" * (limits.MAX_JOURNEY_BYTES - 10)}


def test_a_journey_over_the_limit_as_json_is_refused(tmp_path: Path) -> None:
    """The workflow input carries the journey as JSON, with every default spelt out: a file
    under the limit can still be over it there."""
    nodes = [{"id": f"a{i}", "type": "exit"} for i in range(30_000)]  # each gains "name": null
    doc = {"id": "j", "name": "J", "entry": "a0", "nodes": nodes}
    path = tmp_path / "j.json"
    path.write_text(json.dumps(doc, separators=(",", ":")))
    assert path.stat().st_size <= limits.MAX_JOURNEY_BYTES
    loaded = load_file(path)
    assert loaded.journey is None
    [problem] = loaded.problems
    assert (problem.code, problem.file) == ("too-large", str(path))
    assert problem.message.endswith(f"bytes as JSON (the form each user's workflow carries), "
                                    f"over the limit of {limits.MAX_JOURNEY_BYTES} bytes")


def test_unreadable_files_are_problems_of_their_file(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"id: caf\xe9\n")
    assert problem_of(latin)[0] == "unreadable" and "not UTF-8" in problem_of(latin)[1]
    assert problem_of(tmp_path / "gone.yaml") == ("unreadable", "cannot read: no such file")
    assert problem_of(tmp_path) == ("unreadable", "cannot read: a folder")
    assert load_file(latin).problems[0].code == "unreadable"


def test_a_named_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: every command reading the catalog hung."""
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    [(_, pipe), (_, zero)] = validate_paths([tmp_path])
    assert [(p.code, p.message) for p in pipe] == [
        ("unreadable", "cannot read: not a regular file (a pipe, socket or device)")]
    assert [p.code for p in zero] == ["unreadable"]
