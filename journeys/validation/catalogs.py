"""The rules of ``catalog('products', id)`` in messages: a catalog named in quotes, and, where
the journey or its folder declares catalogs (``catalogs:``), one of those and its items' fields
(as event properties are checked against event schemas). Only messages may look items up: a
split's ``when`` and a profile update's ``set`` are evaluated where no catalog is read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from jinja2 import nodes

from journeys.language.loader import catalogs_of
from journeys.language.models import CatalogSchema, EngagementNode, EventSchema, Journey
from journeys.personalization.lookups import FUNCTION, calls_catalog
from journeys.personalization.personalize import message_fields
from journeys.personalization.sandbox import PLAIN
from journeys.validation.rules import Finding


def catalog_rules(journey: Journey, catalog: dict[str, EventSchema]) -> Iterator[Finding]:
    declared = {**catalogs_of(catalog), **journey.catalogs}
    for node in journey.nodes:
        if not isinstance(node, EngagementNode):
            continue
        for path, message in node.versions():
            for field, source in message_fields(message):
                if calls_catalog(source):
                    for code, text in _calls(source, declared):
                        yield node.id, f"{path}.{field}", code, text


def _calls(source: str, declared: Mapping[str, CatalogSchema]) -> Iterator[tuple[str, str]]:
    try:
        tree = PLAIN.parse(source)
    except Exception:  # template-syntax says why
        return
    reads: dict[int, set[str]] = {}
    for read in tree.find_all(nodes.Getattr):
        reads.setdefault(id(read.node), set()).add(read.attr)
    for item in tree.find_all(nodes.Getitem):
        if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
            reads.setdefault(id(item.node), set()).add(item.arg.value)
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name == FUNCTION):
            continue
        first = call.args[0] if call.args else None
        if len(call.args) != 2 or call.kwargs or not (
                isinstance(first, nodes.Const) and isinstance(first.value, str)):
            yield ("unknown-catalog", "catalog() takes a catalog's name in quotes and an item's id: "
                                      "catalog('products', event.product_id)")
            continue
        name = first.value
        if not declared:
            continue  # no catalog declared: nothing to check names and fields against
        schema = declared.get(name)
        if schema is None:
            yield ("unknown-catalog", f"no catalog '{name}' is declared (catalogs: "
                                      f"{', '.join(sorted(declared))})")
            continue
        fields = schema.fields
        for attr in sorted(reads.get(id(call), set()) - fields.keys()):
            yield ("unknown-catalog-field", f"catalog '{name}' has no field '{attr}' (its fields: "
                                            f"{', '.join(sorted(fields)) or 'none'})")
