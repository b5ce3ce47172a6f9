"""The house's import rules, read from the source (every import, also inside a function): the
domain knows no Temporal and no other room; no arrow runs back up; no two rooms import each
other; inside the domain, each of its rooms imports only the rooms below it. A new import that
breaks one fails here, naming the file and line."""

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


#: The domain's rooms, lowest first, and what of the domain each may import besides itself.
SUB_ROOMS: dict[str, set[str]] = {
    "journeys.language": set(),
    "journeys.personalization": {"journeys.language"},
    "journeys.validation": {"journeys.language", "journeys.personalization"},
    "journeys.store": {"journeys.language", "journeys.numbers"},
    "journeys.funnel": {"journeys.language", "journeys.store", "journeys.inputs"},
    "journeys.audience": {"journeys.language", "journeys.store"},
}
#: The domain's shared modules (at its top level), and what of the domain each may import.
SHARED: dict[str, set[str]] = {
    "journeys.numbers": set(),
    "journeys.egress": set(),
    "journeys.links": {"journeys.store", "journeys.events"},
    "journeys.events": {"journeys.language"},
    "journeys.inputs": {"journeys.language"},
    "journeys.items": set(),
    "journeys.ingest": {"journeys.language", "journeys.events", "journeys.inputs"},
    "journeys.settings": {"journeys.language", "journeys.store", "journeys.egress", "journeys.numbers"},
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


def _owner(module: str) -> str:
    """The domain room or shared module that ``module`` (a dotted name in journeys) is part of."""
    parts = module.split(".")
    return ".".join(parts[:2])


def domain_imports(owner: str) -> list[tuple[str, int, str]]:
    """(file, line, owner) of every import in ``owner`` (a sub-room or a shared module) of a
    part of the domain other than itself; ``from journeys.store import caps`` imports
    journeys.store, ``from journeys import numbers`` journeys.numbers."""
    path = ROOT / owner.replace(".", "/")
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    found = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = ([f"{node.module}.{alias.name}" for alias in node.names]
                         if node.module == "journeys" else [node.module])
            else:
                continue
            found += [(str(file.relative_to(ROOT)), node.lineno, _owner(name)) for name in names
                      if name.startswith("journeys.") and _owner(name) != owner]
    return found


def test_the_domain_is_its_rooms_and_its_shared_modules() -> None:
    """A new part of the domain gets a room (or is declared shared here), not a file in a flat
    folder."""
    held = {f"journeys.{p.stem}" for p in (ROOT / "journeys").glob("*.py") if p.stem != "__init__"}
    held |= {f"journeys.{p.name}" for p in (ROOT / "journeys").iterdir()
             if p.is_dir() and (p / "__init__.py").exists()}
    assert held == set(SUB_ROOMS) | set(SHARED)


@pytest.mark.parametrize("owner", sorted(SUB_ROOMS.keys() | SHARED.keys()))
def test_a_domain_room_imports_only_what_sits_below_it(owner: str) -> None:
    """Language < personalization < validation; language < store < funnel; never back up."""
    allowed = {**SUB_ROOMS, **SHARED}[owner]
    broken = [f"{file}:{line}: imports {module}" for file, line, module in domain_imports(owner)
              if module not in allowed]
    assert not broken, "\n".join(broken)


def test_no_two_domain_rooms_import_each_other() -> None:
    owners = sorted(SUB_ROOMS.keys() | SHARED.keys())
    arrows = {owner: {module for _, _, module in domain_imports(owner)} for owner in owners}
    both = sorted((a, b) for a in owners for b in arrows[a] if a < b and a in arrows.get(b, set()))
    assert not both, both


def test_every_domain_room_says_what_it_holds() -> None:
    for room in SUB_ROOMS:
        init = ROOT / room.replace(".", "/") / "__init__.py"
        assert init.exists() and ast.get_docstring(ast.parse(init.read_text())), room
