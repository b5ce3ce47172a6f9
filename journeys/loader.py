"""Reading journey files (YAML or JSON) into models, with problems instead of tracebacks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from journeys.models import EventSchema, Journey
from journeys.problems import Problem, UsageError

SUFFIXES = (".yaml", ".yml", ".json")
#: A catalog of event schemas that every journey in the same folder may rely on.
CATALOG_NAMES = ("event-catalog.yaml", "event-catalog.yml", "event-catalog.json")

_CODES = {
    "missing": "missing-field",
    "extra_forbidden": "unknown-field",
    "union_tag_invalid": "unknown-node-type",
    "union_tag_not_found": "missing-field",
}


@dataclass
class Loaded:
    """A journey file as read: the model if it parsed, and what is wrong with it."""

    path: str
    journey: Journey | None
    problems: list[Problem] = field(default_factory=list)
    catalog: dict[str, EventSchema] = field(default_factory=dict)


def parse_text(text: str, path: str) -> Any:
    """YAML (a superset of JSON) to Python; unreadable text is a usage error."""
    try:
        if path.endswith(".json"):
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, RecursionError, yaml.YAMLError) as exc:
        # ValueError: JSON errors, and YAML dates that do not exist (2024-02-30).
        raise UsageError(f"{path}: cannot read: {exc}".replace("\n", " ")) from None


def read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    return parse_text(text, str(path))


def _raw_node(raw: Any, index: int) -> Any:
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    return nodes[index] if isinstance(nodes, list) and 0 <= index < len(nodes) else None


def _node_label(raw: Any, index: int) -> str:
    node = _raw_node(raw, index)
    if isinstance(node, dict) and isinstance(node.get("id"), str) and node["id"]:
        return node["id"]
    return f"#{index + 1}"


#: The names pydantic gives the members of the journey format's plain unions (message values,
#: ``where`` scalars); it reports a failed union once per member, each with its name in the path.
_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "dict[str,str]",
                            "list[union[str,dict[str,str]]]"})


def _union_errors(errors: list[Any]) -> list[Any]:
    """One report per failed union: the member that got furthest, without the member names."""
    order: list[Any] = []  # errors as they come, and the place of each union's report
    unions: dict[tuple[Any, ...], dict[Any, list[Any]]] = {}
    for error in errors:
        loc = tuple(error["loc"])
        cut = next((i for i, part in enumerate(loc) if part in _UNION_MEMBERS), None)
        if cut is None:
            order.append(error)
            continue
        base = loc[:cut]
        if base not in unions:
            unions[base] = {}
            order.append(base)
        unions[base].setdefault(loc[cut], []).append({**error, "loc": base + loc[cut + 1:]})
    result: list[Any] = []
    for item in order:
        if not isinstance(item, tuple):
            result.append(item)
            continue
        members = list(unions[item].values())
        depth = [max(len(e["loc"]) for e in errs) for errs in members]
        best = [errs for errs, d in zip(members, depth, strict=True) if d == max(depth)]
        if len(best) > 1 and max(depth) == len(item):  # no member got past the value itself
            wants = dict.fromkeys(errs[0]["msg"].removeprefix("Input should be ") for errs in best)
            result.append({**best[0][0], "msg": "Input should be " + " or ".join(wants)})
        else:
            result.extend(_union_errors(best[0]))
    return result


def _problem(path: str, raw: Any, error: Any) -> Problem:
    loc = list(error["loc"])
    node = None
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        node = _node_label(raw, loc[1])
        loc = loc[2:]
        raw_node = _raw_node(raw, error["loc"][1])
        tag = raw_node.get("type") if isinstance(raw_node, dict) else None
        if loc and isinstance(loc[0], str) and loc[0] == tag:
            loc = loc[1:]  # drop the discriminator pydantic puts in the path
    kind = error["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc = ["type"]
    field_name = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc)
    field_name = field_name.replace(".[", "[")
    message = error["msg"]
    if kind in ("missing", "union_tag_not_found"):
        message = f"'{loc[-1] if loc else field_name}' is required"
    elif kind == "extra_forbidden":
        message = f"'{loc[-1] if loc else field_name}' is not a field here"
    elif kind == "union_tag_invalid":
        message = f"unknown node type {error['input'].get('type')!r}" if isinstance(
            error.get("input"), dict) else message
    message = message.removeprefix("Value error, ")
    return Problem(file=path, node=node, field=field_name or None,
                   code=_CODES.get(kind, "bad-value"), message=message)


def load_catalog(folder: Path) -> tuple[dict[str, EventSchema], list[Problem]]:
    """Event schemas from ``event-catalog.yaml`` beside the journeys, if there is one."""
    for name in CATALOG_NAMES:
        path = folder / name
        if path.is_file():
            raw = read_document(path)
            events = raw.get("events", raw) if isinstance(raw, dict) else raw
            if not isinstance(events, dict):
                return {}, [Problem(file=str(path), node=None, field="events", code="bad-value",
                                    message="a catalog maps event names to their properties")]
            catalog: dict[str, EventSchema] = {}
            problems: list[Problem] = []
            for event, schema in events.items():
                try:
                    catalog[str(event)] = EventSchema.model_validate(schema or {})
                except ValidationError as exc:
                    problems.extend(_problem(str(path), raw, {**e, "loc": ("events", event, *e["loc"])})
                                    for e in exc.errors())
            return catalog, problems
    return {}, []


def load_document(raw: Any, path: str, catalog: dict[str, EventSchema] | None = None) -> Loaded:
    """Turn a parsed document into a :class:`Journey`, or into problems."""
    if not isinstance(raw, dict):
        return Loaded(path, None, [Problem(file=path, node=None, field=None, code="bad-value",
                                           message="a journey file holds a mapping with id, name, "
                                                   "entry and nodes")])
    try:
        journey = Journey.model_validate(raw)
    except ValidationError as exc:
        return Loaded(path, None, [_problem(path, raw, e) for e in _union_errors(exc.errors())])
    return Loaded(path, journey, [], dict(catalog or {}))


def load_file(path: Path) -> Loaded:
    catalog, problems = load_catalog(path.parent)
    loaded = load_document(read_document(path), str(path), catalog)
    loaded.problems[:0] = problems
    return loaded


def journey_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders into journey files (a folder's catalog is not a journey)."""
    for item in paths:
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix in SUFFIXES and child.name not in CATALOG_NAMES:
                    yield child
        elif path.exists():
            yield path
        else:
            raise UsageError(f"{path}: no such file or directory")
