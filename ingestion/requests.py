"""What the HTTP API checks of a request before any of it is routed: who sends it (the write
key), from where (a page on another site may not use a key-less API), what it is (JSON, gzip or
not) and how much of it (bytes on the wire and inflated, and how long it takes to come).

Every refusal is a :class:`Refused` with its status and a reason that says what is wrong with
the request, in the API's JSON answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import zlib
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request

from journeys.inputs import BadText, check_keys, strict_json
from journeys.language.limits import brief

#: A request's body, as Segment's tracking API limits a batch: inflated, and as sent.
MAX_BODY_BYTES = 500 * 1024
#: The first bytes of every gzip member.
GZIP_MAGIC = b"\x1f\x8b"
#: Content-Encoding values read as gzip (RFC 9110 keeps ``x-gzip`` as its alias).
GZIP = ("gzip", "x-gzip")


class Refused(Exception):
    """The request as a whole is refused: its status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def authorize(request: Request, write_key: str | None) -> None:
    """Segment's auth: basic, the write key as user name, the password empty (not checked)."""
    if not write_key:  # loopback only (check_bind): this machine's own users
        return
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:  # a header with non-ASCII (Latin-1 on the wire) is no base64: a ValueError too
        user = base64.b64decode(encoded, validate=True).decode().partition(":")[0]
    except (binascii.Error, ValueError):
        user = ""
    if scheme.lower() != "basic" or not secrets.compare_digest(user.encode(), write_key.encode()):
        raise Refused(401, "missing or wrong write key (HTTP basic auth, the key as user name)")


def check_sender(request: Request, write_key: str | None) -> None:
    """JSON only (415): a browser sends ``text/plain`` and form types to any site without asking,
    JSON only after a CORS preflight that this API never grants. Without a write key, also no
    request from a page of another site (403), by its ``Sec-Fetch-Site`` or ``Origin``."""
    if not write_key:
        site = request.headers.get("sec-fetch-site", "").strip().lower()
        if site in ("cross-site", "same-site"):
            raise Refused(403, f"a {site} request from a browser: without a write key the API "
                               "takes requests from this machine's own programs only")
        origin = request.headers.get("origin")
        if origin is not None and not _own_origin(origin, request.headers.get("host", "")):
            raise Refused(403, "Origin is another site's: without a write key the API takes "
                               "requests from this machine's own programs only")
    given = request.headers.get("content-type", "")
    if given.partition(";")[0].strip().lower() != "application/json":
        shown = repr(given[:60]) if given else "none"
        raise Refused(415, f"Content-Type {shown}: send application/json")


def _own_origin(origin: str, host: str) -> bool:
    """Is ``origin`` this server as the request reached it (scheme://host[:port] = Host)?"""
    parts = urlsplit(origin.strip())
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()


async def read_body(request: Request, seconds: float) -> bytes:
    """The body, refused as soon as it is over the limit as sent or inflated (413), or slower
    than ``seconds`` (408). gzip is undone in one pass (linear in the bytes sent): one member
    only, nothing after it (400), and no other encoding (415)."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", *GZIP):
        raise Refused(415, f"Content-Encoding {encoding[:40]!r} is not supported: send gzip or "
                           "no encoding")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, f"the body is over the limit of {MAX_BODY_BYTES} bytes")
    inflate = zlib.decompressobj(wbits=31) if encoding in GZIP else None
    chunks: list[bytes] = []
    sent = size = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                if not chunk:
                    continue
                sent += len(chunk)
                if sent > MAX_BODY_BYTES:
                    raise Refused(413, f"the body is over the limit of {MAX_BODY_BYTES} bytes as sent")
                if inflate is not None:
                    chunk = _inflate(inflate, chunk, MAX_BODY_BYTES + 1 - size, first=sent == len(chunk))
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise Refused(413, f"the body is over the limit of {MAX_BODY_BYTES} bytes "
                                       "once inflated")
                chunks.append(chunk)
    except TimeoutError:
        raise Refused(408, f"the body did not arrive within {seconds:g} s") from None
    except ClientDisconnect:
        raise Refused(400, "the client closed the connection before the body's end") from None
    if inflate is not None and sent and not inflate.eof:
        raise Refused(400, "the gzip body is cut short (its member has no end)")
    return b"".join(chunks)


def _inflate(inflate: Any, chunk: bytes, room: int, first: bool) -> bytes:
    """One chunk of a gzip body inflated (at most ``room`` bytes); trailing bytes refused."""
    if inflate.eof:  # the member ended in an earlier chunk
        raise Refused(400, _after_member(chunk))
    if first and not chunk.startswith(GZIP_MAGIC[: len(chunk)]):
        raise Refused(400, "Content-Encoding says gzip, but the body is not gzip")
    try:
        out: bytes = inflate.decompress(chunk, room)
    except zlib.error as exc:
        raise Refused(400, f"the gzip body is damaged: {exc}") from None
    if inflate.unconsumed_tail:
        raise Refused(413, f"the body is over the limit of {MAX_BODY_BYTES} bytes once inflated")
    if inflate.eof and inflate.unused_data:
        raise Refused(400, _after_member(inflate.unused_data))
    return out


def _after_member(rest: bytes) -> str:
    if rest.startswith(GZIP_MAGIC):
        return "the gzip body holds a second member: send one gzip member"
    return "the gzip body has bytes after its end"


async def read_json(request: Request, seconds: float) -> dict[str, Any]:
    """The body (:func:`read_body`) as a JSON object (:func:`parse_json`)."""
    gzipped = request.headers.get("content-encoding", "").strip().lower() in GZIP
    return parse_json(await read_body(request, seconds), gzipped)


def parse_json(data: bytes, gzipped: bool = False) -> dict[str, Any]:
    """The body as a JSON object (a UTF-8 BOM is allowed); a key given twice at its top refuses
    it. Its items are checked each on its own (:func:`journeys.inputs.check_text`)."""
    if data.startswith(GZIP_MAGIC) and not gzipped:
        raise Refused(400, "the body is gzip: say so with Content-Encoding: gzip")
    try:
        body = strict_json(data, check=False)
    except RecursionError:
        raise Refused(400, "the body is nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise Refused(400, f"the body is not UTF-8: byte 0x{data[exc.start]:02x} at byte "
                           f"{exc.start + 1}") from None
    except ValueError as exc:
        raise Refused(400, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Refused(400, "the body is not a JSON object")
    try:  # its own keys only: an item's problems are that item's
        check_keys(body)
    except BadText as exc:
        raise Refused(400, brief(str(exc))) from None
    return body
