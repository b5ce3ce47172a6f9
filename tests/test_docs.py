"""The docs site: its generated pages are what the code makes now, and it builds with --strict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scripts import docs
from tests.helpers.support import ROOT


def test_the_generated_pages_are_current() -> None:
    for path, text in docs.generated().items():
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing: run python -m scripts.docs"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is stale: run python -m scripts.docs")
    assert docs.stale() == []


def test_the_check_names_a_stale_file(tmp_path: Path, monkeypatch) -> None:
    schema, rules = tmp_path / "journey.schema.json", tmp_path / "rules.md"
    schema.write_text("{}\n")
    rules.write_text(docs.rules_text())
    monkeypatch.setattr(docs, "SCHEMA", schema)
    monkeypatch.setattr(docs, "RULE_CODES", rules)
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    assert docs.stale() == [schema]
    assert docs.main(["--check"]) == 1
    assert docs.main([]) == 0 and docs.stale() == [] and schema.read_text() == docs.schema_text()


def test_the_schema_is_the_schema_command() -> None:
    run = subprocess.run([sys.executable, "starter.py", "schema"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == docs.SCHEMA.read_text(encoding="utf-8")


def test_the_site_builds_strict(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    run = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    site = tmp_path / "site"
    for page in docs.DOCS.rglob("*.md"):
        assert (site / page.relative_to(docs.DOCS).with_suffix(".html")).is_file(), page
    assert (site / "reference" / "journey.schema.json").read_text() == docs.schema_text()
    assert (site / "ui-journey.png").is_file() and (site / "ui-list.png").is_file()
