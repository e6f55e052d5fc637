"""Authentication and the endpoints: MACs, checkpoints, proofs, signed downlink, routing."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    CHECKPOINT_EVERY,
    BadTag,
    Checkpoint,
    DeviceEndpoint,
    DispatchCommand,
    Envelope,
    Event,
    EventKind,
    Fix,
    IncidentKind,
    InvalidField,
    Position,
    Presence,
    PresenceKind,
    ProtocolError,
    RollCall,
    ServerEndpoint,
    StoredAck,
    TopicError,
    UnknownKey,
    UplinkVerifier,
    decode,
    digest,
    prove,
)
from protocol.auth import make_checkpoint, seal_mac, seal_signed, verify_checkpoint
from protocol.messages import MAX_SEQ

from .strategies import (
    DEVICE,
    DEVICE_SIGNING_KEY,
    KEY_ID,
    MAC_KEY,
    NOW_MS,
    OTHER_DEVICE,
    OTHER_MAC_KEY,
    ROGUE_SIGNING_KEY,
    SERVER_KEY_ID,
    SERVER_SIGNING_KEY,
    UNIT,
)

FIX = Fix(time_ms=NOW_MS, lat=31.2304, lon=121.4737, accuracy_m=5.0)


@dataclass
class Keys:
    """A KeyRing: (party, key id) -> keys."""

    mac: dict[tuple[str, int], bytes] = field(default_factory=dict)
    public: dict[tuple[str, int], Ed25519PublicKey] = field(default_factory=dict)

    def mac_key(self, party: str, key_id: int) -> bytes | None:
        return self.mac.get((party, key_id))

    def public_key(self, party: str, key_id: int) -> Ed25519PublicKey | None:
        return self.public.get((party, key_id))


def make_keys() -> Keys:
    return Keys(
        mac={(DEVICE, KEY_ID): MAC_KEY, (OTHER_DEVICE, KEY_ID): OTHER_MAC_KEY},
        public={(DEVICE, KEY_ID): DEVICE_SIGNING_KEY.public_key()},
    )


@pytest.fixture
def device() -> DeviceEndpoint:
    return DeviceEndpoint(
        device_id=DEVICE, key_id=KEY_ID, mac_key=MAC_KEY, signing_key=DEVICE_SIGNING_KEY,
        server_key=SERVER_SIGNING_KEY.public_key(), units=(UNIT,),
    )


@pytest.fixture
def verifier() -> UplinkVerifier:
    return UplinkVerifier(make_keys())


@pytest.fixture
def server() -> ServerEndpoint:
    return ServerEndpoint(signing_key=SERVER_SIGNING_KEY, key_id=SERVER_KEY_ID)


def dispatch() -> DispatchCommand:
    return DispatchCommand(
        dispatch_id="d-17", incident_id="i-9", kind=IncidentKind.MEDICAL, priority=1,
        lat=31.23, lon=121.47, sent_ms=NOW_MS, expires_ms=NOW_MS + 300_000, note="3号楼",
    )


def resealed(payload: bytes, change: dict[int, object], tag: bytes | None = None) -> bytes:
    """The frame with header items changed, msgpack re-encoded, the old (or a given) tag."""
    frame = decode(payload)
    raw = msgpack.unpackb(frame.signed[2:], raw=False)
    for index, value in change.items():
        raw[index] = value
    signed = frame.signed[:2] + msgpack.packb(raw, use_bin_type=True)
    return signed + (frame.tag if tag is None else tag)


# --- uplink ---------------------------------------------------------------------------------


def test_sealed_uplink_verifies(device: DeviceEndpoint, verifier: UplinkVerifier) -> None:
    out = device.seal(Position(fix=FIX), seq=1, sent_ms=NOW_MS)
    assert out.topic == f"yj/1/up/{DEVICE}/pos"
    assert out.seq == 1 and out.digest == digest(out.payload)
    verified = verifier.receive(out.topic, out.payload)
    assert verified.envelope == Envelope(DEVICE, KEY_ID, 1, NOW_MS, Position(fix=FIX))
    assert verified.payload == out.payload and verified.digest == out.digest


def test_every_bit_flip_is_detected(device: DeviceEndpoint, verifier: UplinkVerifier) -> None:
    out = device.seal(Position(fix=FIX), seq=12, sent_ms=NOW_MS)
    for bit in range(len(out.payload) * 8):
        tampered = bytearray(out.payload)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ProtocolError):
            verifier.receive(out.topic, bytes(tampered))


@pytest.mark.parametrize(
    "change",
    [{3: 13}, {4: NOW_MS + 1}, {5: [[NOW_MS, 312_304_001, 1_214_737_000, 50]]}],
    ids=["seq", "sent_ms", "latitude"],
)
def test_mac_tampering_is_bad_tag(
    device: DeviceEndpoint, verifier: UplinkVerifier, change: dict[int, object]
) -> None:
    out = device.seal(Position(fix=FIX), seq=12, sent_ms=NOW_MS)
    forged = resealed(out.payload, change)
    decode(forged)  # well formed: only the MAC catches it
    with pytest.raises(BadTag) as info:
        verifier.receive(out.topic, forged)
    assert info.value.field == "tag"
    assert DEVICE in str(info.value)


def test_truncated_or_replaced_tag_is_bad_tag(
    device: DeviceEndpoint, verifier: UplinkVerifier
) -> None:
    out = device.seal(Position(fix=FIX), seq=12, sent_ms=NOW_MS)
    with pytest.raises(BadTag):
        verifier.receive(out.topic, out.payload[:-16] + bytes(16))


def test_mac_under_another_devices_key(verifier: UplinkVerifier) -> None:
    impostor = DeviceEndpoint(
        device_id=DEVICE, key_id=KEY_ID, mac_key=OTHER_MAC_KEY, signing_key=ROGUE_SIGNING_KEY,
        server_key=SERVER_SIGNING_KEY.public_key(),
    )
    out = impostor.seal(Position(fix=FIX), seq=1, sent_ms=NOW_MS)
    with pytest.raises(BadTag):
        verifier.receive(out.topic, out.payload)


def test_wrong_key_id_is_unknown_key(verifier: UplinkVerifier) -> None:
    stale = DeviceEndpoint(
        device_id=DEVICE, key_id=KEY_ID + 1, mac_key=MAC_KEY, signing_key=DEVICE_SIGNING_KEY,
        server_key=SERVER_SIGNING_KEY.public_key(),
    )
    out = stale.seal(Position(fix=FIX), seq=1, sent_ms=NOW_MS)
    with pytest.raises(UnknownKey) as info:
        verifier.receive(out.topic, out.payload)
    assert info.value.field == "key_id"
    assert f"no key {KEY_ID + 1}" in str(info.value)


def test_unknown_device_is_unknown_key(verifier: UplinkVerifier) -> None:
    payload = seal_mac(Envelope("term-9999", KEY_ID, 1, NOW_MS, Position(fix=FIX)), MAC_KEY)
    with pytest.raises(UnknownKey):
        verifier.receive("yj/1/up/term-9999/pos", payload)


def test_signed_frame_on_uplink_is_bad_tag(verifier: UplinkVerifier) -> None:
    envelope = Envelope(DEVICE, KEY_ID, 1, NOW_MS, Position(fix=FIX))
    with pytest.raises(BadTag) as info:
        verifier.receive(f"yj/1/up/{DEVICE}/pos", seal_signed(envelope, DEVICE_SIGNING_KEY))
    assert info.value.field == "scheme"


def test_topic_party_mismatch(device: DeviceEndpoint, verifier: UplinkVerifier) -> None:
    out = device.seal(Position(fix=FIX), seq=1, sent_ms=NOW_MS)
    with pytest.raises(TopicError) as info:
        verifier.receive(f"yj/1/up/{OTHER_DEVICE}/pos", out.payload)
    assert info.value.field == "party"
    assert DEVICE in str(info.value) and OTHER_DEVICE in str(info.value)


def test_message_on_the_wrong_kind_of_topic(
    device: DeviceEndpoint, verifier: UplinkVerifier
) -> None:
    out = device.seal(Position(fix=FIX), seq=1, sent_ms=NOW_MS)
    with pytest.raises(TopicError) as info:
        verifier.receive(f"yj/1/up/{DEVICE}/evt", out.payload)
    assert info.value.field == "topic"
    assert "Position does not belong on 'evt'" in str(info.value)


def test_uplink_verifier_refuses_downlink_topics(
    device: DeviceEndpoint, verifier: UplinkVerifier
) -> None:
    out = device.seal(Position(fix=FIX), seq=1, sent_ms=NOW_MS)
    with pytest.raises(TopicError, match="not an uplink topic"):
        verifier.receive(f"yj/1/down/{DEVICE}/cmd", out.payload)


def test_downlink_message_on_an_uplink_topic(verifier: UplinkVerifier) -> None:
    """A terminal cannot publish an 'ack' to itself (or anyone) through the uplink."""
    payload = seal_mac(Envelope(DEVICE, KEY_ID, 1, NOW_MS, StoredAck.of([1])), MAC_KEY)
    with pytest.raises(TopicError) as info:
        verifier.receive(f"yj/1/up/{DEVICE}/pos", payload)
    assert info.value.field == "type"
    assert "StoredAck is not an uplink message" in str(info.value)


def test_seq_zero_is_only_for_the_offline_will(
    device: DeviceEndpoint, verifier: UplinkVerifier
) -> None:
    will = device.will(sent_ms=NOW_MS)
    assert will.seq == 0 and will.topic == f"yj/1/up/{DEVICE}/pres"
    received = verifier.receive(will.topic, will.payload)
    assert received.envelope.message == Presence(kind=PresenceKind.OFFLINE)
    assert received.envelope.seq == 0

    heartbeat = Envelope(DEVICE, KEY_ID, 0, NOW_MS, Presence(kind=PresenceKind.HEARTBEAT))
    with pytest.raises(InvalidField) as info:
        verifier.receive(will.topic, seal_mac(heartbeat, MAC_KEY))
    assert info.value.field == "seq" and "offline will" in str(info.value)

    with pytest.raises(InvalidField) as info:
        device.seal(Presence(kind=PresenceKind.OFFLINE), seq=0, sent_ms=NOW_MS)
    assert info.value.field == "seq"
    # An orderly shutdown says 'offline' with a sequence number, like any other frame.
    orderly = device.seal(Presence(kind=PresenceKind.OFFLINE), seq=5, sent_ms=NOW_MS)
    assert verifier.receive(orderly.topic, orderly.payload).envelope.seq == 5


def test_device_refuses_to_seal_downlink(device: DeviceEndpoint) -> None:
    with pytest.raises(InvalidField) as info:
        device.seal(StoredAck.of([1]), seq=1, sent_ms=NOW_MS)
    assert info.value.field == "message"


# --- checkpoints and proofs ------------------------------------------------------------------


def send_run(device: DeviceEndpoint, first: int, count: int) -> list[bytes]:
    return [
        device.seal(
            Position(fix=Fix(time_ms=NOW_MS + seq * 1000, lat=31.2 + seq * 1e-5, lon=121.4)),
            seq=seq, sent_ms=NOW_MS + seq * 1000,
        ).payload
        for seq in range(first, first + count)
    ]


def test_checkpoint_round_trip_and_proofs(
    device: DeviceEndpoint, verifier: UplinkVerifier
) -> None:
    payloads = send_run(device, 1, CHECKPOINT_EVERY)
    digests = [verifier.receive(f"yj/1/up/{DEVICE}/pos", p).digest for p in payloads]
    checkpoint = device.checkpoint(first_seq=1, digests=b"".join(digests))
    assert (checkpoint.first_seq, checkpoint.last_seq) == (1, CHECKPOINT_EVERY)
    out = device.seal(checkpoint, seq=CHECKPOINT_EVERY + 1, sent_ms=NOW_MS)
    assert out.topic == f"yj/1/up/{DEVICE}/ckpt"
    received = verifier.receive(out.topic, out.payload).envelope.message
    assert received == checkpoint

    public = DEVICE_SIGNING_KEY.public_key()
    for seq, payload in enumerate(payloads, start=1):
        proof = prove(payload, decode(payload), checkpoint, public)
        assert (proof.party, proof.key_id, proof.seq) == (DEVICE, KEY_ID, seq)
        assert proof.frame_digest == digests[seq - 1]


def test_checkpoint_with_a_bad_signature_is_refused(
    device: DeviceEndpoint, verifier: UplinkVerifier
) -> None:
    digests = b"".join(digest(p) for p in send_run(device, 1, 4))
    forged = make_checkpoint(
        ROGUE_SIGNING_KEY, party=DEVICE, key_id=KEY_ID, first_seq=1, digests=digests
    )
    out = device.seal(forged, seq=5, sent_ms=NOW_MS)  # the MAC is fine, the signature is not
    with pytest.raises(BadTag) as info:
        verifier.receive(out.topic, out.payload)
    assert info.value.field == "signature"


def test_checkpoint_for_another_range_or_party_does_not_verify(device: DeviceEndpoint) -> None:
    digests = b"".join(digest(p) for p in send_run(device, 1, 4))
    checkpoint = device.checkpoint(first_seq=1, digests=digests)
    public = DEVICE_SIGNING_KEY.public_key()
    verify_checkpoint(checkpoint, public, party=DEVICE, key_id=KEY_ID)
    with pytest.raises(BadTag):
        verify_checkpoint(checkpoint, public, party=OTHER_DEVICE, key_id=KEY_ID)
    with pytest.raises(BadTag):
        verify_checkpoint(checkpoint, public, party=DEVICE, key_id=KEY_ID + 1)
    shifted = Checkpoint(
        first_seq=2, last_seq=5, digests=checkpoint.digests, signature=checkpoint.signature
    )
    with pytest.raises(BadTag):
        verify_checkpoint(shifted, public, party=DEVICE, key_id=KEY_ID)


def test_checkpoint_without_a_public_key_is_unknown_key(device: DeviceEndpoint) -> None:
    keys = make_keys()
    keys.public.clear()
    digests = b"".join(digest(p) for p in send_run(device, 1, 2))
    out = device.seal(device.checkpoint(first_seq=1, digests=digests), seq=3, sent_ms=NOW_MS)
    with pytest.raises(UnknownKey, match="no public key"):
        UplinkVerifier(keys).receive(out.topic, out.payload)


def test_proof_failures(device: DeviceEndpoint) -> None:
    payloads = send_run(device, 100, 8)
    checkpoint = device.checkpoint(first_seq=100, digests=b"".join(map(digest, payloads)))
    public = DEVICE_SIGNING_KEY.public_key()
    stored = payloads[3]
    prove(stored, decode(stored), checkpoint, public)

    # Altered frame (here: its MAC tag; the body is covered the same way).
    altered = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(BadTag) as info:
        prove(altered, decode(altered), checkpoint, public)
    assert info.value.field == "frame" and "seq 103" in str(info.value)

    # A frame whose seq the checkpoint does not cover.
    outside = send_run(device, 108, 1)[0]
    with pytest.raises(InvalidField) as info:
        prove(outside, decode(outside), checkpoint, public)
    assert info.value.field == "seq" and "outside [100, 107]" in str(info.value)

    # Another terminal's public key.
    with pytest.raises(BadTag) as info:
        prove(stored, decode(stored), checkpoint, ROGUE_SIGNING_KEY.public_key())
    assert info.value.field == "signature"

    # The parsed frame must be the payload being proven.
    with pytest.raises(BadTag, match="not the payload"):
        prove(stored, decode(payloads[2]), checkpoint, public)


# --- acks ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, 300), min_size=1, max_size=200))
def test_stored_ack_of_is_exact_and_minimal(seqs: set[int]) -> None:
    ack = StoredAck.of(sorted(seqs, reverse=True))
    for seq in range(0, 302):
        assert ack.covers(seq) == (seq in seqs)
    runs = sum(1 for s in seqs if s - 1 not in seqs)
    assert len(ack.ranges) == runs
    for (_, last), (first, _) in zip(ack.ranges, ack.ranges[1:], strict=False):
        assert first > last + 1  # never two ranges that could be one
    assert StoredAck.of(list(seqs)) == ack


@settings(max_examples=50, deadline=None)
@given(st.sets(st.integers(MAX_SEQ - 500, MAX_SEQ), min_size=1, max_size=50))
def test_stored_ack_of_near_the_top(seqs: set[int]) -> None:
    ack = StoredAck.of(seqs)
    assert all(ack.covers(s) for s in seqs)
    assert not ack.covers(min(seqs) - 1)


def test_ack_round_trip(device: DeviceEndpoint, server: ServerEndpoint) -> None:
    out = server.ack(DEVICE, [3, 1, 2, 7], mac_key=MAC_KEY, key_id=KEY_ID, sent_ms=NOW_MS)
    assert out.topic == f"yj/1/down/{DEVICE}/ack"
    envelope = device.receive(out.topic, out.payload)
    assert envelope.message == StoredAck(ranges=((1, 3), (7, 7)))
    assert envelope.seq == 0


def test_ack_under_another_key_is_bad_tag(device: DeviceEndpoint, server: ServerEndpoint) -> None:
    out = server.ack(DEVICE, [1], mac_key=OTHER_MAC_KEY, key_id=KEY_ID, sent_ms=NOW_MS)
    with pytest.raises(BadTag):
        device.receive(out.topic, out.payload)


def test_signed_ack_is_refused(device: DeviceEndpoint) -> None:
    """Acks are MAC'd, so a signed one is not accepted either (one scheme per message type)."""
    envelope = Envelope(DEVICE, KEY_ID, 0, NOW_MS, StoredAck.of([1]))
    with pytest.raises(BadTag) as info:
        device.receive(f"yj/1/down/{DEVICE}/ack", seal_signed(envelope, SERVER_SIGNING_KEY))
    assert info.value.field == "scheme"


def test_ack_broadcast_is_refused(device: DeviceEndpoint, server: ServerEndpoint) -> None:
    with pytest.raises(InvalidField, match="never broadcast"):
        server.broadcast(UNIT, StoredAck.of([1]), sent_ms=NOW_MS)
    envelope = Envelope(UNIT, KEY_ID, 0, NOW_MS, StoredAck.of([1]))
    with pytest.raises(TopicError) as info:
        device.receive(f"yj/1/unit/{UNIT}/ack", seal_mac(envelope, MAC_KEY))
    assert "never broadcast" in str(info.value)


# --- signed downlink -------------------------------------------------------------------------


def test_signed_command_and_broadcast(device: DeviceEndpoint, server: ServerEndpoint) -> None:
    out = server.command(DEVICE, dispatch(), sent_ms=NOW_MS)
    assert out.topic == f"yj/1/down/{DEVICE}/cmd"
    assert device.receive(out.topic, out.payload).message == dispatch()
    call = RollCall(rollcall_id="rc-1", sent_ms=NOW_MS, deadline_ms=NOW_MS + 60_000)
    out = server.broadcast(UNIT, call, sent_ms=NOW_MS)
    assert out.topic == f"yj/1/unit/{UNIT}/cmd"
    envelope = device.receive(out.topic, out.payload)
    assert envelope.party == UNIT and envelope.message == call


def test_command_signed_by_another_key(device: DeviceEndpoint) -> None:
    rogue = ServerEndpoint(signing_key=ROGUE_SIGNING_KEY, key_id=SERVER_KEY_ID)
    out = rogue.command(DEVICE, dispatch(), sent_ms=NOW_MS)
    with pytest.raises(BadTag) as info:
        device.receive(out.topic, out.payload)
    assert info.value.field == "tag" and "signature" in str(info.value)


def test_command_with_a_mac_instead_of_a_signature(device: DeviceEndpoint) -> None:
    """Whoever holds the terminal's MAC key (the server's database) cannot command it."""
    envelope = Envelope(DEVICE, KEY_ID, 0, NOW_MS, dispatch())
    with pytest.raises(BadTag) as info:
        device.receive(f"yj/1/down/{DEVICE}/cmd", seal_mac(envelope, MAC_KEY))
    assert info.value.field == "scheme"


def test_tampered_command(device: DeviceEndpoint, server: ServerEndpoint) -> None:
    out = server.command(DEVICE, dispatch(), sent_ms=NOW_MS)
    forged = resealed(out.payload, {4: NOW_MS + 1})
    with pytest.raises(BadTag):
        device.receive(out.topic, forged)


def test_topic_for_another_device(device: DeviceEndpoint, server: ServerEndpoint) -> None:
    out = server.command(OTHER_DEVICE, dispatch(), sent_ms=NOW_MS)
    with pytest.raises(TopicError, match="addressed to another device"):
        device.receive(out.topic, out.payload)
    # Moved onto our topic, the frame still names the other device.
    with pytest.raises(TopicError) as info:
        device.receive(f"yj/1/down/{DEVICE}/cmd", out.payload)
    assert info.value.field == "party"


def test_unit_this_device_is_not_in(device: DeviceEndpoint, server: ServerEndpoint) -> None:
    out = server.broadcast("unit.west-1", dispatch(), sent_ms=NOW_MS)
    with pytest.raises(TopicError, match="not in"):
        device.receive(out.topic, out.payload)


def test_uplink_message_on_a_downlink_topic(device: DeviceEndpoint) -> None:
    envelope = Envelope(DEVICE, KEY_ID, 0, NOW_MS, Event(kind=EventKind.SOS, time_ms=NOW_MS))
    with pytest.raises(TopicError) as info:
        device.receive(f"yj/1/down/{DEVICE}/cmd", seal_signed(envelope, SERVER_SIGNING_KEY))
    assert info.value.field == "type" and "not a downlink message" in str(info.value)


def test_device_refuses_uplink_topics(device: DeviceEndpoint) -> None:
    out = device.seal(Position(fix=FIX), seq=1, sent_ms=NOW_MS)
    with pytest.raises(TopicError, match="is an uplink topic"):
        device.receive(out.topic, out.payload)


def test_server_refuses_to_sign_uplink(server: ServerEndpoint) -> None:
    with pytest.raises(InvalidField) as info:
        server.command(DEVICE, Position(fix=FIX), sent_ms=NOW_MS)
    assert info.value.field == "message"


def test_device_subscriptions(device: DeviceEndpoint) -> None:
    assert device.subscriptions == [f"yj/1/down/{DEVICE}/+", f"yj/1/unit/{UNIT}/+"]
