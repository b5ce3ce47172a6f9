"""The template sandbox: Jinja's ``ImmutableSandboxedEnvironment`` bounded in size and time.

Every place a template makes a value (operators, ``~``, filters, calls, ``format``, output
buffers) is checked against MAX_TEMPLATE_VALUE; what multiplies (``*``, ``**``, ``%``, widths,
counts) is checked *before* it runs, so nothing that large is allocated. Loops, macros and
filters check MAX_RENDER_SECONDS. Nothing is constant-folded while compiling (validation).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import TemplateRuntimeError, UndefinedError
from jinja2.filters import FILTERS
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import _PassArg, htmlsafe_json_dumps, pass_context, pass_eval_context
from markupsafe import EscapeFormatter, Markup

from journeys.limits import MAX_MESSAGE_BYTES, MAX_RENDER_SECONDS, MAX_TEMPLATE_VALUE, LimitExceeded

#: The longest a whole field may render to: the largest message any channel takes.
MAX_RENDER_OUTPUT = max(MAX_MESSAGE_BYTES.values())


class TemplateLimit(LimitExceeded):
    """A template went over MAX_TEMPLATE_VALUE, MAX_RENDER_SECONDS or the output's limit."""


class OutputTooLong(TemplateLimit):
    """The rendered text of a field passed the length it was allowed."""


# --- time ----------------------------------------------------------------------------------

_state = threading.local()  # the deadline of the render running in this thread


def start_clock(seconds: float = MAX_RENDER_SECONDS) -> float | None:
    """Start this thread's render deadline; returns the previous one for :func:`stop_clock`."""
    previous: float | None = getattr(_state, "deadline", None)
    _state.deadline = time.monotonic() + seconds
    return previous


def stop_clock(previous: float | None) -> None:
    _state.deadline = previous


def tick() -> None:
    """Called at every loop turn, macro call and filter: past the deadline, stop the render."""
    deadline = getattr(_state, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
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
        elif isinstance(item, Scope | DataList):
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


class _Formatter(SandboxedFormatter):
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


class _EscapeFormatter(_Formatter, EscapeFormatter):
    """The same for ``Markup.format``: values are escaped, then bounded."""


def _mul_size(left: Any, right: Any) -> int:
    if isinstance(left, int) and isinstance(right, int):
        return size(left) + size(right)
    if isinstance(left, int):
        left, right = right, left
    return size(left) * right if isinstance(right, int) and not isinstance(left, float) else 0


def _pow_size(base: Any, exponent: Any) -> int:
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
_FILTER_SIZES: dict[str, Callable[..., int]] = {
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
_METHOD_SIZES: dict[str, Callable[..., int]] = {
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
_REFUSED_METHODS = frozenset({"translate", "maketrans"})


# --- the values templates see ----------------------------------------------------------------

class _UndefinedName(UndefinedError):
    """Raised by :class:`Missing`; its message is the dotted name of the missing value."""


class Missing(StrictUndefined):
    """StrictUndefined whose error carries ``event.price`` rather than Jinja's wording."""

    def __init__(self, hint: str | None = None, obj: Any = None, name: str | None = None,
                 exc: type[TemplateRuntimeError] = UndefinedError) -> None:
        # The sandbox passes SecurityError for an unsafe attribute: keep it, it is no missing value.
        super().__init__(hint, obj, name, _UndefinedName if exc is UndefinedError else exc)

    @property
    def _undefined_message(self) -> str:
        if self._undefined_exception is not _UndefinedName:
            return str(self._undefined_hint or self._undefined_name)
        owner = self._undefined_obj
        if isinstance(owner, Scope):
            return f"{owner.scope_name}.{self._undefined_name}"
        return str(self._undefined_name or self._undefined_hint or "value")


_NOTHING: Any = object()


class Scope(dict[str, Any]):
    """A dict that knows its dotted name, so a missing key is reported as ``event.price``."""

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        super().__init__({key: wrap(f"{name}.{key}", value) for key, value in values.items()})
        self.scope_name = name
        self.size = size(dict(self))

    def get(self, key: str, default: Any = _NOTHING) -> Any:
        """``event.get('x')`` of an absent ``x`` is a missing value, not ``None``."""
        if key in self or default is not _NOTHING:
            return super().get(key, default)
        return Missing(name=f"{self.scope_name}.{key}")


class DataList(list[Any]):
    """A list of event or profile data: its size is known, the immutable sandbox keeps it so."""

    def __init__(self, name: str, values: Sequence[Any]) -> None:
        super().__init__(wrap(f"{name}[{i}]", value) for i, value in enumerate(values))
        self.size = size(list(self))


def wrap(name: str, value: Any) -> Any:
    """Data as templates see it: a null (or NaN, Infinity) is a missing value named ``name``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Missing(name=name)
    if isinstance(value, Mapping):
        return Scope(name, value)
    if isinstance(value, list | tuple):
        return DataList(name, value)
    return value


# --- output ------------------------------------------------------------------------------------

class JsonText(Markup):
    """What ``tojson`` made: valid JSON, not escaped again in a JSON body nor in HTML."""


def _default(value: Any) -> Any:
    if isinstance(value, Missing):
        return None  # a missing value inside an object is JSON's null
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


@pass_eval_context
def tojson(eval_ctx: Any, value: Any, indent: int | None = None) -> JsonText:
    """``{{ event.items | tojson }}``: the value as JSON (``<``, ``>``, ``&``, ``'`` as \\u escapes)."""
    if isinstance(value, Missing):
        value._fail_with_undefined_error()
    text = htmlsafe_json_dumps(value, dumps=json.dumps, default=_default, allow_nan=False,
                               indent=indent, ensure_ascii=False)
    return JsonText(text)


_PRINTABLE = (str, int, float)


def printable(value: Any) -> Any:
    """Refuse to print what is no data (a function, ``self``, ``loop``) or is null."""
    tick()
    refuse("a printed value", size(value))
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Missing):
            item._fail_with_undefined_error()
        elif item is None:
            raise _UndefinedName("none")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{item} is not a number to print")
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif not isinstance(item, _PRINTABLE):
            raise TypeError(f"cannot print a {type(item).__name__}")
    return value


@pass_eval_context
def finalize_plain(eval_ctx: Any, value: Any) -> Any:
    # pass_eval_context also keeps Jinja from printing constants while compiling
    return printable(value)


@pass_eval_context
def finalize_json(eval_ctx: Any, value: Any) -> Any:
    """Inside a JSON body every value is JSON-escaped: it cannot close the string it is in."""
    value = printable(value)
    if isinstance(value, JsonText):
        return value
    return json.dumps(str(value), ensure_ascii=False)[1:-1]


# --- the code Jinja generates -------------------------------------------------------------------

class _Buffer(list[str]):
    """The output of a macro, ``{% set %}`` block or ``{% filter %}``, bounded as it grows."""

    length = 0

    def append(self, text: str) -> None:
        self.length += len(text)
        refuse("a text", self.length)
        super().append(text)

    def extend(self, texts: Any) -> None:
        for text in texts:
            self.append(text)


class _CodeGenerator(CodeGenerator):
    def visit_ExprStmt(self, node: nodes.ExprStmt, frame: Frame) -> None:
        if isinstance(node.node, nodes.EnvironmentAttribute) and node.node.name == "tick":
            self.writeline("environment.tick()", node)  # the deadline check of _add_ticks
        else:
            super().visit_ExprStmt(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_bounded(context.eval_ctx, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.new_buffer()")


def _add_ticks(tree: nodes.Node) -> None:
    """A deadline check at the top of every loop, macro, call block and block body."""
    found: list[Any] = list(tree.find_all((nodes.For, nodes.Macro, nodes.CallBlock, nodes.Block)))
    for node in found:
        first = node.body[0] if node.body else None
        if not (isinstance(first, nodes.ExprStmt) and isinstance(first.node, nodes.EnvironmentAttribute)):
            node.body.insert(0, nodes.ExprStmt(nodes.EnvironmentAttribute("tick"), lineno=node.lineno))


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, checked before (arguments' sizes, widths) and after (the result's size)."""
    pass_arg = _PassArg.from_obj(func)
    check = _FILTER_SIZES.get(name)

    @pass_context
    def guarded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        tick()
        for arg in (value, *args, *kwargs.values()):
            refuse(f"an argument of '{name}'", size(arg))
        if check is not None:
            refuse(f"the result of '{name}'", check(value, *args, **kwargs))
        lead: tuple[Any, ...] = ()
        if pass_arg is not None:
            lead = ({_PassArg.context: context, _PassArg.eval_context: context.eval_ctx,
                     _PassArg.environment: context.environment}[pass_arg],)
        return bounded(func(*lead, value, *args, **kwargs))

    return guarded


class Sandbox(ImmutableSandboxedEnvironment):
    """Properties win over dict methods: ``event.items`` is the event's ``items`` property,
    and a property that is absent is a missing value, never a method of ``dict``."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    #: Dict methods a template may call on ``profile`` and ``event`` (``event.get('x', 0)``).
    readers = frozenset({"get", "items", "keys", "values"})

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=Missing, optimized=False, keep_trailing_newline=True, **options)
        self.globals.clear()  # range, lipsum, cycler, ...: templates see profile and event only
        self.filters = {name: _guard_filter(name, func)
                        for name, func in {**FILTERS, "tojson": tojson}.items()}

    tick = staticmethod(tick)
    new_buffer = _Buffer

    def concat_bounded(self, eval_ctx: Any, parts: tuple[Any, ...]) -> str:
        refuse("a joined text", sum(size(part) for part in parts))
        return str(markup_join(parts) if eval_ctx.autoescape else str_join(parts))

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        _add_ticks(source)
        return super()._generate(source, name, filename, defer_init)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Scope) and not attribute.startswith("_"):
            if attribute in obj:
                return obj[attribute]
            if attribute not in self.readers:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Scope):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=str(argument))
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        tick()
        refuse("an operand", max(size(left), size(right)))
        if operator == "*":
            refuse("a product", _mul_size(left, right))
        elif operator == "**":
            refuse("a power", _pow_size(left, right))
        elif operator == "%" and isinstance(left, str):
            refuse("a formatted text", printf_size(left, right))
        return bounded(self.binop_table[operator](left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map`` through a formatter that bounds widths and totals."""
        if super().wrap_str_format(value) is None:
            return None
        template, is_map = value.__self__, value.__name__ == "format_map"

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = dict(args[0]), ()
            formatter = (_EscapeFormatter(self, escape=template.escape)
                         if isinstance(template, Markup) else _Formatter(self))
            return type(template)(formatter.vformat(template, args, kwargs))

        return bounded_format

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        tick()
        for arg in (*args, *kwargs.values()):
            refuse("an argument", size(arg))
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str | bytes | int) and not isinstance(owner, bool):
            if name in _REFUSED_METHODS:
                raise TypeError(f"'{name}' is not available in templates")
            check = _METHOD_SIZES.get(name)
            if check is not None:
                refuse(f"the result of '{name}'", check(owner, *args, **kwargs))
        return bounded(super().call(__context, __obj, *args, **kwargs))


PLAIN = Sandbox(autoescape=False, finalize=finalize_plain)
HTML = Sandbox(autoescape=True, finalize=finalize_plain)
JSON = Sandbox(autoescape=False, finalize=finalize_json)
