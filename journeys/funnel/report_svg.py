"""The report's pictures as inline SVG, drawn here (no library, nothing fetched at view time):
the journey's graph in layers by depth from the entry, the funnel's bars, and an IntelliNODE's
shares over time. Every text that comes from a journey or the store goes through ``_e``."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from journeys.funnel.graph import counts, describe, edge_label
from journeys.funnel.stats import JourneyStats, NodeStats
from journeys.language.models import Journey
from journeys.store.intellinode import PathSetting

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 230, 84, 36, 64, 20
SIDE = 150  # room beside the outer boxes for their edges' labels
COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")
_FILL = {"engagement": "#e8f0fb", "intellinode": "#fdf0e3", "split": "#fdf0e3", "delay": "#eef6ec",
         "exit": "#f6e6e6", "profile_update": "#f1ecf6", "trigger_journey": "#f1ecf6",
         "segment": "#eef3f8"}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def depths(journey: Journey) -> dict[str, int]:
    """Each node's layer: the longest path from the entry (journeys have no cycles), so every
    edge points down; a node no path reaches goes in the first layer. One pass in topological
    order (Kahn's), linear in nodes and edges whatever the file's order (relaxing every node
    until nothing changed took one pass per layer: quadratic on a long chain written backwards)."""
    targets = {node.id: list(dict.fromkeys(t for _, t in node.targets())) for node in journey.nodes}
    reachable, todo = {journey.entry}, [journey.entry]
    while todo:
        for target in targets.get(todo.pop(), ()):
            if target in targets and target not in reachable:
                reachable.add(target)
                todo.append(target)
    waiting = dict.fromkeys(reachable, 0)  # edges from reachable nodes not yet walked
    for node_id in reachable:
        for target in targets[node_id]:
            if target in waiting:
                waiting[target] += 1
    depth = dict.fromkeys(reachable, 0)
    ready = [journey.entry] if waiting.get(journey.entry) == 0 else []
    while ready:
        node_id = ready.pop()
        for target in targets[node_id]:
            if target in waiting:
                depth[target] = max(depth[target], depth[node_id] + 1)
                waiting[target] -= 1
                if waiting[target] == 0:
                    ready.append(target)
    return {node.id: depth.get(node.id, 0) for node in journey.nodes}


#: The picture's bounds: at most this many layers, and boxes in a layer. What does not fit is
#: one box per layer ("N more nodes"), and one last box for the layers below; ``stats`` and the
#: funnel's bars still count every node.
MAX_LAYERS, MAX_ROW = 30, 8


@dataclass
class _Layout:
    where: dict[str, tuple[float, float]]  # a drawn node or a "more" box -> its top left corner
    box_of: dict[str, str]  # every node -> the box it is drawn in (itself, or a "more" box)
    more: dict[str, list[str]]  # a "more" box -> the nodes it stands for
    width: int
    height: int


def _layout(journey: Journey, stats: JourneyStats) -> _Layout:
    """Layers by depth, each at most ``MAX_ROW`` boxes (the nodes most users entered kept, in
    file order), at most ``MAX_LAYERS`` of them: the rest collapsed into "more" boxes."""
    depth = depths(journey)
    entered = {n.node_id: n.entered for n in stats.nodes}
    order = {node.id: i for i, node in enumerate(journey.nodes)}
    layers: dict[int, list[str]] = {}
    for node in journey.nodes:
        layers.setdefault(min(depth[node.id], MAX_LAYERS), []).append(node.id)
    rows: list[list[str]] = []
    box_of: dict[str, str] = {}
    more: dict[str, list[str]] = {}
    for level in sorted(layers):
        ids = layers[level]
        if level == MAX_LAYERS:  # everything deeper: one box
            kept: list[str] = []
        elif len(ids) <= MAX_ROW:
            kept = ids
        else:
            busiest = sorted(ids, key=lambda i: (-entered.get(i, 0), order[i]))[:MAX_ROW - 1]
            kept = sorted(busiest, key=order.__getitem__)
        box_of.update((i, i) for i in kept)
        rest = [i for i in ids if i not in set(kept)]
        if rest:
            key = f"more:{level}"
            more[key] = rest
            box_of.update((i, key) for i in rest)
            kept = [*kept, key]
        rows.append(kept)
    widest = max(len(row) for row in rows)
    width = SIDE * 2 + widest * BOX_W + (widest - 1) * GAP_X
    height = PAD * 2 + len(rows) * BOX_H + (len(rows) - 1) * GAP_Y
    where: dict[str, tuple[float, float]] = {}
    for level, ids in enumerate(rows):
        row = len(ids) * BOX_W + (len(ids) - 1) * GAP_X
        for i, box in enumerate(ids):
            where[box] = ((width - row) / 2 + i * (BOX_W + GAP_X), PAD + level * (BOX_H + GAP_Y))
    return _Layout(where, box_of, more, width, height)


def graph_svg(journey: Journey, stats: JourneyStats) -> str:
    """Boxes (node id, what it does, its counts) in layers, edges with the users along them;
    bounded (``MAX_LAYERS`` x ``MAX_ROW`` boxes) however large the journey."""
    layout = _layout(journey, stats)
    where, box_of, width, height = layout.where, layout.box_of, layout.width, layout.height
    users = {(e.source, e.target): e.users for e in stats.edges}
    by_node = {n.node_id: n for n in stats.nodes}
    parts = [f'<svg class="graph" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{_e(journey.id)}: the journey with its counts">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    collapsed: dict[tuple[str, str], int] = {}  # edges into or out of a "more" box, summed
    for node in journey.nodes:
        done: set[str] = set()
        for index, (field, target) in enumerate(node.targets()):
            if target in done or target not in box_of:
                continue
            done.add(target)
            n = users.get((node.id, target), 0)
            source_box, target_box = box_of[node.id], box_of[target]
            if source_box != node.id or target_box != target:
                if source_box != target_box:
                    collapsed[(source_box, target_box)] = collapsed.get((source_box, target_box), 0) + n
                continue
            parts.append(_edge(node.id, target, where[node.id], where[target], n,
                               edge_label(node, field, index)))
    for (source_box, target_box), n in collapsed.items():
        parts.append(_edge(source_box, target_box, where[source_box], where[target_box], n, ""))
    for node in journey.nodes:
        if box_of[node.id] != node.id:
            continue
        x, y = where[node.id]
        found = by_node.get(node.id)
        lines = [_clip(describe(node), 36)]
        if found:
            lines += _wrap(counts(found), 34)[:2]
        parts.append(_box(x, y, node.id, lines, found.entered if found else 0,
                          _FILL.get(node.type, "#f4f4f4"), f'data-node="{_e(node.id)}"'))
    for key, ids in layout.more.items():
        x, y = where[key]
        entered = sum(by_node[i].entered for i in ids if i in by_node)
        deeper = key == f"more:{MAX_LAYERS}"
        title = f"{len(ids)} more node{'s' * (len(ids) != 1)}" + (" below" if deeper else "")
        parts.append(_box(x, y, title, [f"entered {entered} in all", "starter.py stats lists each"],
                          entered, "#ffffff", f'data-more="{len(ids)}"'))
    parts.append("</svg>")
    return "".join(parts)


def _edge(source: str, target: str, start: tuple[float, float], end: tuple[float, float],
          n: int, label: str) -> str:
    (x1, y1), (x2, y2) = start, end
    ax, ay, bx, by = x1 + BOX_W / 2, y1 + BOX_H, x2 + BOX_W / 2, y2
    text = f"{_clip(label, 22)}: {n}" if label else str(n)
    # The label near the target's end, on the outer side: fan-outs do not overlap.
    lx, ly = ax + (bx - ax) * 0.8 + (6 if bx >= ax else -6), ay + (by - ay) * 0.75
    anchor = "start" if bx >= ax else "end"
    return (f'<g class="edge" data-source="{_e(source)}" data-target="{_e(target)}" '
            f'data-users="{n}"><path d="M{ax:.0f},{ay:.0f} C{ax:.0f},{ay + GAP_Y / 2:.0f} '
            f'{bx:.0f},{by - GAP_Y / 2:.0f} {bx:.0f},{by:.0f}" fill="none" stroke="#555" '
            f'stroke-width="{1 + min(n, 40) / 10:.1f}" marker-end="url(#arrow)"/>'
            f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="{anchor}" class="edge-label">'
            f'{_e(text)}</text></g>')


def _box(x: float, y: float, title: str, lines: list[str], entered: int, fill: str,
         data: str) -> str:
    texts = "".join(f'<text x="{x + 10:.0f}" y="{y + 38 + 15 * i:.0f}">{_e(line)}</text>'
                    for i, line in enumerate(lines))
    return (f'<g class="node" {data} data-entered="{entered}">'
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="8" '
            f'fill="{fill}" stroke="#333"/>'
            f'<text x="{x + 10:.0f}" y="{y + 20:.0f}" class="node-id">{_e(_clip(title, 28))}</text>'
            f"{texts}</g>")


def _wrap(text: str, size: int) -> list[str]:
    """Comma-separated counts in lines of at most ``size`` characters."""
    lines: list[str] = []
    for part in text.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= size:
            lines[-1] += f", {part}"
        else:
            lines.append(part)
    return lines


#: The funnel's bars at most: the nodes most users entered (in depth order), the rest in a line.
MAX_BARS = 60


def funnel_svg(journey: Journey, stats: JourneyStats) -> str:
    """A bar per node (by depth, then file order): users who entered it, conversions inside;
    at most ``MAX_BARS`` of them (those most users entered), and a line for the others."""
    depth = depths(journey)
    order = sorted(stats.nodes, key=lambda n: depth.get(n.node_id, 0))
    left_out: list[NodeStats] = []
    if len(order) > MAX_BARS:
        rank = {id(n): i for i, n in enumerate(order)}
        busiest = sorted(order, key=lambda n: (-n.entered, rank[id(n)]))
        kept, left_out = busiest[:MAX_BARS], busiest[MAX_BARS:]
        order = sorted(kept, key=lambda n: rank[id(n)])
    top = max([n.entered for n in order] + [1])
    bar_w, row, label_w = 520, 30, 200
    height = PAD * 2 + row * (len(order) + bool(left_out))
    parts = [f'<svg class="funnel" width="{label_w + bar_w + 160}" '
             f'height="{height}" role="img" aria-label="entered per node">']
    for i, node in enumerate(order):
        y = PAD + i * row
        w = bar_w * node.entered / top
        won = bar_w * min(node.conversions, node.entered) / top
        parts.append(
            f'<g class="bar" data-node="{_e(node.node_id)}" data-entered="{node.entered}" '
            f'data-converted="{node.conversions}"><text x="{label_w - 8}" y="{y + 17}" '
            f'text-anchor="end">{_e(_clip(node.node_id, 26))}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 10}" fill="#4e79a7"/>'
            f'<rect x="{label_w}" y="{y + 4}" width="{won:.1f}" height="{row - 10}" fill="#59a14f"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 17}">{node.entered}'
            f'{f" ({node.conversions} converted)" if node.conversions else ""}</text></g>')
    if left_out:
        most = max(n.entered for n in left_out)
        parts.append(f'<text class="more" data-more="{len(left_out)}" x="{label_w}" '
                     f'y="{PAD + len(order) * row + 17}">{len(left_out)} more nodes, each entered '
                     f"by {most} or fewer (starter.py stats lists each)</text>")
    parts.append("</svg>")
    return "".join(parts)


def shares_svg(node_id: str, names: Sequence[str],
               series: Sequence[tuple[datetime, dict[str, int]]], bucket: timedelta,
               changes: Sequence[PathSetting]) -> str:
    """Stacked bars, one per bucket of time: each path's share of the users who reached the
    node then; a dashed line where the shares were changed live."""
    width, height, left, bottom = 760, 240, 50, 40
    moments = [start for start, _ in series] + [c.at for c in changes]
    if not moments:
        return '<p class="empty">No user has reached this IntelliNODE yet.</p>'
    first, last = min(moments), max(moments) + bucket
    span = max((last - first).total_seconds(), 1.0)
    plot_w, plot_h = width - left - 20, height - bottom - 20

    def x(moment: datetime) -> float:
        return left + plot_w * (moment - first).total_seconds() / span

    bar = max(plot_w * bucket.total_seconds() / span - 2, 4.0)
    parts = [f'<svg class="shares" data-node="{_e(node_id)}" '
             f'width="{width}" height="{height}" role="img" aria-label="path shares over time">',
             f'<line x1="{left}" y1="{20 + plot_h}" x2="{width - 20}" y2="{20 + plot_h}" stroke="#333"/>',
             f'<text x="{left - 6}" y="26" text-anchor="end">100%</text>',
             f'<text x="{left - 6}" y="{20 + plot_h}" text-anchor="end">0%</text>']
    for start, users in series:
        total, y = sum(users.values()) or 1, 20.0 + plot_h
        for i, name in enumerate(names):
            h = plot_h * users.get(name, 0) / total
            y -= h
            parts.append(f'<rect class="share" data-path="{_e(name)}" data-at="{start.isoformat()}" '
                         f'data-users="{users.get(name, 0)}" x="{x(start):.1f}" y="{y:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}" fill="{COLORS[i % len(COLORS)]}">'
                         f"<title>{_e(name)}: {users.get(name, 0)} users</title></rect>")
    for change in changes:
        cx = x(change.at)
        parts.append(f'<g class="change" data-at="{change.at.isoformat()}"><line x1="{cx:.1f}" y1="14" '
                     f'x2="{cx:.1f}" y2="{20 + plot_h}" stroke="#e15759" stroke-dasharray="5,3"/>'
                     f'<text x="{cx + (4 if cx < width / 2 else -4):.1f}" y="14" fill="#e15759" '
                     f'text-anchor="{"start" if cx < width / 2 else "end"}">'
                     f"{_e(_clip(change.describe(), 40))}</text></g>")
    parts.append(f'<text x="{left}" y="{height - 8}">{first:%Y-%m-%d %H:%M}</text>'
                 f'<text x="{width - 20}" y="{height - 8}" text-anchor="end">'
                 f"{last:%Y-%m-%d %H:%M} UTC</text>")
    parts.append("</svg>")
    return "".join(parts)
