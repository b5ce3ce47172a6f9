"""``catalog('products', event.product_id)`` in templates: an item of a catalog, looked up when
the message is rendered (at send time), so that it shows the item as it is then.

The items a message names are found first by a dry render of its fields, in which ``catalog()``
records the ids asked and answers anything (:class:`_Probe`); then fetched in one query; then
the message is rendered for real from them. An item named only after something the dry render
cannot follow (an id read from another item) is fetched when the real render asks for it. At
most :data:`MAX_LOOKUPS` items a message. A missing item is a missing value: the message is
skipped, unless a ``default`` applies (``catalog('products', id).price | default('')``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from jinja2 import nodes

from journeys.personalization.sandbox import PLAIN, Missing, Scope

#: Items one message may look up (each a row to read while the send waits).
MAX_LOOKUPS = 50
#: The name templates call.
FUNCTION = "catalog"

Key = tuple[str, str]
#: How items are fetched: (catalog, id) pairs -> the items that exist (journeys.store.catalogs.lookup).
Fetch = Callable[[Collection[Key]], Mapping[Key, Mapping[str, Any]]]


def calls_catalog(source: str) -> bool:
    """Does a template call ``catalog()``? (Most do not: they render once, as before.)"""
    if FUNCTION not in source:
        return False
    try:
        tree = PLAIN.parse(source)
    except Exception:
        return False
    return any(isinstance(c.node, nodes.Name) and c.node.name == FUNCTION
               for c in tree.find_all(nodes.Call))


def _label(catalog: str, item_id: str) -> str:
    return f"catalog('{catalog}', '{item_id}')"


class MissingItem(Missing):
    """An item the catalog lacks: reading a field of it is a missing value too (so that
    ``| default`` applies to ``catalog('products', id).price``)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return Missing(name=f"{self._undefined_name}.{name}")

    def __getitem__(self, key: Any) -> Any:
        return Missing(name=f"{self._undefined_name}.{key}")


class Lookups:
    """The ``catalog`` of one message's render: fetched items, cached for this render only."""

    def __init__(self, fetch: Fetch | None) -> None:
        self.fetch = fetch
        self.items: dict[Key, Mapping[str, Any] | None] = {}
        self.queries = 0

    def prefetch(self, keys: Collection[Key]) -> None:
        wanted = [k for k in dict.fromkeys(keys) if k not in self.items][:MAX_LOOKUPS - len(self.items)]
        if wanted:
            found = self._fetch(wanted)
            self.items.update({k: found.get(k) for k in wanted})

    def _fetch(self, keys: Collection[Key]) -> Mapping[Key, Mapping[str, Any]]:
        if self.fetch is None:
            return {}
        self.queries += 1
        return self.fetch(keys)

    def __call__(self, catalog: Any, item_id: Any) -> Any:
        key = _key(catalog, item_id)
        if key not in self.items:
            if len(self.items) >= MAX_LOOKUPS:
                raise ValueError(f"more than {MAX_LOOKUPS} catalog items in one message")
            self.items[key] = self._fetch([key]).get(key)
        item = self.items[key]
        if item is None:
            return MissingItem(name=_label(*key))
        return Scope(_label(*key), item)


def _key(catalog: Any, item_id: Any) -> Key:
    if isinstance(catalog, Missing):
        catalog._fail_with_undefined_error()
    if isinstance(item_id, Missing):
        item_id._fail_with_undefined_error()  # catalog('products', event.product_id) without one
    if not isinstance(catalog, str) or isinstance(item_id, bool) or not isinstance(item_id, str | int):
        raise TypeError("catalog() takes a catalog's name and an item's id (text or a whole number)")
    return catalog, str(item_id)


class Recorder:
    """The ``catalog`` of the dry render: records the ids asked, answers a :class:`_Probe`."""

    def __init__(self, known: Lookups) -> None:
        self.known, self.asked = known, list[Key]()

    def __call__(self, catalog: Any, item_id: Any) -> Any:
        key = _key(catalog, item_id)
        if key in self.known.items:
            return self.known(*key)
        self.asked.append(key)
        return _Probe()


def _self(self: _Probe, *args: Any) -> _Probe:
    return self


class _Probe(str):
    """What an item is in the dry render: any field of it, any arithmetic on it, prints as
    nothing. Only the ids asked matter there."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self

    __getitem__ = __call__ = _self
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _self
    __truediv__ = __rtruediv__ = __floordiv__ = __mod__ = __rmod__ = __pow__ = _self
    __neg__ = __pos__ = __abs__ = __round__ = _self

    def __float__(self) -> float:
        return 0.0

    def __int__(self) -> int:
        return 0

    def __format__(self, spec: str) -> str:
        return ""
