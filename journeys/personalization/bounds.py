"""What templates may make, in size and time: the accounting behind the sandbox.

Sizes of what multiplies (``*``, ``**``, ``%``, ``format``, widths and counts of filters and
string methods) are worked out *before* the operation runs, so nothing over MAX_TEMPLATE_VALUE
is ever allocated; a per-thread deadline bounds the render's CPU time (MAX_RENDER_SECONDS).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2.sandbox import SandboxedFormatter
from markupsafe import EscapeFormatter

from journeys.language.limits import MAX_MESSAGE_BYTES, MAX_RENDER_SECONDS, MAX_TEMPLATE_VALUE, LimitExceeded


class Measured:
    """A container of user data whose size was counted once, when it was made."""

    size: int = 0


#: The longest a whole field may render to: the largest message any channel takes.
MAX_RENDER_OUTPUT = max(MAX_MESSAGE_BYTES.values())


class TemplateLimit(LimitExceeded):
    """A template went over MAX_TEMPLATE_VALUE, MAX_RENDER_SECONDS or the output's limit."""


class OutputTooLong(TemplateLimit):
    """The rendered text of a field passed the length it was allowed."""


# --- time ----------------------------------------------------------------------------------

clock = threading.local()  # the deadline of the render running in this thread


def start_clock(seconds: float = MAX_RENDER_SECONDS) -> float | None:
    """Start this thread's render deadline; returns the previous one for :func:`stop_clock`.

    The deadline is in the thread's own CPU time: a template's work is bounded, not the
    machine's load. (On wall time, a busy worker's first render in a locale, which loads its
    data, went past 1 s while waiting for the CPU, and its message was skipped.)"""
    previous: float | None = getattr(clock, "deadline", None)
    clock.deadline = time.thread_time() + seconds
    return previous


def stop_clock(previous: float | None) -> None:
    clock.deadline = previous


def tick() -> None:
    """Called at every loop turn, macro call and filter: past the deadline, stop the render."""
    deadline = getattr(clock, "deadline", None)
    if deadline is not None and time.thread_time() > deadline:
        raise TemplateLimit(f"took longer than {MAX_RENDER_SECONDS:g} s to render")


# --- size ----------------------------------------------------------------------------------

def size(value: Any, limit: int = MAX_TEMPLATE_VALUE) -> int:
    """A value's size as if flattened: characters, list items, bits of an int. Shared items
    count each time (printing ``[s, s]`` writes ``s`` twice); stops counting past ``limit``."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, bool | float) or item is None:
            total += 1
        elif isinstance(item, int):
            total += max(item.bit_length(), 1)
        elif isinstance(item, Measured):
            total += item.size
        elif isinstance(item, Mapping):
            total += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            stack.extend(item)
        else:
            total += 1
    return total


def refuse(what: str, amount: int | float, limit: int = MAX_TEMPLATE_VALUE) -> None:
    if amount > limit:
        raise TemplateLimit(f"{what} would be {amount:,.0f} long, over the limit of {limit:,}")


def bounded(value: Any) -> Any:
    """``value`` if it is within MAX_TEMPLATE_VALUE; an iterator is read into a list (bounded)."""
    if isinstance(value, Iterator):
        return materialize(value)
    refuse("a value", size(value))
    return value


def materialize(items: Iterator[Any]) -> list[Any]:
    """Read a lazy result (``map``, ``batch``...) into a list, stopping at the limit."""
    out: list[Any] = []
    total = 0
    for item in items:
        tick()
        total += 1 + size(item)
        refuse("a list", total)
        out.append(item)
    return out


# --- what each multiplying operation would make, before it runs ---------------------------------

_PRINTF = re.compile(r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?"
                     r"[hlL]?(?P<conv>[diouxXeEfFgGcrsa%])")


def printf_size(template: str, args: Any) -> int:
    """An upper bound of ``template % args``: the text, every width, every value printed."""
    positional = list(args) if isinstance(args, tuple) else [args]
    mapping = args if isinstance(args, Mapping) else None
    total, index = len(template), 0

    def take() -> Any:
        nonlocal index
        index += 1
        return positional[index - 1] if index <= len(positional) else 0

    for spec in _PRINTF.finditer(template):
        if spec["conv"] == "%":
            continue
        for part in ("width", "prec"):
            number = spec[part]
            star = take() if number == "*" else None
            total += abs(star) if isinstance(star, int) else int(number or 0)
        value = mapping.get(spec["key"]) if mapping is not None and spec["key"] else take()
        total += 64 + 4 * size(value)  # repr() may quadruple a text; numbers print short
    return total


def _format_spec_width(spec: str) -> int:
    """Width plus precision of a ``format()`` spec such as ``>20.3f`` (nested fields resolved)."""
    return sum(int(n) for n in re.findall(r"\d+", spec.split(",")[0].split("_")[0]))


class BoundedFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox, refusing a field or a total over the limit before it is made."""

    def __init__(self, env: Any, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self.total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        tick()
        refuse("a formatted field", _format_spec_width(format_spec) + size(value))
        text = super().format_field(value, format_spec)
        self.total += len(text)
        refuse("a formatted text", self.total)
        return text


class BoundedEscapeFormatter(BoundedFormatter, EscapeFormatter):
    """The same for ``Markup.format``: values are escaped, then bounded."""


def mul_size(left: Any, right: Any) -> int:
    if isinstance(left, int) and isinstance(right, int):
        return size(left) + size(right)
    if isinstance(left, int):
        left, right = right, left
    return size(left) * right if isinstance(right, int) and not isinstance(left, float) else 0


def pow_size(base: Any, exponent: Any) -> int:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        return base.bit_length() * exponent
    return 0


def _replace_size(s: Any, old: Any, new: Any, count: Any = -1) -> int:
    kind = str if isinstance(s, str) else bytes
    if not (isinstance(s, str | bytes) and isinstance(old, kind) and isinstance(new, kind)):
        return 0
    text: Any = s
    found = len(s) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(s) + found * max(len(new) - len(old), 0)


def _join_size(sep: Any, items: Any) -> int:
    if not isinstance(items, list | tuple):
        return 0
    return size(items) + len(items) * len(str(sep))


def _lines(s: Any) -> int:
    return s.count("\n") + 1 if isinstance(s, str) else 1


def _width(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _sum_numbers(value: Any, attribute: Any = None, start: Any = 0) -> int:
    if not isinstance(start, int | float):
        raise TypeError("sum adds numbers")  # adding lists is quadratic
    return 0


#: Checks run before a filter: (value, args, kwargs) -> the size it would make.
FILTER_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda value, width=80: _width(width),
    "indent": lambda s, width=4, *a, **k: (
        len(str(s)) + _lines(s) * (_width(width) or len(str(width)))),
    "wordwrap": lambda s, width=79, blw=True, wrapstring=None, *a, **k: (
        len(str(s)) + (len(str(s)) // max(_width(width), 1) + _lines(s))
        * len(wrapstring if isinstance(wrapstring, str) else "\n")),
    "batch": lambda value, linecount, fill_with=None: _width(linecount),
    "slice": lambda value, slices, fill_with=None: _width(slices),
    "round": lambda value, precision=0, method="common": abs(_width(precision)),
    "replace": lambda s, old, new, count=None: _replace_size(s, old, new, -1 if count is None else count),
    "join": lambda value, d="", attribute=None: _join_size(d, value),
    "format": lambda value, *args, **kwargs: (
        printf_size(str(value), kwargs or args) if isinstance(value, str) else 0),
    "sum": _sum_numbers,
}

#: Checks run before a method of a text, bytes or int: (self, args, kwargs) -> the size it would make.
METHOD_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda s, width, *a: _width(width),
    "ljust": lambda s, width, *a: _width(width),
    "rjust": lambda s, width, *a: _width(width),
    "zfill": lambda s, width: _width(width),
    "expandtabs": lambda s, tabsize=8: len(s) + s.count("\t" if isinstance(s, str) else b"\t")
    * max(_width(tabsize), 0),
    "replace": _replace_size,
    "join": lambda s, items: _join_size(s, items),
    "to_bytes": lambda n, length=1, *a, **k: _width(length),
}
#: Methods no template needs and whose output size cannot be told in advance.
REFUSED_METHODS = frozenset({"translate", "maketrans"})
