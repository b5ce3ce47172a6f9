"""`starter.py report` (issue 9, section 5): one self-contained HTML page, opened in headless
Chromium. The journey is played by real workflows on the time-skipping server (an IntelliNODE,
a control group, conversions, exits, users still running: tests/helpers/funnel.py).

In the browser: the page as Chromium parsed it (``--dump-dom``) has the graph with every node id
and its counts, an edge per link with its users, a funnel bar per node, the IntelliNODE's share
series and its live change, the headline numbers; and its screenshot is not blank. The file
itself references no http(s) URL and no external src/href, and every user string is escaped.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from journeys.funnel.report import render_report
from journeys.funnel.stats import JourneyStats, journey_stats
from journeys.store.database import Store
from tests.helpers.funnel import JOURNEY, ODD, Played, play
from tests.helpers.support import run_cli

QUEUE = "report"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium() -> str:
    """The browser; under CI (CI=true) its absence fails the test, elsewhere it skips it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "chromium is not installed (make test installs it: apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
async def played(env: WorkflowEnvironment, store: Store, worker: None) -> Played:
    return await play(env, store, QUEUE)


@pytest.fixture(scope="module")
def stats(played: Played, store: Store) -> JourneyStats:
    return journey_stats(store, JOURNEY)


@pytest.fixture(scope="module")
def page(played: Played, env: WorkflowEnvironment, data_dir: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report as a user makes it: starter.py report, on the module's store."""
    folder = tmp_path_factory.mktemp("catalog")
    (folder / "shop.json").write_text(JOURNEY.model_dump_json(exclude_none=True))
    out = folder / "report.html"
    run = run_cli(env, data_dir, QUEUE, "report", "shop", "--journeys", str(folder), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stdout
    return out


def browse(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = page.parent / f"profile-{len(args)}"
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
                           page.as_uri()], capture_output=True, text=True, timeout=120)


class Elements(HTMLParser):
    """Every element with its attributes and its text, as the browser left the DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        texts: list[str] = []
        self.found.append((tag, {k: v or "" for k, v in attrs}, texts))
        self._open.append(texts)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for texts in self._open:
            texts.append(data)

    def having(self, cls: str) -> list[tuple[dict[str, str], str]]:
        return [(attrs, "".join(texts)) for _, attrs, texts in self.found
                if cls in attrs.get("class", "").split()]


def test_the_page_is_self_contained_and_escaped(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"https?://", text), "the page references a URL"
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(?!#)""", text), "an external src or href"
    assert "<script" not in text and "<link" not in text and "@import" not in text
    # The journey's name and the path name carry markup: escaped, never as tags.
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert '<b>"push"' not in text and "A &lt;b&gt;&quot;push&quot;&lt;/b&gt; &amp; co" in text


def test_chromium_renders_the_graph_the_funnel_and_the_shares(
        page: Path, stats: JourneyStats, played: Played) -> None:
    run = browse(page, "--dump-dom", "--virtual-time-budget=2000")
    assert run.returncode == 0 and "</svg>" in run.stdout, run.stderr[-2000:]
    dom = Elements()
    dom.feed(run.stdout)
    # The graph: a box per node with its id and its counts, an edge per link with its users.
    boxes = {attrs["data-node"]: text for attrs, text in dom.having("node")}
    assert set(boxes) == {node.id for node in JOURNEY.nodes}
    for node in stats.nodes:
        assert node.node_id in boxes[node.node_id] and f"entered {node.entered}" in boxes[node.node_id]
        for status, n in node.messages.items():
            assert f"{status.replace('_', ' ')} {n}" in boxes[node.node_id]
        if node.exits:
            assert f"exits {node.exits}" in boxes[node.node_id]
    edges = {(a["data-source"], a["data-target"]): (int(a["data-users"]), text)
             for a, text in dom.having("edge")}
    assert {k: v[0] for k, v in edges.items()} == {(e.source, e.target): e.users for e in stats.edges}
    assert edges[("pick", "push-a")][1].startswith("A <b>") and edges[("wait", "last")][1] == str(
        edges[("wait", "last")][0])
    # The funnel: a bar per node with what it entered.
    bars = {a["data-node"]: (int(a["data-entered"]), text) for a, text in dom.having("bar")}
    assert {k: v[0] for k, v in bars.items()} == {n.node_id: n.entered for n in stats.nodes}
    assert all(str(n) in text for n, text in bars.values())
    # The shares over time: each path's users per bucket add up to the choices; the live change.
    series = [(a["data-path"], int(a["data-users"])) for a, _ in dom.having("share")]
    assert {path for path, _ in series} == {ODD, "B"}
    assert sum(n for _, n in series) == len(played.ended) + len(played.running)
    [change] = dom.having("change")
    assert "70%" in change[1] and "30%" in change[1]
    # The headline numbers.
    figures = {a["data-figure"]: text for a, text in dom.having("figure")}
    assert f"{stats.entered}" in figures["entered"]
    assert f"{stats.control.converted}/{stats.control.entered}" in figures["control group: converted"]
    assert stats.lift is not None and f"{stats.lift.difference:+.1%}" in figures["lift"]


def test_the_screenshot_is_not_blank(page: Path) -> None:
    shot = page.parent / "report.png"
    run = browse(page, f"--screenshot={shot}", "--window-size=1200,1800", "--hide-scrollbars")
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    width, height, pixels = read_png(shot.read_bytes())
    assert (width, height) == (1200, 1800)
    colors = Counter(pixels)
    inked = sum(n for color, n in colors.items() if color != (255, 255, 255))
    assert inked > width * height // 50, "the page rendered (almost) nothing"
    assert len(colors) > 20  # text, boxes, bars in several colors


def read_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """An 8-bit RGB or RGBA PNG's pixels (what Chromium writes), with the stdlib only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks += body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    step = 3 if color == 2 else 4
    raw, stride = zlib.decompress(chunks), width * step
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up, corner = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(line)
        previous = line
    return width, height, [(r[i], r[i + 1], r[i + 2]) for r in rows for i in range(0, stride, step)]


def test_render_report_matches_the_command(page: Path, store: Store, stats: JourneyStats) -> None:
    made = render_report(store, JOURNEY, stats)
    strip = re.compile(r"Funnel report, [^;]+;")  # the time it was made
    assert strip.sub("", made) == strip.sub("", page.read_text(encoding="utf-8"))
