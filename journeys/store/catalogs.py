"""Catalogs: items keyed by id (products, stores, offers), each a JSON object of at most
:data:`MAX_ITEM_BYTES`, in the table ``catalog_items``. Written by ``starter.py catalog import``
and the HTTP API (ingestion.catalogs_api), read by ``catalog('products', id)`` in templates when
a message is sent (:func:`lookup`: one query for every item a message names), so that a message
shows the item as it is when it leaves, not when its event came.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update

from journeys.store.database import Store
from journeys.store.tables import catalog_items

#: An item's JSON, at most: what a template may read of one item (a product's fields, not its
#: reviews). Larger ones are refused with the reason.
MAX_ITEM_BYTES = 16_384
MAX_ID = 200
NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
#: Keys per query (SQLite binds at most 32,766 values; two a key).
CHUNK = 500

Key = tuple[str, str]


class ItemRefused(ValueError):
    """An item that may not be stored; the message says why."""


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ItemRefused(f"catalog name '{name[:100]}': letters, digits, '_' and '-' only, "
                          "1 to 100 of them")
    return name


def check_item(item_id: Any, item: Any) -> tuple[str, dict[str, Any]]:
    """The item's id as text and the item, or :class:`ItemRefused` naming what is wrong."""
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int)) or str(item_id).strip() == "":
        raise ItemRefused("no id: the key field is missing, empty or not text or a whole number")
    key = str(item_id)
    if len(key) > MAX_ID:
        raise ItemRefused(f"id of {len(key)} characters, over {MAX_ID}")
    if not isinstance(item, dict):
        raise ItemRefused(f"item '{key}' is not an object")
    try:
        size = len(json.dumps(item, ensure_ascii=False, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise ItemRefused(f"item '{key}' is not JSON: {exc}") from None
    if size > MAX_ITEM_BYTES:
        raise ItemRefused(f"item '{key}' is {size:,} bytes of JSON, over {MAX_ITEM_BYTES:,}")
    return key, item


@dataclass
class Written:
    """What a write did: items added, changed, unchanged, and the refused with why."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)

    def plus(self, other: Written) -> Written:
        return Written(self.added + other.added, self.changed + other.changed,
                       self.unchanged + other.unchanged, self.refused + other.refused)


def put(store: Store, catalog: str, items: Mapping[str, dict[str, Any]], *,
        merge: bool = False) -> Written:
    """Store ``items`` (id -> item, checked already) in ``catalog``: each replaces the item of
    its id, or with ``merge`` updates only the fields it has. One transaction per CHUNK items."""
    check_name(catalog)
    written = Written()
    ids = list(items)
    now = datetime.now(UTC)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        with store.engine.begin() as conn:
            rows = conn.execute(select(catalog_items.c.item_id, catalog_items.c.item).where(
                catalog_items.c.catalog == catalog, catalog_items.c.item_id.in_(chunk)))
            known: dict[str, dict[str, Any]] = {i: item for i, item in rows}
            new: list[dict[str, Any]] = []
            changed: list[dict[str, Any]] = []
            for item_id in chunk:
                item = {**known[item_id], **items[item_id]} if merge and item_id in known else items[item_id]
                if merge and item_id in known and item != items[item_id]:
                    try:
                        check_item(item_id, item)  # merged, it may have grown past the bound
                    except ItemRefused as exc:
                        written.refused.append(str(exc))
                        continue
                if item_id not in known:
                    new.append({"catalog": catalog, "item_id": item_id, "item": item, "updated_at": now})
                elif known[item_id] != item:
                    changed.append({"k": item_id, "v": item, "at": now})
                else:
                    written.unchanged += 1
            if new:
                conn.execute(insert(catalog_items), new)
            if changed:
                conn.execute(update(catalog_items).where(
                    catalog_items.c.catalog == catalog,
                    catalog_items.c.item_id == bindparam("k")).values(
                    item=bindparam("v", type_=catalog_items.c.item.type),
                    updated_at=bindparam("at", type_=catalog_items.c.updated_at.type)), changed)
            written.added += len(new)
            written.changed += len(changed)
    return written


def remove(store: Store, catalog: str, item_id: str) -> bool:
    """Delete one item; False if there was none."""
    with store.engine.begin() as conn:
        gone = conn.execute(delete(catalog_items).where(catalog_items.c.catalog == catalog,
                                                        catalog_items.c.item_id == item_id))
    return bool(gone.rowcount)


def lookup(store: Store, keys: Collection[Key]) -> dict[Key, dict[str, Any]]:
    """The items of ``keys`` ((catalog, id) pairs) that exist: one query (per CHUNK keys)."""
    found: dict[Key, dict[str, Any]] = {}
    wanted = list(dict.fromkeys(keys))
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), CHUNK):
            rows = conn.execute(select(catalog_items.c.catalog, catalog_items.c.item_id,
                                       catalog_items.c.item).where(
                tuple_(catalog_items.c.catalog, catalog_items.c.item_id).in_(wanted[start:start + CHUNK])))
            found.update({(c, i): item for c, i, item in rows})
    return found


@dataclass(frozen=True)
class Listed:
    catalog: str
    items: int
    updated_at: datetime


def catalogs(store: Store) -> list[Listed]:
    """Every catalog: its items and its last change."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(catalog_items.c.catalog, func.count(),
                                   func.max(catalog_items.c.updated_at))
                            .group_by(catalog_items.c.catalog).order_by(catalog_items.c.catalog))
        return [Listed(c, int(n), _moment(at)) for c, n, at in rows]


def items(store: Store, catalog: str, *, after: str | None = None,
          limit: int = 100) -> list[tuple[str, dict[str, Any], datetime]]:
    """A page of ``catalog``'s items by id, after ``after``: (id, item, updated at)."""
    query = select(catalog_items.c.item_id, catalog_items.c.item, catalog_items.c.updated_at).where(
        catalog_items.c.catalog == catalog)
    if after is not None:
        query = query.where(catalog_items.c.item_id > after)
    with store.engine.connect() as conn:
        return [(i, item, at) for i, item, at in
                conn.execute(query.order_by(catalog_items.c.item_id).limit(limit))]


def _moment(at: Any) -> datetime:
    # max() of a Moment column comes back as the database gives it (text on SQLite)
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at if at.tzinfo else at.replace(tzinfo=UTC)

