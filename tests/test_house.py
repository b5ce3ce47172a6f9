"""The house's import rules, read from the source (every import, also inside a function): the
domain knows no Temporal and no other room; no arrow runs back up; no two rooms import each
other. A new import that breaks one fails here, naming the file and line."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers.support import ROOT

ROOMS = ("journeys", "workflows", "activities", "ingestion", "operate", "service", "telemetry",
         "connection", "cli")
#: What each room must never import (a room's own subpackages aside).
NEVER = {
    "journeys": {"temporalio", "workflows", "activities", "ingestion", "operate", "service",
                 "telemetry", "connection"},
    "workflows": {"ingestion", "operate", "service", "connection"},
    "activities": {"workflows", "ingestion", "operate", "service", "connection"},
    "telemetry": {"workflows", "activities", "ingestion", "operate", "service", "connection"},
    "connection": {"workflows", "activities", "ingestion", "operate", "service", "telemetry"},
    "ingestion": {"operate", "service"},
}


def imports(room: str) -> list[tuple[str, int, str]]:
    """(file, line, top-level module) of every absolute import in ``room``."""
    found = []
    for path in sorted((ROOT / room).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found += [(str(path.relative_to(ROOT)), node.lineno, name.split(".")[0]) for name in names]
    return found


@pytest.mark.parametrize("room", sorted(NEVER))
def test_a_room_never_imports_what_sits_above_it(room: str) -> None:
    broken = [f"{file}:{line}: imports {module}" for file, line, module in imports(room)
              if module in NEVER[room]]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("room", [room for room in ROOMS if room != "cli"])
def test_no_room_imports_the_command_line(room: str) -> None:
    """The command line is the top: its code is found in cli/ alone."""
    broken = [f"{file}:{line}" for file, line, module in imports(room) if module == "cli"]
    assert not broken, broken


def test_no_two_rooms_import_each_other() -> None:
    arrows: dict[str, set[str]] = defaultdict(set)
    for room in ROOMS:
        arrows[room] = {module for _, _, module in imports(room) if module in ROOMS and module != room}
    both = sorted((a, b) for a in ROOMS for b in arrows[a] if a < b and a in arrows[b])
    assert not both, both


def test_every_room_is_a_package_that_says_what_it_holds() -> None:
    for room in ROOMS:
        init = Path(ROOT / room / "__init__.py")
        assert init.exists() and ast.get_docstring(ast.parse(init.read_text())), room
