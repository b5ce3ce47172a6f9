"""Catalog items from a file: CSV (a header row; a column typed by the catalog's declared field
types: number, integer, boolean), JSON (an array of objects) or NDJSON (an object a line). Each
row gives its item, keyed by its ``key`` field, or why it is refused; one bad row refuses that
row only. What ``starter.py catalog import`` and ``preview --catalog`` read.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: A file to import, at most (a catalog of a million products is imported in parts, or over
#: the HTTP API's batches).
MAX_FILE_BYTES = 512 * 1024 * 1024
#: Declared field types a CSV cell is read as; any other type keeps the text.
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


@dataclass(frozen=True)
class Row:
    """One row of the file: where it is (``line 3``), and its id and item, or why not."""

    where: str
    item_id: Any = None
    item: dict[str, Any] | None = None
    refused: str | None = None


def read_items(path: str | Path, key: str, types: Mapping[str, str] | None = None) -> Iterator[Row]:
    """The rows of ``path`` (its suffix says the format: .csv, .json, else NDJSON)."""
    path = Path(path)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: over {MAX_FILE_BYTES // 2**20} MiB; import it in parts")
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv(text, key, types or {})
    elif suffix == ".json":
        yield from _json(text, key)
    else:
        yield from _ndjson(text, key)


def _keyed(where: str, item: Any, key: str) -> Row:
    if not isinstance(item, dict):
        return Row(where, refused="not an object")
    if item.get(key) in (None, ""):
        return Row(where, refused=f"no '{key}' (the key field)")
    return Row(where, item.get(key), item)


def _json(text: str, key: str) -> Iterator[Row]:
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(items, list):
        raise ValueError("a JSON file holds an array of items")
    for i, item in enumerate(items):
        yield _keyed(f"item {i}", item, key)


def _ndjson(text: str, key: str) -> Iterator[Row]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            yield Row(f"line {number}", refused=f"not JSON: {exc}")
            continue
        yield _keyed(f"line {number}", item, key)


def _csv(text: str, key: str, types: Mapping[str, str]) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or key not in reader.fieldnames:
        raise ValueError(f"the CSV header has no '{key}' column (columns: "
                         f"{', '.join(reader.fieldnames or []) or 'none'})")
    for row in reader:
        where = f"line {reader.line_num}"
        if None in row:
            yield Row(where, refused="more cells than the header has columns")
            continue
        try:
            item = {name: _cell(value, types.get(name, "string")) for name, value in row.items()
                    if value not in ("", None) or name == key}  # a short row: its missing cells are no fields
        except ValueError as exc:
            yield Row(where, refused=str(exc))
            continue
        yield _keyed(where, item, key)


def _cell(value: str, kind: str) -> Any:
    kind = kind.lower()
    try:
        if kind in {"number", "float"}:
            return float(value)
        if kind in {"integer", "int"}:
            return int(value)
    except ValueError:
        wanted = "an integer" if kind.startswith("int") else "a number"
        raise ValueError(f"'{value}' is not {wanted}") from None
    if kind in {"boolean", "bool"}:
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError(f"'{value}' is not true or false")
    return value
