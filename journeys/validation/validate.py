"""Validation: every rule of the format and of the product page, as one list of problems."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from journeys.language.loader import EventCatalog, Loaded, journey_files, load_catalog, load_file
from journeys.language.problems import Problem
from journeys.validation.catalogs import catalog_rules
from journeys.validation.rules import entry_key_rules, graph_rules, node_rules
from journeys.validation.scope import personalization_rules
from journeys.validation.segments import segment_rules

#: A file as validated: what was loaded, and all its problems (empty: valid).
Result = tuple[Loaded, list[Problem]]
#: Problems that mean the file gave no document at all: the command's input, not its content.
UNREADABLE = frozenset({"unreadable"})


def validate_loaded(loaded: Loaded) -> list[Problem]:
    """The problems of a loaded journey: schema first; graph and personalization if it parsed."""
    problems = list(loaded.problems)
    journey = loaded.journey
    if journey is None:
        return problems
    try:
        findings = list(graph_rules(journey))
        findings += node_rules(journey)
        findings += entry_key_rules(journey, loaded.catalog)
        findings += segment_rules(journey, loaded.catalog)
        findings += catalog_rules(journey, loaded.catalog)
        # The event analysis walks the graph, so it needs a sound one.
        if not any(code in {"duplicate-id", "unknown-entry", "unknown-target", "cycle"}
                   for _, _, code, _ in findings):
            findings += personalization_rules(journey, loaded.catalog)
    except Exception as exc:  # a bug of a rule: this file is broken, the catalog's others route
        return [*problems, Problem(
            file=loaded.path, node=None, field=None, code="validator-error",
            message=f"the validator failed on this journey ({type(exc).__name__}: {exc}); "
                    "please report it")]
    problems += [Problem(file=loaded.path, node=node, field=field, code=code, message=message)
                 for node, field, code, message in findings]
    return problems


def validate_file(path: Path, catalog: EventCatalog | None = None) -> Result:
    """One file; ``catalog`` is its folder's event catalog if the caller already read it."""
    loaded = load_file(path, catalog)
    return loaded, validate_loaded(loaded)


def duplicate_journeys(results: Sequence[Result]) -> list[Result]:
    """``results`` with a ``duplicate-journey`` problem on each file whose journey id an earlier
    file of the same folder already has (events could not tell them apart). The same file
    given twice is not a duplicate."""
    first: dict[tuple[Path, str], tuple[Path, str]] = {}
    marked: list[Result] = []
    for loaded, problems in results:
        if loaded.journey is not None:
            real = Path(loaded.path).resolve()
            seen_real, seen_path = first.setdefault((real.parent, loaded.journey.id),
                                                    (real, loaded.path))
            if seen_real != real:
                problems = [*problems, Problem(
                    file=loaded.path, node=None, field="id", code="duplicate-journey",
                    message=f"the journey id '{loaded.journey.id}' is also the id of {seen_path}: "
                            "each journey of a folder needs its own id")]
        marked.append((loaded, problems))
    return marked


def validate_paths(paths: Iterable[str | Path]) -> list[Result]:
    """Validate files and folders, every file answered: one that cannot be read (or is too
    large, or not YAML/JSON) is a problem of its own. A path that does not exist raises
    ``UsageError``."""
    catalogs: dict[Path, EventCatalog] = {}
    results: list[Result] = []
    for path in journey_files(paths):
        if path.is_dir():  # a folder that could not be listed: reading it says why
            results.append(validate_file(path, ({}, [])))
            continue
        if path.parent not in catalogs:  # read each folder's event catalog once
            catalogs[path.parent] = load_catalog(path.parent)
        results.append(validate_file(path, catalogs[path.parent]))
    from journeys.validation.triggers import triggers_checked  # (it reads this module's Result)

    return triggers_checked(duplicate_journeys(results))


def exit_status(results: Iterable[Result]) -> int:
    """The ``validate`` command's exit status: 0 all valid, 1 problems, 2 a file that could
    not be read at all (as for a missing path)."""
    codes = {problem.code for _, problems in results for problem in problems}
    if codes & UNREADABLE:
        return 2
    return 1 if codes else 0
