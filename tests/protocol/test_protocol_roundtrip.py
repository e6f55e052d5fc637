"""Every message type survives encoding, sealing and decoding unchanged, in both schemes."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    Checkpoint,
    Envelope,
    Fix,
    Message,
    Position,
    PositionBatch,
    Scheme,
    Snapshot,
    SnapshotTrigger,
    decode,
)
from protocol.auth import seal_mac, seal_signed, verify_mac, verify_signature
from protocol.frame import MAX_FRAME_BYTES, encode_unsigned
from protocol.messages import (
    CHECKPOINT_MAX_SPAN,
    DOWNLINK_TYPES,
    MAX_JPEG_BYTES,
    MESSAGE_TYPES,
    UPLINK_TYPES,
)

from .strategies import (
    DEVICE_SIGNING_KEY,
    MAC_KEY,
    MESSAGE_STRATEGIES,
    checkpoints,
    envelopes,
    fixes,
)

TYPES = sorted(MESSAGE_TYPES.values(), key=lambda t: t.TYPE)
ROUND_TRIP = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_type_codes_are_unique_and_cover_both_directions() -> None:
    assert len({t.TYPE for t in TYPES}) == len(TYPES) == 16
    assert set(UPLINK_TYPES) | set(DOWNLINK_TYPES) == set(TYPES)
    assert all(0 < t.TYPE < 128 for t in TYPES)  # a positive fixint: one byte on the wire


@pytest.mark.parametrize("message_type", TYPES, ids=lambda t: t.__name__)
@ROUND_TRIP
@given(data=st.data())
def test_record_wire_round_trip(message_type: type[Message], data: st.DataObject) -> None:
    message = data.draw(MESSAGE_STRATEGIES[message_type])
    wire = message.to_wire()
    assert message_type.from_wire(wire) == message
    # ... and through msgpack, as it really travels.
    repacked = msgpack.unpackb(msgpack.packb(wire, use_bin_type=True), raw=False)
    assert message_type.from_wire(repacked) == message


@pytest.mark.parametrize("message_type", TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("scheme", [Scheme.MAC, Scheme.SIG], ids=lambda s: s.name)
@ROUND_TRIP
@given(data=st.data())
def test_sealed_frame_round_trip(
    message_type: type[Message], scheme: Scheme, data: st.DataObject
) -> None:
    envelope = data.draw(envelopes(MESSAGE_STRATEGIES[message_type]))
    if scheme is Scheme.MAC:
        payload = seal_mac(envelope, MAC_KEY)
    else:
        payload = seal_signed(envelope, DEVICE_SIGNING_KEY)
    frame = decode(payload)
    assert frame.envelope == envelope
    assert frame.scheme is scheme
    assert frame.signed + frame.tag == payload
    assert frame.signed == encode_unsigned(envelope, scheme)  # one encoding per envelope
    if scheme is Scheme.MAC:
        verify_mac(frame, MAC_KEY)
    else:
        verify_signature(frame, DEVICE_SIGNING_KEY.public_key())


@ROUND_TRIP
@given(fixes())
def test_fix_round_trip_and_quantisation(fix: Fix) -> None:
    assert Fix.from_wire(fix.to_wire()) == fix
    # Construction already quantised: building again from the stored values changes nothing.
    assert Fix(**{name: getattr(fix, name) for name, _, _ in Fix._fields()}) == fix
    assert round(fix.lat * 10**7) / 10**7 == fix.lat
    if fix.course_deg is not None:
        assert 0.0 <= fix.course_deg < 360.0


def test_course_just_below_360_wraps_to_zero() -> None:
    fix = Fix(time_ms=1_700_000_000_000, lat=0, lon=0, course_deg=359.99996)
    assert fix.course_deg == 0.0


def test_trailing_defaults_are_left_off_the_wire() -> None:
    fix = Fix(time_ms=1_700_000_000_000, lat=31.2304, lon=121.4737)
    assert fix.to_wire() == [1_700_000_000_000, 312_304_000, 1_214_737_000]
    with_accuracy = Fix(time_ms=1_700_000_000_000, lat=31.2304, lon=121.4737, accuracy_m=4.5)
    assert with_accuracy.to_wire() == [1_700_000_000_000, 312_304_000, 1_214_737_000, 45]
    # A default in the middle is kept: positions never shift.
    only_source = Fix(time_ms=1_700_000_000_000, lat=0, lon=0, source="sim")
    assert only_source.to_wire() == [1_700_000_000_000, 0, 0, None, None, None, None, None, "sim"]


@settings(max_examples=40, deadline=None)
@given(fixes(), st.lists(st.one_of(st.integers(), st.text(), st.none(), st.binary()), max_size=4))
def test_unknown_trailing_items_are_ignored(fix: Fix, extra: list[object]) -> None:
    """A newer sender appends fields; an older decoder keeps working."""
    message = Position(fix=fix)
    full = [codec.to_wire(getattr(fix, name)) for name, codec, _ in Fix._fields()]
    assert Position.from_wire([full + extra]) == message
    assert Position.from_wire([fix.to_wire(), *extra]) == message


def test_missing_required_fields_are_malformed() -> None:
    from protocol import MalformedFrame

    with pytest.raises(MalformedFrame, match="Fix needs 3 fields, got 2"):
        Fix.from_wire([1_700_000_000_000, 0])
    with pytest.raises(MalformedFrame) as info:
        Position.from_wire([[1_700_000_000_000, 0]])
    assert info.value.field == "fix"


def test_largest_messages_fit_in_a_frame() -> None:
    """The biggest valid messages still seal and decode (MAX_FRAME_BYTES is not too tight)."""
    fix = Fix(
        time_ms=4_102_444_799_999, lat=-89.9999999, lon=-179.9999999, accuracy_m=99_999.9,
        speed_mps=299.99, course_deg=359.9, alt_m=-999.9, satellites=255, source="manual",
    )
    jpeg = b"\xff\xd8" + b"\xa5" * (MAX_JPEG_BYTES - 2)
    snapshot = Snapshot(
        captured_ms=4_102_444_799_999, trigger=SnapshotTrigger.SCENE_CHANGE, width=8192,
        height=8192, sha256=hashlib.sha256(jpeg).digest(), jpeg=jpeg, fix=fix,
        request_id="r" * 64,
    )
    batch = PositionBatch(fixes=(fix,) * 1000)
    checkpoint = Checkpoint(
        first_seq=2**53 - CHECKPOINT_MAX_SPAN, last_seq=2**53 - 1,
        digests=b"\x99" * 16 * CHECKPOINT_MAX_SPAN, signature=b"\x00" * 64,
    )
    for message in (snapshot, batch, checkpoint):
        envelope = Envelope("d" * 64, 2**31 - 1, 2**53 - 1, 4_102_444_800_000, message)
        payload = seal_signed(envelope, DEVICE_SIGNING_KEY)
        assert len(payload) <= MAX_FRAME_BYTES
        assert decode(payload).envelope == envelope


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoints(max_span=CHECKPOINT_MAX_SPAN))
def test_full_span_checkpoints_round_trip(checkpoint: Checkpoint) -> None:
    assert Checkpoint.from_wire(checkpoint.to_wire()) == checkpoint
