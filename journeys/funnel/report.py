"""``starter.py report``: a journey's funnel as ONE self-contained HTML page, for people who do
not read tables: the headline numbers, the journey drawn with its counts, the funnel's bars, and
each IntelliNODE's shares over time with its live changes. Nothing is fetched when it is viewed
(no script, stylesheet, font or image from anywhere): inline CSS and SVG only, every text from
the journey or the store escaped."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from journeys.funnel.report_svg import COLORS, MAX_LAYERS, MAX_ROW, funnel_svg, graph_svg, shares_svg
from journeys.funnel.stats import Group, JourneyStats, NodeStats
from journeys.language.models import EngagementNode, IntelliNode, Journey
from journeys.store import intellinode
from journeys.store.database import Store
from journeys.store.tables import path_choices

#: Bucket sizes for the shares over time: the smallest that gives at most ``MAX_BUCKETS``.
BUCKETS = (timedelta(hours=1), timedelta(hours=6), timedelta(days=1), timedelta(days=7),
           timedelta(days=30))
MAX_BUCKETS = 48

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.headline { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.figure { border: 1px solid #ccc; border-radius: 8px; padding: 10px 14px; min-width: 140px; }
.figure b { display: block; font-size: 22px; }
.muted { color: #666; } svg { display: block; max-width: 100%; height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #222; } .node-id { font-weight: 600; }
.edge-label { fill: #444; } table { border-collapse: collapse; margin: 8px 0; }
td, th { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.scroll { overflow-x: auto; } .scroll svg { max-width: none; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _rate(group: Group) -> str:
    return f"{group.rate:.1%}" if group.rate is not None else "-"


def headline(stats: JourneyStats) -> str:
    """Entered, converted (messaged and control group), the lift with its interval."""
    figures = [("entered", f"{stats.entered}"),
               ("messaged: converted", f"{stats.treatment.converted}/{stats.treatment.entered} "
                                       f"({_rate(stats.treatment)})"),
               ("control group: converted", f"{stats.control.converted}/{stats.control.entered} "
                                            f"({_rate(stats.control)})")]
    lift = stats.lift
    if lift:
        relative = f", {lift.relative:+.0%} relative" if lift.relative is not None else ""
        figures.append(("lift", f"{lift.difference:+.1%}"))
        note = f"95 % interval {lift.low:+.1%} to {lift.high:+.1%}{relative}"
    else:
        note = "no lift: it needs both the messaged and a control group (control_percent)"
    figures.append(("timed out", f"{stats.timed_out}"))
    boxes = "".join(f'<div class="figure" data-figure="{_e(name)}"><span class="muted">{_e(name)}'
                    f"</span><b>{_e(value)}</b></div>" for name, value in figures)
    goals = ", ".join(stats.goals) or "none: nothing converts"
    return (f'<div class="headline">{boxes}</div><p class="muted">Goals: {_e(goals)}. '
            f"Lift: {_e(note)}.</p>")


def bucket_for(store: Store, journey_id: str, node_id: str) -> timedelta:
    """The smallest bucket that draws the node's choices in at most ``MAX_BUCKETS`` bars."""
    c = path_choices.c
    with store.engine.connect() as conn:
        first, last = conn.execute(select(func.min(c.at), func.max(c.at)).where(
            c.journey_id == journey_id, c.node_id == node_id)).one()
    span = (last - first) if first and last else timedelta(0)
    return next((b for b in BUCKETS if span / b <= MAX_BUCKETS), BUCKETS[-1])


def intellinode_section(store: Store, journey: Journey, node: IntelliNode, stats: JourneyStats) -> str:
    found = next((s for s in stats.intellinodes if s.node_id == node.id), None)
    names = intellinode.path_names(node)
    bucket = bucket_for(store, journey.id, node.id)
    series = intellinode.choices_over_time(store, journey.id, node.id, bucket)
    changes = intellinode.settings_history(store, journey.id, node.id)
    rows = "".join(
        f'<tr data-path="{_e(p.path)}"><td><span class="swatch" style="background:'
        f'{COLORS[i % len(COLORS)]}"></span>{_e(p.path)}</td><td>{_e(p.next)}</td>'
        f"<td>{p.entered}</td><td>{p.converted}</td>"
        f"<td>{'-' if p.rate is None else f'{p.rate:.1%}'}</td><td>{p.share:.0%}</td></tr>"
        for i, p in enumerate(found.paths if found else []))
    source = found.source if found else "-"
    return (f'<h3>{_e(node.id)} <span class="muted">({_e(node.mode)}; shares now: {_e(source)})'
            f"</span></h3><table><tr><th>path</th><th>to</th><th>entered</th><th>converted</th>"
            f"<th>rate</th><th>share now</th></tr>{rows}</table>"
            f'<p class="muted">Users who reached it, by path, per {_e(_span(bucket))} '
            f"(the control group included); dashed: a live change.</p>"
            + shares_svg(node.id, names, series, bucket, changes))


def messages_section(journey: Journey, stats: JourneyStats) -> str:
    """Each engagement node's messages and what users did with them (rates of the delivered)."""
    sent = {n.id: n for n in journey.nodes if isinstance(n, EngagementNode)}
    rows = []
    for node in stats.nodes:
        if node.node_id not in sent or not node.messages:
            continue
        seen = node.engagement
        opened, clicked, left = (_of_delivered(node, kind) for kind in ("opened", "clicked", "unsubscribed"))
        statuses = ", ".join(f"{status.replace('_', ' ')} {n}" for status, n in sorted(node.messages.items()))
        rows.append(f"<tr><td>{_e(node.node_id)}</td><td>{_e(sent[node.node_id].channel.value)}</td>"
                    f"<td>{_e(statuses)}</td><td>{opened}</td><td>{clicked}</td>"
                    f"<td>{left}</td><td>{seen.get('machine_opened', 0)}</td>"
                    f"<td>{node.clicked_converted}</td></tr>")
    if not rows:
        return '<p class="muted">No message was sent yet.</p>'
    return ("<table><tr><th>node</th><th>channel</th><th>messages</th><th>opened</th><th>clicked</th>"
            "<th>unsubscribed</th><th>machine opens only</th><th>clicked, then converted</th></tr>"
            f"{''.join(rows)}</table>")


def variants_section(stats: JourneyStats) -> str:
    """Each node's content variants side by side (journeys.funnel.variants)."""
    tables = []
    for found in stats.variants:
        rows = "".join(
            f"<tr><td>{_e(v.name)}{' (winner)' if v.name == found.winner else ''}</td><td>{v.weight}</td>"
            f"<td>{v.sent}</td><td>{v.delivered}</td><td>{v.opened}</td><td>{v.clicked}</td>"
            f"<td>{v.converted}</td><td>{'-' if v.rate is None else f'{v.rate:.1%}'}</td>"
            f"<td>{'-' if v.low is None else f'{v.low:.1%} to {v.high:.1%}'}</td>"
            f"<td>{'-' if v.best is None else f'{v.best:.0%}'}</td></tr>" for v in found.variants)
        tables.append(f"<h3>{_e(found.node_id)}</h3><table><tr><th>variant</th><th>weight</th>"
                      "<th>sent</th><th>delivered</th><th>opened</th><th>clicked</th><th>converted</th>"
                      "<th>rate</th><th>95 % interval</th><th>chance best</th></tr>"
                      f"{rows}</table>")
    return "".join(tables) or '<p class="muted">This journey has no content variants.</p>'


def _of_delivered(node: NodeStats, kind: str) -> str:
    n = node.engagement.get(kind, 0)
    return f"{n} ({n / node.delivered:.0%})" if node.delivered else str(n)


def _span(bucket: timedelta) -> str:
    hours = int(bucket.total_seconds() // 3600)
    return f"{hours} h" if hours < 24 else f"{hours // 24} d"


def render_report(store: Store, journey: Journey, stats: JourneyStats,
                  now: datetime | None = None) -> str:
    """The page, as one string of HTML."""
    title = f"{journey.name or journey.id} ({journey.id})"
    splits = [n for n in journey.nodes if isinstance(n, IntelliNode)]
    sections = "".join(intellinode_section(store, journey, n, stats) for n in splits)
    waiting = ("who waits at each node now was not asked (Temporal's visibility)"
               if all(n.waiting_now is None for n in stats.nodes) else "with who waits now")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}: funnel</title><style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="muted">Funnel report, {(now or datetime.now(UTC)):%Y-%m-%d %H:%M} UTC; {_e(waiting)}.</p>
{headline(stats)}
<h2>The journey, with its counts</h2>
<p class="muted">A node's <i>entered</i> counts the entries that reached it: those that ended
(their recorded walk) and the running ones known to be there or past it (waiting now, messaged
by it, routed by it). An edge counts the users that went along it. A large journey is drawn
{MAX_LAYERS} layers deep and {MAX_ROW} nodes wide at most (the nodes most users entered); a box
stands for the others.</p>
<div class="scroll">{graph_svg(journey, stats)}</div>
<h2>The funnel</h2>
<p class="muted">Users who entered each node (blue), with the conversions of users who were
at it (green).</p>
{funnel_svg(journey, stats)}
<h2>Messages, opens and clicks</h2>
<p class="muted">Each message once: opened and clicked by a person (an open in the first
seconds after sending is a mail proxy's: machine opens only), unsubscribed through its link;
rates of the delivered.</p>
{messages_section(journey, stats)}
<h2>Content variants</h2>
<p class="muted">Users per variant; the rate is of the delivered who converted, its interval
Wilson's; the chance that each is the best, from the rates' Beta posteriors.</p>
{variants_section(stats)}
<h2>IntelliNODE shares over time</h2>
{sections or '<p class="muted">This journey has no IntelliNODE.</p>'}
</body></html>
"""
