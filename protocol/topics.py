"""The MQTT topic scheme, version 1.

::

    yj/1/up/{device}/{kind}      a terminal publishes here: pos pres evt snap resp clue ckpt
    yj/1/down/{device}/{kind}    the server publishes to one terminal: ack cmd cfg
    yj/1/unit/{unit}/{kind}      the server publishes to every terminal of an org unit: cmd cfg

The device id is a level of its own under ``up``/``down``, so a broker ACL can confine each
terminal to its own topics by name (the user name is the certificate's CN, with Mosquitto's
``use_identity_as_username``)::

    user ft-0042
    topic write yj/1/up/ft-0042/+
    topic read  yj/1/down/ft-0042/+
    topic read  yj/1/unit/futian-s1/+      one per unit the terminal belongs to

Spelt out per terminal (``provisioning/broker_config.py``) rather than one ``pattern ... %u``:
a pattern would keep granting a revoked terminal its topics for as long as its connection
lives, while a list reloaded without it takes them away at once. The ``1`` is the
topic scheme's version: a later scheme lives beside it, so old agents keep working. Topic
levels never carry ``+ # / $`` (MQTT 5 §4.7.1 wildcards; ids are restricted by ``ID_PATTERN``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .errors import TopicError
from .messages import DOWNLINK_TYPES, ID_PATTERN, UPLINK_TYPES, Message

ROOT = "yj/1"
UPLINK_KINDS = frozenset(t.TOPIC for t in UPLINK_TYPES)
DOWNLINK_KINDS = frozenset(t.TOPIC for t in DOWNLINK_TYPES)
_ID = re.compile(ID_PATTERN)

#: What the server's ingest subscribes to.
UPLINK_FILTER = f"{ROOT}/up/+/+"


class Channel(enum.StrEnum):
    UP = "up"
    DOWN = "down"
    UNIT = "unit"


@dataclass(frozen=True, slots=True)
class Route:
    channel: Channel
    party: str  # device id, or unit id for Channel.UNIT
    kind: str


def _checked_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise TopicError(what, f"{value!r} is not a valid id (pattern {ID_PATTERN})")
    return value


def uplink(device: str, message_type: type[Message]) -> str:
    return f"{ROOT}/up/{_checked_id(device, 'device')}/{message_type.TOPIC}"


def downlink(device: str, message_type: type[Message]) -> str:
    return f"{ROOT}/down/{_checked_id(device, 'device')}/{message_type.TOPIC}"


def broadcast(unit: str, message_type: type[Message]) -> str:
    return f"{ROOT}/unit/{_checked_id(unit, 'unit')}/{message_type.TOPIC}"


def device_filters(device: str, units: tuple[str, ...] = ()) -> list[str]:
    """What an agent subscribes to: its downlink and its units' broadcasts."""
    filters = [f"{ROOT}/down/{_checked_id(device, 'device')}/+"]
    filters += [f"{ROOT}/unit/{_checked_id(u, 'unit')}/+" for u in units]
    return filters


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription (§4.8.2): each message goes to one member of ``group``."""
    return f"$share/{_checked_id(group, 'group')}/{topic_filter}"


_ROOT_LEVELS = ROOT.split("/")
_CHANNELS = {c.value: c for c in Channel}  # what Channel(level) finds, without the enum's call


def parse(topic: str) -> Route:
    parts = topic.split("/")
    if len(parts) != 5 or parts[:2] != _ROOT_LEVELS:
        raise TopicError("topic", f"{topic!r} is not of the form {ROOT}/<channel>/<id>/<kind>")
    channel = _CHANNELS.get(parts[2])
    if channel is None:
        raise TopicError("topic", f"unknown channel {parts[2]!r} in {topic!r}")
    party = _checked_id(parts[3], "topic")
    kinds = UPLINK_KINDS if channel is Channel.UP else DOWNLINK_KINDS
    if parts[4] not in kinds:
        raise TopicError("topic", f"unknown kind {parts[4]!r} for channel {channel.value}")
    return Route(channel, party, parts[4])
