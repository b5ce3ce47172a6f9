"""Catalog items in sent messages, end to end with real parts: a worker on the time-skipping
server sends email through the SMTP provider to an aiosmtpd server on loopback; the catalog is
kept current over ``serve``'s HTTP API (on uvicorn, behind the write key). The email shows the
item as it is when it leaves: a price changed during the journey's delay is the new price; an
item deleted meanwhile skips the email."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.providers.mailsink import LoopbackController
from journeys.language.models import Journey
from journeys.store.database import Store
from tests.helpers.mailed import mail_worker, public_api, smtp_sink
from tests.helpers.support import Harness
from tests.test_smtp import Recorder

QUEUE = "catalog-sends"
AUTH = ("key", "")
CART = Journey.model_validate({
    "id": "cart", "name": "Cart", "entry": "added", "reentry": "after_exit",
    "nodes": [
        {"id": "added", "type": "action", "event": "Added To Cart", "next": "wait"},
        {"id": "wait", "type": "delay", "duration": "1h", "next": "email"},
        {"id": "email", "type": "engagement", "channel": "email", "message": {
            "subject": "{{ catalog('products', event.product_id).name }} is still in your cart",
            "html": "{% set p = catalog('products', event.product_id) %}<h1>{{ p.name }}</h1>"
                    "<img src=\"{{ p.image }}\"><p>{{ '%.2f' | format(p.price) }} EUR</p>"
                    "<a href=\"{{ p.url }}\">Buy</a>"},
         "next": None}]})


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Recorder, LoopbackController]]:
    with smtp_sink() as sink:
        yield sink


@pytest.fixture(scope="module")
def api(env: WorkflowEnvironment, data_dir: Path) -> Iterator[str]:
    with public_api(env, data_dir, QUEUE, data_dir) as url:
        yield url


@pytest.fixture(scope="module")
async def journeys(env: WorkflowEnvironment, store: Store, api: str,
                   smtp: tuple[Recorder, LoopbackController]) -> AsyncIterator[Harness]:
    async with mail_worker(env, store, QUEUE, smtp[1], api):
        yield Harness(env, store, [CART], QUEUE)


async def test_the_email_shows_the_price_the_catalog_holds_when_it_leaves(
        journeys: Harness, api: str, smtp: tuple[Recorder, LoopbackController]) -> None:
    handler, _ = smtp
    journeys.store.update_profile("ada", {"email": "ada@example.com"})
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        put = await http.put("/v1/catalogs/products/items/p1", auth=AUTH, json={
            "name": "iPhone 15", "price": 799, "image": "https://shop.example/p1.png",
            "url": "https://shop.example/p1"})
        assert put.status_code == 200 and put.json() == {"success": True, "result": "added"}
        await journeys.send("ada", "Added To Cart", {"product_id": "p1"})
        # During the hour's delay, the price drops (a batch PATCH: the other fields are kept).
        patch = await http.patch("/v1/catalogs/products/items", auth=AUTH, json={
            "items": [{"id": "p1", "price": 699}, {"id": "p2", "name": "Case", "price": 19},
                      {"name": "no id"}]})
        assert patch.status_code == 200
        assert patch.json() == {"success": False, "added": 1, "changed": 1, "unchanged": 0, "refused": [
            {"index": 2, "reason": "no id: the key field is missing, empty or not text or a whole number"}]}
    state = await journeys.result("cart", "ada")
    assert [m.status for m in state.messages] == ["delivered"]
    _, email = handler.received[-1]
    assert email["Subject"] == "iPhone 15 is still in your cart"
    html = email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<p>699.00 EUR</p>" in html and "799" not in html
    assert '<img src="https://shop.example/p1.png">' in html
    [row] = journeys.store.outbox_list(user_id="ada", journey_id="cart")
    assert "699.00" in row.content["html"]


async def test_an_item_gone_when_the_email_leaves_skips_it(
        journeys: Harness, api: str, smtp: tuple[Recorder, LoopbackController]) -> None:
    handler, _ = smtp
    journeys.store.update_profile("bo", {"email": "bo@example.com"})
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        await http.put("/v1/catalogs/products/items/p7", auth=AUTH, json={"name": "Mug", "price": 5})
        await journeys.send("bo", "Added To Cart", {"product_id": "p7"})
        gone = await http.delete("/v1/catalogs/products/items/p7", auth=AUTH)
        assert gone.status_code == 200 and gone.json() == {"success": True, "deleted": True}
        assert (await http.delete("/v1/catalogs/products/items/p7", auth=AUTH)).status_code == 404
    sent = len(handler.received)
    state = await journeys.result("cart", "bo")
    assert [(m.status, m.reason) for m in state.messages] == [("skipped", "not sent: missing value")]
    [row] = journeys.store.outbox_list(user_id="bo", journey_id="cart")
    assert row.reason is not None and row.reason.startswith("not sent: missing value")
    assert row.reason.endswith("missing value 'catalog('products', 'p7').name' in subject (no default given)")
    assert len(handler.received) == sent


async def test_the_catalog_api_needs_the_write_key_and_refuses_bad_items(api: str) -> None:
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        no_key = await http.put("/v1/catalogs/products/items/p1", json={"name": "x"})
        assert no_key.status_code == 401
        assert (await http.delete("/v1/catalogs/products/items/p1")).status_code == 401
        not_object = await http.put("/v1/catalogs/products/items/p1", auth=AUTH, json=[1])
        assert not_object.status_code == 400
        too_big = await http.put("/v1/catalogs/products/items/p1", auth=AUTH, json={"a": "x" * 20_000})
        assert too_big.status_code == 400 and "over 16,384" in too_big.json()["errors"][0]["reason"]
        bad_name = await http.put("/v1/catalogs/bad%20name/items/p1", auth=AUTH, json={"a": 1})
        assert bad_name.status_code == 404
        empty = await http.patch("/v1/catalogs/products/items", auth=AUTH, json={"items": []})
        assert empty.status_code == 400
