"""``starter.py intellinode --percent`` (issue 15, minor): a path given twice is refused by its
name (it said "the percentages sum to 50" for ``P=50,P=50``, the last value having won), and a
percent is ASCII digits only; nothing is recorded for a refused change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from journeys.language.problems import UsageError
from journeys.store import intellinode
from journeys.store.database import Store
from tests.helpers.support import ROOT
from tests.test_intellinode import MANUAL


@pytest.mark.parametrize("given, twice", [
    ("a=50,a=50", "a"), ("a=50,b=20,a=30", "a"), (" b =40, b=60", "b"), ("a=100,b=0,b=0", "b")])
def test_a_path_given_twice_is_refused_by_name(given: str, twice: str) -> None:
    with pytest.raises(UsageError, match=f"the path '{twice}' is given twice"):
        intellinode.parse_percent(given)


@pytest.mark.parametrize("given", ["a=\u0663\u0660,b=70", "a=３０,b=70", "a=3\u00b2,b=70", "a=+30,b=70"])
def test_a_percent_is_ascii_digits(given: str) -> None:
    with pytest.raises(UsageError, match="PATH=PERCENT"):
        intellinode.parse_percent(given)


def test_the_command_refuses_it_and_records_nothing(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "manual.json").write_text(MANUAL.model_dump_json(exclude_none=True))
    environ = {**os.environ, "JOURNEYS_DATA_DIR": str(tmp_path), "JOURNEYS_DIR": str(catalog)}
    run = subprocess.run([sys.executable, "starter.py", "intellinode", "manual", "pick",
                          "--percent", "a=50,a=50"], cwd=ROOT, env=environ, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "the path 'a' is given twice" in run.stderr, run.stderr
    assert "sum to" not in run.stderr
    assert intellinode.settings_history(Store(f"sqlite:///{tmp_path / 'journeys.db'}"),
                                        "manual", "pick") == []
