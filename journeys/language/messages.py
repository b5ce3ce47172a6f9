"""What an engagement node sends: a message (each field a template), its versions by locale, and
content variants.

A message may hold versions by locale: ``message: {default: {...}, fr: {...}, pt-BR: {...}}``;
it is read into ``message`` (the default) and ``locales``. A node may instead carry variants
(``variants: [{name: a, weight: 50, message: ...}]``), each a message that may hold locales too.
Which version a user gets is chosen at send time (journeys.personalization.versions).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MessageValue = str | dict[str, str] | list[str | dict[str, str]]
Message = dict[str, MessageValue]
#: A locale: a language (``fr``), and a region or script (``pt-BR``, ``zh-Hant``).
Locale = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,2}$")]


def read_locales(data: Any) -> Any:
    """``message: {default: {...}, fr: {...}}`` as ``message`` (the default) and ``locales``."""
    if not isinstance(data, dict):
        return data
    message = data.get("message")
    if isinstance(message, dict) and isinstance(message.get("default"), dict):
        if "locales" in data:
            raise ValueError("give the versions by locale in 'message' (default, fr, ...), "
                             "not also in 'locales'")
        return {**data, "message": message["default"],
                "locales": {key: value for key, value in message.items() if key != "default"}}
    return data


class Variant(BaseModel):
    """One version of a message tested against the others (``starter.py variants``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$")] = Field(
        description="How stats and the outbox name it (a, b, short-subject ...).")
    weight: int = Field(default=1, ge=0, le=10_000,
                        description="Its share of the users, against the other variants' weights.")
    message: Message
    locales: dict[Locale, Message] = Field(
        default_factory=dict, description="Its versions by locale (written as message.fr ...).")

    _read_locales = model_validator(mode="before")(read_locales)


def versions(message: Message, locales: dict[str, Message], variants: list[Variant],
             ) -> Iterator[tuple[str, Message]]:
    """Every version a node may send, with the field path a problem in it is reported at:
    ``message`` (or ``message.default`` and ``message.fr``), ``variants[0].message.fr`` ..."""
    if not variants or message:
        yield from _localized("message", message, locales)
    for i, variant in enumerate(variants):
        yield from _localized(f"variants[{i}].message", variant.message, variant.locales)


def _localized(path: str, message: Message, locales: dict[str, Message]) -> Iterator[tuple[str, Message]]:
    if not locales:
        yield path, message
        return
    yield f"{path}.default", message
    for locale, version in locales.items():
        yield f"{path}.{locale}", version
