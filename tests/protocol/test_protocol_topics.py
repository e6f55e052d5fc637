"""The MQTT topic scheme: building, parsing, shared subscriptions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import TopicError, topics
from protocol.messages import DOWNLINK_TYPES, MESSAGE_TYPES, UPLINK_TYPES, Message
from protocol.topics import Channel, Route

from .strategies import ids


def test_kinds() -> None:
    assert sorted(topics.UPLINK_KINDS) == ["ckpt", "clue", "evt", "pos", "pres", "resp", "snap"]
    assert sorted(topics.DOWNLINK_KINDS) == ["ack", "cfg", "cmd"]
    assert topics.UPLINK_FILTER == "yj/1/up/+/+"


@pytest.mark.parametrize("message_type", UPLINK_TYPES, ids=lambda t: t.__name__)
def test_uplink_topics_parse_back(message_type: type[Message]) -> None:
    topic = topics.uplink("term-1", message_type)
    assert topic == f"yj/1/up/term-1/{message_type.TOPIC}"
    assert topics.parse(topic) == Route(Channel.UP, "term-1", message_type.TOPIC)


@pytest.mark.parametrize("message_type", DOWNLINK_TYPES, ids=lambda t: t.__name__)
def test_downlink_and_broadcast_topics_parse_back(message_type: type[Message]) -> None:
    down = topics.downlink("term-1", message_type)
    assert topics.parse(down) == Route(Channel.DOWN, "term-1", message_type.TOPIC)
    unit = topics.broadcast("unit.7", message_type)
    assert unit == f"yj/1/unit/unit.7/{message_type.TOPIC}"
    assert topics.parse(unit) == Route(Channel.UNIT, "unit.7", message_type.TOPIC)


@settings(max_examples=100, deadline=None)
@given(party=ids, message_type=st.sampled_from(list(MESSAGE_TYPES.values())))
def test_any_valid_id_makes_a_parseable_topic(party: str, message_type: type[Message]) -> None:
    build = topics.uplink if message_type in UPLINK_TYPES else topics.downlink
    route = topics.parse(build(party, message_type))
    assert route.party == party and route.kind == message_type.TOPIC


@pytest.mark.parametrize(
    ("topic", "words"),
    [
        ("", "not of the form yj/1/<channel>/<id>/<kind>"),
        ("yj/1/up/term-1", "not of the form"),
        ("yj/1/up/term-1/pos/extra", "not of the form"),
        ("/yj/1/up/term-1/pos", "not of the form"),
        ("yj/2/up/term-1/pos", "not of the form"),
        ("YJ/1/up/term-1/pos", "not of the form"),
        ("yj/1/sideways/term-1/pos", "unknown channel 'sideways'"),
        ("yj/1/up/+/pos", "'+' is not a valid id"),
        ("yj/1/up/#/pos", "'#' is not a valid id"),
        ("yj/1/up//pos", "'' is not a valid id"),
        ("yj/1/up/$SYS/pos", "'$SYS' is not a valid id"),
        ("yj/1/up/-term/pos", "is not a valid id"),
        ("yj/1/up/" + "t" * 65 + "/pos", "is not a valid id"),
        ("yj/1/up/term-1/cmd", "unknown kind 'cmd' for channel up"),
        ("yj/1/down/term-1/pos", "unknown kind 'pos' for channel down"),
        ("yj/1/unit/u1/ckpt", "unknown kind 'ckpt' for channel unit"),
        ("yj/1/up/term-1/+", "unknown kind '+'"),
    ],
)
def test_invalid_topics(topic: str, words: str) -> None:
    with pytest.raises(TopicError) as info:
        topics.parse(topic)
    assert info.value.field == "topic"
    assert words in str(info.value)


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "$share", "", "ü"])
def test_builders_refuse_bad_ids(bad: str) -> None:
    from protocol import Position, StoredAck

    with pytest.raises(TopicError) as info:
        topics.uplink(bad, Position)
    assert info.value.field == "device"
    with pytest.raises(TopicError) as info:
        topics.downlink(bad, StoredAck)
    assert info.value.field == "device"
    with pytest.raises(TopicError) as info:
        topics.broadcast(bad, StoredAck)
    assert info.value.field == "unit"
    with pytest.raises(TopicError) as info:
        topics.device_filters("term-1", ("u1", bad))
    assert info.value.field == "unit"


def test_device_filters() -> None:
    assert topics.device_filters("term-1") == ["yj/1/down/term-1/+"]
    assert topics.device_filters("term-1", ("u1", "u2")) == [
        "yj/1/down/term-1/+",
        "yj/1/unit/u1/+",
        "yj/1/unit/u2/+",
    ]


def test_shared_subscription() -> None:
    assert topics.shared("ingest", topics.UPLINK_FILTER) == "$share/ingest/yj/1/up/+/+"
    with pytest.raises(TopicError) as info:
        topics.shared("in/gest", topics.UPLINK_FILTER)
    assert info.value.field == "group"
    with pytest.raises(TopicError):
        topics.shared("", topics.UPLINK_FILTER)


def test_shared_topics_are_not_publish_topics() -> None:
    with pytest.raises(TopicError):
        topics.parse(topics.shared("ingest", "yj/1/up/term-1/pos"))
