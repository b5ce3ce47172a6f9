"""Validation: every rule of the format and of the product page, as one list of problems."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from journeys.loader import Loaded, journey_files, load_file
from journeys.problems import Problem
from journeys.rules import graph_rules, node_rules
from journeys.scope import personalization_rules


def validate_loaded(loaded: Loaded) -> list[Problem]:
    """The problems of a loaded journey: schema first; graph and personalization if it parsed."""
    problems = list(loaded.problems)
    journey = loaded.journey
    if journey is None:
        return problems
    findings = list(graph_rules(journey))
    findings += node_rules(journey)
    # The event analysis walks the graph, so it needs a sound one.
    if not any(code in {"duplicate-id", "unknown-entry", "unknown-target", "cycle"}
               for _, _, code, _ in findings):
        findings += personalization_rules(journey, loaded.catalog)
    problems += [Problem(file=loaded.path, node=node, field=field, code=code, message=message)
                 for node, field, code, message in findings]
    return problems


def validate_file(path: Path) -> tuple[Loaded, list[Problem]]:
    loaded = load_file(path)
    return loaded, validate_loaded(loaded)


def validate_paths(paths: Iterable[str | Path]) -> list[tuple[Loaded, list[Problem]]]:
    """Validate files and folders; raises ``UsageError`` for a missing or unreadable file."""
    return [validate_file(path) for path in journey_files(paths)]
