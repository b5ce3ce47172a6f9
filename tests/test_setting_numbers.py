"""Numbers and durations people type are bounded and in ASCII digits, wherever they are read.

A cap window of 740,000 days passed the settings check, then every send on every capped
channel failed with OverflowError forever; ``push=٣/1d`` passed as 3 (``str.isdigit`` and
``int`` take every script's digits, and so does a regular expression's ``\\d``). Each is now
refused where the setting is read: exit 2 and one line naming it.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest
from annotated_types import Le, Lt

import starter
from journeys.language.durations import MAX_DURATION, parse_duration
from journeys.language.loader import load_file
from journeys.language.problems import UsageError
from journeys.numbers import whole_number
from journeys.settings import Settings, check_address, load_settings
from journeys.store.caps import Cap, CapCounter, caps_setting
from journeys.store.database import Store
from journeys.store.intellinode import parse_percent

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
#: Digits of other scripts, and characters ``isdigit`` takes that ``int`` refuses.
NOT_ASCII = ["٣", "३", "３", "²", "𝟑"]


@pytest.mark.parametrize("digit", NOT_ASCII)
def test_only_ascii_digits_are_numbers(digit: str) -> None:
    assert whole_number(digit) is None
    assert whole_number(f"1{digit}") is None
    assert whole_number(" 12 ") == 12


@pytest.mark.parametrize("value, says", [
    ("push=٣/1d", "'push=٣/1d': the count must be a whole number from 1"),
    ("push=²/1d", "'push=²/1d': the count must be a whole number from 1"),
    ("email=３/12h", "'email=３/12h': the count must be a whole number from 1"),
    ("push=1/٣d", "'push=1/٣d': '٣d' is not a duration"),
    ("push=1/740000d", "'push=1/740000d': '740000d' is too long a duration: at most 36500d"),
    ("all=1/36501d", "'all=1/36501d': '36501d' is too long a duration: at most 36500d"),
    ("sms=1/999999999999d", "'sms=1/999999999999d': '999999999999d' is too long a duration"),
    ("push=1/876001h", "'push=1/876001h': '876001h' is too long a duration"),
])
def test_a_cap_that_cannot_work_is_one_line_where_the_settings_are_read(
        value: str, says: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        caps_setting(value)
    assert str(raised.value).startswith(f"JOURNEYS_CAPS: {says}")
    monkeypatch.setenv("JOURNEYS_CAPS", value)
    monkeypatch.setenv("JOURNEYS_DATA_DIR", str(tmp_path))
    assert starter.main(["outbox"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"JOURNEYS_CAPS: {says}") and err.count("\n") == 1


def test_the_worker_exits_2_on_a_cap_window_too_long(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "worker.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "JOURNEYS_CAPS": "push=1/740000d",
                                           "JOURNEYS_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: JOURNEYS_CAPS: 'push=1/740000d': '740000d' is too long a duration: at most "
        "36500d (about 100 years)"]


def test_the_longest_window_counts_and_caps(tmp_path: Path) -> None:
    """At the bound, sends are counted and capped: no moment the counter computes overflows."""
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    (cap,) = caps_setting(f"push=1/{MAX_DURATION.days}d")
    counter = CapCounter(store, [cap])
    assert counter.claim("ua", "push", "k1", now=NOW) is None
    assert counter.claim("ua", "push", "k2", now=NOW + MAX_DURATION - timedelta(days=1)) == cap
    assert counter.claim("ua", "push", "k3", now=NOW + MAX_DURATION + timedelta(days=1)) is None
    assert Cap("push", 1, MAX_DURATION).window == timedelta(days=36_500)


@pytest.mark.parametrize("text", ["٣d", "1٣h", "٣٠m", "²s", "36501d", "-36501d", "52560001m"])
def test_journey_durations_are_ascii_and_bounded(text: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
    path = tmp_path / "j.yaml"
    path.write_text(f"""
id: j
name: J
entry: start
nodes:
  - {{id: start, type: action, event: Signed Up, next: wait}}
  - {{id: wait, type: delay, duration: "{text}", next: done}}
  - {{id: done, type: exit}}
""", encoding="utf-8")
    loaded = load_file(path)
    assert loaded.journey is None and loaded.problems


@pytest.mark.parametrize("percent", ["a=٥٠,b=٥٠", "a=5０,b=50", "a=²,b=98"])
def test_intellinode_percent_is_ascii(percent: str) -> None:
    with pytest.raises(UsageError, match="is not PATH=PERCENT"):
        parse_percent(percent)


@pytest.mark.parametrize("address", ["localhost:٧٢٣٣", "localhost:7２33", "localhost: 7233"])
def test_an_address_port_is_ascii(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        check_address(address)
    monkeypatch.setenv("JOURNEYS_METRICS_ADDRESS", address)
    with pytest.raises(UsageError, match=r"^JOURNEYS_METRICS_ADDRESS: "):
        load_settings()


@pytest.mark.parametrize("value", ["inf", "1e308", "86401"])
def test_a_refresh_interval_is_bounded(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEYS_INTELLINODE_REFRESH", value)
    with pytest.raises(UsageError, match=r"^JOURNEYS_INTELLINODE_REFRESH: "):
        load_settings()


def test_every_numeric_setting_has_an_upper_bound() -> None:
    """The class, not the one setting: a number read from the environment without a bound
    (seconds, a count) is what overflowed. A new one must say how large it may be."""
    unbounded = []
    for name, field in Settings.model_fields.items():
        kinds = {field.annotation, *get_args(field.annotation)}
        if not kinds & {int, float}:
            continue
        if not any(isinstance(m, Le | Lt) for m in field.metadata):
            unbounded.append(field.alias or name)
    assert unbounded == []
