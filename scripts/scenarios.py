"""The product page's scenarios, as ``python -m scripts.demo`` plays them: who sends what, when.

Each scenario also says what the product page promises for it: the messages delivered (node,
personalization event, workflow time after entry), how the journey ends, and for date/time
nodes the local time of every send.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo


def product(name: str, slug: str, image: str, price: int) -> dict[str, Any]:
    """An ``Added To Cart`` event's properties for a product of the demo shop."""
    return {"product_name": name, "product_image": f"https://shop.example/img/{image}.png",
            "price": price, "currency": "USD", "product_url": f"https://shop.example/p/{slug}"}


IPHONE = product("iPhone 14", "iphone-14", "iphone-14", 799)
#: A delivered message: (node, personalization event, workflow time after entry or None).
Expected = tuple[str, str | None, timedelta | None]


@dataclass
class Later:
    """An event the user sends ``at`` this much workflow time after entering."""

    at: timedelta
    name: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    title: str
    journey_id: str
    user: str
    profile: dict[str, Any]
    event: str
    properties: dict[str, Any] | Callable[[datetime], dict[str, Any]]  # or made at entry time
    later: list[Later] = field(default_factory=list)
    expect: list[Expected] = field(default_factory=list)  # every delivered message, in order
    expect_status: str = "finished"
    expect_local_time: str | None = None  # every send at this local time of day (date/time nodes)


def _flight(entered: datetime) -> dict[str, Any]:
    """A flight three days after entry (workflow time), at 14:30 in the user's timezone."""
    day = (entered.astimezone(ZoneInfo("America/Los_Angeles")) + timedelta(days=3)).date()
    return {"destination": "Lisbon", "departure_at": f"{day.isoformat()}T14:30",
            "booking_ref": "TK4821"}


def scenarios() -> list[Scenario]:
    h = timedelta(hours=1)
    push_then_email: list[Expected] = [("push-reminder", "Added To Cart", 15 * h),
                                       ("email-product", "Added To Cart", 30 * h)]
    return [
        Scenario("Abandoned cart: adds an iPhone 14 to the cart and does not buy",
                 "abandoned-cart", "alice", {"first_name": "Alice", "timezone": "Europe/Berlin"},
                 "Added To Cart", IPHONE,
                 expect=[("push-reminder", "Added To Cart", 1 * h),
                         ("push-followup", "Added To Cart", 5 * h),
                         ("email-product", "Added To Cart", 25 * h)]),
        Scenario("Abandoned cart: the same journey, but the user buys within the hour",
                 "abandoned-cart", "bob", {"first_name": "Bob", "timezone": "America/New_York"},
                 "Added To Cart", IPHONE,
                 later=[Later(timedelta(minutes=20), "Charged", {"amount": 799, "currency": "USD"})],
                 expect=[], expect_status="exited"),
        Scenario("Engagement nodes with 15-hour delays",
                 "delays-15h", "carol", {"first_name": "Carol", "timezone": "Asia/Kolkata"},
                 "Added To Cart", product("AirPods Pro", "airpods-pro", "airpods", 249),
                 expect=push_then_email),
        Scenario("A controller node (profile update) between two engagement nodes",
                 "controller-between", "dave", {"first_name": "Dave", "timezone": "Europe/London"},
                 "Added To Cart", product("MacBook Air", "macbook-air", "mba", 1199),
                 expect=push_then_email),
        Scenario("Two action nodes: a second event arrives mid-journey",
                 "two-action-nodes", "erin", {"first_name": "Erin", "timezone": "Australia/Sydney"},
                 "Viewed Product",
                 {"product_name": "Galaxy S24", "product_url": "https://shop.example/p/galaxy-s24",
                  "category": "phones"},
                 later=[Later(3 * h, "Added To Wishlist",
                              {"product_name": "Pixel 9", "price": 899,
                               "product_url": "https://shop.example/p/pixel-9"})],
                 expect=[("push-1", "Viewed Product", timedelta(0)),
                         ("push-2", "Viewed Product", timedelta(0)),
                         ("push-3", "Added To Wishlist", 3 * h),
                         ("email-4", "Added To Wishlist", 3 * h)]),
        Scenario("Date/time: the day before the flight, at 09:00 in the user's timezone",
                 "flight-reminder", "frank",
                 {"first_name": "Frank", "timezone": "America/Los_Angeles"},
                 "Flight Booked", _flight,
                 expect=[("push-tomorrow", "Flight Booked", None),
                         ("sms-tomorrow", "Flight Booked", None)],
                 expect_local_time="09:00"),
        Scenario("Inaction: signed up, did not complete the profile within a day",
                 "onboarding-inaction", "grace", {"first_name": "Grace", "timezone": "Europe/Paris"},
                 "Signed Up", {"plan": "premium", "referrer": "a-friend"},
                 expect=[("push-nudge", "Signed Up", 24 * h),
                         ("inbox-nudge", None, 24 * h)]),
    ]
