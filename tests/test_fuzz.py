"""Property-based tests: whatever a journey file holds, the loader and the validator answer
with problems (each with a known rule code), never with a traceback."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journeys.funnel.graph import to_mermaid
from journeys.language.loader import ReadError, journey_files, load_catalog, load_document, parse_text
from journeys.language.models import Channel
from journeys.language.problems import RULES, Problem
from journeys.validation.scope import sources_by_node
from journeys.validation.validate import validate_loaded

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CATALOG, _ = load_catalog(EXAMPLES)
DOCS = [yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in [*journey_files([EXAMPLES]), *journey_files([EXAMPLES / "invalid"])]]
EVENTS = sorted(CATALOG)
READ_CODES = {"unreadable", "yaml-alias", "duplicate-key"}
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def validate(raw: Any) -> list[Problem]:
    """The whole pipeline; fails the test on a traceback or an unknown code."""
    loaded = load_document(raw, "fuzz.yaml", CATALOG)
    problems = validate_loaded(loaded)
    assert isinstance(problems, list)
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.code in RULES, problem
        assert problem.message
        str(problem)
    json.dumps([p.model_dump() for p in problems])
    if loaded.journey is not None:
        lines = to_mermaid(loaded.journey).splitlines()
        edges = sum(1 for node in loaded.journey.nodes for _ in node.targets())
        assert len(lines) == 1 + len(loaded.journey.nodes) + edges, "one line a node and an edge"
        assert not {"<", ">"} & set("".join(lines).replace("<br/>", "").replace("-->", ""))
    else:
        assert problems, "a document that did not load must say why"
    return problems


# --- values ----------------------------------------------------------------------------------

TOKENS = ["{{", "}}", "{%", "%}", "{#", "#}", "event", "profile", ".", "[", "]", "(", ")", "'",
          '"', "|", " ", "default(", "if ", "endif", "for x in ", "endfor", "price", "name",
          "__class__", "items()", "get('a')", "==", "and", "1", "\n", "Product Name", "-", ":"]
templates = st.lists(st.sampled_from(TOKENS), max_size=12).map("".join) | st.text(max_size=20)
durations = st.one_of(
    st.builds(lambda sign, n, unit: f"{sign}{n}{unit}", st.sampled_from(["", "-", "+", " "]),
              st.integers(0, 10**13), st.sampled_from([*"smhdx", "", " h", "hours"])),
    st.text(max_size=6), st.integers(), st.floats(), st.booleans(), st.none())
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)
IDS = ["a", "b", "c", "d", "e", "f"]
ids = st.sampled_from(IDS) | st.text(max_size=8) | json_values


@FUZZ
@given(json_values)
def test_any_json_value(raw: Any) -> None:
    validate(raw)


@FUZZ
@given(st.fixed_dictionaries(
    {"id": ids, "name": st.text(max_size=5) | json_values, "entry": ids,
     "nodes": st.lists(st.dictionaries(
         st.sampled_from(["id", "type", "next", "event", "channel", "message", "duration",
                          "paths", "branches", "otherwise", "set", "within", "x"]),
         json_values | ids | st.sampled_from(["action", "delay", "engagement", "split"]),
         max_size=6), max_size=5) | json_values},
    optional={"goals": json_values, "events": json_values, "timeout": durations,
              "reentry": json_values, "exit_when": json_values}))
def test_journey_shaped_documents(raw: dict[str, Any]) -> None:
    validate(raw)


YAML_TOKENS = ["id: j\n", "name: J\n", "entry: a\n", "nodes:\n", "  - ", "id: a", "type: action",
               "\n", "    ", "- ", ": ", "[", "]", "{", "}", "&x ", "*x", "!!binary ", "!!python/name:os",
               "2024-02-30", "09:00", "9:30", "'", '"', "---", "? ", "%YAML 1.1", "\t", "#", ","]


@FUZZ
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=25).map("".join) | st.text(max_size=40),
       st.sampled_from(["j.yaml", "j.json"]))
def test_any_text(text: str, name: str) -> None:
    """Text that gives no document is a problem of the file (unreadable, an alias, a key
    given twice), on one line; anything readable gets problems."""
    try:
        raw = parse_text(text, name)
    except ReadError as exc:
        problem = exc.problem
        assert problem.file == name and problem.code in READ_CODES, problem
        assert problem.message and "\n" not in str(problem)
        return
    validate(raw)


# --- mutations of the examples -------------------------------------------------------------------

def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a document: keys of mappings and indexes of lists."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_of(child, (*prefix, index))
    return found


def replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return doc


def drop(doc: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return doc
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(DOCS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = paths_of(doc)
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["drop", "value", "template", "duration", "id", "type"]))
        if kind == "drop":
            doc = drop(doc, path)
        elif kind == "value":
            doc = replace(doc, path, draw(json_values))
        elif kind == "template":
            doc = replace(doc, path, draw(templates))
        elif kind == "duration":
            doc = replace(doc, path, draw(durations))
        elif kind == "id":
            doc = replace(doc, path, draw(ids))
        else:
            doc = replace(doc, path, draw(st.sampled_from(
                ["action", "inaction", "date_time", "delay", "engagement", "profile_update",
                 "intellinode", "split", "exit", "wait", 3, None])))
    return doc


@FUZZ
@given(mutated())
def test_mutated_examples(raw: Any) -> None:
    validate(raw)


# --- random node graphs --------------------------------------------------------------------------

@st.composite
def node(draw: st.DrawFn, node_id: str, targets: st.SearchStrategy[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["action", "inaction", "date_time", "delay", "engagement",
                                 "profile_update", "intellinode", "split", "exit"]))
    event = st.sampled_from([*EVENTS, "Unknown Event"])
    out: dict[str, Any] = {"id": node_id, "type": kind}
    if kind not in ("intellinode", "split", "exit"):
        out["next"] = draw(st.none() | targets)
    if kind == "action":
        out["event"] = draw(event)
        if draw(st.booleans()):
            out["within"] = draw(st.sampled_from(["1h", "23h", "24h", "3d"]))
            if draw(st.booleans()):
                out["timeout_next"] = draw(targets)
    elif kind == "inaction":
        out.update(not_event=draw(event), within=draw(st.sampled_from(["1h", "2d"])))
        if draw(st.booleans()):
            out["event"] = draw(event)
    elif kind == "date_time":
        if draw(st.booleans()):
            out.update(event=draw(event), date_property="at")
        else:
            out["profile_property"] = "birthday"
        if draw(st.booleans()):
            out["offset"] = draw(st.sampled_from(["-1d", "2h", "0s"]))
    elif kind == "delay":
        out["duration"] = draw(st.sampled_from(["15m", "15h", "23h", "24h", "2d"]))
    elif kind == "engagement":
        channel = draw(st.sampled_from(list(Channel)))
        out["channel"] = channel.value
        fields = {"push": "body", "email": "subject", "webhook": "url", "web_push": "title"}
        out["message"] = {fields.get(channel.value, "text" if channel.value in (
            "sms", "whatsapp") else "body"): draw(templates)}
    elif kind == "profile_update":
        out["set"] = {"last": draw(templates)}
    elif kind == "intellinode":
        paths = draw(st.lists(targets, min_size=0, max_size=8))
        out["mode"] = draw(st.sampled_from(["manual", "automated"]))
        out["paths"] = [{"next": t, "percent": draw(st.integers(0, 100))} for t in paths]
    elif kind == "split":
        out["branches"] = [{"when": draw(templates | st.sampled_from(
            ["event.price > 3", "profile.tier == 'gold'"])), "next": draw(targets)}]
        out["otherwise"] = draw(targets)
    return out


@st.composite
def graphs(draw: st.DrawFn, acyclic: bool) -> dict[str, Any]:
    count = draw(st.integers(1, len(IDS)))
    nodes = []
    for i in range(count):
        later = IDS[i + 1:count] if acyclic else [*IDS[:count], "nowhere"]
        targets = st.sampled_from(later) if later else st.nothing()
        if acyclic and not later:
            # The last node has nowhere to go: make it an exit.
            nodes.append({"id": IDS[i], "type": "exit"})
            continue
        nodes.append(draw(node(IDS[i], targets)))
    entry = IDS[0] if acyclic else draw(st.sampled_from([*IDS[:count], "nowhere"]))
    return {"id": "g", "name": "Graph", "entry": entry, "nodes": nodes,
            "goals": draw(st.lists(st.sampled_from(EVENTS), max_size=4))}


@FUZZ
@given(graphs(acyclic=False))
def test_random_graphs(raw: dict[str, Any]) -> None:
    validate(raw)


@FUZZ
@given(graphs(acyclic=True))
def test_random_acyclic_graphs(raw: dict[str, Any]) -> None:
    codes = {p.code for p in validate(raw)}
    # Forward edges between unique, existing ids: the graph rules have nothing to say.
    assert not codes & {"cycle", "unknown-target", "duplicate-id", "unknown-entry"}
    loaded = load_document(raw, "fuzz.yaml", CATALOG)
    if loaded.journey is not None:
        reached = sources_by_node(loaded.journey)
        unreachable = {p.node for p in validate(raw) if p.code == "unreachable"}
        assert set(reached) == {n.id for n in loaded.journey.nodes} - unreachable


@FUZZ
@given(graphs(acyclic=True), st.data())
def test_a_back_edge_is_a_cycle(raw: dict[str, Any], data: st.DataObject) -> None:
    movable = [n for n in raw["nodes"] if n["type"] not in ("intellinode", "split", "exit")]
    if not movable:
        return
    chosen = data.draw(st.sampled_from(movable))
    chosen["next"] = chosen["id"]
    codes = {p.code for p in validate(raw)}
    assert "cycle" in codes or not codes.isdisjoint(
        {"missing-field", "unknown-field", "bad-value", "unknown-node-type"})
