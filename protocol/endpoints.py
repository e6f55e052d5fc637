"""The two ends of the protocol, sans-IO: bytes in, objects out, and back.

``DeviceEndpoint`` is the terminal's side: ``seal`` turns a message into (topic, payload) for a
sequence number the caller assigned (the agent's outbox owns numbering, because it must survive
restarts); ``receive`` authenticates and decodes what the server sent. ``UplinkVerifier`` is the
server's side of uplink, ``ServerEndpoint`` of downlink. None of them touches a socket or a
clock: times are arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import topics
from .auth import (
    digest,
    make_checkpoint,
    seal_mac,
    seal_signed,
    verify_checkpoint,
    verify_mac,
    verify_signature,
)
from .errors import InvalidField, TopicError, UnknownKey
from .frame import Envelope, decode
from .messages import (
    Checkpoint,
    Direction,
    Message,
    Presence,
    PresenceKind,
    StoredAck,
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    seq: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class Verified:
    """An authenticated uplink frame."""

    envelope: Envelope
    payload: bytes
    digest: bytes


class KeyRing(Protocol):
    """Where the server finds each terminal's keys, by key generation."""

    def mac_key(self, party: str, key_id: int) -> bytes | None: ...

    def public_key(self, party: str, key_id: int) -> Ed25519PublicKey | None: ...


def _check_route(route: topics.Route, envelope: Envelope, expected: Direction) -> None:
    message = envelope.message
    if message.DIRECTION is not expected:
        article = "an" if expected is Direction.UPLINK else "a"
        name = type(message).__name__
        raise TopicError("type", f"{name} is not {article} {expected.value}link message")
    if route.party != envelope.party:
        raise TopicError("party", f"frame names {envelope.party!r}, topic {route.party!r}")
    if route.kind != message.TOPIC:
        raise TopicError("topic", f"{type(message).__name__} does not belong on {route.kind!r}")


class DeviceEndpoint:
    def __init__(
        self,
        *,
        device_id: str,
        key_id: int,
        mac_key: bytes,
        signing_key: Ed25519PrivateKey,
        server_key: Ed25519PublicKey,
        units: tuple[str, ...] = (),
        previous_mac_keys: Mapping[int, bytes] | None = None,
    ) -> None:
        self.device_id = device_id
        self.key_id = key_id
        self._mac_key = mac_key
        # After a key rotation the outbox still holds frames sealed under the older keys, and
        # the server acknowledges each under the key that sealed it (it cannot know whether
        # this terminal has moved on): those acks verify under the older MAC keys.
        self._ack_keys = {**(previous_mac_keys or {}), key_id: mac_key}
        self._signing_key = signing_key
        self._server_key = server_key
        self.units = units
        topics.device_filters(device_id, units)  # validates the ids once, up front

    def seal(self, message: Message, *, seq: int, sent_ms: int) -> Outgoing:
        if message.DIRECTION is not Direction.UPLINK:
            raise InvalidField("message", f"{type(message).__name__} is not an uplink message")
        if seq == 0:
            raise InvalidField("seq", "0 is reserved for the unsequenced will; use will()")
        envelope = Envelope(self.device_id, self.key_id, seq, sent_ms, message)
        payload = seal_mac(envelope, self._mac_key)
        return Outgoing(topics.uplink(self.device_id, type(message)), payload, seq, digest(payload))

    def will(self, *, sent_ms: int) -> Outgoing:
        """The MQTT will (MQTT 5 §3.1.2.5): an unsequenced 'offline' the broker sends for us."""
        envelope = Envelope(
            self.device_id, self.key_id, 0, sent_ms, Presence(kind=PresenceKind.OFFLINE)
        )
        payload = seal_mac(envelope, self._mac_key)
        return Outgoing(topics.uplink(self.device_id, Presence), payload, 0, digest(payload))

    def checkpoint(self, *, first_seq: int, digests: bytes) -> Checkpoint:
        return make_checkpoint(
            self._signing_key,
            party=self.device_id,
            key_id=self.key_id,
            first_seq=first_seq,
            digests=digests,
        )

    @property
    def subscriptions(self) -> list[str]:
        return topics.device_filters(self.device_id, self.units)

    def receive(self, topic: str, payload: bytes) -> Envelope:
        """Authenticate and decode a downlink frame. Raises only ``ProtocolError``."""
        route = topics.parse(topic)
        if route.channel is topics.Channel.UP:
            raise TopicError("topic", f"{topic!r} is an uplink topic")
        if route.channel is topics.Channel.DOWN and route.party != self.device_id:
            raise TopicError("topic", f"{topic!r} is addressed to another device")
        if route.channel is topics.Channel.UNIT and route.party not in self.units:
            raise TopicError("topic", f"{topic!r} is for a unit this device is not in")
        frame = decode(payload)
        _check_route(route, frame.envelope, Direction.DOWNLINK)
        if isinstance(frame.envelope.message, StoredAck):
            if route.channel is not topics.Channel.DOWN:
                raise TopicError("topic", "acknowledgements are never broadcast")
            ack_key = self._ack_keys.get(frame.envelope.key_id)
            if ack_key is None:
                raise UnknownKey("key_id", f"no key {frame.envelope.key_id} on this terminal")
            verify_mac(frame, ack_key)
        else:
            verify_signature(frame, self._server_key)
        return frame.envelope


class UplinkVerifier:
    """The server's check of everything a terminal sends."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    def receive(self, topic: str, payload: bytes) -> Verified:
        """Authenticate and decode an uplink frame. Raises only ``ProtocolError``."""
        route = topics.parse(topic)
        if route.channel is not topics.Channel.UP:
            raise TopicError("topic", f"{topic!r} is not an uplink topic")
        frame = decode(payload)
        envelope = frame.envelope
        _check_route(route, envelope, Direction.UPLINK)
        message = envelope.message
        if envelope.seq == 0 and not (
            isinstance(message, Presence) and message.kind is PresenceKind.OFFLINE
        ):
            raise InvalidField("seq", "0 is only for the offline will")
        key = self._keys.mac_key(envelope.party, envelope.key_id)
        if key is None:
            raise UnknownKey("key_id", f"no key {envelope.key_id} for {envelope.party!r}")
        verify_mac(frame, key)
        if isinstance(message, Checkpoint):
            public = self._keys.public_key(envelope.party, envelope.key_id)
            if public is None:
                raise UnknownKey("key_id", f"no public key {envelope.key_id} for {envelope.party}")
            verify_checkpoint(message, public, party=envelope.party, key_id=envelope.key_id)
        data = bytes(payload)
        return Verified(envelope, data, digest(data))


class ServerEndpoint:
    """Seals downlink frames: MAC'd acks, signed commands."""

    def __init__(self, *, signing_key: Ed25519PrivateKey, key_id: int) -> None:
        self._signing_key = signing_key
        self.key_id = key_id

    def ack(
        self, device: str, seqs: list[int], *, mac_key: bytes, key_id: int, sent_ms: int
    ) -> Outgoing:
        """One ack covering ``seqs``; refuses more ranges than one may carry (see ``acks``)."""
        return self._sealed_ack(device, StoredAck.of(seqs), mac_key, key_id, sent_ms)

    def acks(
        self, device: str, seqs: list[int], *, mac_key: bytes, key_id: int, sent_ms: int
    ) -> list[Outgoing]:
        """``ack`` for any number of seqs: more than one message when the ranges do not fit
        in one (``StoredAck.covering``)."""
        return [
            self._sealed_ack(device, message, mac_key, key_id, sent_ms)
            for message in StoredAck.covering(seqs)
        ]

    @staticmethod
    def _sealed_ack(
        device: str, message: StoredAck, mac_key: bytes, key_id: int, sent_ms: int
    ) -> Outgoing:
        payload = seal_mac(Envelope(device, key_id, 0, sent_ms, message), mac_key)
        return Outgoing(topics.downlink(device, StoredAck), payload, 0, digest(payload))

    def command(self, device: str, message: Message, *, sent_ms: int) -> Outgoing:
        return self._signed(topics.downlink(device, type(message)), device, message, sent_ms)

    def broadcast(self, unit: str, message: Message, *, sent_ms: int) -> Outgoing:
        if isinstance(message, StoredAck):
            raise InvalidField("message", "acknowledgements are never broadcast")
        return self._signed(topics.broadcast(unit, type(message)), unit, message, sent_ms)

    def _signed(self, topic: str, party: str, message: Message, sent_ms: int) -> Outgoing:
        if message.DIRECTION is not Direction.DOWNLINK:
            raise InvalidField("message", f"{type(message).__name__} is not a downlink message")
        envelope = Envelope(party, self.key_id, 0, sent_ms, message)
        payload = seal_signed(envelope, self._signing_key)
        return Outgoing(topic, payload, 0, digest(payload))
