"""Personalization: Jinja2 templates rendered in a sandbox with ``profile`` and ``event``.

Templates are user input, so they run in the bounded sandbox of :mod:`journeys.personalization.sandbox` (no
attribute escapes, no I/O, no value over MAX_TEMPLATE_VALUE, no render over
MAX_RENDER_SECONDS). A value that is missing or null and has no ``default`` filter raises
:class:`MissingValue` naming the variable (``event.product_name``); a template that fails on
its own or on the user's data raises :class:`TemplateError`: the message is then not sent. A
rendered message that may not go out (a header with a line break, a link that is no web link,
a webhook body that is not JSON, over the channel's size) raises :class:`MessageRefused`.
Anything else (cancellation, worker shutdown, out of memory) propagates: the attempt fails and
a retry renders again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.parser import Parser
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
)

from journeys.language.limits import MAX_MESSAGE_BYTES
from journeys.language.messages import MessageValue
from journeys.language.models import Channel
from journeys.personalization.bounds import MAX_RENDER_OUTPUT, OutputTooLong, start_clock, stop_clock, tick
from journeys.personalization.formats import format_context
from journeys.personalization.lookups import FUNCTION, Fetch, Lookups, Recorder, calls_catalog
from journeys.personalization.refusals import MessageRefused, check_message, content_type, is_json
from journeys.personalization.sandbox import HTML, JSON, PLAIN, Sandbox, Scope, _UndefinedName


class MissingValue(Exception):
    """A template read a value the profile or event does not have (or that is null)."""

    def __init__(self, variable: str, field: str | None = None) -> None:
        self.variable = variable
        self.field = field
        where = f" in {field}" if field else ""
        super().__init__(f"missing value '{variable}'{where} (no default given)")


class TemplateError(Exception):
    """A template failed to render for a reason other than a missing value."""


#: What a template or the user's data can get wrong. Anything else (temporalio's
#: CancelledError, KeyboardInterrupt, MemoryError) is no fault of the template: it propagates.
_TEMPLATE_ERRORS = (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError,
                    AttributeError, RecursionError)

_MODES: dict[str, Sandbox] = {"plain": PLAIN, "html": HTML, "json": JSON}


@lru_cache(maxsize=4096)
def _compiled(source: str, mode: str) -> jinja2.Template:
    return _MODES[mode].from_string(source)


@lru_cache(maxsize=1024)
def _compiled_expression(source: str) -> Any:
    return PLAIN.compile_expression(source, undefined_to_none=False)


def check_template(source: str) -> None:
    """Raise ``TemplateSyntaxError`` if ``source`` does not compile.

    Compiling, not just parsing, also catches unknown filters and tests (``| tittle``), which
    would otherwise fail every render. Nothing is evaluated: the sandbox folds no constants.
    """
    try:
        tree = PLAIN.parse(source)
        for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
            raise TemplateSyntaxError("a template cannot include, import or extend another",
                                      node.lineno)
        PLAIN.compile(tree)
    except TemplateSyntaxError:
        raise
    except Exception as exc:  # nesting beyond Python's limits: RecursionError, SyntaxError
        raise TemplateSyntaxError(f"cannot compile: {type(exc).__name__}", 1) from None


#: The only variables a journey template may read ...
VARIABLES = frozenset({"profile", "event"})
#: ... and a marketing email's, its one-click unsubscribe link (journeys.links).
LINK_VARIABLES = frozenset({"unsubscribe_url"})
#: ... and a message's catalog items (journeys.personalization.lookups), not a split's.
MESSAGE_FUNCTIONS = frozenset({FUNCTION})


@lru_cache(maxsize=4096)
def _parse(source: str, expression: bool) -> nodes.Template:
    """The tree of a template or expression, parsed once for all the validator's checks (each
    reads it, none changes it): a journey's every ``when`` was parsed three times."""
    return PLAIN.parse("{{ " + source + " }}" if expression else source)


def unknown_variables(source: str, *, expression: bool = False,
                      allowed: frozenset[str] = frozenset()) -> list[str]:
    """Variables other than ``profile`` and ``event`` that ``source`` reads (Jinja's globals,
    ``self`` and ``loop`` outside a loop included: templates do not see them).

    ``{{ evnt.price }}`` would otherwise pass validation and then fail every send.
    """
    tree = _parse(source, expression)
    if expression:  # an expression declares nothing: every name it loads is undeclared
        names = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"} - VARIABLES - allowed
    else:  # a template's own {% set %} and loop variables are declared: Jinja's analysis
        names = meta.find_undeclared_variables(tree) - VARIABLES - allowed
    if any(name.name == "self" for name in tree.find_all(nodes.Name)):
        names.add("self")  # Jinja's template reference, which meta does not report
    return sorted(names)


_UNSAFE = (UNSAFE_FUNCTION_ATTRIBUTES | UNSAFE_METHOD_ATTRIBUTES | UNSAFE_GENERATOR_ATTRIBUTES
           | UNSAFE_COROUTINE_ATTRIBUTES | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES | {"mro"})


def _unsafe_name(attr: str) -> bool:
    """What the sandbox refuses as ``x.attr``: private names and Python's internals."""
    return attr.startswith("_") or attr in _UNSAFE


def _unsafe_key(key: Any) -> bool:
    """A subscript ``x['__class__']``: ``event['_id']`` still reads a property named ``_id``."""
    return isinstance(key, str) and any(part.startswith("__") for part in key.split("."))


def unsafe_attributes(source: str, *, expression: bool = False) -> list[str]:
    """Attributes ``source`` reads that the sandbox refuses (``''.__class__``): every send of
    such a template fails, and in a split ``when`` the branch would silently never hold."""
    tree = _parse(source, expression)
    found = {n.attr for n in tree.find_all(nodes.Getattr) if _unsafe_name(n.attr)}
    for item in tree.find_all(nodes.Getitem):
        if isinstance(item.arg, nodes.Const) and _unsafe_key(item.arg.value):
            found.add(item.arg.value)
    for flt in tree.find_all(nodes.Filter):  # |attr('__class__'), |map(attribute='__dict__')
        first = flt.args[0] if flt.args else None
        if (flt.name == "attr" and isinstance(first, nodes.Const)
                and isinstance(first.value, str) and _unsafe_name(first.value)):
            found.add(first.value)
        named = [first] if flt.name in ("selectattr", "rejectattr") else []
        named += [kw.value for kw in flt.kwargs if kw.key == "attribute"]
        found.update(n.value for n in named if isinstance(n, nodes.Const) and _unsafe_key(n.value))
    return sorted(found)


def check_expression(source: str) -> None:
    """Raise ``TemplateSyntaxError`` if ``source`` is not a valid expression."""
    try:
        PLAIN.compile_expression(source)
    except TemplateSyntaxError:
        raise
    except Exception as exc:
        raise TemplateSyntaxError(f"cannot compile: {type(exc).__name__}", 1) from None


def check_expressions(sources: Sequence[str]) -> dict[int, TemplateSyntaxError]:
    """What ``check_expression`` raises for each of ``sources`` that is not a valid expression,
    by index. The valid ones are compiled together, as one template: a split's thousands of
    branches cost one code generation, not one each (each was most of ``validate``'s time);
    if that fails, each is compiled alone to find which."""
    errors: dict[int, TemplateSyntaxError] = {}
    parsed: list[nodes.Expr] = []
    for i, source in enumerate(sources):
        try:
            parser = Parser(PLAIN, source, state="variable")
            parsed.append(parser.parse_expression())
            if not parser.stream.eos:  # as compile_expression says it
                raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
        except TemplateSyntaxError as exc:
            errors[i] = exc
        except Exception as exc:  # nesting beyond Python's limits
            errors[i] = TemplateSyntaxError(f"cannot compile: {type(exc).__name__}", 1)
    if not parsed:
        return errors
    try:
        PLAIN.compile(nodes.Template([nodes.Output([expr]) for expr in parsed], lineno=1))
    except Exception:
        for i, source in enumerate(sources):
            if i not in errors:
                try:
                    check_expression(source)
                except TemplateSyntaxError as exc:
                    errors[i] = exc
    return errors


def context(profile: Mapping[str, Any], event: Mapping[str, Any] | None) -> dict[str, Any]:
    """The variables a template sees. Without an event, ``event.x`` is a missing value; a null
    anywhere in the data is a missing value too."""
    return {"profile": Scope("profile", profile), "event": Scope("event", event or {}),
            **format_context(profile)}  # the filters' locale and zone (journeys.personalization.formats)


def _render(source: str, variables: dict[str, Any], mode: str, limit: int) -> str:
    """Render within the deadline, stopping as soon as the text passes ``limit`` characters."""
    template = _compiled(source, mode)
    previous = start_clock()
    try:
        parts: list[str] = []
        length = 0
        for part in template.root_render_func(template.new_context(variables)):
            length += len(part)
            if length > limit:
                raise OutputTooLong(f"the text is over {limit:,} characters")
            parts.append(part)
            tick()
        return "".join(parts)
    finally:
        stop_clock(previous)


def _as_template_error(exc: Exception) -> Exception:
    """The MissingValue or TemplateError that stands for a template's own failure."""
    if isinstance(exc, _UndefinedName):
        return MissingValue(str(exc))
    if isinstance(exc, TemplateSyntaxError):
        return TemplateError(f"line {exc.lineno}: {exc.message}")
    return TemplateError(f"{type(exc).__name__}: {exc}")


def render(source: str, profile: Mapping[str, Any], event: Mapping[str, Any] | None,
           *, html: bool = False) -> str:
    """Render one template; raises MissingValue or TemplateError, and nothing else of its own."""
    try:
        return _render(source, context(profile, event), "html" if html else "plain",
                       MAX_RENDER_OUTPUT)
    except _TEMPLATE_ERRORS as exc:
        raise _as_template_error(exc) from (None if isinstance(exc, _UndefinedName) else exc)


def evaluate(expression: str, profile: Mapping[str, Any], event: Mapping[str, Any] | None) -> bool:
    """Evaluate a split ``when`` expression. A missing value makes it false, not an error."""
    previous = start_clock()
    try:
        return bool(_compiled_expression(expression)(**context(profile, event)))
    except _UndefinedName:
        return False
    except _TEMPLATE_ERRORS as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        stop_clock(previous)


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
                   profile: Mapping[str, Any], event: Mapping[str, Any] | None,
                   links: Mapping[str, str] | None = None, items: Fetch | None = None) -> dict[str, str]:
    """Render every field of a message (``links``: LINK_VARIABLES the message has; ``items``
    fetches the catalog items it names: without it, every item is missing), then check it may
    be sent.

    Raises :class:`MissingValue` (naming the field) or :class:`TemplateError`: not sent;
    :class:`MessageRefused`: rendered, but unsafe or too large to send.
    """
    channel = Channel(channel)
    budget = MAX_MESSAGE_BYTES[channel]
    lookups = Lookups(items)
    variables = {**context(profile, event), **(links or {}), FUNCTION: lookups}
    fields = list(message_fields(message))
    if any(calls_catalog(source) for _, source in fields):
        _prefetch([source for _, source in fields], variables, lookups)
    if channel == Channel.webhook:  # the Content-Type header says how to render the body
        fields.sort(key=lambda item: item[0] == "body")
    rendered: dict[str, str] = {}
    used = 0
    for field, source in fields:
        mode = "plain"
        if channel == Channel.email and field == "html":
            mode = "html"
        elif channel == Channel.webhook and field == "body" and is_json(content_type(rendered)):
            mode = "json"
        try:
            text = _render(source, variables, mode, budget - used)  # a character is >= 1 byte
        except OutputTooLong:
            raise MessageRefused(field, f"the message is over the {channel.value} limit of "
                                        f"{budget:,} bytes") from None
        except _TEMPLATE_ERRORS as exc:
            error = _as_template_error(exc)
            if isinstance(error, MissingValue):
                raise MissingValue(error.variable, field) from None
            raise error from exc
        rendered[field] = text
        used += len(text.encode())
    if used > budget:
        raise MessageRefused("message", f"{used:,} bytes in UTF-8, over the {channel.value} "
                                        f"limit of {budget:,}")
    in_order = {field: rendered[field] for field, _ in message_fields(message)}
    check_message(channel, in_order)
    return in_order


def _prefetch(sources: Sequence[str], variables: dict[str, Any], lookups: Lookups) -> None:
    """The items the message names, in one query: found by a dry render of each field that
    calls ``catalog()`` (journeys.personalization.lookups); its failures are the real render's."""
    recorder = Recorder(lookups)
    dry = {**variables, FUNCTION: recorder}
    for source in sources:
        if calls_catalog(source):
            try:
                _render(source, dry, "plain", MAX_RENDER_OUTPUT)
            except (OutputTooLong, *_TEMPLATE_ERRORS):
                pass
    lookups.prefetch(recorder.asked)


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
        if isinstance(func, nodes.Getattr) and _is_event(func.node) and func.attr in Sandbox.readers:
            methods.add(id(func))
            first = call.args[0] if call.args else None
            if func.attr == "get" and isinstance(first, nodes.Const) and isinstance(first.value, str):
                props.add(first.value)
    for node in tree.find_all(nodes.Getattr):
        # event.__class__ is no property: unsafe-attribute reports it
        if _is_event(node.node) and id(node) not in methods and not _unsafe_name(node.attr):
            props.add(node.attr)
    for item in tree.find_all(nodes.Getitem):
        if (isinstance(item.node, nodes.Name) and item.node.name == "event"
                and isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str)
                and not _unsafe_key(item.arg.value)):
            props.add(item.arg.value)
    return EventUse(bool(names), frozenset(props))


_NO_USE = EventUse(False, frozenset())


def template_event_use(source: str) -> EventUse:
    """What a template reads of ``event``; nothing if it does not parse (reported elsewhere)."""
    try:
        return _event_use(PLAIN.parse(source))
    except Exception:
        return _NO_USE


def expression_event_use(source: str) -> EventUse:
    """What a split expression reads of ``event``; nothing if it does not parse."""
    try:
        return _event_use(Parser(PLAIN, source, state="variable").parse_expression())
    except Exception:
        return _NO_USE
