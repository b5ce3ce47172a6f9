"""The product page's personalization rules, in the cases that are easy to get wrong: which
event a node is personalized with, where none is available, and the 24 h delay rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from journeys.language.channels import ONLINE_CHANNELS
from journeys.language.loader import journey_files, load_document, load_file
from journeys.validation.validate import validate_file, validate_loaded
from tests.helpers.journey_docs import (
    CATALOG,
    CATALOG_PROBLEMS,
    action,
    check,
    delay,
    journey,
    merge,
    profile_date,
    send,
)


def test_catalog_loads() -> None:
    assert CATALOG_PROBLEMS == []
    assert "product_name" in CATALOG["Added To Cart"].properties
    assert "category" in CATALOG["Viewed Product"].properties
    assert "category" not in CATALOG["Added To Wishlist"].properties


# --- personalization: which event, where --------------------------------------------------------

def two_action_nodes(first_use: str, second_use: str) -> dict[str, Any]:
    return journey(
        action("viewed", "Viewed Product"),
        send("push-1", first_use),
        action("wishlisted", "Added To Wishlist", within="12h"),
        send("push-2", second_use),
    )


def test_second_action_node_supplies_its_event() -> None:
    assert check(two_action_nodes("{{ event.category }}", "{{ event.price }}")) == []


def test_property_of_the_first_event_is_unknown_after_the_second_action_node() -> None:
    doc = two_action_nodes("{{ event.category }}", "{{ event.category }}")
    assert check(doc) == [("unknown-event-property", "push-2", "message.body")]
    # Before the second action node the first event is in scope: its properties only.
    doc = two_action_nodes("{{ event.price }}", "{{ event.price }}")
    assert check(doc) == [("unknown-event-property", "push-1", "message.body")]


def test_without_schemas_properties_are_not_checked() -> None:
    assert check(two_action_nodes("{{ event.category }}", "{{ event.category }}"),
                 schemas=False) == []


def test_timeout_path_of_an_action_node_keeps_the_earlier_event() -> None:
    doc = journey(
        action("viewed", "Viewed Product"),
        action("wishlisted", "Added To Wishlist", within="12h", timeout_next="push-timeout"),
        send("push-did", "{{ event.price }}"),
        extra=[send("push-timeout", "{{ event.category }}")],
    )
    assert check(doc) == []
    doc["nodes"][-1]["message"]["body"] = "{{ event.price }}"
    assert check(doc) == [("unknown-event-property", "push-timeout", "message.body")]


def test_merge_of_paths_with_different_events_allows_shared_properties() -> None:
    assert check(merge("{{ event.product_name }}: {{ event.product_url }}")) == []


def test_merge_of_paths_with_different_events_rejects_a_property_of_one_path() -> None:
    # category is on Viewed Product only, price on Added To Wishlist only.
    for prop, lacking in (("category", "Added To Wishlist"), ("price", "Viewed Product")):
        doc = merge("{{ event." + prop + " }}")
        loaded = load_document(doc, "t.yaml", CATALOG)
        problems = validate_loaded(loaded)
        assert [(p.code, p.node, p.field) for p in problems] == [
            ("unknown-event-property", "push-merged", "message.body")]
        assert f"'{lacking}'" in problems[0].message
        assert f"event.{prop}" in problems[0].message


def test_a_long_delay_before_the_action_node_is_fine() -> None:
    doc = journey(
        action("signed-up", "Signed Up"),
        delay("wait-2d", "2d"),
        action("viewed", "Viewed Product", within="12h"),
        send("push", "{{ event.product_name }}"),
    )
    assert check(doc) == []


def test_a_long_delay_after_the_last_use_is_fine() -> None:
    doc = journey(
        action("added", "Added To Cart"),
        send("push", "{{ event.product_name }}"),
        delay("wait-3d", "3d"),
        send("push-later", "Come back, {{ profile.first_name | default('friend') }}"),
    )
    assert check(doc) == []


def test_each_delay_counts_not_their_sum() -> None:
    doc = journey(
        action("added", "Added To Cart"),
        delay("wait-1", "23h"),
        send("push-1", "{{ event.product_name }}"),
        delay("wait-2", "1439m"),
        send("push-2", "{{ event.product_name }}"),
    )
    assert check(doc) == []


@pytest.mark.parametrize("duration", ["24h", "1d", "1440m", "86400s", "30d"])
def test_a_delay_of_24h_or_more_between_supplier_and_use_is_too_long(duration: str) -> None:
    doc = journey(
        action("added", "Added To Cart"),
        send("push-1", "{{ event.product_name }}"),
        delay("wait", duration),
        send("push-2", "{{ event.product_name }}"),
    )
    assert check(doc) == [("event-delay-too-long", "push-2", "message.body")]


def test_a_long_delay_on_one_merging_path_is_too_long() -> None:
    doc = journey(
        action("added", "Added To Cart"),
        {"id": "pick", "type": "intellinode", "mode": "manual",
         "paths": [{"next": "wait-short", "percent": 50}, {"next": "wait-long", "percent": 50}]},
        extra=[delay("wait-short", "1h", next="push"), delay("wait-long", "2d", next="push"),
               send("push", "{{ event.product_name }}")],
    )
    loaded = load_document(doc, "t.yaml", CATALOG)
    problems = validate_loaded(loaded)
    assert [(p.code, p.node, p.field) for p in problems] == [
        ("event-delay-too-long", "push", "message.body")]
    assert "'wait-long'" in problems[0].message


def test_a_long_timeout_keeps_the_old_event_and_counts_as_a_delay() -> None:
    doc = journey(
        action("added", "Added To Cart"),
        action("charged", "Charged", within="2d", timeout_next="push-timeout"),
        send("push-thanks", "Thanks: {{ event.amount }}"),
        extra=[send("push-timeout", "{{ event.product_name }}")],
    )
    assert check(doc) == [("event-delay-too-long", "push-timeout", "message.body")]


def test_the_controller_node_between_engagement_nodes_keeps_the_event() -> None:
    doc = journey(
        action("added", "Added To Cart"),
        delay("wait-1", "15h"),
        send("push", "{{ event.product_name }}"),
        {"id": "remember", "type": "profile_update", "set": {"last": "{{ event.product_name }}"}},
        delay("wait-2", "15h"),
        send("email", "{{ event.price }}", channel="email"),
    )
    assert check(doc) == []
    doc["nodes"][-1]["message"]["subject"] = "{{ event.amount }}"  # a property of Charged
    assert check(doc) == [("unknown-event-property", "email", "message.subject")]


def test_an_intellinode_between_engagement_nodes_keeps_the_event() -> None:
    doc = journey(
        action("added", "Added To Cart"),
        send("push", "{{ event.product_name }}"),
        {"id": "pick", "type": "intellinode", "mode": "manual",
         "paths": [{"next": "sms", "percent": 30}, {"next": "email", "percent": 70}]},
        extra=[send("sms", "{{ event.product_name }}", channel="sms"),
               send("email", "{{ event.price }}", channel="email")],
    )
    assert check(doc) == []


def test_an_inaction_node_mid_journey_keeps_the_current_event() -> None:
    doc = journey(
        action("added", "Added To Cart"),
        send("push", "{{ event.product_name }}"),
        {"id": "no-purchase", "type": "inaction", "not_event": "Charged", "within": "2h"},
        send("push-2", "{{ event.product_name }} for {{ event.price }}"),
    )
    assert check(doc) == []
    doc["nodes"][-1]["message"]["body"] = "{{ event.amount }}"  # Charged never happened
    assert check(doc) == [("unknown-event-property", "push-2", "message.body")]


def test_an_inaction_node_at_entry_supplies_its_main_event() -> None:
    doc = journey(
        {"id": "abandoned", "type": "inaction", "event": "Added To Cart", "not_event": "Charged",
         "within": "1h"},
        send("push", "{{ event.product_name }}"),
    )
    assert check(doc) == []


def test_event_unavailable_after_a_profile_date_entry_until_an_action_node() -> None:
    doc = journey(
        profile_date("birthday"),
        send("push-early", "Happy birthday {{ profile.first_name | default('you') }}"),
        action("viewed", "Viewed Product", within="12h"),
        send("push-late", "{{ event.product_name }}"),
    )
    assert check(doc) == []
    doc["nodes"][1]["message"]["body"] = "{{ event.product_name }}"
    assert check(doc) == [("event-unavailable", "push-early", "message.body")]


def test_event_unavailable_on_the_timeout_path_after_a_profile_date_entry() -> None:
    doc = journey(
        profile_date("birthday"),
        action("viewed", "Viewed Product", within="12h", timeout_next="push-timeout"),
        send("push-did", "{{ event.product_name }}"),
        extra=[send("push-timeout", "{{ event.product_name }}")],
    )
    assert check(doc) == [("event-unavailable", "push-timeout", "message.body")]


def test_event_date_time_node_mid_journey_supplies_its_event() -> None:
    doc = journey(
        profile_date("birthday"),
        {"id": "flight", "type": "date_time", "event": "Flight Booked",
         "date_property": "departure_at", "offset": "-1d", "within": "30d"},
        send("push", "{{ event.destination }}"),
    )
    assert check(doc) == []


def test_event_unavailable_in_controller_nodes_too() -> None:
    doc = journey(
        profile_date("birthday"),
        {"id": "remember", "type": "profile_update", "set": {"seen": "{{ event.product_name }}"}},
        {"id": "by-price", "type": "split", "otherwise": "done",
         "branches": [{"when": "event.price > 100", "next": "done"}]},
        {"id": "done", "type": "exit"},
    )
    assert check(doc) == [("event-unavailable", "remember", "set.seen"),
                          ("event-unavailable", "by-price", "branches[0].when")]


def test_event_unavailable_only_where_event_is_read() -> None:
    doc = journey(profile_date("birthday"),
                  send("push", "{{ profile.first_name | default('friend') }}"))
    assert check(doc) == []
    # Any read of event counts, with or without a default and via subscripts.
    for body in ("{{ event.x | default('') }}", "{{ event['Product Name'] }}", "{{ event }}"):
        doc["nodes"][1]["message"]["body"] = body
        assert check(doc) == [("event-unavailable", "push", "message.body")]


@pytest.mark.parametrize("channel", sorted(ONLINE_CHANNELS))
def test_online_channels_cannot_use_the_event(channel: str) -> None:
    doc = journey(action("added", "Added To Cart"), send("online", "{{ event.product_name }}",
                                                          channel=channel))
    assert check(doc) == [("event-in-online-channel", "online", "message.body")]


@pytest.mark.parametrize("channel", sorted(ONLINE_CHANNELS))
def test_online_channels_with_profile_only_templates_are_fine(channel: str) -> None:
    for entry in (action("added", "Added To Cart"), profile_date("birthday")):
        doc = journey(entry, send("online", "Hi {{ profile.first_name | default('there') }}",
                                  channel=channel))
        assert check(doc) == []


def test_schema_check_reads_get_and_subscript_but_not_dict_methods() -> None:
    doc = journey(action("added", "Added To Cart"),
                  send("push", "{{ event.get('price', 0) }} {% for k, v in event.items() %}{{ k }}"
                               "{% endfor %} {{ event['product_name'] }}"))
    assert check(doc) == []
    doc["nodes"][1]["message"]["body"] = "{{ event.get('colour') }}"
    assert check(doc) == [("unknown-event-property", "push", "message.body")]
    doc["nodes"][1]["message"]["body"] = "{{ event['Product Name'] }}"
    assert check(doc) == [("unknown-event-property", "push", "message.body")]


def test_journey_events_override_the_catalog() -> None:
    doc = journey(action("added", "Added To Cart"), send("push", "{{ event.colour }}"),
                  events={"Added To Cart": {"properties": {"colour": "string"}}})
    assert check(doc) == []


def test_catalog_beside_the_file_is_used(tmp_path: Path) -> None:
    (tmp_path / "event-catalog.yaml").write_text("events:\n  Added To Cart:\n"
                                                 "    properties: [product_name]\n")
    path = tmp_path / "j.yaml"
    path.write_text("id: j\nname: J\nentry: a\nnodes:\n"
                    "  - {id: a, type: action, event: Added To Cart, next: p}\n"
                    "  - {id: p, type: engagement, channel: push, message: {body: '{{ event.price }}'}}\n")
    _, problems = validate_file(path)
    assert [(p.code, p.node) for p in problems] == [("unknown-event-property", "p")]
    assert list(journey_files([tmp_path])) == [path]


def test_catalog_problems_name_the_event(tmp_path: Path) -> None:
    (tmp_path / "event-catalog.yaml").write_text("events:\n  Added To Cart:\n"
                                                 "    properties: 5\n")
    path = tmp_path / "j.yaml"
    path.write_text("id: j\nname: J\nentry: a\nnodes:\n  - {id: a, type: action, event: E}\n")
    problems = load_file(path).problems
    assert [(p.code, p.field) for p in problems] == [("bad-value", "events.Added To Cart.properties")]
    assert problems[0].file.endswith("event-catalog.yaml")
