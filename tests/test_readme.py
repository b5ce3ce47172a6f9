"""The README documents what the code does: every rule code, the two commands, the example."""

from __future__ import annotations

from journeys.funnel.graph import to_mermaid
from journeys.language.problems import RULES
from tests.helpers.support import ROOT, examples

README = (ROOT / "README.md").read_text()


def test_every_rule_code_is_documented() -> None:
    missing = [code for code in RULES if f"| `{code}` |" not in README]
    assert missing == []


def test_the_abandoned_cart_example_and_its_graph_are_current() -> None:
    assert (ROOT / "examples" / "abandoned-cart.yaml").read_text() in README
    assert to_mermaid(examples()["abandoned-cart"]) in README


def test_the_two_commands() -> None:
    assert "make run " in README and "make test " in README
