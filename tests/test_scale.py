"""5,000-node journeys (issue 15, minor): ``report`` and ``validate`` stay near-linear and the
picture stays readable. No timed assertion (the figures are in ``python -m scripts.bench_scale``):
the work is counted (calls per node), the page and its pictures are bounded in size.

- ``depths`` relaxed every node once per layer until nothing changed: a chain written in
  reverse file order took one pass per node (25 million steps for 5,000 nodes, 52 s).
- The graph drew every node: 740,000 px tall for a chain, 1,300,000 px wide for a split, 4 MB.
- Each split ``when`` was parsed three times and generated twice; an IntelliNODE's duplicate
  path names were found by ``list.count`` (quadratic in paths).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from jinja2 import meta

from journeys.funnel.report import render_report
from journeys.funnel.report_svg import MAX_BARS, MAX_LAYERS, MAX_ROW, depths
from journeys.funnel.stats import journey_stats
from journeys.language.loader import Loaded
from journeys.language.models import DelayNode, Journey
from journeys.personalization import personalize
from journeys.store.database import Store
from journeys.validation.rules import node_rules
from journeys.validation.validate import validate_loaded
from scripts.bench_scale import chain, split
from tests.helpers.support import ROOT

N = 5000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(f"sqlite:///{tmp_path_factory.mktemp('scale') / 'journeys.db'}")


@pytest.mark.parametrize("reverse", [False, True], ids=["file order", "reversed"])
def test_depths_look_at_each_node_a_bounded_number_of_times(
        reverse: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    journey = Journey.model_validate(chain(1500, reverse=reverse))
    calls = Counter[str]()
    original = DelayNode.targets

    def counted(self: DelayNode) -> Iterator[tuple[str, str]]:
        calls[self.id] += 1
        return original(self)

    monkeypatch.setattr(DelayNode, "targets", counted)
    found = depths(journey)
    assert found == {"start": 0, **{f"d{i}": i for i in range(1, 1500)}}
    assert max(calls.values()) <= 2, calls.most_common(1)


def test_depths_of_a_diamond_take_the_longest_way() -> None:
    journey = Journey.model_validate({"id": "d", "name": "d", "entry": "a", "nodes": [
        {"id": "e", "type": "delay", "duration": "1h"},
        {"id": "c", "type": "delay", "duration": "1h", "next": "d"},
        {"id": "d", "type": "delay", "duration": "1h", "next": "e"},
        {"id": "a", "type": "action", "event": "A", "next": "s"},
        {"id": "s", "type": "split", "branches": [{"when": "profile.x", "next": "c"}],
         "otherwise": "e"}]})
    assert depths(journey) == {"e": 4, "c": 2, "d": 3, "a": 0, "s": 1}


def _svg(page: str, cls: str) -> tuple[int, int]:
    found = re.search(rf'<svg class="{cls}" width="(\d+)" height="(\d+)"', page)
    assert found, cls
    return int(found.group(1)), int(found.group(2))


@pytest.mark.parametrize("document", [chain(N), chain(N, reverse=True), split(N)],
                         ids=["chain", "chain reversed", "split"])
def test_the_report_of_a_huge_journey_is_bounded(document: dict[str, Any], store: Store) -> None:
    journey = Journey.model_validate(document)
    page = render_report(store, journey, journey_stats(store, journey))
    width, height = _svg(page, "graph")
    assert width <= 150 * 2 + MAX_ROW * 266 and height <= 40 + (MAX_LAYERS + 1) * 148, (width, height)
    assert _svg(page, "funnel")[1] <= 40 + (MAX_BARS + 1) * 30
    assert len(page.encode()) < 150_000
    drawn = set(re.findall(r'<g class="node" data-node="([^"]+)"', page))
    collapsed = sum(int(n) for n in re.findall(r'<g class="node" data-more="(\d+)"', page))
    assert len(drawn) + collapsed == N and collapsed > 0  # every node drawn or counted in a box
    assert len(re.findall(r'<g class="bar" ', page)) == MAX_BARS
    assert f"{N - MAX_BARS} more nodes" in page


def test_a_small_journey_is_drawn_whole(store: Store) -> None:
    journey = Journey.model_validate(split(MAX_ROW + 2))  # entry, split, MAX_ROW delays
    page = render_report(store, journey, journey_stats(store, journey))
    assert "data-more" not in page
    assert len(re.findall(r'<g class="node" data-node=', page)) == MAX_ROW + 2


def test_a_wide_split_is_validated_with_one_parse_per_branch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    journey = Journey.model_validate(split(N))
    parses, analyses, compiled = Counter[str](), Counter[str](), Counter[str]()
    parse, analyse = personalize.PLAIN.parse, meta.find_undeclared_variables
    compile_ = personalize.PLAIN.compile

    def counted_compile(*args: Any, **kwargs: Any) -> Any:
        compiled["all"] += 1
        return compile_(*args, **kwargs)

    def counted_parse(source: str, *args: Any, **kwargs: Any) -> Any:
        parses[source] += 1
        return parse(source, *args, **kwargs)

    def counted_analysis(tree: Any) -> Any:
        analyses["all"] += 1
        return analyse(tree)

    getattr(personalize._parse, "cache_clear", lambda: None)()  # (a cache: start empty)
    monkeypatch.setattr(personalize.PLAIN, "parse", counted_parse)
    monkeypatch.setattr(personalize.meta, "find_undeclared_variables", counted_analysis)
    monkeypatch.setattr(personalize.PLAIN, "compile", counted_compile)
    assert validate_loaded(Loaded(path="wide.json", journey=journey, problems=[],
                                  catalog={})) == []
    assert len(parses) == N - 3 and max(parses.values()) == 1  # one per `when`
    assert analyses["all"] == 0  # an expression declares nothing: no code generated to find out
    assert compiled["all"] == 1  # the split's expressions compiled together


@pytest.mark.parametrize("sources", [
    ["profile.a == 1", "event.x > 2", "profile.tier in ['a', 'b']"],
    ["profile.a ==", "profile.a | nope", "a }} {{ b", "profile.b", "1 +", "x is nosuchtest"],
    ["(" * 60 + "1" + ")" * 60, "profile.a"], ["profile.a | upper"], ["{{ x }}"]])
def test_expressions_checked_together_say_what_each_alone_says(sources: list[str]) -> None:
    alone: dict[int, str] = {}
    for i, source in enumerate(sources):
        try:
            personalize.check_expression(source)
        except personalize.TemplateSyntaxError as exc:
            alone[i] = exc.message or ""
    together = personalize.check_expressions(sources)
    assert {i: exc.message for i, exc in together.items()} == alone


def test_duplicate_path_names_of_a_huge_intellinode_are_found_once() -> None:
    paths = [{"next": f"p{i}", "percent": 0, "name": f"n{i % 2500}"} for i in range(N)]
    journey = Journey.model_validate({"id": "w", "name": "w", "entry": "start", "nodes": [
        {"id": "start", "type": "action", "event": "V", "next": "fork"},
        {"id": "fork", "type": "intellinode", "paths": paths},
        *({"id": f"p{i}", "type": "delay", "duration": "1h"} for i in range(N))]})
    twice = [f for f in node_rules(journey) if "two paths are known as" in f[3]]
    assert len(twice) == 2500 and twice[0][3].startswith("two paths are known as 'n0'")


def test_the_bench_prints_each_shape() -> None:
    """``make bench-scale`` (``python -m scripts.bench_scale``), small."""
    run = subprocess.run([sys.executable, "-m", "scripts.bench_scale", "--nodes", "200"], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    shapes = [json.loads(line) for line in run.stdout.splitlines()]
    assert [s["journey"] for s in shapes] == ["chain", "chain-reversed", "split"]
    assert all(s["page_bytes"] > 0 and s["svg_width"] > 0 for s in shapes)
