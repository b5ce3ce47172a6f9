"""The documentation's pages made from the code, not by hand: ``python -m scripts.docs`` writes them.

- ``docs/reference/journey.schema.json``: the journey format's JSON Schema (``starter.py schema``);
- ``docs/reference/rules.md``: the validator's rule codes and what each means (``RULES``).

``python -m scripts.docs --check`` writes nothing and exits 1 naming each file that is not what the
code makes (``make docs`` runs it before ``mkdocs build --strict``; ``tests/test_docs.py`` too).
The docs' other checks read the code through this module as well (the settings, the commands, the
example's graph), so that the domain is imported here only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.catalog import journey_schema
from cli.main import build_parser
from journeys.funnel.graph import to_mermaid
from journeys.language.loader import load_file
from journeys.language.problems import RULES
from journeys.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCHEMA = DOCS / "reference" / "journey.schema.json"
RULE_CODES = DOCS / "reference" / "rules.md"
FIRST_JOURNEY = ROOT / "examples" / "abandoned-cart.yaml"

RULES_INTRO = """\
# Rule codes

<!-- Made by `python -m scripts.docs` from `journeys/language/problems.py` (RULES): edit that. -->

Every problem `python starter.py validate` reports ends with one of these codes
(`<file>: node '<id>' (<field>): <message> [<code>]`; `--json` has it as `code`); see
[Validation](../journeys/validation.md) for the command, its exit status and how the event rules
read a journey. `examples/invalid/` holds one journey per rule, each with the error it must give
(except `too-large` and `unreadable`).

| code | rule |
| --- | --- |
"""


def schema_text() -> str:
    return json.dumps(journey_schema(), indent=2) + "\n"


def rules_text() -> str:
    rows = "".join(f"| `{code}` | {text.replace('|', chr(92) + '|')} |\n" for code, text in RULES.items())
    return RULES_INTRO + rows


def generated() -> dict[Path, str]:
    """Each generated file, with what the code makes of it now."""
    return {SCHEMA: schema_text(), RULE_CODES: rules_text()}


def stale() -> list[Path]:
    """The generated files whose committed copy is missing or differs from what the code makes."""
    return [path for path, text in generated().items()
            if not path.is_file() or path.read_text(encoding="utf-8") != text]


def settings() -> list[str]:
    """Every environment variable `journeys.settings.Settings` reads (JOURNEYS_*, TEMPORAL_*)."""
    return sorted(field.alias for field in Settings.model_fields.values() if field.alias)


def commands() -> set[str]:
    """The commands of ``starter.py``."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("starter.py's parser has no commands")


def first_journey() -> tuple[str, str]:
    """The first journey a newcomer reads: its file as written, and its graph (``starter.py graph``)."""
    journey = load_file(FIRST_JOURNEY).journey
    assert journey is not None, f"{FIRST_JOURNEY} is not a valid journey"
    return FIRST_JOURNEY.read_text(encoding="utf-8"), to_mermaid(journey)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the docs' pages that are made from the code.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming each file that is not current")
    args = parser.parse_args(argv)
    if args.check:
        old = stale()
        for path in old:
            print(f"stale: {path.relative_to(ROOT)} (run: python -m scripts.docs)", file=sys.stderr)
        return 1 if old else 0
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
