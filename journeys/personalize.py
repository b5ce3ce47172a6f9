"""Personalization: Jinja2 templates rendered in a sandbox with ``profile`` and ``event``.

Templates are user input, so they run in ``SandboxedEnvironment`` (no attribute escapes, no
I/O). A value that is missing and has no ``default`` filter raises :class:`MissingValue`
naming the variable (``event.product_name``): the message is then not sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, meta, nodes
from jinja2.exceptions import TemplateRuntimeError, TemplateSyntaxError, UndefinedError
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from journeys.models import Channel, MessageValue


class MissingValue(Exception):
    """A template read a value the profile or event does not have."""

    def __init__(self, variable: str, field: str | None = None) -> None:
        self.variable = variable
        self.field = field
        where = f" in {field}" if field else ""
        super().__init__(f"missing value '{variable}'{where} (no default given)")


class TemplateError(Exception):
    """A template failed to render for a reason other than a missing value."""


class MessageRefused(Exception):
    """A message rendered, but may not be sent as it is (too large, a CR/LF in a header ...)."""


class Scope(dict[str, Any]):
    """A dict that knows its dotted name, so a missing key is reported as ``event.price``."""

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        super().__init__({key: _wrap(f"{name}.{key}", value) for key, value in values.items()})
        self.scope_name = name


def _wrap(name: str, value: Any) -> Any:
    return Scope(name, value) if isinstance(value, Mapping) else value


class _UndefinedName(UndefinedError):
    """Raised by :class:`_Missing`; its message is the dotted name of the missing value."""


class _Missing(StrictUndefined):
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


#: Dict methods a template may call on ``profile`` and ``event`` (``event.get('x', 0)``).
_READERS = frozenset({"get", "items", "keys", "values"})


class _Sandbox(SandboxedEnvironment):
    """Properties win over dict methods: ``event.items`` is the event's ``items`` property,
    and a property that is absent is a missing value, never a method of ``dict``."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Scope) and not attribute.startswith("_"):
            if attribute in obj:
                return obj[attribute]
            if attribute not in _READERS:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Scope):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=str(argument))
        return super().getitem(obj, argument)


_PLAIN = _Sandbox(undefined=_Missing, autoescape=False, keep_trailing_newline=True)
_HTML = _Sandbox(undefined=_Missing, autoescape=True, keep_trailing_newline=True)


@lru_cache(maxsize=4096)
def _compiled(source: str, html: bool) -> Any:
    return (_HTML if html else _PLAIN).from_string(source)


@lru_cache(maxsize=1024)
def _compiled_expression(source: str) -> Any:
    return _PLAIN.compile_expression(source, undefined_to_none=False)


def check_template(source: str) -> None:
    """Raise ``TemplateSyntaxError`` if ``source`` does not compile.

    Compiling, not just parsing, also catches unknown filters and tests (``| tittle``),
    which would otherwise fail every render.
    """
    try:
        _PLAIN.compile(source)
    except TemplateSyntaxError:
        raise
    except Exception as exc:  # nesting beyond Python's limits: RecursionError, SyntaxError
        raise TemplateSyntaxError(f"cannot compile: {type(exc).__name__}", 1) from None


#: The only variables a journey template may read.
VARIABLES = frozenset({"profile", "event"})


def unknown_variables(source: str, *, expression: bool = False) -> list[str]:
    """Variables other than ``profile`` and ``event`` (and Jinja's globals) that ``source`` reads.

    ``{{ evnt.price }}`` would otherwise pass validation and then fail every send.
    """
    tree = _PLAIN.parse("{{ " + source + " }}" if expression else source)
    names = meta.find_undeclared_variables(tree) - VARIABLES - _PLAIN.globals.keys()
    return sorted(names)


def check_expression(source: str) -> None:
    """Raise ``TemplateSyntaxError`` if ``source`` is not a valid expression."""
    try:
        _PLAIN.compile_expression(source)
    except TemplateSyntaxError:
        raise
    except Exception as exc:
        raise TemplateSyntaxError(f"cannot compile: {type(exc).__name__}", 1) from None


def context(profile: Mapping[str, Any], event: Mapping[str, Any] | None) -> dict[str, Any]:
    """The variables a template sees. Without an event, ``event.x`` is a missing value."""
    return {"profile": Scope("profile", profile), "event": Scope("event", event or {})}


def render(source: str, profile: Mapping[str, Any], event: Mapping[str, Any] | None,
           *, html: bool = False) -> str:
    try:
        return str(_compiled(source, html).render(context(profile, event)))
    except _UndefinedName as exc:
        raise MissingValue(str(exc)) from None
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from exc
    except Exception as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc


def evaluate(expression: str, profile: Mapping[str, Any], event: Mapping[str, Any] | None) -> bool:
    """Evaluate a split ``when`` expression. A missing value makes it false, not an error."""
    try:
        return bool(_compiled_expression(expression)(**context(profile, event)))
    except _UndefinedName:
        return False
    except Exception as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc


def message_fields(message: Mapping[str, MessageValue]) -> Iterator[tuple[str, str]]:
    """Flatten a message into (field path, template): ``headers.X``, ``buttons[0].label``."""
    for name, value in message.items():
        if isinstance(value, str):
            yield name, value
        elif isinstance(value, dict):
            for key, template in value.items():
                yield f"{name}.{key}", template
        else:
            for i, item in enumerate(value):
                if isinstance(item, str):
                    yield f"{name}[{i}]", item
                else:
                    for key, template in item.items():
                        yield f"{name}[{i}].{key}", template


def render_message(channel: Channel, message: Mapping[str, MessageValue],
                   profile: Mapping[str, Any], event: Mapping[str, Any] | None) -> dict[str, str]:
    """Render every field of a message; raises :class:`MissingValue` naming the field."""
    rendered: dict[str, str] = {}
    for field, source in message_fields(message):
        html = channel == Channel.email and field == "html"
        try:
            rendered[field] = render(source, profile, event, html=html)
        except MissingValue as exc:
            raise MissingValue(exc.variable, field) from None
    return rendered


# --- static analysis: which event properties does a template read? -------------------------

@dataclass(frozen=True)
class EventUse:
    """How a template uses ``event``: at all, and which named properties."""

    uses_event: bool
    properties: frozenset[str]


def _is_event(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "event"


def _event_use(tree: nodes.Node) -> EventUse:
    names = [n for n in tree.find_all(nodes.Name) if n.name == "event" and n.ctx == "load"]
    props: set[str] = set()
    methods: set[int] = set()  # event.get('x') reads property x; event.items() reads none
    for call in tree.find_all(nodes.Call):
        func = call.node
        if isinstance(func, nodes.Getattr) and _is_event(func.node) and func.attr in _READERS:
            methods.add(id(func))
            first = call.args[0] if call.args else None
            if func.attr == "get" and isinstance(first, nodes.Const) and isinstance(first.value, str):
                props.add(first.value)
    for node in tree.find_all(nodes.Getattr):
        if _is_event(node.node) and id(node) not in methods:
            props.add(node.attr)
    for item in tree.find_all(nodes.Getitem):
        if (isinstance(item.node, nodes.Name) and item.node.name == "event"
                and isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str)):
            props.add(item.arg.value)
    return EventUse(bool(names), frozenset(props))


_NO_USE = EventUse(False, frozenset())


def template_event_use(source: str) -> EventUse:
    """What a template reads of ``event``; nothing if it does not parse (reported elsewhere)."""
    try:
        return _event_use(_PLAIN.parse(source))
    except Exception:
        return _NO_USE


def expression_event_use(source: str) -> EventUse:
    """What a split expression reads of ``event``; nothing if it does not parse."""
    try:
        return _event_use(Parser(_PLAIN, source, state="variable").parse_expression())
    except Exception:
        return _NO_USE
