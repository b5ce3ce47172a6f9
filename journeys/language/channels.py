"""The channels a message goes out on, and what holds for sending on each: the fields of its
message, what can become of a send (the outcomes an engagement node branches on), quiet hours
and an email's tracking.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Channel(StrEnum):
    push = "push"
    email = "email"
    sms = "sms"
    whatsapp = "whatsapp"
    webhook = "webhook"
    web_push = "web_push"
    in_app = "in_app"
    web_popup = "web_popup"
    app_inbox = "app_inbox"


#: Online channels render while the user is in the app: no event personalization there.
ONLINE_CHANNELS = frozenset({Channel.in_app, Channel.web_popup, Channel.app_inbox})

#: Each channel's message fields: (required, optional).
CHANNEL_FIELDS: dict[Channel, tuple[frozenset[str], frozenset[str]]] = {
    Channel.push: (frozenset({"body"}), frozenset({"title", "image", "deep_link"})),
    Channel.email: (frozenset({"subject"}), frozenset({"html", "text"})),
    Channel.sms: (frozenset({"text"}), frozenset()),
    Channel.whatsapp: (frozenset({"text"}), frozenset()),
    Channel.webhook: (frozenset({"url"}), frozenset({"method", "headers", "body"})),
    Channel.web_push: (frozenset({"title", "body"}), frozenset({"url"})),
    Channel.in_app: (frozenset({"body"}), frozenset({"title", "buttons"})),
    Channel.web_popup: (frozenset({"body"}), frozenset({"title", "buttons"})),
    Channel.app_inbox: (frozenset({"body"}), frozenset({"title", "buttons"})),
}


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def check_time_of_day(value: str) -> str:
    if not _TIME_OF_DAY.fullmatch(value):
        raise ValueError(f"'{value}' is not a time of day: write HH:MM, e.g. '09:00'")
    return value


#: What can become of a message, each a possible ``on`` path of its engagement node.
OUTCOMES = ("delivered", "failed", "unreachable", "capped", "dropped_quiet_hours", "skipped",
            "unsubscribed")


class QuietHours(_Part):
    """A daily window, in the user's local time, in which messages are held or dropped."""

    start: str = Field(description="Local time of day the window opens, HH:MM (quote it in YAML).")
    end: str = Field(description="Local time of day it closes, HH:MM; before start: past midnight.")
    action: Literal["delay", "drop"] = Field(
        default="delay", description="delay: hold the message until the window ends; "
                                     "drop: record it dropped_quiet_hours and go on.")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 22:00 as the base-60 number 1320 (and 1:00:00 as 3600).
            example = f"{value // 60:02d}:{value % 60:02d}" if 0 <= value < 24 * 60 else "22:00"
            raise ValueError(f"{value} is a number: write the time in quotes, e.g. '{example}'")
        return check_time_of_day(value) if isinstance(value, str) else value


class Track(_Part):
    """What is tracked of an email: opens (a 1x1 image) and clicks (each link through a redirect)."""

    opens: bool = Field(default=True, description="Count opens (an image in the html).")
    clicks: bool = Field(default=True, description="Count clicks (each http(s) link redirects).")
