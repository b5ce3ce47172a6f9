"""Catalogs (issue 19, part 1) below the worker: the store on SQLite and PostgreSQL, the files
``catalog import`` reads, ``catalog()`` in a message (one query for every item it names), and
the validator's checks of declared catalogs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

from journeys.items import read_items
from journeys.language.models import Channel
from journeys.personalization.lookups import MAX_LOOKUPS
from journeys.personalization.personalize import MissingValue, TemplateError, render_message
from journeys.store import catalogs
from journeys.store.database import Store
from journeys.validation.validate import validate_paths
from tests.helpers.postgres import store_on
from tests.helpers.support import ROOT


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with store_on(request.param, tmp_path, "journeys_catalogs") as made:
        yield made


def test_items_are_added_replaced_merged_looked_up_and_deleted(store: Store) -> None:
    first = catalogs.put(store, "products", {"p1": {"name": "iPhone", "price": 799},
                                             "p2": {"name": "Case", "price": 19.5}})
    assert (first.added, first.changed, first.unchanged) == (2, 0, 0)
    again = catalogs.put(store, "products", {"p1": {"name": "iPhone", "price": 799}, "p3": {"name": "Pen"}})
    assert (again.added, again.changed, again.unchanged) == (1, 0, 1)
    merged = catalogs.put(store, "products", {"p1": {"price": 699}}, merge=True)
    assert merged.changed == 1
    catalogs.put(store, "stores", {"p1": {"city": "Paris"}})  # another catalog, the same id
    found = catalogs.lookup(store, [("products", "p1"), ("products", "nope"), ("stores", "p1")])
    assert found == {("products", "p1"): {"name": "iPhone", "price": 699},
                     ("stores", "p1"): {"city": "Paris"}}
    replaced = catalogs.put(store, "products", {"p1": {"name": "iPhone 15"}})  # no merge: replaced
    assert replaced.changed == 1
    assert catalogs.lookup(store, [("products", "p1")])[("products", "p1")] == {"name": "iPhone 15"}
    assert [(c.catalog, c.items) for c in catalogs.catalogs(store)] == [("products", 3), ("stores", 1)]
    assert [i for i, _, _ in catalogs.items(store, "products", after="p1", limit=1)] == ["p2"]
    assert catalogs.remove(store, "products", "p2") and not catalogs.remove(store, "products", "p2")
    assert catalogs.lookup(store, [("products", "p2")]) == {}


def test_a_lookup_of_many_keys_is_answered_whole(store: Store) -> None:
    catalogs.put(store, "products", {f"p{i}": {"n": i} for i in range(1200)})
    found = catalogs.lookup(store, [("products", f"p{i}") for i in range(0, 1300, 1)])
    assert len(found) == 1200 and found[("products", "p1199")] == {"n": 1199}


@pytest.mark.parametrize(("item_id", "item", "why"), [
    ("", {}, "no id"), (True, {}, "no id"), ("x" * 201, {}, "over 200"), ("p", [1], "not an object"),
    ("p", {"a": "x" * catalogs.MAX_ITEM_BYTES}, "bytes of JSON"), ("p", {"a": float("nan")}, "not JSON")])
def test_an_item_past_the_bounds_is_refused_with_why(item_id: Any, item: Any, why: str) -> None:
    with pytest.raises(catalogs.ItemRefused, match=why):
        catalogs.check_item(item_id, item)


def test_a_merge_that_grows_an_item_past_the_bound_is_refused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/journeys.db")
    half = "x" * (catalogs.MAX_ITEM_BYTES // 2 + 10)
    catalogs.put(store, "products", {"p1": {"a": half}})
    written = catalogs.put(store, "products", {"p1": {"b": half}}, merge=True)
    assert written.changed == 0 and "over" in written.refused[0]
    assert catalogs.lookup(store, [("products", "p1")])[("products", "p1")] == {"a": half}


def test_csv_json_and_ndjson_give_their_items_and_say_why_rows_are_refused(tmp_path: Path) -> None:
    csv_file = tmp_path / "products.csv"
    csv_file.write_text("sku,name,price,in_stock\np1,iPhone,799.00,true\np2,Case,abc,yes\n,Pen,1,no\n"
                        "p4,Cable,9,maybe\np5,Mug,4.5,\n")
    rows = list(read_items(csv_file, "sku", {"price": "number", "in_stock": "boolean"}))
    assert [(r.where, r.item_id, r.refused) for r in rows] == [
        ("line 2", "p1", None), ("line 3", None, "'abc' is not a number"),
        ("line 4", None, "no 'sku' (the key field)"), ("line 5", None, "'maybe' is not true or false"),
        ("line 6", "p5", None)]
    assert rows[0].item == {"sku": "p1", "name": "iPhone", "price": 799.0, "in_stock": True}
    assert rows[4].item == {"sku": "p5", "name": "Mug", "price": 4.5}  # an empty cell: no field
    json_file = tmp_path / "products.json"
    json_file.write_text(json.dumps([{"id": 7, "name": "Seven"}, "eight"]))
    assert [(r.item_id, r.refused) for r in read_items(json_file, "id")] == [
        (7, None), (None, "not an object")]
    ndjson = tmp_path / "products.ndjson"
    ndjson.write_text('{"id": "a"}\n\n{oops\n{"name": "no id"}\n')
    assert [(r.where, r.refused) for r in read_items(ndjson, "id")] == [
        ("line 1", None), ("line 3", "not JSON: Expecting property name enclosed in double quotes: "
                                     "line 1 column 2 (char 1)"), ("line 4", "no 'id' (the key field)")]
    with pytest.raises(ValueError, match="no 'id' column"):
        list(read_items(csv_file, "id"))


class Counting:
    """A fetch that answers from ``items`` and counts its queries."""

    def __init__(self, items: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.items, self.queries = items, list[list[tuple[str, str]]]()

    def __call__(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        self.queries.append(list(keys))
        return {k: self.items[k] for k in keys if k in self.items}


PRODUCTS = {("products", "p1"): {"name": "iPhone", "price": 799.0},
            ("products", "p2"): {"name": "Case", "price": 19.5},
            ("products", "p3"): {"name": "Pen", "price": 2.0}}


def test_a_message_naming_several_items_reads_them_in_one_query() -> None:
    fetch = Counting(PRODUCTS)
    message = {
        "subject": "{{ catalog('products', event.product_id).name }} and more",
        "html": "{% for id in event.ids %}<p>{{ catalog('products', id).name }}: "
                "{{ '%.2f' | format(catalog('products', id).price * 0.9) }}</p>{% endfor %}",
        "text": "{% set p = catalog('products', event.product_id) %}{{ p.name }} {{ p.price | round(1) }}"}
    rendered = render_message(Channel.email, message, {}, {"product_id": "p1", "ids": ["p2", "p3"]},
                              items=fetch)
    assert rendered == {"subject": "iPhone and more", "html": "<p>Case: 17.55</p><p>Pen: 1.80</p>",
                        "text": "iPhone 799.0"}
    assert fetch.queries == [[("products", "p1"), ("products", "p2"), ("products", "p3")]]


def test_a_message_without_catalog_reads_nothing() -> None:
    fetch = Counting(PRODUCTS)
    assert render_message(Channel.push, {"body": "Hi {{ event.n }}"}, {}, {"n": 1}, items=fetch)
    assert fetch.queries == []


def test_a_missing_item_is_a_missing_value_and_default_applies() -> None:
    fetch = Counting(PRODUCTS)
    with pytest.raises(MissingValue) as missing:
        render_message(Channel.push, {"body": "{{ catalog('products', event.id).name }}"}, {},
                       {"id": "gone"}, items=fetch)
    assert missing.value.variable == "catalog('products', 'gone').name" and missing.value.field == "body"
    body = "{{ catalog('products', 'gone').name | default('our pick') }}"
    assert render_message(Channel.push, {"body": body}, {}, None, items=fetch) == {"body": "our pick"}
    with pytest.raises(MissingValue, match=r"event\.id"):  # no id in the event: the id is missing
        render_message(Channel.push, {"body": "{{ catalog('products', event.id).name }}"}, {}, {},
                       items=fetch)


def test_lookups_per_message_are_bounded() -> None:
    many = {("products", str(i)): {"n": i} for i in range(MAX_LOOKUPS + 5)}
    body = "{% for i in event.ids %}{{ catalog('products', i).n }}{% endfor %}"
    fetch = Counting(many)
    with pytest.raises(TemplateError, match=f"more than {MAX_LOOKUPS} catalog items"):
        render_message(Channel.push, {"body": body}, {}, {"ids": list(range(MAX_LOOKUPS + 5))}, items=fetch)
    assert len(fetch.queries) == 1 and len(fetch.queries[0]) == MAX_LOOKUPS
    with pytest.raises(TemplateError, match="catalog's name"):
        render_message(Channel.push, {"body": "{{ catalog('products', [1]).n }}"}, {}, None,
                       items=Counting(many))


def test_the_validator_checks_declared_catalogs_and_refuses_catalog_outside_messages(tmp_path: Path) -> None:
    (tmp_path / "event-catalog.yaml").write_text(
        "events:\n  Added To Cart: {properties: [product_id]}\n"
        "catalogs:\n  products: {fields: {name: string, price: number}}\n")
    (tmp_path / "cart.yaml").write_text("""id: cart
name: Cart
entry: added
nodes:
  - {id: added, type: action, event: Added To Cart, next: push}
  - id: push
    type: engagement
    channel: push
    message: {body: "{{ catalog('products', event.product_id).name }} {{ catalog('product', 1).name }}
      {{ catalog('products', event.product_id)['colour'] }} {{ catalog(event.product_id, 1) }}"}
    next: split
  - id: split
    type: split
    branches: [{when: "catalog('products', event.product_id).price > 1", next: set}]
    otherwise: set
  - {id: set, type: profile_update, set: {last: "{{ catalog('products', event.product_id).name }}"}}
""")
    [(_, problems)] = validate_paths([tmp_path / "cart.yaml"])
    found = sorted((p.node, p.field, p.code) for p in problems)
    body = ("push", "message.body")
    assert found == [(*body, "unknown-catalog"), (*body, "unknown-catalog"), (*body, "unknown-catalog-field"),
                     ("set", "set.last", "unknown-variable"),
                     ("split", "branches[0].when", "unknown-variable")]


def test_catalog_import_upserts_and_counts_what_it_refused(tmp_path: Path) -> None:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "event-catalog.yaml").write_text(
        "catalogs:\n  products: {fields: {price: number}}\n")
    file = tmp_path / "products.csv"
    file.write_text("id,name,price\np1,iPhone,799\np2,Case,19.5\np3,Bad,n/a\n")
    env = {"PATH": "/usr/bin:/bin", "JOURNEYS_DATA_DIR": str(tmp_path / "data"),
           "JOURNEYS_DIR": str(tmp_path / "journeys")}

    def starter(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "starter.py", "catalog", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    first = starter("import", "products", str(file), "--key", "id")
    assert first.returncode == 1, first.stderr  # a row was refused
    assert first.stdout.splitlines() == ["products: 2 added, 0 changed, 0 unchanged, 1 refused",
                                         "  refused line 4: 'n/a' is not a number"]
    file.write_text("id,name,price\np1,iPhone,699\np2,Case,19.5\n")
    second = starter("import", "products", str(file), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == {"catalog": "products", "added": 0, "changed": 1, "unchanged": 1,
                                         "refused": []}
    listed = starter("list")
    assert listed.stdout.startswith("products") and "2 item(s)" in listed.stdout
    shown = starter("show", "products", "p1")
    assert json.loads(shown.stdout) == {"id": "p1", "name": "iPhone", "price": 699.0}
    missing = starter("show", "products", "p9")
    assert missing.returncode == 2 and "has no item 'p9'" in missing.stderr
    bad = starter("import", "bad name!", str(file))
    assert bad.returncode == 2 and "letters, digits" in bad.stderr


def test_variant_stats_are_counted_by_the_database(store: Store) -> None:
    """journeys.funnel.variants' queries, on SQLite and PostgreSQL: distinct users per variant
    delivered, opened (a person's), clicked and converted (outside the control group)."""
    from journeys.funnel.variants import variant_stats
    from journeys.language.models import EngagementNode, Journey
    from journeys.store import engagements, outcomes, variants
    from journeys.store.database import OutboxRow

    journey = Journey.model_validate({
        "id": "t", "name": "T", "entry": "e", "goals": ["Charged"], "nodes": [
            {"id": "e", "type": "action", "event": "E", "next": "p"},
            {"id": "p", "type": "engagement", "channel": "push", "variants": [
                {"name": "a", "message": {"body": "a"}}, {"name": "b", "message": {"body": "b"}}]}]})
    node = journey.node("p")
    assert isinstance(node, EngagementNode)
    plan = {"u1": ("a", "delivered"), "u2": ("a", "delivered"), "u3": ("a", "failed"),
            "u4": ("b", "delivered"), "u5": ("b", "kept"), "u6": ("b", "held_out")}
    for user, (variant, status) in plan.items():
        row = OutboxRow(idempotency_key=f"k-{user}", journey_id="t", user_id=user, workflow_id=f"w-{user}",
                        node_id="p", channel="push", status="pending", variant=variant, locale="default")
        store.outbox_claim(row)
        store.outbox_finish(row.idempotency_key, status)  # type: ignore[arg-type]
    engagements.record(store, "m1", "opened", journey_id="t", node_id="p", user_id="u1", channel="push")
    engagements.record(store, "m2", "opened", journey_id="t", node_id="p", user_id="u2", channel="push",
                       machine=True)
    engagements.record(store, "m4", "clicked", journey_id="t", node_id="p", user_id="u4", channel="push")
    for user, held in (("u1", False), ("u4", False), ("u5", False), ("u6", True)):
        outcomes.record(store, outcomes.Outcome(journey_id="t", run_key=f"r-{user}", kind="converted",
                                                user_id=user, workflow_id=f"w-{user}", held_out=held))
    variants.set_winner(store, journey, "p", "b")
    found = variant_stats(store, journey, node)
    assert found.winner == "b"
    got = {v.name: (v.sent, v.delivered, v.opened, v.clicked, v.converted) for v in found.variants}
    assert got == {"a": (3, 2, 1, 0, 1), "b": (2, 2, 0, 1, 2)}
    a, b = found.variants
    assert a.rate == 0.5 and b.rate == 1.0 and a.best is not None and b.best is not None and b.best > a.best


def test_a_csv_row_shorter_than_the_header_has_no_fields_for_its_missing_cells(tmp_path: Path) -> None:
    file = tmp_path / "short.csv"
    file.write_text("id,name,price\np1,Mug\np2\n,Pen\n")
    rows = list(read_items(file, "id", {"price": "number"}))
    assert [(r.item_id, r.item, r.refused) for r in rows] == [
        ("p1", {"id": "p1", "name": "Mug"}, None), ("p2", {"id": "p2"}, None),
        (None, None, "no 'id' (the key field)")]
