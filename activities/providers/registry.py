"""Which provider serves each channel: its vendor's, once that vendor's settings are set;
the outbox (nothing leaves the machine) until then.

Each vendor module offers ``missing(settings, channel)`` (the settings it still needs, by their
``JOURNEYS_...`` names) and ``build(settings, store, channel)`` (the provider; the store is
where a provider drops dead tokens, or keeps the inbox).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

from activities.providers import Provider
from activities.providers.outbox import OutboxProvider
from journeys.language.models import Channel
from journeys.language.problems import UsageError
from journeys.settings import Settings
from journeys.store.database import Store

#: The vendor module of each channel, under activities/providers/.
VENDORS: dict[Channel, str] = {
    Channel.in_app: "inbox",
    Channel.web_popup: "inbox",
    Channel.app_inbox: "inbox",
    Channel.email: "smtp",
    Channel.web_push: "webpush",
    Channel.webhook: "webhook",
    Channel.sms: "twilio",
    Channel.whatsapp: "twilio",
    Channel.push: "fcm",
}


def _vendor(channel: Channel) -> ModuleType | None:
    name = VENDORS.get(channel)
    return importlib.import_module(f"activities.providers.{name}") if name else None


@dataclass(frozen=True)
class Choice:
    """The provider that serves a channel, and what its vendor's provider still needs."""

    channel: Channel
    provider: str
    vendor: str | None
    missing: tuple[str, ...]


def choices(settings: Settings) -> list[Choice]:
    """For each channel, in order: who serves it, and (if the outbox) which settings would change that."""
    result = []
    for channel in Channel:
        module = _vendor(channel)
        missing = tuple(module.missing(settings, channel)) if module else ()
        name = VENDORS.get(channel)
        serves = name if name and module and not missing else "outbox"
        result.append(Choice(channel, serves, name, missing))
    return result


def build_providers(settings: Settings, store: Store) -> dict[Channel, Provider]:
    """A provider for every channel, as :func:`choices` says.

    A vendor's setting that cannot work (a key that does not load, a file that is missing, an
    address that is none) is a one-line UsageError here, when the worker starts.
    """
    providers: dict[Channel, Provider] = {}
    for choice in choices(settings):
        module = _vendor(choice.channel)
        if module and choice.provider != "outbox":
            try:
                providers[choice.channel] = module.build(settings, store, choice.channel)
            except (ValueError, OSError) as exc:
                raise UsageError(f"{choice.channel.value} ({choice.vendor}): {exc}") from None
        else:
            providers[choice.channel] = OutboxProvider()
    return providers


async def close_providers(providers: Mapping[Channel, Provider]) -> None:
    """Close what providers hold open (pooled HTTP connections), each provider once."""
    for provider in {id(p): p for p in providers.values()}.values():
        closing = getattr(provider, "aclose", None)
        if closing:
            await closing()
