"""The validator: every example is valid, every invalid example breaks exactly its rule, and
the product page's personalization rules hold in the cases that are easy to get wrong."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from journeys.loader import journey_files, load_catalog, load_document, load_file
from journeys.models import ONLINE_CHANNELS, EventSchema
from journeys.problems import RULES, Problem, UsageError
from journeys.validate import validate_file, validate_loaded, validate_paths

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
INVALID = EXAMPLES / "invalid"
VALID_FILES = sorted(journey_files([EXAMPLES]))
INVALID_FILES = sorted(journey_files([INVALID]))
EXPECT = re.compile(r"^# expect: (?P<code>[a-z-]+) node=(?P<node>\S+) field=(?P<field>\S+)$")


def expectation(path: Path) -> tuple[str, str | None, str | None]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = EXPECT.match(first)
    assert match, f"{path.name}: the first line must be '# expect: <code> node=<id> field=<f>'"
    node, field = match["node"], match["field"]
    return match["code"], None if node == "-" else node, None if field == "-" else field


# --- the example files ----------------------------------------------------------------------

def test_examples_exist() -> None:
    assert len(VALID_FILES) >= 8
    assert all(path.name != "event-catalog.yaml" for path in VALID_FILES)


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    loaded, problems = validate_file(path)
    assert problems == []
    assert loaded.journey is not None
    assert loaded.catalog, "examples/event-catalog.yaml is loaded beside the examples"


def test_every_rule_has_an_invalid_example() -> None:
    codes = [expectation(path)[0] for path in INVALID_FILES]
    assert sorted(codes) == sorted(RULES), "one invalid example per rule code"
    assert all(path.stem == expectation(path)[0] for path in INVALID_FILES)


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_invalid_example_breaks_its_rule(path: Path) -> None:
    code, node, field = expectation(path)
    _, problems = validate_file(path)
    found = [(p.code, p.node, p.field) for p in problems]
    assert found == [(code, node, field)], "exactly the expected problem, nothing else"
    assert problems[0].file == str(path)
    assert problems[0].message


def test_validate_paths_expands_folders_but_not_subfolders() -> None:
    results = validate_paths([EXAMPLES])
    assert [loaded.path for loaded, _ in results] == [str(p) for p in VALID_FILES]
    assert all(problems == [] for _, problems in results)


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        validate_paths([tmp_path / "nope.yaml"])


def test_unreadable_yaml_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(UsageError, match="cannot read"):
        validate_paths([path])


def test_a_date_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "date.yaml"
    path.write_text("id: j\nname: 2024-02-30\n")
    with pytest.raises(UsageError, match="cannot read"):
        validate_paths([path])


def test_problem_text_format() -> None:
    problem = Problem(file="j.yaml", node="push-1", field="message.body", code="template-syntax",
                      message="line 1: unexpected '}'")
    assert str(problem) == ("j.yaml: node 'push-1' (message.body): line 1: unexpected '}' "
                            "[template-syntax]")
    journey_level = Problem(file="j.yaml", node=None, field="goals", code="too-many-goals",
                            message="4 goals")
    assert str(journey_level) == "j.yaml: journey (goals): 4 goals [too-many-goals]"


# --- building journeys in tests ---------------------------------------------------------------

CATALOG, CATALOG_PROBLEMS = load_catalog(EXAMPLES)


def chain(*nodes: dict[str, Any]) -> list[dict[str, Any]]:
    """Link each node to the one after it, unless it says where it goes."""
    linked = []
    for node, after in zip(nodes, [*nodes[1:], None], strict=True):
        node = dict(node)
        if after is not None and node.get("type") not in ("split", "intellinode", "exit"):
            node.setdefault("next", after.get("id"))
        linked.append(node)
    return linked


def journey(*nodes: dict[str, Any], extra: list[dict[str, Any]] | None = None,
            **fields: Any) -> dict[str, Any]:
    linked = chain(*nodes) + (extra or [])
    return {"id": "t", "name": "Test", "entry": linked[0]["id"], "nodes": linked, **fields}


def action(node_id: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "action", "event": event, **fields}


def delay(node_id: str, duration: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "delay", "duration": duration, **fields}


def send(node_id: str, text: str, channel: str = "push", **fields: Any) -> dict[str, Any]:
    message = {"push": {"body": text}, "sms": {"text": text}, "email": {"subject": text, "text": "hi"},
               "in_app": {"body": text}, "web_popup": {"body": text}, "app_inbox": {"body": text}}
    return {"id": node_id, "type": "engagement", "channel": channel,
            "message": message[channel], **fields}


def profile_date(node_id: str, prop: str = "birthday") -> dict[str, Any]:
    return {"id": node_id, "type": "date_time", "profile_property": prop}


def check(doc: dict[str, Any], schemas: bool = True) -> list[tuple[str, str | None, str | None]]:
    catalog: dict[str, EventSchema] = CATALOG if schemas else {}
    return [(p.code, p.node, p.field) for p in validate_loaded(load_document(doc, "t.yaml", catalog))]


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


def merge(use: str) -> dict[str, Any]:
    """Two paths, each through its own action node, meet at one message."""
    return journey(
        action("entered", "Signed Up"),
        {"id": "by-plan", "type": "split", "otherwise": "wishlisted",
         "branches": [{"when": "event.plan == 'pro'", "next": "viewed"}]},
        extra=[
            action("viewed", "Viewed Product", within="6h", next="push-merged"),
            action("wishlisted", "Added To Wishlist", within="6h", next="push-merged"),
            send("push-merged", use),
        ],
    )


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


# --- structure and templates ---------------------------------------------------------------------

def test_template_syntax_reports_the_line() -> None:
    doc = journey(action("added", "Added To Cart"),
                  send("email", "ok", channel="email"))
    doc["nodes"][1]["message"]["html"] = "<p>\n{{ event.product_name }\n</p>"
    problems = validate_loaded(load_document(doc, "t.yaml", CATALOG))
    assert [(p.code, p.node, p.field) for p in problems] == [
        ("template-syntax", "email", "message.html")]
    assert problems[0].message.startswith("line 2:")


def test_unknown_filter_is_a_template_problem() -> None:
    doc = journey(action("added", "Added To Cart"), send("push", "{{ event.product_name | tittle }}"))
    assert check(doc) == [("template-syntax", "push", "message.body")]


def test_profile_update_templates_are_checked() -> None:
    doc = journey(action("added", "Added To Cart"),
                  {"id": "remember", "type": "profile_update", "set": {"last": "{{ event.x "}})
    assert check(doc) == [("template-syntax", "remember", "set.last")]


def test_split_expression_that_is_a_template_is_rejected() -> None:
    doc = merge("{{ event.product_name }}")
    doc["nodes"][1]["branches"][0]["when"] = "{{ event.plan }}"
    assert check(doc) == [("expression-syntax", "by-plan", "branches[0].when")]


def test_nested_message_fields_are_checked() -> None:
    doc = journey(action("added", "Added To Cart"),
                  {"id": "hook", "type": "engagement", "channel": "webhook",
                   "message": {"url": "https://example.test/{{ event.product_name }}",
                               "headers": {"X-Product": "{{ event.colour }}"}}})
    assert check(doc) == [("unknown-event-property", "hook", "message.headers.X-Product")]


def test_email_needs_html_or_text() -> None:
    doc = journey(action("added", "Added To Cart"),
                  {"id": "email", "type": "engagement", "channel": "email",
                   "message": {"subject": "hi"}})
    assert check(doc) == [("missing-message-field", "email", "message.html")]


def test_manual_intellinode_paths_need_percentages() -> None:
    doc = journey(action("added", "Added To Cart"),
                  {"id": "pick", "type": "intellinode",
                   "paths": [{"next": "a", "percent": 100}, {"next": "b"}]},
                  extra=[{"id": "a", "type": "exit"}, {"id": "b", "type": "exit"}])
    assert check(doc) == [("missing-field", "pick", "paths[1].percent")]


@pytest.mark.parametrize("count, ok", [(2, True), (7, True), (8, False)])
def test_intellinode_path_count(count: int, ok: bool) -> None:
    ends = [{"id": f"end-{i}", "type": "exit"} for i in range(count)]
    doc = journey(action("added", "Added To Cart"),
                  {"id": "pick", "type": "intellinode", "mode": "automated",
                   "paths": [{"next": end["id"]} for end in ends]},
                  extra=ends, goals=["Charged"])
    assert check(doc) == ([] if ok else [("intellinode-paths", "pick", "paths")])


def test_three_goals_are_fine() -> None:
    doc = journey(action("added", "Added To Cart"), goals=["Charged", "Viewed Product", "Signed Up"])
    assert check(doc) == []


def test_date_source_needs_one_source() -> None:
    doc = journey({"id": "when", "type": "date_time"}, send("push", "hi"))
    assert check(doc) == [("date-source", "when", "event")]
    doc["nodes"][0].update(event="Flight Booked")
    assert check(doc) == [("missing-field", "when", "date_property")]


def test_entry_inaction_needs_its_main_event() -> None:
    doc = journey({"id": "idle", "type": "inaction", "not_event": "Charged", "within": "1h"},
                  send("push", "hi"))
    assert ("missing-field", "idle", "event") in check(doc)


def test_timeout_next_needs_within() -> None:
    doc = journey(action("added", "Added To Cart"), action("charged", "Charged", timeout_next="end"),
                  {"id": "end", "type": "exit"})
    assert check(doc) == [("bad-value", "charged", "timeout_next")]


def test_cycle_through_a_split_is_found_and_personalization_skipped() -> None:
    doc = journey(action("added", "Added To Cart"),
                  {"id": "again", "type": "split", "otherwise": "added",
                   "branches": [{"when": "event.price > 3", "next": "push"}]},
                  extra=[send("push", "{{ event.nope }}")])
    found = check(doc)
    assert ("cycle", "again", None) in found
    assert all(code == "cycle" for code, _, _ in found)


def test_self_loop_is_a_cycle() -> None:
    doc = journey(action("added", "Added To Cart"), delay("wait", "1h", next="wait"))
    assert check(doc) == [("cycle", "wait", None)]


# --- the loader's problems ---------------------------------------------------------------------

def test_not_a_mapping() -> None:
    raws: list[Any] = [None, [], "journey", 5]
    for raw in raws:
        problems = validate_loaded(load_document(raw, "t.yaml"))
        assert [(p.code, p.node, p.field) for p in problems] == [("bad-value", None, None)]


def test_missing_node_type() -> None:
    doc = journey(action("added", "Added To Cart"), {"id": "what", "next": None})
    problems = validate_loaded(load_document(doc, "t.yaml"))
    assert [(p.code, p.node, p.field) for p in problems] == [("missing-field", "what", "type")]
    assert problems[0].message == "'type' is required"


def test_node_without_an_id_is_named_by_position() -> None:
    doc = journey(action("added", "Added To Cart"), {"type": "exit"})
    assert check(doc) == [("missing-field", "#2", "id")]


def test_wrong_message_value_type_is_one_problem() -> None:
    doc = journey(action("added", "Added To Cart"), send("push", "x"))
    doc["nodes"][1]["message"]["body"] = 5
    problems = validate_loaded(load_document(doc, "t.yaml"))
    assert [(p.code, p.node, p.field) for p in problems] == [("bad-value", "push", "message.body")]
    assert "string" in problems[0].message


def test_wrong_where_value_type_is_one_problem() -> None:
    doc = journey(action("added", "Added To Cart", where={"price": [1]}))
    assert check(doc) == [("bad-value", "added", "where.price")]


@pytest.mark.parametrize("duration", ["15", "h", "1.5h", "-1h", "15 hours", "99999999999d", ""])
def test_bad_durations(duration: str) -> None:
    doc = journey(action("added", "Added To Cart"), delay("wait", duration))
    assert check(doc) == [("bad-value", "wait", "duration")]


@pytest.mark.parametrize("at", ["9:00", "24:00", "12:60", "noon", "１２:00"])
def test_bad_time_of_day(at: str) -> None:
    doc = journey({**profile_date("birthday"), "at": at}, send("push", "hi"))
    assert check(doc) == [("bad-value", "birthday", "at")]


def test_negative_offset_is_fine_negative_delay_is_not() -> None:
    doc = journey({**profile_date("renewal"), "offset": "-3d"}, send("push", "hi"))
    assert check(doc) == []
