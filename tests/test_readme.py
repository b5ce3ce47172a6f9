"""The README and the docs document what the code does: the two commands, the first journey, every
setting, and only commands that exist. (The generated pages and the site's build: test_docs.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from scripts import docs
from tests.helpers.support import ROOT

README = (ROOT / "README.md").read_text()
PAGES = {path: path.read_text() for path in sorted(docs.DOCS.rglob("*.md"))}
EVERYTHING = "\n".join([README, *PAGES.values()])


def test_the_two_commands() -> None:
    assert "make run " in README and "make test " in README


def test_the_readme_is_for_a_newcomer() -> None:
    """What it is, the two commands, the first journey, where to read on: the rest is in docs/."""
    sections = re.findall(r"^## (.+)$", README, re.M)
    assert sections == ["Two commands", "The first journey", "Read on"]
    assert len(README.splitlines()) < 200
    assert "make docs" in README


def test_the_first_journey_and_its_graph_are_current() -> None:
    text, graph = docs.first_journey()
    format_page = PAGES[docs.DOCS / "journeys" / "format.md"]
    for where, content in [("README.md", README), ("docs/journeys/format.md", format_page)]:
        assert text in content, f"{where}: examples/abandoned-cart.yaml as it is"
        assert graph in content, f"{where}: `starter.py graph examples/abandoned-cart.yaml` as it prints"


def test_every_rule_code_is_documented() -> None:
    rules = PAGES[docs.RULE_CODES]
    missing = [code for code in docs.RULES if f"| `{code}` |" not in rules]
    assert missing == []


def test_every_setting_is_documented() -> None:
    missing = [name for name in docs.settings() if not re.search(rf"`{name}\b", EVERYTHING)]
    assert missing == [], "settings of journeys/settings.py that no page names"


def test_the_commands_shown_exist() -> None:
    shown = set(re.findall(r"starter\.py ([a-z][a-z-]*)", EVERYTHING))
    assert shown - docs.commands() == set(), "starter.py commands that do not exist"
    assert {"event", "status", "validate", "serve", "schema", "graph"} <= shown

    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    made = set(re.findall(r"`make ([a-z][a-z-]*)", EVERYTHING)) | set(
        re.findall(r"^make ([a-z][a-z-]*)", EVERYTHING, re.M))
    assert made - targets == set(), "make targets that the Makefile lacks"
    assert {"run", "test", "docs", "demo", "bench", "drill"} <= made

    modules = set(re.findall(r"python -m (scripts\.[a-z_]+)", EVERYTHING))
    assert [m for m in modules if not (ROOT / (m.replace(".", "/") + ".py")).is_file()] == []


def test_the_readme_links_resolve() -> None:
    """The README's links into the repository (the docs' own links: mkdocs build --strict)."""
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert [link for link in local if not (ROOT / link).exists()] == []
    pages = {Path(link) for link in local if link.startswith("docs/") and link.endswith(".md")}
    assert pages == {path.relative_to(ROOT) for path in PAGES}, "the README links every page"
