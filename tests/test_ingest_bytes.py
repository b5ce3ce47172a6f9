"""What an item or a line may hold (issue 15, case 3 and the id rules): lone surrogates and keys
given twice are refused with where they are; ids are strings or whole numbers; properties,
traits and profiles are objects. Pure parsing: the HTTP and ``ingest`` paths are in
test_http_bytes.py and test_ingest_lines.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journeys.ingest import BadLine, parse_identify, parse_item, parse_line
from journeys.inputs import BadText, strict_json

CUT = "\ud83d"  # what JavaScript leaves of an emoji cut in two


@pytest.mark.parametrize(("item", "where"), [
    ({"userId": "ada", "event": "Bought", "properties": {"title": f"Hi {CUT}"}}, "properties.title"),
    ({"userId": "ada", "event": "Bought", "properties": {"tags": ["ok", CUT]}}, "properties.tags[1]"),
    ({"userId": "ada", "event": "Bought", "context": {"page": {"title": CUT}}}, "context.page.title"),
    ({"userId": "ada", "event": f"Bought {CUT}"}, "event"),
    ({"userId": f"ada{CUT}", "event": "Bought"}, "userId"),
    ({"userId": "ada", "event": "Bought", "messageId": "m-1", "properties": {CUT: 1}}, "a key in properties"),
    ({"userId": "ada", "event": "Bought", "messageId": f"m{CUT}"}, "messageId"),
    ({"userId": "ada", "event": "Bought", "traits": {"name": "\udc00"}}, "traits.name"),
])
def test_a_lone_surrogate_is_refused_where_it_is(item: dict[str, Any], where: str) -> None:
    with pytest.raises(BadLine) as raised:
        parse_item(item, 3)
    assert raised.value.number == 3
    assert raised.value.reason.startswith(f"{where}: a lone UTF-16 surrogate")
    # As JSON text (how it comes: an escape, since UTF-8 cannot hold it), on a line too.
    with pytest.raises(BadLine, match="lone UTF-16 surrogate"):
        parse_line(json.dumps(item), 3)
    raised.value.reason.encode()  # the reason itself is valid Unicode (it goes into a JSON answer)


def test_a_surrogate_pair_is_an_emoji_and_passes() -> None:
    line = parse_line('{"userId": "ada", "event": "Bought", "properties": {"t": "\\ud83d\\ude00"}}', 1)
    assert line and line.event.properties == {"t": "\U0001f600"}


@pytest.mark.parametrize("traits", [{"name": CUT}, {CUT: "x"}, {"a": [{"b": CUT}]}])
def test_an_identify_with_a_surrogate_is_refused(traits: dict[str, Any]) -> None:
    with pytest.raises(BadLine, match="lone UTF-16 surrogate"):
        parse_identify({"userId": "ada", "traits": traits}, 0)
    with pytest.raises(BadLine, match="userId: a lone UTF-16 surrogate"):
        parse_identify({"userId": f"a{CUT}", "traits": {}}, 0)


@pytest.mark.parametrize(("text", "key"), [
    ('{"userId": "ada", "userId": "bob", "event": "X"}', "userId"),
    ('{"userId": "ada", "event": "X", "properties": {"plan": "a", "plan": "b"}}', "properties.plan"),
    ('{"userId": "ada", "event": "X", "properties": {"l": [{"k": 1, "k": 2}]}}', "properties.l[0].k"),
])
def test_a_key_given_twice_is_refused_by_name(text: str, key: str) -> None:
    with pytest.raises(BadLine, match=f"line 2: {key.replace('[', '.').replace(']', '.')}"
                                      ": the key is given twice"):
        parse_line(text, 2)
    with pytest.raises(BadText, match="the key is given twice"):
        strict_json(text)


@pytest.mark.parametrize(("user", "as_text"), [("ada", "ada"), (42, "42"), (2.0, "2"),
                                               (10**20, "100000000000000000000"), (-7, "-7")])
def test_an_id_is_a_string_or_a_whole_number_as_its_text(user: Any, as_text: str) -> None:
    line = parse_item({"userId": user, "event": "X", "messageId": user}, 1)
    assert (line.event.user_id, line.event.id) == (as_text, as_text)
    assert parse_identify({"userId": user}, 1) == (as_text, {})


@pytest.mark.parametrize(("user", "says"), [
    (["a", "b"], "a list"), ({"id": "a"}, "an object"), (True, "a boolean"), (False, "a boolean"),
    (2.5, "a number with a fraction"), ("   ", "white space only"), ("\t", "white space only"),
])
def test_any_other_id_is_refused(user: Any, says: str) -> None:
    for field in ("userId", "messageId"):
        item = {"userId": "ada", "event": "X", field: user}
        with pytest.raises(BadLine, match=f"{field}: .*{says}"):
            parse_item(item, 1)
    with pytest.raises(BadLine, match=f"userId: .*{says}"):
        parse_identify({"userId": user}, 1)


@pytest.mark.parametrize("value", [0, 1, [], ["a"], "x", "", True, 1.5])
def test_properties_traits_and_profiles_are_objects(value: Any) -> None:
    with pytest.raises(BadLine, match="properties: not a JSON object"):
        parse_item({"userId": "ada", "event": "X", "properties": value}, 1)
    with pytest.raises(BadLine, match="profile: not a JSON object"):
        parse_item({"userId": "ada", "event": "X", "traits": value}, 1)
    with pytest.raises(BadLine, match="traits: not a JSON object"):
        parse_identify({"userId": "ada", "traits": value}, 1)


def test_null_or_absent_properties_are_empty() -> None:
    for item in ({"userId": "a", "event": "X", "properties": None, "traits": None},
                 {"userId": "a", "event": "X"}):
        line = parse_item(item, 1)
        assert (line.event.properties, line.profile) == ({}, {})
    assert parse_identify({"userId": "a", "traits": None}, 1) == ("a", {})


@pytest.mark.parametrize("name", [7, ["X"], {"n": "X"}, True])
def test_an_event_name_is_a_string(name: Any) -> None:
    with pytest.raises(BadLine, match="event: not a string"):
        parse_item({"userId": "ada", "event": name}, 1)


@pytest.mark.parametrize(("data", "says"), [
    (b'{"userId": "ada", "event": "Caf\xe9"}', "not UTF-8: byte 0xe9 at byte 32"),
    (b'{"userId": "\xff"}', "not UTF-8: byte 0xff at byte 13"),
    (b'{"userId": "ada", "event": "\xed\xa0\xbd"}', "not UTF-8: byte 0xed"),  # a surrogate, encoded
])
def test_a_line_of_bytes_must_be_utf8(data: bytes, says: str) -> None:
    with pytest.raises(BadLine, match=f"line 5: {says}"):
        parse_line(data, 5)
    assert parse_line('{"userId": "ada", "event": "Café"}'.encode(), 5)


# --- whatever comes: a Line, nothing, or a BadLine; never another exception ------------------

_TEXT = st.text(st.characters(codec=None, categories=None), max_size=8)  # lone surrogates too
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=12)
_FIELDS = st.sampled_from(["userId", "user_id", "event", "name", "messageId", "id", "properties",
                           "traits", "profile", "timestamp", "context"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_FIELDS | _TEXT, _JSON, max_size=6))
def test_any_item_is_read_or_refused_with_a_reason(raw: dict[str, Any]) -> None:
    for parse in (parse_item, parse_identify):
        try:
            parse(raw, 1)
        except BadLine as exc:
            exc.reason.encode()  # a reason is valid Unicode: it goes into a JSON answer
    text = json.dumps(raw)  # as it comes over the wire: surrogates as escapes
    try:
        line = parse_line(text.encode(), 1)
    except BadLine as exc:
        exc.reason.encode()
    else:
        assert line is None or line.event.user_id.encode()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_are_read_or_refused_with_a_reason(data: bytes) -> None:
    try:
        parse_line(b'{"userId": "a", "event": "X", "properties": {"p": "' + data + b'"}}', 1)
        parse_line(data, 1)
    except BadLine as exc:
        exc.reason.encode()
