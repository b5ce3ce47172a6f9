"""What a person types and reads: JSON objects from the command line, a file or stdin, checked
against the limits before anything is written; and user data made safe to print on a terminal.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

from journeys.limits import MAX_DEPTH, MAX_EVENT_BYTES, LimitExceeded, check_properties
from journeys.problems import UsageError


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def strict_json(text: str | bytes) -> Any:
    """JSON as the standard has it: NaN and Infinity are refused (ValueError), as nothing
    downstream could send them; deep nesting raises RecursionError for the caller to word."""
    return json.loads(text, parse_constant=_refuse_constant)


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
