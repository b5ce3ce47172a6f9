"""Which version of a node's message a user gets: their content variant (by weight, the same one
each time they come; everyone the winner once there is one) and, of it, the version in their
locale (``pt-BR``, else ``pt``, else the default)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from journeys.language.messages import Message, Variant
from journeys.language.models import EngagementNode
from journeys.personalization.formats import user_locale

DEFAULT = "default"


@dataclass(frozen=True)
class Chosen:
    message: Message
    locale: str  # the version's locale key, or "default"
    variant: str | None  # the variant's name, if the node has variants


def pick_locale(locales: Mapping[str, Message], wanted: str | None) -> str | None:
    """The key of ``locales`` for the user's ``wanted`` locale: itself, else its language."""
    if not wanted or not locales:
        return None
    by_tag = {key.lower().replace("_", "-"): key for key in locales}
    parts = wanted.lower().replace("_", "-").split("-")
    for length in range(len(parts), 0, -1):
        found = by_tag.get("-".join(parts[:length]))
        if found is not None:
            return found
    return None


def pick_variant(variants: Sequence[Variant], journey_id: str, node_id: str, user_id: str,
                 winner: str | None = None) -> Variant:
    """The user's variant: the winner if there is one, else by weight, from a hash of the
    journey, node and user (so the same user gets the same one each time)."""
    if winner is not None:
        for variant in variants:
            if variant.name == winner:
                return variant
    total = sum(v.weight for v in variants)
    if total <= 0:
        return variants[0]
    digest = hashlib.sha256(f"{journey_id}\x00{node_id}\x00{user_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % total
    for variant in variants:
        if bucket < variant.weight:
            return variant
        bucket -= variant.weight
    return variants[-1]  # (unreachable: the buckets cover the total)


def choose(node: EngagementNode, profile: Mapping[str, Any], journey_id: str, user_id: str,
           winner: str | None = None, locale: str | None = None) -> Chosen:
    """The message ``user_id`` gets of ``node`` (``locale`` instead of the profile's: preview)."""
    message, locales, name = node.message, node.locales, None
    if node.variants:
        variant = pick_variant(node.variants, journey_id, node.id, user_id, winner)
        message, locales, name = variant.message, variant.locales, variant.name
    key = pick_locale(locales, locale or user_locale(profile))
    return Chosen(locales[key] if key else message, key or DEFAULT, name)
