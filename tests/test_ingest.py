"""Reading a file of events: our field names and Segment's, ids made from content, bad lines."""

from __future__ import annotations

import json

import pytest

from journeys.ingest import BadLine, parse_line


def test_our_fields_and_segments_read_the_same() -> None:
    ours = parse_line(json.dumps({"user_id": "ada", "name": "Bought", "properties": {"x": 1},
                                  "id": "e-1", "profile": {"plan": "pro"}}), 1)
    segment = parse_line(json.dumps({"userId": "ada", "event": "Bought", "properties": {"x": 1},
                                     "messageId": "e-1", "traits": {"plan": "pro"},
                                     "timestamp": "2026-11-29T10:00:00Z"}), 2)
    assert ours and segment
    assert (ours.event.id, ours.event.name, ours.event.user_id, ours.profile) == (
        segment.event.id, segment.event.name, segment.event.user_id, segment.profile)


def test_a_line_without_an_id_gets_one_from_its_content() -> None:
    line = json.dumps({"user_id": "ada", "name": "Bought"})
    first, again = parse_line(line, 1), parse_line(line, 9)
    other = parse_line(json.dumps({"user_id": "bob", "name": "Bought"}), 1)
    assert first and again and other
    assert first.event.id == again.event.id != other.event.id


@pytest.mark.parametrize(("text", "says"), [
    ("{oops", "line 4: not JSON"),
    ("[1, 2]", "line 4: not a JSON object"),
    ('{"user_id": "ada"}', "line 4: name"),
    ('{"user_id": "a\\nb", "name": "X"}', "control characters"),
    ('{"user_id": "ada", "name": "X", "properties": {"p": NaN}}', "NaN is not a JSON number"),
    ('{"user_id": "ada", "name": "X", "profile": 7}', "profile: not a JSON object"),
    ('{"user_id": "ada", "name": "X", "properties": ' + '{"a":' * 20 + "1" + "}" * 20 + "}",
     "deeper than 16"),
])
def test_a_bad_line_says_which_and_why(text: str, says: str) -> None:
    with pytest.raises(BadLine) as raised:
        parse_line(text, 4)
    assert says in str(raised.value) and raised.value.number == 4


def test_a_blank_line_is_nothing() -> None:
    assert parse_line("   \n", 3) is None
