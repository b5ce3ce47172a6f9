"""Data printed on a terminal (issue 15, minor): ids, keys, subjects and reasons go through one
function, ``journeys.inputs.printable``, so that no bidi override, zero-width character, control
character or line break in them can hide, reorder or forge what ``list``, ``status``,
``outbox``, ``stats`` and ``exit`` print (``ada\\u202egnp.exe`` showed as ``adaexe.png``).
The commands that need Temporal are covered in tests/test_operate_display.py."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from journeys.funnel.stats import Group, IntelliStats, JourneyStats, NodeStats, PathStats, format_stats
from journeys.inputs import described, printable, shown
from journeys.store.database import OutboxRow, Store
from operate.listing import Listed, format_listed
from operate.status import JourneyStatus, OutboxEntry, format_status
from tests.helpers.support import ROOT

#: Each class of hidden character, with the escape it must print as.
HIDDEN = [
    *((chr(c), f"\\u{c:04x}") for c in range(0x202A, 0x202F)),  # bidi embeddings, overrides
    *((chr(c), f"\\u{c:04x}") for c in range(0x2066, 0x206A)),  # bidi isolates
    *((chr(c), f"\\u{c:04x}") for c in range(0x200B, 0x2010)),  # zero-width, LRM, RLM
    ("\u2060", "\\u2060"), ("\ufeff", "\\ufeff"), ("\u061c", "\\u061c"), ("\u00ad", "\\xad"),
    ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),  # line and paragraph separators
    ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\x1b", "\\x1b"), ("\x00", "\\x00"),
    ("\x7f", "\\x7f"), ("\x85", "\\x85"), ("\x9b", "\\x9b"),  # DEL, NEL, CSI (C1)
    ("\ud83d", "\\ud83d"),  # a lone surrogate: it cannot even be encoded
    ("\U000e0041", "\\U000e0041"),  # a tag character
]


@pytest.mark.parametrize("char, escape", HIDDEN, ids=[e for _, e in HIDDEN])
def test_every_hidden_character_is_shown_as_its_escape(char: str, escape: str) -> None:
    for value in (f"ada{char}gnp.exe", char, f"{char}{char}x"):
        out = printable(value)
        assert char not in out and out.isprintable()
        assert out == value.replace(char, escape)
    assert printable(f"a{char}b\nc") == shown(f"a{char}b\nc").replace("\n", "\\n")


@pytest.mark.parametrize("value", ["ada", "Zoë", "用户", "user@example.com", "a b", "😀", "q\"uote",
                                   "back\\slash", "ä̈", "\u3000wide space"])
def test_printable_text_is_left_alone(value: str) -> None:
    assert printable(value) == value
    assert shown(f"{value}\n{value}") == f"{value}\n{value}"


def test_listed_rows_escape_each_value_and_keep_their_columns() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [Listed(workflow_id="w1", journey_id="shop", user_id="ada\u202egnp.exe", key="k\n1",
                   status="running", node="wait", event="Start\u200bed", started_at=now),
            Listed(workflow_id="w2", journey_id="shop", user_id="ben", status="running",
                   node="wait", started_at=now)]
    text = format_listed(rows, more=False)
    lines = text.splitlines()
    assert len(lines) == 4 and all(line.isprintable() for line in lines)
    assert lines[1].split() == ["shop", "ada\\u202egnp.exe", "k\\n1", "running", "wait",
                                "Start\\u200bed", "-"]
    assert lines[2].split()[:3] == ["shop", "ben", "-"]
    # The columns line up on the escaped text.
    assert lines[0].index("status") == lines[1].index("running") == lines[2].index("running")


def test_status_escapes_reasons_paths_and_the_outbox() -> None:
    row = JourneyStatus(journey_id="shop", workflow_id="journey/shop/x\u2066y", key="c/1\u202e",
                        status="running", current_node="wait", event_name="Bought\u2028",
                        event_properties={"sku": "a\nb\u202e"}, path=["start", "wait"],
                        exit_reason="exited by an operator: one\ntwo\x1b[2J", held="quiet\r",
                        outbox=[OutboxEntry(node_id="push", channel="push", status="failed",
                                            reason="vendor said\nFAKE LINE\u202e")])
    text = format_status(row)
    lines = text.splitlines()
    assert all(line.isprintable() for line in lines) and len(lines) == 5
    assert "journey/shop/x\\u2066y" in lines[0] and "key=c/1\\u202e" in lines[0]
    assert "event=Bought\\u2028" in lines[0] and '{"sku": "a\\nb\\u202e"}' in lines[0]
    assert lines[2] == "    exit: exited by an operator: one\\ntwo\\x1b[2J"
    assert lines[4] == "    message push: push failed (vendor said\\nFAKE LINE\\u202e)"


def test_stats_escape_goal_and_path_names() -> None:
    stats = JourneyStats(
        journey_id="shop", goals=["Bought\u202e"], entered=2, treatment=Group(entered=2),
        control=Group(), lift=None, timed_out=0, nodes=[NodeStats(node_id="pick", type="intellinode")],
        paths={"pick: A\u2066\nB": 1},
        intellinodes=[IntelliStats(node_id="pick", mode="manual", source="manual", paths=[
            PathStats(path="A\u2066\nB", next="push-a", share=1.0)])])
    lines = format_stats(stats).splitlines()
    assert all(line.isprintable() for line in lines)
    assert "converted (Bought\\u202e)" in lines[1]
    assert "  path pick: A\\u2066\\nB: 1 converted" in lines
    assert any(line.strip().startswith("A\\u2066\\nB") for line in lines)


def test_outbox_prints_one_line_per_message(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'journeys.db'}")
    subjects = ["Hello\nFAKE 2026-01-01 00:00:00  admin  delivered", "Sale\u2028now",
                "ada\u202egnp.exe", "bell\x07\x1b[31m"]
    for i, subject in enumerate(subjects):
        store.outbox_claim(OutboxRow(
            idempotency_key=f"k{i}", journey_id="shop", user_id=f"u\u200b{i}", workflow_id=f"w{i}",
            node_id="mail", channel="email", status="delivered", content={"subject": subject}))
    store.outbox_claim(OutboxRow(idempotency_key="kf", journey_id="shop", user_id="u", workflow_id="w",
                                 node_id="mail", channel="email", status="failed",
                                 reason="vendor 422\nsecond line"))
    environ = {**os.environ, "JOURNEYS_DATA_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "starter.py", "outbox"], cwd=ROOT, env=environ,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == len(subjects) + 1 and all(line.isprintable() for line in lines), lines
    for subject in subjects:
        assert any(printable(subject) in line for line in lines)
    assert any("u\\u200b0" in line for line in lines)
    assert any(line.endswith("vendor 422\\nsecond line") for line in lines)


@pytest.mark.parametrize("exc, text", [
    (TimeoutError(), "TimeoutError"), (TimeoutError("slow"), "TimeoutError: slow"),
    (RuntimeError(""), "RuntimeError"), (OSError("a\nb"), "OSError: a\\nb")])
def test_an_error_is_always_named(exc: BaseException, text: str) -> None:
    assert described(exc) == text
