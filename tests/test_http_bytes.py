"""The bytes at the HTTP API's door (issue 15, cases 3, 4 and 8, and the request minors): lone
surrogates refused per item, gzip bounded as sent and refused past its one member, other
encodings 415, a key-less API closed to other sites' pages, JSON only, ids typed, keys once.
Real parts: the dev server, the app on uvicorn (the guard's config) on loopback, raw sockets."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from ingestion.requests import MAX_BODY_BYTES
from journeys.settings import Settings
from journeys.store.database import Store
from tests.helpers.serving import serving
from tests.helpers.support import dev_server

QUEUE = "journeys-http-bytes"
KEY = "bytes-key"
JSON = {"Content-Type": "application/json"}
CUT = "\\ud83d"  # as JSON text: what JavaScript leaves of an emoji cut in two


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
def settings(env: WorkflowEnvironment, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Settings:
    folder = tmp_path_factory.mktemp("catalog")
    journey = {"id": "cart", "name": "cart", "entry": "in", "nodes": [
        {"id": "in", "type": "action", "event": "Added To Cart", "next": "wait"},
        {"id": "wait", "type": "delay", "duration": "1d"}]}
    (folder / "cart.yaml").write_text(yaml.safe_dump(journey))
    return Settings(TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
                    JOURNEYS_TASK_QUEUE=QUEUE, JOURNEYS_DATA_DIR=data_dir, JOURNEYS_DIR=folder,
                    JOURNEYS_WRITE_KEY=KEY)


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[str]:
    with serving(settings) as url:
        yield url


@pytest.fixture(scope="module")
def keyless(settings: Settings) -> Iterator[str]:
    with serving(settings.model_copy(update={"write_key": None})) as url:
        yield url


def _post(url: str, path: str, body: bytes | Any, key: str | None = KEY,
          headers: dict[str, Any] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}{path}", content=content, auth=(key, "") if key else None,
                      headers=JSON if headers is None else headers, timeout=30)


def _reasons(response: httpx.Response) -> list[tuple[int | None, str]]:
    return [(e.get("index"), e["reason"]) for e in response.json()["errors"]]


async def _started(env: WorkflowEnvironment, user: str) -> bool:
    try:
        await env.client.get_workflow_handle(f"journey/cart/{user}").describe()
    except RPCError:
        return False
    return True


# --- case 3: a lone surrogate is that item's 400, never a 500 -------------------------------

async def test_a_lone_surrogate_refuses_its_item_only(env: WorkflowEnvironment, api: str,
                                                      store: Store) -> None:
    items = [
        '{"type": "track", "userId": "s-ok-0", "event": "Added To Cart"}',
        '{"type": "track", "userId": "s-1", "event": "Added To Cart", "properties": {"t": "CUT"}}',
        '{"type": "track", "userId": "s-2", "event": "Added To Cart", "context": {"p": "CUT"}}',
        '{"type": "identify", "userId": "s-CUT", "traits": {"plan": "pro"}}',
        '{"type": "identify", "userId": "s-ok-4", "traits": {"plan": "pro"}}',
        '{"type": "track", "userId": "s-5", "event": "Added CUT", "messageId": "m-5"}',
        '{"type": "track", "userId": "s-6", "event": "Added To Cart", "messageId": "m-CUT"}',
        '{"type": "track", "userId": "s-ok-7", "event": "Added To Cart", "messageId": "m-7"}',
    ]
    items = [item.replace("CUT", CUT) for item in items]
    body = ('{"batch": [' + ", ".join(items) + "]}").encode()
    for _ in range(2):  # a client's retry gets the same answer (not a 500 every time)
        response = _post(api, "/v1/batch", body)
        assert response.status_code == 400, response.text
        reasons = _reasons(response)
        assert [index for index, _ in reasons] == [1, 2, 3, 5, 6]
        assert [reason.split(":")[0] for _, reason in reasons] == [
            "properties.t", "context.p", "userId", "event", "messageId"]
        assert all("lone UTF-16 surrogate \\ud83d" in reason for _, reason in reasons)
    assert await _started(env, "s-ok-0") and await _started(env, "s-ok-7")
    assert store.profile("s-ok-4") == {"plan": "pro"}
    for path, item in (("/v1/track", items[1]), ("/v1/track", items[2]), ("/v1/identify", items[3])):
        response = _post(api, path, item.encode())
        assert response.status_code == 400 and _reasons(response)[0][0] == 0, response.text


def test_a_bom_is_accepted_and_bytes_that_are_no_utf8_are_a_400(api: str) -> None:
    item = {"userId": "bom", "event": "Nothing Routes This"}
    assert _post(api, "/v1/track", b"\xef\xbb\xbf" + json.dumps(item).encode()).status_code == 200
    response = _post(api, "/v1/track", b'{"userId": "caf\xe9", "event": "X"}')
    assert response.status_code == 400 and "not UTF-8: byte 0xe9" in _reasons(response)[0][1]


# --- case 4: gzip ------------------------------------------------------------------------

def _gzip(body: bytes, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {**JSON, "Content-Encoding": "gzip", **(headers or {})}


# mtime=0 in the gzip members of parameters: the same bytes, so the same test ids, in every
# pytest-xdist worker (each collects them, and they must agree).
@pytest.mark.parametrize(("after", "says"), [
    (b"trailing bytes", "the gzip body has bytes after its end"),
    (b"\x00" * 10, "the gzip body has bytes after its end"),
    (gzip.compress(b'{"userId": "x"}', mtime=0), "the gzip body holds a second member: send one gzip member"),
])
def test_gzip_is_one_member_and_nothing_after_it(api: str, after: bytes, says: str) -> None:
    member = gzip.compress(json.dumps({"userId": "gz", "event": "Nothing Routes This"}).encode())
    assert _post(api, "/v1/track", member, headers=_gzip(member)).status_code == 200
    response = _post(api, "/v1/track", member + after, headers=_gzip(member))
    assert response.status_code == 400 and _reasons(response) == [(None, says)]


@pytest.mark.parametrize(("body", "encoding", "status", "says"), [
    (b'{"userId": "x"}', "gzip", 400, "Content-Encoding says gzip, but the body is not gzip"),
    (gzip.compress(b'{"userId": "x", "event": "Y"}', mtime=0)[:-6], "gzip", 400,
     "the gzip body is cut short"),
    (b"\x1f\x8b\x08\x00garbage-garbage-garbage", "gzip", 400, "the gzip body is damaged"),
    (gzip.compress(b'{"userId": "x"}', mtime=0), "", 400,
     "the body is gzip: say so with Content-Encoding: gzip"),
    (b'{"userId": "x"}', "deflate", 415, "Content-Encoding 'deflate' is not supported"),
    (b'{"userId": "x"}', "br", 415, "Content-Encoding 'br' is not supported"),
    (b'{"userId": "x"}', "zstd", 415, "Content-Encoding 'zstd' is not supported"),
    (b'{"userId": "x"}', "gzip, gzip", 415, "is not supported"),
])
def test_encodings_say_what_is_wrong(api: str, body: bytes, encoding: str, status: int,
                                     says: str) -> None:
    headers = {**JSON, "Content-Encoding": encoding} if encoding else JSON
    response = _post(api, "/v1/track", body, headers=headers)
    assert response.status_code == status and says in _reasons(response)[0][1], response.text


def _raw(url: str, head: bytes, chunks: Iterator[bytes]) -> bytes:
    """Send ``head`` and then chunks (chunked encoding) until the server answers; the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BlockingIOError, ConnectionError):
                break
        sock.settimeout(60)  # (blocking again, but never for ever)
        while b"\r\n\r\n" not in answer and (more := sock.recv(65536)):
            answer += more
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(body) < length and (more := sock.recv(65536)):
            body += more
        return head + b"\r\n\r\n" + body


@pytest.mark.parametrize(("first", "then", "says"), [
    # A valid member, then 100 MB of trailing bytes, chunked: refused at the first of them.
    (gzip.compress(b'{"userId": "t", "event": "X"}', mtime=0), b"\x00" * 65536, b"bytes after its end"),
    # A member that never ends and inflates to nothing (empty stored blocks): bounded as sent.
    (gzip.compress(b"", mtime=0)[:10], b"\x00\x00\x00\xff\xff" * 13000, b"as sent"),
])
def test_chunked_gzip_is_refused_once_its_bytes_say_so(api: str, first: bytes, then: bytes,
                                                       says: bytes) -> None:
    head = (b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
            b"Authorization: Basic %s\r\n\r\n" % base64.b64encode(f"{KEY}:".encode()))
    chunks = iter([first, *([then] * 1600)])  # 100 MB after the first
    answer = _raw(api, head, chunks)
    assert answer.split(b"\r\n")[0] in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 413 Request Entity Too Large")
    assert says in answer
    assert sum(1 for _ in chunks) > 1500  # it answered long before the 100 MB were sent


# --- case 8: a key-less API and other sites' pages ------------------------------------------

@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", None, "application/jsonx", "text/json"])
def test_only_json_is_taken(api: str, keyless: str, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = {"userId": "csrf", "event": "Added To Cart"}
    for url, key in ((keyless, None), (api, KEY)):  # with a key too: Segment's libraries send JSON
        response = _post(url, "/v1/track", body, key=key, headers=headers)
        assert response.status_code == 415, response.text
        assert "send application/json" in _reasons(response)[0][1]


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"}, {"Origin": "null"}, {"Origin": "http://127.0.0.1"},
    {"Origin": "http://localhost:1"}, {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "OWN"},
])
async def test_a_keyless_api_refuses_other_sites_pages(env: WorkflowEnvironment, api: str,
                                                       keyless: str, headers: dict[str, str]) -> None:
    user = f"csrf-{abs(hash(str(headers)))}"
    own = keyless.removeprefix("http://")
    headers = {k: (f"http://{own}" if v == "OWN" else v) for k, v in headers.items()}
    body = {"userId": user, "event": "Added To Cart"}
    response = _post(keyless, "/v1/track", body, key=None, headers={**JSON, **headers})
    assert response.status_code == 403, response.text
    assert "without a write key" in _reasons(response)[0][1]
    assert not await _started(env, user)
    # With a write key, the key is what counts (a page that holds it is the app's own).
    assert _post(api, "/v1/track", body, headers={**JSON, **headers}).status_code == 200


@pytest.mark.parametrize("headers", [
    {}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {"Origin": "OWN"}])
async def test_a_keyless_api_takes_this_machines_own_requests(
        env: WorkflowEnvironment, keyless: str, headers: dict[str, str]) -> None:
    user = f"own-{abs(hash(str(headers)))}"
    own = keyless.removeprefix("http://")
    headers = {k: (f"http://{own}" if v == "OWN" else v) for k, v in headers.items()}
    response = _post(keyless, "/v1/track", {"userId": user, "event": "Added To Cart"}, key=None,
                     headers={**JSON, **headers})
    assert response.status_code == 200, response.text
    assert await _started(env, user)


# --- minors: auth header bytes, ids, keys given twice --------------------------------------

@pytest.mark.parametrize("value", ["Basic \xe9t\xe9", "Basic Zm9v\xff", "B\xe4sic abc", "\xe9"])
def test_a_non_ascii_authorization_is_a_401(api: str, value: str) -> None:
    response = httpx.post(f"{api}/v1/track", content=b"{}", timeout=10,
                          headers={b"Content-Type": b"application/json",
                                   b"Authorization": value.encode("latin-1")})
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(("user", "says"), [
    (["a", "b"], "a list"), ({"id": 1}, "an object"), (True, "a boolean"), (1.5, "with a fraction"),
    (" ", "white space only")])
def test_an_id_that_is_no_string_or_whole_number_is_refused(api: str, user: Any, says: str) -> None:
    for path, item in (("/v1/track", {"userId": user, "event": "Added To Cart"}),
                       ("/v1/identify", {"userId": user, "traits": {}})):
        response = _post(api, path, item)
        assert response.status_code == 400 and says in _reasons(response)[0][1], response.text


async def test_a_whole_number_id_is_its_text(env: WorkflowEnvironment, api: str) -> None:
    assert _post(api, "/v1/track", {"userId": 4242, "event": "Added To Cart"}).status_code == 200
    assert await _started(env, "4242")


@pytest.mark.parametrize("value", [0, [], "x", True])
def test_properties_and_traits_are_objects(api: str, value: Any) -> None:
    response = _post(api, "/v1/batch", {"batch": [
        {"type": "track", "userId": "p", "event": "Nothing Routes This", "properties": value},
        {"type": "identify", "userId": "p", "traits": value}]})
    assert response.status_code == 400
    assert [reason.split(":")[0] for _, reason in _reasons(response)] == ["properties", "traits"]


@pytest.mark.parametrize(("body", "index", "says"), [
    (b'{"userId": "a", "userId": "b", "event": "X"}', None, "userId: the key is given twice"),
    (b'{"batch": [], "batch": [{"type": "track"}]}', None, "batch: the key is given twice"),
    (b'{"batch": [{"type": "track", "userId": "d", "event": "X", "properties": {"k": 1, "k": 2}}]}',
     0, "properties.k: the key is given twice"),
])
def test_a_key_given_twice_is_refused_by_its_name(api: str, body: bytes, index: int | None,
                                                  says: str) -> None:
    path = "/v1/batch" if b"batch" in body else "/v1/track"
    response = _post(api, path, body)
    assert response.status_code == 400 and _reasons(response) == [(index, says)], response.text


def test_a_body_over_the_limit_as_sent_is_a_413_whatever_it_inflates_to(api: str) -> None:
    noise = gzip.compress(os.urandom(MAX_BODY_BYTES + 1024))  # incompressible: larger as sent
    response = _post(api, "/v1/track", noise, headers=_gzip(noise))
    assert response.status_code == 413
