"""Frames: how one message travels in one MQTT payload (frame version 1).

::

    offset 0      1        2 ............................ n-T      n
           ┌──────┬────────┬───────────────────────────────┬────────┐
           │ ver  │ scheme │ msgpack [type, party, key_id,  │  tag   │
           │ 0x01 │        │          seq, sent_ms, body]   │ T bytes│
           └──────┴────────┴───────────────────────────────┴────────┘

- ``ver`` lets a server keep decoding old agents' frames after the format changes.
- ``scheme`` says how ``tag`` authenticates bytes ``0 .. n-T``: ``MAC`` is HMAC-SHA256 with the
  party's enrolment key, truncated to 16 bytes (RFC 2104 §5 allows truncation to half the
  output); ``SIG`` is an Ed25519 signature (RFC 8032) by the server, 64 bytes.
- ``party`` is the sending terminal for uplink, the addressed terminal (or unit) for downlink.
- ``seq`` numbers a terminal's uplink frames from 1, without gaps, across restarts; with
  ``party`` it is the deduplication key. 0 marks an unsequenced status frame (the MQTT will),
  which is never acknowledged.
- ``body`` is the message's positional list (``protocol.fields.Record``).

The choice of msgpack with positional lists over JSON objects is measured in
``bench/protocol_bench.py`` (docs/benchmarks.md).

Sans-IO: this module turns objects into bytes and back, nothing else.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import InvalidField, MalformedFrame, ProtocolError, UnsupportedVersion
from .fields import Int, _show
from .messages import IDENT, MAX_SEQ, MESSAGE_TYPES, TIME, Message

FRAME_VERSION = 1
MAX_FRAME_BYTES = 1024 * 1024  # a snapshot of MAX_JPEG_BYTES plus headroom


class Scheme(enum.IntEnum):
    MAC = 1
    SIG = 2


TAG_SIZE = {Scheme.MAC: 16, Scheme.SIG: 64}
_SCHEMES = {int(s): s for s in Scheme}  # what Scheme(byte) finds, without the enum's call
_HEADERS = {s: bytes((FRAME_VERSION, s)) for s in Scheme}
#: One msgpack Packer per thread (``msgpack.packb`` builds a new one for every call); a
#: Packer resets its buffer after each ``pack``, an exception included.
_packers = threading.local()
_KEY_ID = Int(0, 2**31 - 1)
_SEQ = Int(0, MAX_SEQ)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message with who sent it (or whom it is for), under which key, and its number."""

    party: str
    key_id: int
    seq: int
    sent_ms: int
    message: Message

    def __post_init__(self) -> None:
        IDENT.check(self.party, "party")
        _KEY_ID.check(self.key_id, "key_id")
        _SEQ.check(self.seq, "seq")
        TIME.check(self.sent_ms, "sent_ms")
        if not isinstance(self.message, Message):
            raise InvalidField("message", f"expected a Message, got {type(self.message).__name__}")


@dataclass(frozen=True, slots=True)
class Frame:
    """A parsed, not yet authenticated frame: ``signed`` is what ``tag`` must cover."""

    envelope: Envelope
    scheme: Scheme
    signed: bytes
    tag: bytes


def encode_unsigned(envelope: Envelope, scheme: Scheme) -> bytes:
    """Bytes 0 .. n-T of a frame; the caller appends the tag (see ``protocol.auth``)."""
    message = envelope.message
    body = [
        message.TYPE,
        envelope.party,
        envelope.key_id,
        envelope.seq,
        envelope.sent_ms,
        message.to_wire(),
    ]
    try:
        packer: msgpack.Packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    packed: bytes = packer.pack(body)
    return _HEADERS[scheme] + packed


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ValueError covers msgpack's FormatError, StackError, ExtraData and bad UTF-8; TypeError
        # an unhashable map key. Nothing else is raised for any input.
        reason = f"body is not valid msgpack ({type(exc).__name__}: {exc})"
        raise MalformedFrame("", reason) from None


def decode(payload: bytes) -> Frame:
    """Parse a frame without authenticating it. Raises only ``ProtocolError``."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise MalformedFrame("", f"payload must be bytes, got {type(payload).__name__}")
    data = bytes(payload)
    if len(data) > MAX_FRAME_BYTES:
        raise MalformedFrame("", f"{len(data)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    if len(data) < 3:
        raise MalformedFrame("", f"{len(data)} bytes is too short for a frame")
    if data[0] != FRAME_VERSION:
        raise UnsupportedVersion("version", f"frame version {data[0]} (this code speaks 1)")
    scheme = _SCHEMES.get(data[1])
    if scheme is None:
        raise UnsupportedVersion("scheme", f"unknown authentication scheme {data[1]}")
    tag_size = TAG_SIZE[scheme]
    if len(data) < 3 + tag_size:
        raise MalformedFrame("", f"{len(data)} bytes is too short for a {scheme.name} frame")
    signed, tag = data[:-tag_size], data[-tag_size:]
    raw = _unpack(signed[2:])
    if not isinstance(raw, list) or len(raw) != 6:
        raise MalformedFrame("", "body must be a list [type, party, key_id, seq, sent_ms, body]")
    type_code, party, key_id, seq, sent_ms, body = raw
    # bool is an int in Python: msgpack ``true`` must not pass for type 1.
    if not isinstance(type_code, int) or isinstance(type_code, bool):
        raise MalformedFrame("type", f"message type must be an integer, got {_show(type_code)}")
    if type_code not in MESSAGE_TYPES:
        raise MalformedFrame("type", f"unknown message type {type_code}")
    message_type = MESSAGE_TYPES[type_code]
    try:
        message = message_type.from_wire(body)
    except ProtocolError as exc:
        raise exc.within(message_type.__name__) from None
    return Frame(Envelope(party, key_id, seq, sent_ms, message), scheme, signed, tag)
