"""Signed links in messages: one-click unsubscribe, tracked clicks and opens.

A link's token is a Fernet token (``cryptography``: AES-128-CBC, then HMAC-SHA256 over it) of
what the link is bound to: its purpose, the user, the channel, the topic, the message (its
tracking id, journey and node) and, for a click, the URL the message was rendered with. It is
opaque (no address, id or URL can be read from it) and signed: a forged or altered token, or
one made with another secret, reads as nothing; a click only ever redirects to the URL bound
into its token. The secret is ``JOURNEYS_LINK_SECRET``, else one made once and kept in the
store (journeys.store.secrets), which every worker and API process sharing the store reads
alike. Tokens do not expire: an unsubscribe link works for good.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from cryptography.fernet import Fernet, InvalidToken

if TYPE_CHECKING:
    from journeys.store.database import Store

#: A token longer than this is no token of ours (a click's URL is at most 2,000 characters).
MAX_TOKEN = 4096
MAX_URL = 2000
UNSUBSCRIBE_PATH, CLICK_PATH, OPEN_PATH = "/u/", "/c/", "/o/"
Purpose = Literal["unsubscribe", "click", "open"]
_CODES: dict[Purpose, str] = {"unsubscribe": "u", "click": "c", "open": "o"}


@dataclass(frozen=True)
class Message:
    """Who and what a link of a message is for: ``message`` '' when the link is not one
    message's (an unsubscribe link made by hand); ``url`` a click's target."""

    user_id: str
    channel: str
    topic: str = ""
    message: str = ""  # tracking_id of the message's idempotency key
    journey_id: str = ""
    node_id: str = ""
    url: str = ""


class Links:
    """Makes and reads the tokens of links, under one secret, for one public address."""

    def __init__(self, secret: bytes, public_url: str) -> None:
        key = hashlib.sha256(b"journeys links 1\x00" + secret).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self.public_url = public_url.rstrip("/")

    def url(self, purpose: Purpose, bound: Message) -> str:
        """The link of ``purpose`` for ``bound``."""
        payload = {"p": _CODES[purpose], "u": bound.user_id, "c": bound.channel, "t": bound.topic,
                   "m": bound.message, "j": bound.journey_id, "n": bound.node_id, "l": bound.url}
        text = json.dumps({k: v for k, v in payload.items() if v != ""}, separators=(",", ":"))
        path = {"unsubscribe": UNSUBSCRIBE_PATH, "click": CLICK_PATH, "open": OPEN_PATH}[purpose]
        return f"{self.public_url}{path}{self._fernet.encrypt(text.encode()).decode()}"

    def unsubscribe_url(self, user_id: str, channel: str, topic: str = "") -> str:
        return self.url("unsubscribe", Message(user_id, channel, topic))

    def read(self, purpose: Purpose, token: str) -> Message | None:
        """What ``token`` is bound to, or None if it is no ``purpose`` token of this secret."""
        if len(token) > MAX_TOKEN:
            return None
        try:
            data = json.loads(self._fernet.decrypt(token.encode("ascii", "replace")))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(data, dict) or data.get("p") != _CODES[purpose]:
            return None
        fields = {name: data.get(code, "") for name, code in (
            ("user_id", "u"), ("channel", "c"), ("topic", "t"), ("message", "m"),
            ("journey_id", "j"), ("node_id", "n"), ("url", "l"))}
        if not all(isinstance(v, str) for v in fields.values()) or not fields["user_id"]:
            return None
        return Message(**fields)

    def read_unsubscribe(self, token: str) -> Message | None:
        return self.read("unsubscribe", token)

    def age(self, token: str) -> float:
        """Seconds since ``token`` was made (a token :meth:`read` accepted)."""
        made = self._fernet.extract_timestamp(token.encode("ascii", "replace"))
        return max(0.0, time.time() - made)


def links_of(store: Store, public_url: str, secret: str | None = None) -> Links:
    """The links of the processes that share ``store``: signed with ``secret``
    (JOURNEYS_LINK_SECRET), else with the store's own, made once."""
    from journeys.store.secrets import shared_secret

    return Links(secret.encode() if secret else shared_secret(store, "links"), public_url)


#: An http(s) link of an ``<a>`` (its quotes kept): the links a click is tracked through.
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""", re.IGNORECASE)


def tracked_html(text: str, links: Links, bound: Message, *, clicks: bool, opens: bool) -> str:
    """A rendered email's html with each http(s) link through a click link (bound to the URL
    it had) and a 1x1 image that counts an open. The message's own unsubscribe link stays."""
    own = links.public_url + UNSUBSCRIBE_PATH

    def through(match: re.Match[str]) -> str:
        url = html.unescape(match[3])
        if url.startswith(own) or len(url) > MAX_URL:
            return match[0]
        click = links.url("click", replace(bound, url=url))
        return f"{match[1]}{match[2]}{click}{match[2]}"

    if clicks:
        text = _HREF.sub(through, text)
    if opens:
        pixel = f'<img src="{links.url("open", bound)}" width="1" height="1" alt="">'
        at = text.lower().rfind("</body>")
        text = f"{text[:at]}{pixel}{text[at:]}" if at >= 0 else text + pixel
    return text
