"""Side effects of journeys: delivery, profiles, path choice, dates, quiet hours."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from activities.delivery import Delivery
from activities.intellinode import Paths
from activities.outcomes import Outcomes
from activities.policy import Policy
from activities.profiles import Controllers
from activities.providers import Provider
from journeys.language.models import Channel
from journeys.links import Links, links_of
from journeys.settings import DEFAULT_PUBLIC_URL
from journeys.store.caps import Cap, CapCounter
from journeys.store.database import Store
from journeys.store.versions import VERSIONS


def build_activities(store: Store, providers: Mapping[Channel, Provider] | None = None,
                     send_timeout: float = 30.0, caps: Sequence[Cap] = (),
                     intellinode_refresh: float = 300.0, unknown_retries: int = 2,
                     links: Links | None = None) -> list[Callable[..., Any]]:
    """Every activity a journey worker registers, bound to its store, providers and caps.
    The worker's runs and sends read their journeys' versions from the same store. ``links``:
    the links in messages (default: the store's secret, the API's default address)."""
    VERSIONS.use(store)
    links = links or links_of(store, DEFAULT_PUBLIC_URL)
    delivery = Delivery(store, providers, send_timeout, CapCounter(store, caps) if caps else None,
                        unknown_retries, links)
    controllers = Controllers(store)
    policy = Policy(store)
    return [delivery.send_message, delivery.cancel_message, controllers.update_profile,
            controllers.choose_branch, controllers.resolve_date, policy.check_quiet_hours,
            policy.drop_message, Outcomes(store).record_outcome,
            Paths(store, intellinode_refresh).choose_path]
