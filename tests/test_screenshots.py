"""scripts/screenshots.py without the browser: the ports, the journeys, the settings and the URLs
it uses (the screenshots themselves are taken by hand: ``python -m scripts.screenshots``)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from journeys.language.loader import load_file
from journeys.language.models import InactionNode
from scripts.screenshots import (
    EVENTS,
    JOURNEY,
    environment,
    event_commands,
    free_port_pair,
    journey_url,
    list_url,
    write_journeys,
)
from tests.helpers.support import ROOT


def test_free_port_pair_leaves_the_ui_port_free() -> None:
    port = free_port_pair()
    for candidate in (port, port + 1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", candidate))


def test_the_examples_with_abandoned_carts_window_shortened(tmp_path: Path) -> None:
    folder = write_journeys(tmp_path / "journeys", "5s")
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(p.name for p in (ROOT / "examples").glob("*.yaml"))
    loaded = load_file(folder / f"{JOURNEY}.yaml")
    assert loaded.journey is not None, loaded.problems
    entry = loaded.journey.node(loaded.journey.entry)
    assert isinstance(entry, InactionNode) and entry.within == timedelta(seconds=5)
    assert (folder / "delays-15h.yaml").read_text() == (ROOT / "examples" / "delays-15h.yaml").read_text()


def test_settings_are_the_scripts_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEYS_WRITE_KEY", "the caller's")
    monkeypatch.setenv("TEMPORAL_API_KEY", "the caller's too")
    env = environment(tmp_path / "data", tmp_path / "journeys", 17233)
    assert "JOURNEYS_WRITE_KEY" not in env and "TEMPORAL_API_KEY" not in env
    assert env["TEMPORAL_ADDRESS"] == "127.0.0.1:17233"
    assert env["JOURNEYS_DIR"] == str(tmp_path / "journeys")
    assert env["JOURNEYS_DATABASE_URL"] == f"sqlite:///{tmp_path / 'data' / 'journeys.db'}"


def test_urls_and_commands() -> None:
    assert list_url("http://127.0.0.1:18233") == (
        "http://127.0.0.1:18233/namespaces/default/workflows?query=UserId%20%3D%20%22ada%22")
    assert journey_url("http://ui", "journey/abandoned-cart/ada", "r1") == (
        "http://ui/namespaces/default/workflows/journey%2Fabandoned-cart%2Fada/r1/history")
    commands = event_commands("python")
    assert len(commands) == len(EVENTS)
    first = commands[0]
    assert first[:5] == ["python", str(ROOT / "starter.py"), "event", "ada", "Added To Cart"]
    assert json.loads(first[first.index("--props") + 1])["product_name"] == "iPhone 14"
