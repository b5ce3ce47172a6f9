"""What a person types and reads: JSON objects from the command line, a file or stdin, checked
against the limits before anything is written; and user data made safe to print on a terminal.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

from journeys.language.limits import MAX_DEPTH, MAX_EVENT_BYTES, LimitExceeded, check_properties
from journeys.language.problems import UsageError


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


class BadText(ValueError):
    """A JSON value no journey can carry as it is: a lone UTF-16 surrogate (what JavaScript leaves
    when it cuts an emoji in two: no UTF-8 can hold it, so the store, Temporal and every log
    would fail on it), or a key given twice (which value was meant?)."""


class _Twice(dict[str, Any]):
    """An object that named a key twice (``duplicate``): refused where it is checked."""

    duplicate = ""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    twice, seen = _Twice(value), set()
    for key, _ in pairs:
        if key in seen:
            twice.duplicate = key
            break
        seen.add(key)
    return twice


def strict_json(text: str | bytes, *, check: bool = True) -> Any:
    """JSON as the standard has it: NaN and Infinity are refused (ValueError), as nothing
    downstream could send them; deep nesting raises RecursionError for the caller to word.

    A duplicate key or a lone surrogate raises :class:`BadText` (a ValueError), unless ``check``
    is False: then each part of the value (an item of a batch) is checked with
    :func:`check_text` on its own, and a bad item does not refuse its neighbours."""
    value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_object)
    if check:
        check_text(value)
    return value


def check_text(value: Any, where: str = "") -> None:
    """Raise :class:`BadText` naming the first lone surrogate or twice-given key in ``value``
    (its path, ``properties.title``); walks iteratively, in time linear in the value."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            _no_surrogate(item, path or "the value")
        elif isinstance(item, dict):
            for key in item:
                _no_surrogate(key, f"a key in {path}" if path else "a key")
            if isinstance(item, _Twice):
                raise BadText(f"{_at(path, item.duplicate)}: the key is given twice")
            stack.extend((child, _at(path, key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))


def check_keys(value: dict[str, Any]) -> None:
    """Only the object's own keys (not its values'): none twice, each valid Unicode."""
    for key in value:
        _no_surrogate(key, "a key")
    if isinstance(value, _Twice):
        raise BadText(f"{value.duplicate}: the key is given twice")


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _no_surrogate(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise BadText(f"{path}: a lone UTF-16 surrogate \\u{code:04x} at character {exc.start} "
                      f"(half of an emoji cut in two?): not valid Unicode") from None


def json_object(text: str | None, what: str, max_bytes: int = MAX_EVENT_BYTES) -> dict[str, Any]:
    """A JSON object from the command line, ``@file`` or ``-`` (stdin), checked against the limits.

    Strict JSON: NaN and Infinity are refused (nothing downstream could send them as such).
    """
    if not text:
        return {}
    if text == "-" or text.startswith("@"):
        source = "standard input" if text == "-" else text[1:]
        try:
            # Pretty JSON may take more room than compact, but not 16 times as much.
            if text == "-":
                text = sys.stdin.read(16 * max_bytes + 1)
            else:
                with Path(text[1:]).open(encoding="utf-8") as file:
                    text = file.read(16 * max_bytes + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{what}: cannot read {source}: {exc}") from None
        if len(text) > 16 * max_bytes:
            raise UsageError(f"{what}: {source} is over {16 * max_bytes} characters")
    try:
        value = strict_json(text)
    except RecursionError:
        raise UsageError(f"{what} nest deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError too
        raise UsageError(f"{what}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what}: give a JSON object, e.g. '{{\"name\": \"value\"}}'")
    try:
        check_properties(value, what, max_bytes)
    except LimitExceeded as exc:
        raise UsageError(str(exc)) from None
    return value


#: Unicode categories a terminal does not show as themselves: controls (C0, DEL, C1), format
#: characters (bidi embeddings, overrides and isolates, zero-width spaces and joiners, the BOM,
#: the soft hyphen), line and paragraph separators, and lone surrogates (which cannot be encoded).
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def printable(value: object) -> str:
    """A value from data (an id, a key, a subject, a reason) as one line of a terminal: every
    character that could hide, reorder or break the text around it shown as its escape
    (``ada\\u202egnp.exe``, ``line\\nbreak``, ``\\x1b``), so what is printed is what is stored."""
    text = str(value)
    if text.isprintable():  # the usual case: nothing to escape (isprintable is False for all _HIDDEN)
        return text
    return "".join(ch.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(ch) in _HIDDEN else ch for ch in text)


def shown(text: str) -> str:
    """Text made of lines on a terminal: each line as ``printable`` makes it (its line breaks
    kept), a last guard for output that did not escape each value itself."""
    return "\n".join(printable(line) for line in text.split("\n"))


def described(exc: BaseException) -> str:
    """An error in words that always name it: ``TimeoutError`` has no message of its own (it
    printed as ``()``); a server's error adds its status (``RPCError UNAVAILABLE: ...``)."""
    status = getattr(getattr(exc, "status", None), "name", None)  # an RPCError's status code
    name = type(exc).__name__ + (f" {status}" if isinstance(status, str) else "")
    text = str(exc)
    return printable(f"{name}: {text}" if text else name)
