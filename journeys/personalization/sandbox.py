"""The template sandbox: Jinja's ``ImmutableSandboxedEnvironment`` bounded in size and time.

Every place a template makes a value (operators, ``~``, filters, calls, ``format``, output
buffers) is checked against MAX_TEMPLATE_VALUE; what multiplies (``*``, ``**``, ``%``, widths,
counts) is checked *before* it runs, so nothing that large is allocated. Loops, macros and
filters check MAX_RENDER_SECONDS. Nothing is constant-folded while compiling (validation).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import TemplateRuntimeError, UndefinedError
from jinja2.filters import FILTERS
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg, htmlsafe_json_dumps, pass_context, pass_eval_context
from markupsafe import Markup

from journeys.personalization.bounds import (
    FILTER_SIZES,
    METHOD_SIZES,
    REFUSED_METHODS,
    BoundedEscapeFormatter,
    BoundedFormatter,
    Measured,
    bounded,
    mul_size,
    pow_size,
    printf_size,
    refuse,
    size,
    tick,
)
from journeys.personalization.formats import FORMAT_FILTERS

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


class Scope(dict[str, Any], Measured):
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


class DataList(list[Any], Measured):
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
    check = FILTER_SIZES.get(name)

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
                        for name, func in {**FILTERS, "tojson": tojson, **FORMAT_FILTERS}.items()}

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
            refuse("a product", mul_size(left, right))
        elif operator == "**":
            refuse("a power", pow_size(left, right))
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
            formatter = (BoundedEscapeFormatter(self, escape=template.escape)
                         if isinstance(template, Markup) else BoundedFormatter(self))
            return type(template)(formatter.vformat(template, args, kwargs))

        return bounded_format

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        tick()
        for arg in (*args, *kwargs.values()):
            refuse("an argument", size(arg))
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str | bytes | int) and not isinstance(owner, bool):
            if name in REFUSED_METHODS:
                raise TypeError(f"'{name}' is not available in templates")
            check = METHOD_SIZES.get(name)
            if check is not None:
                refuse(f"the result of '{name}'", check(owner, *args, **kwargs))
        return bounded(super().call(__context, __obj, *args, **kwargs))


PLAIN = Sandbox(autoescape=False, finalize=finalize_plain)
HTML = Sandbox(autoescape=True, finalize=finalize_plain)
JSON = Sandbox(autoescape=False, finalize=finalize_json)
