"""Side effects of journeys: delivery, profiles, path choice, dates."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from activities.delivery import Delivery
from activities.profiles import Controllers
from activities.providers import Provider
from journeys.models import Channel
from journeys.store import Store


def build_activities(store: Store, providers: Mapping[Channel, Provider] | None = None,
                     send_timeout: float = 30.0) -> list[Callable[..., Any]]:
    """Every activity a journey worker registers, bound to its store and providers."""
    delivery = Delivery(store, providers, send_timeout)
    controllers = Controllers(store)
    return [delivery.send_message, delivery.cancel_message, controllers.update_profile,
            controllers.choose_branch, controllers.resolve_date]
