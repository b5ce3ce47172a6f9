"""Segment's HTTP tracking API (``starter.py serve``), real parts only: the dev server, a worker,
the app on uvicorn on a loopback port, and httpx and Segment's own Python library as clients."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import segment.analytics as analytics
import uvicorn
import yaml
from temporalio.testing import WorkflowEnvironment

from ingestion.http_api import MAX_BODY_BYTES, create_app
from journeys.settings import Settings
from journeys.store import subscriptions
from journeys.store.database import Store
from tests.helpers.support import dev_server, free_port, run_cli

QUEUE = "journeys-http"
KEY = "test-write-key"


#: A journey the user stays in until they leave the park (case 6 of issue 15).
PARK = {"id": "park", "name": "park", "entry": "entered", "reentry": "after_exit",
        "exit_when": ["Park Exit"],
        "nodes": [{"id": "entered", "type": "action", "event": "Park Entered", "next": "stay"},
                  {"id": "stay", "type": "delay", "duration": "30d"}]}


def _journey(journey_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A journey that ends right after its sms."""
    return {"id": journey_id, "name": journey_id, "entry": "entered", "reentry": "after_exit",
            "nodes": [{"id": "entered", "next": "hello", **entry},
                      {"id": "hello", "type": "engagement", "channel": "sms",
                       "message": {"text": "Hi {{ profile.first_name | default('you') }}"}}]}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("catalog")
    journeys = [_journey("cart", {"type": "action", "event": "Added To Cart"}),
                _journey("renewal", {"type": "date_time", "profile_property": "renews_at"}),
                {**_journey("per-cart", {"type": "action", "event": "Cart Opened"}),
                 "entry_key": "cart_id", "events": {"Cart Opened": {"properties": ["cart_id"]}}},
                PARK]
    for journey in journeys:
        (folder / f"{journey['id']}.yaml").write_text(yaml.safe_dump(journey))
    return folder


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as environment:
        yield environment


@pytest.fixture(scope="module")
def api(env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> Iterator[str]:
    """The app on uvicorn in a thread of its own (its own event loop, its own Temporal client,
    made in its lifespan from the settings): its base URL."""
    settings = Settings(TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
                        JOURNEYS_TASK_QUEUE=QUEUE, JOURNEYS_DATA_DIR=data_dir,
                        JOURNEYS_WRITE_KEY=KEY, JOURNEYS_DIR=catalog)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):  # until it answers
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if not thread.is_alive():
            raise RuntimeError("the API did not start")
        threading.Event().wait(0.05)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


async def _post(url: str, path: str, body: Any, key: str = KEY, **options: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, auth=(key, ""), timeout=30) as http:
        if isinstance(body, bytes):
            headers = {"Content-Type": "application/json", **options.pop("headers", {})}
            return await http.post(path, content=body, headers=headers, **options)
        return await http.post(path, json=body, **options)


async def _finished(env: WorkflowEnvironment, journey: str, user: str) -> None:
    """The user entered the journey, and it ran to its end (the sms, then nothing)."""
    await asyncio.wait_for(env.client.get_workflow_handle(f"journey/{journey}/{user}").result(), 30)


async def test_track_and_identify_start_journeys(
        env: WorkflowEnvironment, api: str, store: Store, worker: None) -> None:
    response = await _post(api, "/v1/track", {
        "userId": "ada", "event": "Added To Cart", "properties": {"product_name": "iPhone 14"},
        "messageId": "m-ada-1", "timestamp": "2026-11-01T10:00:00Z",
        "context": {"library": {"name": "anything"}}})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    await _finished(env, "cart", "ada")
    # A past renewal moment (not a recurring date): the profile-date journey goes at once.
    response = await _post(api, "/v1/identify", {
        "userId": "bob", "traits": {"first_name": "Bob", "renews_at": "2020-01-01T00:00:00Z"}})
    assert response.status_code == 200, response.text
    await _finished(env, "renewal", "bob")
    assert store.profile("bob") == {"first_name": "Bob", "renews_at": "2020-01-01T00:00:00Z"}
    [sent] = store.outbox_list(user_id="bob")
    assert sent.status == "kept" and sent.content["text"] == "Hi Bob"


async def test_a_batch_routes_its_good_items_and_names_the_bad_one(
        env: WorkflowEnvironment, api: str, store: Store, worker: None) -> None:
    response = await _post(api, "/v1/batch", {"batch": [
        {"type": "identify", "userId": "cy", "traits": {"first_name": "Cy"}},
        {"type": "track", "userId": "cy", "properties": {"no": "event name"}},
        {"type": "track", "userId": "cy", "event": "Added To Cart", "messageId": "m-cy-1"},
        {"type": "page", "userId": "cy", "name": "Home"},
        {"type": "flush", "userId": "cy"},
    ]})
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert [e["index"] for e in body["errors"]] == [1, 4]
    assert "name" in body["errors"][0]["reason"] and "'flush'" in body["errors"][1]["reason"]
    assert [s["index"] for s in body["skipped"]] == [3]
    await _finished(env, "cart", "cy")
    [sent] = store.outbox_list(user_id="cy")
    assert sent.content["text"] == "Hi Cy"  # the identify before it was applied first


async def test_a_batch_routes_users_side_by_side_each_in_order(
        env: WorkflowEnvironment, api: str, store: Store, worker: None) -> None:
    users = [f"side-{i}" for i in range(30)]
    identifies = [{"type": "identify", "userId": u, "traits": {"first_name": u.title()}} for u in users]
    tracks = [{"type": "track", "userId": u, "event": "Added To Cart", "messageId": f"m-{u}"}
              for u in users]
    response = await _post(api, "/v1/batch", {"batch": [*identifies, *tracks]})
    assert response.status_code == 200, response.text
    for user in users:
        await _finished(env, "cart", user)
        [sent] = store.outbox_list(user_id=user)
        assert sent.content["text"] == f"Hi {user.title()}"  # each user's identify came first


async def test_the_same_message_id_twice_enters_once(
        env: WorkflowEnvironment, api: str, store: Store, worker: None) -> None:
    item = {"userId": "dee", "event": "Added To Cart", "messageId": "m-dee-1"}
    assert (await _post(api, "/v1/track", item)).status_code == 200
    await _finished(env, "cart", "dee")  # it ended: reentry after_exit would let dee in again ...
    assert (await _post(api, "/v1/batch", {"batch": [{"type": "track", **item}]})).status_code == 200
    runs = [w async for w in env.client.list_workflows("WorkflowId = 'journey/cart/dee'")]
    assert len(runs) == 1  # ... but not with the same event
    assert len(store.outbox_list(user_id="dee")) == 1


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
async def test_a_call_without_message_id_is_an_event_of_its_own(
        env: WorkflowEnvironment, api: str, store: Store, worker: None, path: str) -> None:
    """As Segment's libraries give each call a fresh id: a user who left the park and came back
    leaves again with the same body (a content id would have made it a duplicate)."""
    user = f"park-{path.rsplit('/', 1)[1]}"
    enter, leave = ({"userId": user, "event": name} for name in ("Park Entered", "Park Exit"))
    handle = env.client.get_workflow_handle(f"journey/park/{user}")
    for visit in range(2):
        for body in (enter, leave):
            sent = {"batch": [{"type": "track", **body}]} if path == "/v1/batch" else body
            assert (await _post(api, path, sent)).status_code == 200
        state = await asyncio.wait_for(handle.result(), 30)
        assert state["exit_reason"] == "exit event 'Park Exit'", visit
    runs = [w async for w in env.client.list_workflows(f"WorkflowId = 'journey/park/{user}'")]
    assert len(runs) == 2


async def test_calls_no_journey_follows_are_accepted_and_skipped(
        env: WorkflowEnvironment, api: str, store: Store, worker: None) -> None:
    """Segment's library sends page, screen, alias, group and anonymous calls in the same batch
    as identified ones: the batch is answered 200, the skipped items named, the rest routed."""
    response = await _post(api, "/v1/batch", {"batch": [
        {"type": "page", "userId": "gia", "name": "Home"},
        {"type": "screen", "userId": "gia", "name": "Cart"},
        {"type": "alias", "userId": "gia", "previousId": "anon-1"},
        {"type": "group", "userId": "gia", "groupId": "g-1"},
        {"type": "track", "anonymousId": "anon-1", "event": "Added To Cart"},
        {"type": "identify", "anonymousId": "anon-1", "traits": {"first_name": "Anon"}},
        {"type": "track", "userId": "gia", "event": "Added To Cart", "messageId": "m-gia"},
    ]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and [s["index"] for s in body["skipped"]] == [0, 1, 2, 3, 4, 5]
    await _finished(env, "cart", "gia")
    response = await _post(api, "/v1/track", {"anonymousId": "anon-2", "event": "Added To Cart"})
    assert response.status_code == 200 and response.json()["skipped"][0]["index"] == 0


async def test_a_400_says_what_is_wrong_in_the_request_only(api: str) -> None:
    """The write key is public in client apps: no journey id, no internal error in a 400."""
    response = await _post(api, "/v1/batch", {"batch": [
        {"type": "track", "userId": "hal", "event": "Cart Opened", "messageId": "m-hal-1"},
        {"type": "track", "userId": "hal", "event": "Cart Opened", "properties": {"cart_id": [1]}},
    ]})
    assert response.status_code == 400
    assert [e["reason"] for e in response.json()["errors"]] == [
        "properties.cart_id: missing (the key of a journey 'Cart Opened' starts): nothing was started",
        "properties.cart_id is list: a key is a text or a number"]
    assert "per-cart" not in response.text and "journey/" not in response.text


async def test_a_wrong_or_missing_key_is_401(api: str) -> None:
    item = {"userId": "mal", "event": "Added To Cart"}
    response = await _post(api, "/v1/track", item, key="not-the-key")
    assert response.status_code == 401 and response.json()["success"] is False
    assert response.headers["www-authenticate"].startswith("Basic")
    async with httpx.AsyncClient(base_url=api) as http:
        assert (await http.post("/v1/batch", json={"batch": [item]})).status_code == 401
        assert (await http.get("/health")).status_code == 200  # no key needed
        assert (await http.get("/openapi.json")).json()["paths"].keys() >= {"/v1/track", "/v1/batch"}
        assert (await http.get("/docs")).status_code == 200


async def test_a_user_unsubscribed_through_the_api_gets_no_marketing_sms(
        env: WorkflowEnvironment, api: str, store: Store, worker: None) -> None:
    change = {"userId": "sid", "channel": "sms", "subscribed": False}
    response = await _post(api, "/v1/subscriptions", change)
    assert (response.status_code, response.json()) == (200, {"success": True, "changed": True})
    response = await _post(api, "/v1/subscriptions", change)  # so already: nothing written
    assert response.json() == {"success": True, "changed": False}
    response = await _post(api, "/v1/track", {"userId": "sid", "event": "Added To Cart"})
    assert response.status_code == 200, response.text
    await _finished(env, "cart", "sid")
    [sms] = store.outbox_list(user_id="sid")
    assert (sms.status, sms.reason) == ("unsubscribed", "not sent: unsubscribed from sms")
    [audit] = subscriptions.changes(store, "sid")
    assert (audit.how, audit.source) == ("api", "api 127.0.0.1")
    # Refused: a wrong channel or topic, an unknown field (400, naming it); no key (401).
    for body, says in (({**change, "channel": "fax"}, "channel: Input should be"),
                       ({**change, "topic": "Big News"}, "topic: String should match"),
                       ({**change, "extra": 1}, "extra: Extra inputs are not permitted")):
        response = await _post(api, "/v1/subscriptions", body)
        assert response.status_code == 400 and says in response.json()["errors"][0]["reason"]
    assert (await _post(api, "/v1/subscriptions", change, key="not-the-key")).status_code == 401
    assert len(subscriptions.changes(store, "sid")) == 1


async def test_a_body_over_500_kb_is_413(api: str) -> None:
    items = [{"type": "track", "userId": f"big{i}", "event": "Nothing", "properties": {"s": "x" * 1000}}
             for i in range(600)]
    body = json.dumps({"batch": items}).encode()
    assert len(body) > MAX_BODY_BYTES
    assert (await _post(api, "/v1/batch", body)).status_code == 413
    # Compressed, it is small on the wire, and still too large once inflated.
    squeezed = gzip.compress(body)
    assert len(squeezed) < MAX_BODY_BYTES
    response = await _post(api, "/v1/batch", squeezed, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    # A body that is not JSON is a 400.
    response = await _post(api, "/v1/batch", b"{not json")
    assert response.status_code == 400 and "not JSON" in response.json()["errors"][0]["reason"]


async def test_segments_own_client(env: WorkflowEnvironment, api: str, store: Store, worker: None) -> None:
    analytics.write_key = KEY
    analytics.host = api
    analytics.sync_mode = True
    analytics.gzip = True  # as a client that saves bandwidth sends it
    try:  # in sync mode each call posts a batch of one, and raises if it is not a 2xx
        await asyncio.to_thread(analytics.identify, "fay", {"first_name": "Fay"})
        await asyncio.to_thread(analytics.track, "fay", "Added To Cart", {"product_name": "Pixel"})
    finally:
        analytics.default_client = None
    await _finished(env, "cart", "fay")
    [sent] = store.outbox_list(user_id="fay")
    assert sent.content["text"] == "Hi Fay"


def test_serve_without_a_write_key_binds_only_loopback(
        env: WorkflowEnvironment, data_dir: Path, catalog: Path) -> None:
    done = run_cli(env, data_dir, QUEUE, "serve", "--host", "0.0.0.0", "--journeys", str(catalog),
                   JOURNEYS_WRITE_KEY="")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "--host 0.0.0.0: set JOURNEYS_WRITE_KEY to serve the API beyond this machine "
        "(without it, only 127.0.0.1, ::1, localhost)"]
