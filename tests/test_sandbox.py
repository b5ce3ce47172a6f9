"""The sandbox's bounds: no template value over MAX_TEMPLATE_VALUE (refused before it is made),
no render over MAX_RENDER_SECONDS, nothing computed at validation, nothing seen but ``profile``,
``event`` and the filters, and unsafe attributes refused at validation."""

from __future__ import annotations

import time

import pytest

from journeys.language.limits import MAX_RENDER_SECONDS
from journeys.language.loader import load_document
from journeys.personalization.bounds import start_clock, stop_clock, tick
from journeys.personalization.personalize import (
    MissingValue,
    TemplateError,
    check_expression,
    check_template,
    evaluate,
    render,
    unknown_variables,
    unsafe_attributes,
)
from journeys.validation.validate import validate_loaded
from tests.helpers.journey_docs import CATALOG, action, check, journey, merge, send

BIG = 10**9

# Each would allocate a gigabyte or more; the sandbox refuses it before it is made.
TOO_BIG = [
    '{{ "a" * 10**9 }}',
    "{{ 10**9 * 'ab' }}",
    "{{ event.s * 10**9 }}",
    "{{ [event.s] * 10**9 }}",
    '{{ "%0999999999d" % 1 }}',
    '{{ "%*d" % (999999999, 1) }}',
    '{{ "%(n).999999999f" % {"n": 1.5} }}',
    '{{ "{:>999999999}".format(1) }}',
    '{{ "{:{w}}".format(1, w=999999999) }}',
    '{{ ("{0:>200000}" * 2).format(1) }}',
    '{{ ("{0:>200000}" ~ "{0:>200000}").format(1) }}',
    '{{ "%0999999999d" | format(1) }}',
    '{{ "x" | center(999999999) }}',
    '{{ "x".center(999999999) }}',
    '{{ "x".ljust(999999999) }}',
    '{{ "x".zfill(999999999) }}',
    "{{ (event.s * 1000).replace('', event.s * 1000) }}",
    "{{ (event.s * 1000) | replace('', event.s * 1000) }}",
    '{{ ("\t" * 1000).expandtabs(999999) }}',
    '{{ "a\nb" | indent(999999999) }}',
    '{{ "a b c d" | wordwrap(1, wrapstring="x" * 200000) }}',
    "{{ (5).to_bytes(999999999, 'big') }}",
    "{{ 7 ** 999999999 }}",
    "{{ [1] | batch(999999999, 'x') | list }}",
    "{{ [1] | slice(999999999) | list }}",
    "{{ 1.5 | round(999999999, 'floor') }}",
    "{{ [1, 2] | map('center', 999999999) | join }}",
    "{{ ([event.s * 100000] * 100) | join }}",
    "{{ (event.s * 200000) | join(event.s * 200000) }}",
]


@pytest.mark.parametrize("source", TOO_BIG)
def test_a_value_over_the_limit_is_refused_before_it_is_made(source: str) -> None:
    started = time.monotonic()
    check_template(source)  # validation computes nothing
    with pytest.raises(TemplateError, match="over the limit"):
        render(source, {}, {"s": "ab"})
    assert time.monotonic() - started < 1


def test_validation_of_a_huge_constant_is_fast() -> None:
    doc = journey(action("added", "Added To Cart"), send("push", '{{ "a" * 10**9 }}'))
    started = time.monotonic()
    assert check(doc) == []
    doc = journey(action("added", "Added To Cart"),
                  send("push", '{% autoescape "x" | center(999999999) %}{{ "%0999999999d" % 1 }}'
                               "{% endautoescape %}"))
    assert validate_loaded(load_document(doc, "t.yaml", CATALOG)) == []
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("source", [
    # doubling by steps: each value is small, the last one is not
    "{% set a = event.s * 40000 %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{{ d ~ d }}",
    "{% set a = event.s * 40000 %}{% set b = a + a %}{% set c = b + b %}{% set d = c + c %}{{ d + d }}",
    # lists of references cost nothing to build, but would print gigabytes
    "{% set l = [event.s * 10000] * 8 %}{% set m = [l, l, l, l, l, l, l, l] %}{{ m ~ '' }}",
    "{% set l = [event.s * 10000] * 8 %}{% set m = [l, l, l, l, l, l, l, l] %}{{ m | string }}",
    # a macro's output, a {% set %} block's, a {% filter %}'s
    "{% macro m() %}{% for i in event.l %}{{ event.s * 1000 }}{% endfor %}{% endmacro %}{{ m() | length }}",
    "{% set t %}{% for i in event.l %}{{ event.s * 1000 }}{% endfor %}{% endset %}{{ t | length }}",
    "{% filter upper %}{% for i in event.l %}{{ event.s * 1000 }}{% endfor %}{% endfilter %}",
])
def test_values_built_step_by_step_are_bounded(source: str) -> None:
    with pytest.raises(TemplateError, match=r"limit|over"):
        render(source, {}, {"s": "ab", "l": list(range(1000))})


def test_the_rendered_text_is_bounded_as_it_streams() -> None:
    with pytest.raises(TemplateError, match="OutputTooLong"):
        render("{% for i in event.l %}{{ event.s }}{% endfor %}", {},
               {"l": list(range(2000)), "s": "x" * 1000})


@pytest.mark.parametrize("source", [
    "{% for a in event.l %}{% for b in event.l %}{% for c in event.l %}{% endfor %}{% endfor %}"
    "{% endfor %}",
    "{% for a in event.l %}{% for b in event.l %}{% for c in event.l %}{% set x = a ~ b %}"
    "{% endfor %}{% endfor %}{% endfor %}done",
    "{% macro f(n) %}{% for i in event.l %}{{ n }}{% endfor %}{% endmacro %}"
    "{% for a in event.l %}{% for b in event.l %}{{ f(b)[:0] }}{% endfor %}{% endfor %}",
])
def test_a_render_stops_at_the_deadline(source: str) -> None:
    # The deadline is the render's own CPU time (bounds.py): the wall clock also holds the
    # machine's load, which is not the template's doing.
    started = time.thread_time()
    with pytest.raises(TemplateError, match="longer than"):
        render(source, {}, {"l": list(range(3000))})
    assert time.thread_time() - started < MAX_RENDER_SECONDS + 1


def test_a_split_condition_stops_at_the_deadline_too() -> None:
    with pytest.raises(TemplateError):
        evaluate("(event.l | map('string') | join) * 10**9", {}, {"l": [1, 2]})


def test_the_deadline_is_restored_after_a_render() -> None:
    previous = start_clock(1000)
    try:
        assert render("{{ profile.a }}", {"a": 1}, None) == "1"
        from journeys.personalization.bounds import clock
        assert clock.deadline > time.thread_time() + 100
    finally:
        stop_clock(previous)


def test_ordinary_templates_still_work() -> None:
    source = ("{% for item in event.items %}{{ loop.index }}. {{ item.name | title }} "
              "{{ '%.2f' | format(item.price) }} {{ '{:>6}'.format(item.qty) }}"
              "{{ ' ' * 2 }}{{ item.name | center(12) | trim }};{% endfor %}"
              "{{ event.items | map(attribute='qty') | sum }} {{ 2 ** 10 }}")
    event = {"items": [{"name": "mug", "price": 3.5, "qty": 2}, {"name": "tea", "price": 9, "qty": 1}]}
    assert render(source, {}, event) == "1. Mug 3.50      2  mug;2. Tea 9.00      1  tea;3 1024"


# --- templates see profile, event and the filters -------------------------------------------------

@pytest.mark.parametrize("name", ["range", "lipsum", "dict", "cycler", "joiner", "namespace",
                                  "self", "loop", "super", "varargs", "caller"])
def test_jinja_globals_are_unknown_variables(name: str) -> None:
    assert unknown_variables(f"{{{{ {name} }}}}") == [name]
    assert unknown_variables(f"{name}", expression=True) == [name]


@pytest.mark.parametrize("source", ["{{ lipsum }}", "{{ self }}", "{{ loop }}", "{{ range(3) }}",
                                    "{{ cycler(1, 2) }}", "{{ namespace(a=1) }}",
                                    "{{ event.get }}", "{% for x in [1] %}{{ loop }}{% endfor %}"])
def test_no_function_or_internal_object_is_printed(source: str) -> None:
    with pytest.raises((MissingValue, TemplateError)) as caught:
        render(source, {}, {})
    assert "<" not in str(caught.value) and "0x" not in str(caught.value)


def test_loop_inside_a_loop_is_fine() -> None:
    assert unknown_variables("{% for x in event.l %}{{ loop.index }}{% endfor %}") == []
    assert render("{% for x in event.l %}{{ loop.index }}{% endfor %}", {}, {"l": "ab"}) == "12"


def test_lists_and_dicts_cannot_be_changed() -> None:
    with pytest.raises((TemplateError, MissingValue)):
        render("{% set l = [1] %}{{ l.append(2) }}{{ l }}", {}, None)


# --- unsafe attributes are refused at validation ---------------------------------------------------

@pytest.mark.parametrize("source, names", [
    ("{{ ''.__class__.__mro__ }}", ["__class__", "__mro__"]),
    ("{{ cycler.__init__.__globals__ }}", ["__globals__", "__init__"]),
    ("{{ profile.name._secret }}", ["_secret"]),
    ("{{ profile['__class__'] }}", ["__class__"]),
    ("{{ profile | attr('__dict__') }}", ["__dict__"]),
    ("{{ event.items | map(attribute='__class__') | list }}", ["__class__"]),
    ("{{ profile.f.gi_frame }}", ["gi_frame"]),
])
def test_unsafe_attributes_are_found(source: str, names: list[str]) -> None:
    check_template(source)
    assert unsafe_attributes(source) == names


def test_a_property_named_with_an_underscore_is_read_by_subscript() -> None:
    assert unsafe_attributes("{{ event['_id'] }} {{ event.items[0] }}") == []
    assert render("{{ event['_id'] }}", {}, {"_id": 7}) == "7"


def test_unsafe_attribute_is_a_validation_problem() -> None:
    doc = journey(action("added", "Added To Cart"), send("push", "{{ ''.__class__.__mro__ }}"))
    assert check(doc) == [("unsafe-attribute", "push", "message.body")]


def test_unsafe_attribute_in_a_split_condition_is_a_validation_problem() -> None:
    doc = merge("{{ event.product_name }}")
    doc["nodes"][1]["branches"][0]["when"] = "profile.plan.__class__ == 'x'"
    check_expression("profile.plan.__class__ == 'x'")
    assert check(doc) == [("unsafe-attribute", "by-plan", "branches[0].when")]


def test_an_unsafe_event_attribute_is_no_event_property() -> None:
    doc = journey(action("added", "Added To Cart"), send("push", "{{ event.__class__ }}"))
    assert check(doc) == [("unsafe-attribute", "push", "message.body")]


def test_time_spent_waiting_does_not_count_against_a_render() -> None:
    """The deadline is the render's own CPU time: a busy worker's thread waiting for the CPU
    (or the GIL) does not make a message miss it. A wait past the limit, then a tick: no error."""
    previous = start_clock(0.2)
    try:
        time.sleep(0.3)
        tick()
    finally:
        stop_clock(previous)
