"""Signed links in messages: one-click unsubscribe.

A link's token is a Fernet token (``cryptography``: AES-128-CBC, then HMAC-SHA256 over it) of
what the link is bound to: its purpose, the user, the channel and the topic. It is opaque (no
address, id or name can be read from it) and signed: a forged or altered token, or one made
with another secret, reads as nothing. The secret is ``JOURNEYS_LINK_SECRET``, else one made
once and kept in the store (journeys.store.secrets), which every worker and API process that
shares the store reads alike. Tokens do not expire: an unsubscribe link works for good.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken

if TYPE_CHECKING:
    from journeys.store.database import Store

#: A token longer than this is no token of ours (a user id is at most 200 characters).
MAX_TOKEN = 1024
UNSUBSCRIBE_PATH = "/u/"


@dataclass(frozen=True)
class Unsubscribe:
    """What an unsubscribe link is bound to: the user, the channel, and the topic ('': all)."""

    user_id: str
    channel: str
    topic: str = ""


class Links:
    """Makes and reads the tokens of links, under one secret, for one public address."""

    def __init__(self, secret: bytes, public_url: str) -> None:
        key = hashlib.sha256(b"journeys links 1\x00" + secret).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self.public_url = public_url.rstrip("/")

    def unsubscribe_url(self, user_id: str, channel: str, topic: str = "") -> str:
        payload = json.dumps({"p": "u", "u": user_id, "c": channel, "t": topic}, separators=(",", ":"))
        token = self._fernet.encrypt(payload.encode()).decode()
        return f"{self.public_url}{UNSUBSCRIBE_PATH}{token}"

    def read_unsubscribe(self, token: str) -> Unsubscribe | None:
        """What ``token`` unsubscribes, or None if it is not an unsubscribe token of this secret."""
        if len(token) > MAX_TOKEN:
            return None
        try:
            data = json.loads(self._fernet.decrypt(token.encode("ascii", "replace")))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(data, dict) or data.get("p") != "u":
            return None
        user, channel, topic = data.get("u"), data.get("c"), data.get("t", "")
        if isinstance(user, str) and isinstance(channel, str) and isinstance(topic, str):
            return Unsubscribe(user, channel, topic)
        return None


def links_of(store: Store, public_url: str, secret: str | None = None) -> Links:
    """The links of the processes that share ``store``: signed with ``secret``
    (JOURNEYS_LINK_SECRET), else with the store's own, made once."""
    from journeys.store.secrets import shared_secret

    return Links(secret.encode() if secret else shared_secret(store, "links"), public_url)
