"""What a rendered message may not be: a header with a line break or a control character, a
link in an email that is no web link (javascript:, data:), a webhook URL that is not http(s), a
JSON webhook body that is not JSON. Such a message raises :class:`MessageRefused`: it is
recorded, not sent, and no retry can change that."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from journeys.language.models import Channel


class MessageRefused(Exception):
    """A rendered message that may not be sent: the field and the reason are in the message."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def is_json(content_type: str | None) -> bool:
    """Is a webhook body of this Content-Type JSON? (None, the default: yes.)"""
    media = (content_type or "").split(";")[0].strip().lower()
    return not media or media == "application/json" or media.endswith("+json")


def content_type(rendered: Mapping[str, str]) -> str | None:
    return next((v for k, v in rendered.items() if k.lower() == "headers.content-type"), None)


#: Control characters and line separators (all but tab): a header value must not hold any.
_LINE_BREAK = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
#: Attributes whose value a mail client follows or loads.
_URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "background", "poster",
                             "xlink:href", "data", "cite"})


def _scheme(url: str) -> str | None:
    """The scheme as a browser reads it: tabs and line breaks inside and spaces around ignored."""
    cleaned = re.sub(r"[\t\n\r]", "", url).strip("".join(map(chr, range(33))))
    match = _SCHEME.match(cleaned)
    return match[1].lower() if match else None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in _URL_ATTRIBUTES and value is not None:
                self.links.append((tag, name, value))


def check_message(channel: Channel, rendered: Mapping[str, str]) -> None:
    """Raise :class:`MessageRefused` if the rendered message may not be sent."""
    if channel == Channel.email and "html" in rendered:
        links = _Links()
        links.feed(rendered["html"])
        links.close()
        for tag, name, url in links.links:
            scheme = _scheme(url)
            if scheme is not None and scheme not in _LINK_SCHEMES:
                raise MessageRefused("html", f"<{tag} {name}> links to a '{scheme}:' URL: "
                                             "only http, https and mailto are sent")
    if channel != Channel.webhook:
        return
    for field, text in rendered.items():
        header = field in ("url", "method") or field.startswith("headers.")
        if header and (_LINE_BREAK.search(field) or _LINE_BREAK.search(text)):
            raise MessageRefused(field, "a line break or control character would corrupt a header")
    url = rendered.get("url", "")
    if urlsplit(url.strip()).scheme.lower() not in ("http", "https") or re.search(r"\s", url.strip()):
        raise MessageRefused("url", f"'{url[:80]}' is not an http(s) URL")
    body = rendered.get("body", "")
    if body.strip() and is_json(content_type(rendered)):
        try:
            json.loads(body, parse_constant=_no_constant)
        except ValueError as exc:
            raise MessageRefused("body", f"not JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
