"""Personalization: rendering, missing values, autoescape, the sandbox, split expressions,
and the static analysis of which event properties a template reads."""

from __future__ import annotations

import pytest
from jinja2.exceptions import TemplateSyntaxError

from journeys.language.messages import MessageValue
from journeys.language.models import Channel
from journeys.personalization.personalize import (
    MissingValue,
    TemplateError,
    check_expression,
    check_template,
    evaluate,
    expression_event_use,
    message_fields,
    render,
    render_message,
    template_event_use,
)

CART = {"product_name": "iPhone 14", "price": 999.0, "Product Name": "iPhone 14 Pro",
        "product_url": "https://shop.test/p/1"}
PROFILE = {"first_name": "Ada", "tier": "gold", "address": {"city": "Lyon"}, "orders": 3}


# --- rendering -----------------------------------------------------------------------------

def test_render_profile_and_event() -> None:
    text = render("Hey {{ profile.first_name }}, the {{ event.product_name }} is waiting.",
                  PROFILE, CART)
    assert text == "Hey Ada, the iPhone 14 is waiting."


def test_render_numbers_nested_values_and_filters() -> None:
    assert render("{{ event.price }}", {}, CART) == "999.0"
    assert render("{{ '%.2f' | format(event.price) }}", {}, CART) == "999.00"
    assert render("{{ profile.address.city | upper }}", PROFILE, None) == "LYON"
    assert render("{{ profile.orders + 1 }}", PROFILE, None) == "4"


def test_subscript_reads_names_with_spaces() -> None:
    assert render("{{ event['Product Name'] }}", {}, CART) == "iPhone 14 Pro"


def test_default_filter_covers_missing_values() -> None:
    assert render("{{ profile.nickname | default('friend') }}", PROFILE, CART) == "friend"
    assert render("{{ event.coupon | default('none') }}", {}, CART) == "none"
    assert render("{{ event['Gift Note'] | default('-') }}", {}, CART) == "-"
    assert render("{{ event.currency | default('USD') }}", {}, None) == "USD"


@pytest.mark.parametrize("source, profile, event, variable", [
    ("{{ event.price }}", PROFILE, {"product_name": "x"}, "event.price"),
    ("{{ event.price }}", PROFILE, None, "event.price"),
    ("Hi {{ profile.name }}", PROFILE, CART, "profile.name"),
    ("{{ event['Gift Note'] }}", PROFILE, CART, "event.Gift Note"),
    ("{{ profile.address.zip }}", PROFILE, CART, "profile.address.zip"),
    ("{{ profile.company.name }}", PROFILE, CART, "profile.company"),
    ("{% if event.coupon %}yes{% endif %}", PROFILE, CART, "event.coupon"),
    ("{{ user.name }}", PROFILE, CART, "user"),
])
def test_missing_value_names_the_variable(source: str, profile: dict[str, object],
                                          event: dict[str, object] | None, variable: str) -> None:
    with pytest.raises(MissingValue) as caught:
        render(source, profile, event)
    assert caught.value.variable == variable
    assert f"'{variable}'" in str(caught.value)


def test_properties_win_over_dict_methods() -> None:
    event = {"items": 3, "values": "v", "keys": "k"}
    assert render("{{ event.items }} {{ event.values }} {{ event.keys }}", {}, event) == "3 v k"
    assert render("{{ event.get('price', 0) }}", {}, {}) == "0"
    pairs = "{% for k, v in event.items() %}{{ k }}={{ v }};{% endfor %}"
    assert render(pairs, {}, {"a": 1, "b": 2}) == "a=1;b=2;"


@pytest.mark.parametrize("source", ["{{ event.pop('price') }}", "{{ event.scope_name }}",
                                    "{{ event.update }}", "{{ profile.clear() }}"])
def test_other_dict_attributes_are_missing_values(source: str) -> None:
    with pytest.raises(MissingValue):
        render(source, PROFILE, dict(CART))


def test_render_message_names_the_field() -> None:
    message = {"title": "Hi {{ profile.first_name }}", "body": "{{ event.price }}"}
    with pytest.raises(MissingValue) as caught:
        render_message(Channel.push, message, PROFILE, {"product_name": "x"})
    assert caught.value.variable == "event.price"
    assert caught.value.field == "body"
    assert "in body" in str(caught.value)


def test_render_message_renders_nested_fields() -> None:
    message: dict[str, MessageValue] = {
        "url": "https://hooks.test/{{ event.product_name | urlencode }}",
        "headers": {"X-User": "{{ profile.first_name }}"}}
    rendered = render_message(Channel.webhook, message, PROFILE, CART)
    assert rendered == {"url": "https://hooks.test/iPhone%2014", "headers.X-User": "Ada"}


def test_message_fields_flatten() -> None:
    message: dict[str, MessageValue] = {
        "body": "b", "headers": {"A": "a"},
        "buttons": ["plain", {"label": "Buy", "url": "u"}]}
    assert list(message_fields(message)) == [
        ("body", "b"), ("headers.A", "a"), ("buttons[0]", "plain"),
        ("buttons[1].label", "Buy"), ("buttons[1].url", "u")]


# --- HTML ------------------------------------------------------------------------------------

def test_email_html_is_autoescaped_and_nothing_else() -> None:
    event = {"name": "<b>Tom & Jerry</b>"}
    message = {"subject": "{{ event.name }}", "html": "<p>{{ event.name }}</p>",
               "text": "{{ event.name }}"}
    rendered = render_message(Channel.email, message, {}, event)
    assert rendered["html"] == "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
    assert rendered["subject"] == "<b>Tom & Jerry</b>"
    assert rendered["text"] == "<b>Tom & Jerry</b>"
    push = render_message(Channel.push, {"body": "{{ event.name }}"}, {}, event)
    assert push["body"] == "<b>Tom & Jerry</b>"


def test_autoescape_follows_the_channel_value_not_its_type() -> None:
    rendered = render_message("email", {"subject": "s", "html": "{{ event.x }}"},  # type: ignore[arg-type]
                              {}, {"x": "<i>"})
    assert rendered["html"] == "&lt;i&gt;"


def test_html_safe_filter_is_honoured() -> None:
    rendered = render_message(Channel.email, {"subject": "s", "html": "{{ event.x | safe }}"},
                              {}, {"x": "<i>ok</i>"})
    assert rendered["html"] == "<i>ok</i>"


# --- the sandbox -------------------------------------------------------------------------------

@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ event.__class__.__init__.__globals__ }}",
    "{{ profile.get.__self__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ (1).__class__.__base__.__subclasses__() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ range(10 ** 9) | list | length }}",
])
def test_sandbox_blocks_escapes(source: str) -> None:
    with pytest.raises((TemplateError, MissingValue)) as caught:
        render(source, PROFILE, CART)
    assert "<class" not in str(caught.value)


def test_sandbox_error_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="SecurityError"):
        render("{{ ''.__class__ }}", {}, None)


def test_runtime_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        render("{{ 1 / 0 }}", {}, None)
    with pytest.raises(TemplateError):
        render("{% include 'other.html' %}", {}, None)


# --- split expressions ---------------------------------------------------------------------------

@pytest.mark.parametrize("expression, expected", [
    ("profile.tier == 'gold'", True),
    ("profile.tier == 'silver'", False),
    ("event.price > 500", True),
    ("event.price > 500 and profile.orders >= 5", False),
    ("profile.tier in ['gold', 'platinum']", True),
    ("event['Product Name'] is string", True),
    ("profile.coupon | default('') == ''", True),
    ("event.coupon", False),  # missing: false, not an error
    ("profile.address.zip == '69001'", False),
    ("profile.orders", True),
])
def test_evaluate(expression: str, expected: bool) -> None:
    check_expression(expression)
    assert evaluate(expression, PROFILE, CART) is expected


def test_evaluate_without_event() -> None:
    assert evaluate("event.price > 500", PROFILE, None) is False
    assert evaluate("profile.tier == 'gold'", PROFILE, None) is True


def test_evaluate_runtime_error_is_a_template_error() -> None:
    with pytest.raises(TemplateError):
        evaluate("profile.tier > 3", PROFILE, None)


@pytest.mark.parametrize("expression", ["profile.tier ==", "{{ profile.tier }}", "a b",
                                        "profile.tier | no_such_filter", "x is no_such_test"])
def test_check_expression_rejects(expression: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        check_expression(expression)


# --- templates that do not compile ---------------------------------------------------------------

@pytest.mark.parametrize("source, line", [
    ("{{ event.price }", 1),
    ("line one\nline two\n{{ event.price }", 3),
    ("{{ event.name | no_such_filter }}", 1),
    ("ok\n{{ event.name is no_such_test }}", 2),
    ("{% for x in y %}" * 30 + "{% endfor %}" * 30, 1),
    ("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", 1),
])
def test_check_template_rejects_with_a_line(source: str, line: int) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        check_template(source)
    assert caught.value.lineno == line


def test_check_template_accepts() -> None:
    check_template("Hi {{ profile.first_name | default('friend') | title }}!\n"
                   "{% if event.price %}{{ '%.2f' | format(event.price) }}{% endif %}")


# --- static analysis ----------------------------------------------------------------------------

@pytest.mark.parametrize("source, uses, properties", [
    ("Hi {{ profile.first_name }}", False, set()),
    ("{{ event.product_name }} {{ event.price | default(0) }}", True, {"product_name", "price"}),
    ("{{ event['Product Name'] }}", True, {"Product Name"}),
    ("{{ event.get('coupon', '') }}", True, {"coupon"}),
    ("{% for k, v in event.items() %}{{ k }}{% endfor %}", True, set()),
    ("{{ event.items }}", True, {"items"}),
    ("{{ event }}", True, set()),
    ("{% if event.vip %}{{ event.code }}{% endif %}", True, {"vip", "code"}),
    ("{{ event.price }", False, set()),  # does not parse: reported as template-syntax instead
])
def test_template_event_use(source: str, uses: bool, properties: set[str]) -> None:
    use = template_event_use(source)
    assert use.uses_event is uses
    assert use.properties == properties


def test_expression_event_use() -> None:
    use = expression_event_use("event.price > 100 and profile.tier == 'gold'")
    assert use.uses_event and use.properties == {"price"}
    assert not expression_event_use("profile.tier == 'gold'").uses_event
    assert not expression_event_use("event.price >").uses_event
    assert expression_event_use("'}}' in event.note").properties == {"note"}


# --- null is a missing value ---------------------------------------------------------------------

@pytest.mark.parametrize("source, event, variable", [
    ("{{ event.coupon }}", {"coupon": None}, "event.coupon"),
    ("{{ event.items[0] }}", {"items": [None, 1]}, "event.items[0]"),
    ("{% for i in event.items %}{{ i }}{% endfor %}", {"items": [1, None]}, "event.items[1]"),
    ("{{ event.items }}", {"items": [1, None]}, "event.items[1]"),
    ("{{ event.cart.total }}", {"cart": {"total": None}}, "event.cart.total"),
    ("{{ event.price }}", {"price": float("nan")}, "event.price"),
    ("{{ event.price }}", {"price": float("inf")}, "event.price"),
    ("{{ event.get('coupon') }}", {}, "event.coupon"),
    ("{{ none }}", {}, "none"),
])
def test_null_is_a_missing_value(source: str, event: dict[str, object], variable: str) -> None:
    with pytest.raises(MissingValue) as caught:
        render(source, {}, event)
    assert caught.value.variable == variable
    with pytest.raises(MissingValue):  # preview and send both render with render_message
        render_message(Channel.sms, {"text": source}, {}, event)


def test_default_applies_to_a_null() -> None:
    assert render("{{ event.coupon | default('none') }}", {}, {"coupon": None}) == "none"
    assert render("{{ event.items[0] | default('-') }}", {}, {"items": [None]}) == "-"
    assert render("{{ profile.nick | default('friend') }}", {"nick": None}, None) == "friend"
    assert evaluate("event.coupon", {}, {"coupon": None}) is False
