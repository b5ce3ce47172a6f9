"""Small builders for journey documents in tests: chains of nodes and the validator's answer."""

from __future__ import annotations

from typing import Any

from journeys.language.loader import load_catalog, load_document
from journeys.language.models import EventSchema
from journeys.validation.validate import validate_loaded
from tests.helpers.support import EXAMPLES

CATALOG, CATALOG_PROBLEMS = load_catalog(EXAMPLES)


def chain(*nodes: dict[str, Any]) -> list[dict[str, Any]]:
    """Link each node to the one after it, unless it says where it goes."""
    linked = []
    for node, after in zip(nodes, [*nodes[1:], None], strict=True):
        node = dict(node)
        if after is not None and node.get("type") not in ("split", "intellinode", "exit"):
            node.setdefault("next", after.get("id"))
        linked.append(node)
    return linked


def journey(*nodes: dict[str, Any], extra: list[dict[str, Any]] | None = None,
            **fields: Any) -> dict[str, Any]:
    linked = chain(*nodes) + (extra or [])
    return {"id": "t", "name": "Test", "entry": linked[0]["id"], "nodes": linked, **fields}


def action(node_id: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "action", "event": event, **fields}


def delay(node_id: str, duration: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "delay", "duration": duration, **fields}


def send(node_id: str, text: str, channel: str = "push", **fields: Any) -> dict[str, Any]:
    message = {"push": {"body": text}, "sms": {"text": text}, "email": {"subject": text, "text": "hi"},
               "in_app": {"body": text}, "web_popup": {"body": text}, "app_inbox": {"body": text}}
    return {"id": node_id, "type": "engagement", "channel": channel,
            "message": message[channel], **fields}


def profile_date(node_id: str, prop: str = "birthday") -> dict[str, Any]:
    return {"id": node_id, "type": "date_time", "profile_property": prop}


def check(doc: dict[str, Any], schemas: bool = True) -> list[tuple[str, str | None, str | None]]:
    catalog: dict[str, EventSchema] = CATALOG if schemas else {}
    return [(p.code, p.node, p.field) for p in validate_loaded(load_document(doc, "t.yaml", catalog))]


def merge(use: str) -> dict[str, Any]:
    """Two paths, each through its own action node, meet at one message."""
    return journey(
        action("entered", "Signed Up"),
        {"id": "by-plan", "type": "split", "otherwise": "wishlisted",
         "branches": [{"when": "event.plan == 'pro'", "next": "viewed"}]},
        extra=[
            action("viewed", "Viewed Product", within="6h", next="push-merged"),
            action("wishlisted", "Added To Wishlist", within="6h", next="push-merged"),
            send("push-merged", use),
        ],
    )
