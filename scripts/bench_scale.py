"""Benchmark: ``report`` and ``validate`` on 5,000-node journeys (issue 15).

    python -m scripts.bench_scale [--nodes 5000]

Three shapes: a chain (entry, then delays) in file order, the same chain with its nodes in
reverse file order, and an N-way split (each branch to a delay). For each: seconds (wall and
CPU) to validate, and to compute the stats and render the report (an empty SQLite store), the
page's size and the graph's SVG width and height.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from journeys.funnel.report import render_report
from journeys.funnel.stats import journey_stats
from journeys.store.database import Store
from journeys.validation.validate import validate_file


def chain(n: int, reverse: bool = False) -> dict[str, Any]:
    """The entry, then n - 1 delays one after the other."""
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "action", "event": "Viewed", "next": "d1"}]
    for i in range(1, n):
        node = {"id": f"d{i}", "type": "delay", "duration": "1h"}
        nodes.append({**node, "next": f"d{i + 1}"} if i < n - 1 else node)
    return {"id": "chain", "name": "Chain", "entry": "start",
            "nodes": nodes[::-1] if reverse else nodes}


def split(n: int) -> dict[str, Any]:
    """The entry, a split with n - 3 branches and otherwise, each to its own delay."""
    pushes = [{"id": f"p{i}", "type": "delay", "duration": "1h"} for i in range(n - 2)]
    branches = [{"when": f"profile.t == {i}", "next": f"p{i}"} for i in range(1, n - 2)]
    return {"id": "wide", "name": "Wide", "entry": "start", "nodes": [
        {"id": "start", "type": "action", "event": "Viewed", "next": "fork"},
        {"id": "fork", "type": "split", "branches": branches, "otherwise": "p0"}, *pushes]}


def svg_size(page: str) -> tuple[int, int]:
    found = re.search(r'<svg class="graph" width="(\d+)" height="(\d+)"', page)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def measure(name: str, document: dict[str, Any], folder: Path, store: Store) -> dict[str, Any]:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(document))
    started, cpu = time.perf_counter(), time.process_time()
    loaded, problems = validate_file(path, ({}, []))
    validated, validated_cpu = time.perf_counter() - started, time.process_time() - cpu
    assert loaded.journey is not None and not problems, problems[:3]
    started, cpu = time.perf_counter(), time.process_time()
    page = render_report(store, loaded.journey, journey_stats(store, loaded.journey))
    reported, reported_cpu = time.perf_counter() - started, time.process_time() - cpu
    width, height = svg_size(page)
    return {"journey": name, "validate_s": round(validated, 2), "validate_cpu_s": round(validated_cpu, 2),
            "report_s": round(reported, 2), "report_cpu_s": round(reported_cpu, 2),
            "page_bytes": len(page.encode()), "svg_width": width, "svg_height": height}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = Store(f"sqlite:///{folder / 'store.db'}")
        for name, document in (("chain", chain(args.nodes)),
                               ("chain-reversed", chain(args.nodes, reverse=True)),
                               ("split", split(args.nodes))):
            print(json.dumps(measure(name, document, folder, store)), flush=True)


if __name__ == "__main__":
    main()
