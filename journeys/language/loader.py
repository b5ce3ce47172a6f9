"""Reading journey files (YAML or JSON) into models, with problems instead of tracebacks."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node

from journeys.language import limits
from journeys.language.models import CatalogSchema, EventSchema, Journey
from journeys.language.problems import Problem, UsageError

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


class ReadError(UsageError):
    """A file that gives no document (unreadable, too large, not YAML/JSON, aliases, duplicate
    keys); ``problem`` is the file's problem, for callers that report rather than stop."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Refused(yaml.YAMLError):
    """YAML that parses but is refused: (code, line, message)."""

    def __init__(self, code: str, line: int, message: str) -> None:
        super().__init__(message)
        self.code, self.line, self.message = code, line, message


class _Strict(SafeConstructor):
    """SafeConstructor that refuses aliases and merge keys (a 600-byte file of nested aliases
    expands to gigabytes in whatever walks it) and duplicate keys (the last would silently win)."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        # The composer hands an alias over as the anchored node itself: a second visit is one.
        if node in self.constructed_objects or node in self.recursive_objects:
            raise _Refused("yaml-alias", node.start_mark.line + 1,
                           "the value anchored here (&) is repeated by an alias (*): anchors and "
                           "aliases are refused, write the value out")
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Hashable, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, f"expected a mapping, found {type(node).__name__}",
                                   node.start_mark)
        mapping: dict[Hashable, Any] = {}
        lines: dict[Hashable, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused("yaml-alias", line, "merge keys (<<) are refused with anchors and "
                                                   "aliases: write the fields out")
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       "found an unhashable key", key_node.start_mark)
            if key in mapping:
                raise _Refused("duplicate-key", line,
                               f"the key {str(key)!r} is given twice (first at line {lines[key]}): "
                               "only the last would count")
            mapping[key] = self.construct_object(value_node, deep=deep)
            lines[key] = line
        return mapping


class PyLoader(_Strict, yaml.SafeLoader):
    """The pure-Python strict loader (used where libyaml is missing, and in tests)."""


if hasattr(yaml, "CSafeLoader"):
    class CLoader(_Strict, yaml.CSafeLoader):
        """The strict loader on libyaml's parser: several times faster."""

    LOADER: type[yaml.SafeLoader] | type[CLoader] = CLoader
else:  # pragma: no cover - PyYAML built without libyaml
    LOADER = PyLoader


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise _Refused("duplicate-key", 0, f"the key {key!r} is given twice in one object: "
                                               "only the last would count")
        mapping[key] = value
    return mapping


def _read_problem(path: str, code: str, message: str) -> ReadError:
    return ReadError(Problem(file=path, node=None, field=None, code=code, message=message))


def parse_text(text: str, path: str, loader: Any = None) -> Any:
    """YAML (a superset of JSON) or JSON to Python; text that gives no document raises
    :class:`ReadError` (a ``UsageError``) naming the file and, where known, the line."""
    try:
        if path.endswith(".json"):
            raw = json.loads(text, object_pairs_hook=_unique_keys)
        else:
            raw = yaml.load(text, Loader=loader or LOADER)  # a strict SafeLoader
    except _Refused as exc:
        where = f"line {exc.line}: " if exc.line else ""
        raise _read_problem(path, exc.code, where + exc.message) from None
    except RecursionError:
        raise _read_problem(path, "unreadable", "cannot read: nested too deeply "
                                                f"(a journey nests at most {limits.MAX_DEPTH} levels)"
                            ) from None
    except (ValueError, yaml.YAMLError) as exc:
        # ValueError: JSON errors, and YAML dates that do not exist (2024-02-30).
        message = " ".join(str(exc).split())
        raise _read_problem(path, "unreadable", f"cannot read: {message}") from None
    if limits.depth(raw) > limits.MAX_DEPTH:
        raise _read_problem(path, "unreadable", f"cannot read: nested deeper than "
                                                f"{limits.MAX_DEPTH} levels")
    return raw


def read_bytes(path: Path) -> bytes:
    """The file's bytes, refused before reading if it is over ``MAX_JOURNEY_BYTES``."""
    limit = limits.MAX_JOURNEY_BYTES
    data = b""
    try:
        # O_NONBLOCK: opening a named pipe must not wait for a writer (it would hang every
        # command that reads the catalog); fstat then refuses anything but a regular file.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(path)
            if not stat.S_ISREG(info.st_mode):
                raise _read_problem(str(path), "unreadable",
                                    "cannot read: not a regular file (a pipe, socket or device)")
            size = info.st_size
            if size <= limit:
                data = file.read(limit + 1)  # a file that grows stops here
                size = max(size, len(data))
    except FileNotFoundError:
        raise _read_problem(str(path), "unreadable", "cannot read: no such file") from None
    except IsADirectoryError:
        try:
            os.listdir(path)
        except OSError as exc:  # a folder that could not be listed
            raise _read_problem(str(path), "unreadable", f"cannot list: {exc.strerror}") from None
        raise _read_problem(str(path), "unreadable", "cannot read: a folder") from None
    except OSError as exc:
        raise _read_problem(str(path), "unreadable", f"cannot read: {exc.strerror or exc}") from None
    if size > limit:
        raise _read_problem(str(path), "too-large",
                            f"the file is {size} bytes, over the limit of {limit} bytes")
    return data


def read_document(path: Path) -> Any:
    """Read and parse one file; raises :class:`ReadError`."""
    data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _read_problem(str(path), "unreadable", f"cannot read: not UTF-8 ({exc.reason} at "
                                                     f"byte {exc.start})") from None
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


class Schemas(dict[str, EventSchema]):
    """A folder's event schemas by event name, and ``catalogs``: its catalogs' item fields."""

    def __init__(self, events: dict[str, EventSchema] | None = None,
                 catalogs: dict[str, CatalogSchema] | None = None) -> None:
        super().__init__(events or {})
        self.catalogs: dict[str, CatalogSchema] = catalogs or {}


def catalogs_of(schemas: dict[str, EventSchema]) -> dict[str, CatalogSchema]:
    """The folder's catalogs that ``schemas`` carries (none in a plain dict)."""
    return schemas.catalogs if isinstance(schemas, Schemas) else {}


#: The event schemas of a folder, and the problems of its event catalog file.
EventCatalog = tuple[dict[str, EventSchema], list[Problem]]


def load_catalog(folder: Path) -> EventCatalog:
    """Event schemas from ``event-catalog.yaml`` beside the journeys, if there is one; a file
    that cannot be read is a problem of its own, not a usage error."""
    for name in CATALOG_NAMES:
        path = folder / name
        if path.is_file():
            try:
                raw = read_document(path)
            except ReadError as exc:
                return {}, [exc.problem]
            sections = isinstance(raw, dict) and ("events" in raw or "catalogs" in raw)
            events = raw.get("events") or {} if sections else raw
            if not isinstance(events, dict):
                return {}, [Problem(file=str(path), node=None, field="events", code="bad-value",
                                    message="a catalog maps event names to their properties")]
            catalog = Schemas()
            problems: list[Problem] = []
            items = raw.get("catalogs") or {} if sections else {}
            if not isinstance(items, dict):
                problems.append(Problem(file=str(path), node=None, field="catalogs", code="bad-value",
                                        message="'catalogs' maps catalog names to their fields"))
                items = {}
            for name, fields in items.items():
                try:
                    catalog.catalogs[str(name)] = CatalogSchema.model_validate(fields or {})
                except ValidationError as exc:
                    problems.extend(_problem(str(path), raw, {**e, "loc": ("catalogs", name, *e["loc"])})
                                    for e in exc.errors())
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
    # Each user's workflow carries the journey as JSON in its input: Temporal refuses big ones.
    size = len(journey.model_dump_json().encode())
    if size > limits.MAX_JOURNEY_BYTES:
        return Loaded(path, None, [Problem(
            file=path, node=None, field=None, code="too-large",
            message=f"the journey is {size} bytes as JSON (the form each user's workflow carries), "
                    f"over the limit of {limits.MAX_JOURNEY_BYTES} bytes")])
    return Loaded(path, journey, [], catalog if isinstance(catalog, Schemas) else dict(catalog or {}))


def load_file(path: Path, catalog: EventCatalog | None = None) -> Loaded:
    """One journey file with its folder's event catalog (``catalog`` if the caller has it);
    its catalog's problems come first. A file that cannot be read is a problem, not an error."""
    schemas, catalog_problems = load_catalog(path.parent) if catalog is None else catalog
    try:
        raw = read_document(path)
    except ReadError as exc:
        return Loaded(str(path), None, [*catalog_problems, exc.problem])
    loaded = load_document(raw, str(path), schemas)
    loaded.problems[:0] = catalog_problems
    return loaded


def journey_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders into journey files (a folder's catalog is not a journey).

    A path that does not exist is a usage error; a folder that cannot be listed is yielded
    itself, so that reading it reports why (each file gets its answer, none stops the rest).
    """
    for item in paths:
        path = Path(item)
        if path.is_dir():
            try:
                children = sorted(path.iterdir())
            except OSError:
                yield path
                continue
            for child in children:
                # Not only is_file(): a broken link or unreadable entry is reported, not skipped.
                if (child.suffix in SUFFIXES and child.name not in CATALOG_NAMES
                        and not child.is_dir()):
                    yield child
        elif path.exists():
            yield path
        else:
            raise UsageError(f"{path}: no such file or directory")
