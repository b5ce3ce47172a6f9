"""The rules of a node's message versions: every locale's version has the fields its default
has (a French user must not get a message without its subject), a node sends a message or
variants (not both, not neither), and its variants have names of their own and a weight."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from journeys.language.messages import Message
from journeys.language.models import EngagementNode

Finding = tuple[str, str | None, str, str]


def variant_rules(node: EngagementNode) -> Iterator[Finding]:
    if node.variants and node.message:
        yield (node.id, "variants", "bad-value",
               "a node sends 'message' or 'variants', not both: make the message a variant")
    if not node.variants and not node.message:
        yield node.id, "message", "missing-message-field", "an engagement node needs 'message' or 'variants'"
    names = Counter(v.name for v in node.variants)
    for name in sorted(n for n, times in names.items() if times > 1):
        yield node.id, "variants", "bad-value", f"two variants are named '{name}'"
    if node.variants and not any(v.weight for v in node.variants):
        yield node.id, "variants", "bad-value", "every variant's weight is 0: give one a weight"
    if not node.variants or node.message:
        yield from _locales(node.id, "message", node.message, node.locales)
    for i, variant in enumerate(node.variants):
        yield from _locales(node.id, f"variants[{i}].message", variant.message, variant.locales)


def _locales(node_id: str, path: str, default: Message, locales: dict[str, Message]) -> Iterator[Finding]:
    tags = Counter(tag.lower().replace("_", "-") for tag in locales)
    for tag in sorted(t for t, times in tags.items() if times > 1):
        yield node_id, path, "bad-value", f"two versions are for locale '{tag}'"
    for locale, version in locales.items():
        for name in sorted(default.keys() - version.keys()):
            yield (node_id, f"{path}.{locale}.{name}", "locale-missing-field",
                   f"the '{locale}' version has no '{name}', which the default has: a user in "
                   f"that locale would get the message without it")
