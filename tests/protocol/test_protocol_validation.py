"""Construction validates: every broken rule raises InvalidField naming the offending field."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    Checkpoint,
    ConfigPush,
    DispatchCommand,
    DispatchResponse,
    Envelope,
    Event,
    EventKind,
    Fix,
    IncidentKind,
    InvalidField,
    MalformedFrame,
    Position,
    PositionBatch,
    Presence,
    PresenceKind,
    ProtocolError,
    ResponseStatus,
    RollCall,
    RollCallAnswer,
    Setting,
    Snapshot,
    SnapshotTrigger,
    StoredAck,
    decode,
)
from protocol.auth import seal_mac
from protocol.fields import replace

from .strategies import MAC_KEY, MESSAGE_STRATEGIES, fixes

T = 1_700_000_000_000
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60
SHA = hashlib.sha256(JPEG).digest()


def fix(**changes: object) -> Fix:
    values: dict[str, Any] = {"time_ms": T, "lat": 31.2304, "lon": 121.4737}
    values.update(changes)
    return Fix(**values)


def snapshot(**changes: object) -> Snapshot:
    values: dict[str, Any] = {
        "captured_ms": T, "trigger": SnapshotTrigger.PERIODIC, "width": 640, "height": 480,
        "sha256": SHA, "jpeg": JPEG,
    }
    values.update(changes)
    return Snapshot(**values)


def command(**changes: object) -> DispatchCommand:
    values: dict[str, Any] = {
        "dispatch_id": "d-1", "incident_id": "i-1", "kind": IncidentKind.FIGHT, "priority": 1,
        "lat": 31.0, "lon": 121.0, "sent_ms": T, "expires_ms": T + 600_000,
    }
    values.update(changes)
    return DispatchCommand(**values)


def checkpoint(**changes: object) -> Checkpoint:
    values: dict[str, Any] = {
        "first_seq": 1, "last_seq": 4, "digests": b"\x01" * 64, "signature": b"\x02" * 64,
    }
    values.update(changes)
    return Checkpoint(**values)


DEEP: object = 1
for _ in range(2000):
    DEEP = [DEEP]

# (what to build, the field InvalidField must name, words its message must contain)
CASES: list[tuple[str, Callable[[], object], str, str]] = [
    # --- ranges, types, bool-where-int, NaN/inf -------------------------------------------
    ("lat above 90", lambda: fix(lat=90.0000001), "lat", "outside [-90.0, 90.0]"),
    ("lat below -90", lambda: fix(lat=-90.5), "lat", "outside"),
    ("lon above 180", lambda: fix(lon=180.01), "lon", "outside [-180.0, 180.0]"),
    ("lat NaN", lambda: fix(lat=math.nan), "lat", "not a finite number"),
    ("lon +inf", lambda: fix(lon=math.inf), "lon", "not a finite number"),
    ("accuracy -inf", lambda: fix(accuracy_m=-math.inf), "accuracy_m", "not a finite number"),
    ("lat as text", lambda: fix(lat="31.2"), "lat", "expected a number, got str"),
    ("lat as bool", lambda: fix(lat=True), "lat", "expected a number, got bool"),
    ("huge int lat", lambda: fix(lat=10**400), "lat", "outside"),
    ("time as bool", lambda: fix(time_ms=True), "time_ms", "expected an integer, got bool"),
    ("time as float", lambda: fix(time_ms=1.7e12), "time_ms", "expected an integer, got float"),
    ("time before 2000", lambda: fix(time_ms=946_684_799_999), "time_ms", "outside"),
    ("time after 2100", lambda: fix(time_ms=4_102_444_800_001), "time_ms", "outside"),
    ("huge int time", lambda: fix(time_ms=10**5000), "time_ms", "16610-bit integer"),
    ("negative accuracy", lambda: fix(accuracy_m=-0.1), "accuracy_m", "outside"),
    ("speed of sound", lambda: fix(speed_mps=343.0), "speed_mps", "outside [0.0, 300.0]"),
    ("course 360", lambda: fix(course_deg=360.0), "course_deg", "outside [0.0, 360.0)"),
    ("course negative", lambda: fix(course_deg=-1.0), "course_deg", "outside"),
    ("altitude too deep", lambda: fix(alt_m=-1000.1), "alt_m", "outside"),
    ("256 satellites", lambda: fix(satellites=256), "satellites", "outside [0, 255]"),
    ("satellites bool", lambda: fix(satellites=False), "satellites", "got bool"),
    ("unknown source", lambda: fix(source="gps"), "source", "'gps' is not one of: gnss"),
    ("source of wrong enum", lambda: fix(source=PresenceKind.OFFLINE), "source", "not one of"),
    # --- nested and lists ------------------------------------------------------------------
    ("position of a dict", lambda: Position(fix={"lat": 1}), "fix", "expected Fix, got dict"),
    ("empty batch", lambda: PositionBatch(fixes=()), "fixes", "0 items is outside [1, 1000]"),
    ("batch of 1001", lambda: PositionBatch(fixes=(fix(),) * 1001), "fixes", "1001 items"),
    ("batch not a list", lambda: PositionBatch(fixes=fix()), "fixes", "expected a list"),
    ("batch item", lambda: PositionBatch(fixes=(fix(), "x")), "fixes[1]", "expected Fix"),
    # --- ids: safe in topics ---------------------------------------------------------------
    ("shift id with /", lambda: Presence(kind="check_in", shift_id="a/b"), "shift_id", "match"),
    ("shift id with +", lambda: Presence(kind="check_in", shift_id="a+b"), "shift_id", "match"),
    ("shift id with #", lambda: Presence(kind="check_in", shift_id="a#"), "shift_id", "match"),
    ("shift id with $", lambda: Presence(kind="check_in", shift_id="$SYS"), "shift_id", "match"),
    ("empty shift id", lambda: Presence(kind="check_in", shift_id=""), "shift_id", "length 0"),
    ("65-char id", lambda: Presence(kind="check_in", shift_id="a" * 65), "shift_id", "65"),
    ("dispatch id /", lambda: command(dispatch_id="d/1"), "dispatch_id", "does not match"),
    ("incident id #", lambda: command(incident_id="#"), "incident_id", "does not match"),
    ("request id +", lambda: snapshot(request_id="r+1"), "request_id", "does not match"),
    ("id with space", lambda: command(dispatch_id="d 1"), "dispatch_id", "does not match"),
    ("non-ASCII id", lambda: command(dispatch_id="巡逻1"), "dispatch_id", "does not match"),
    # --- presence, events ------------------------------------------------------------------
    ("check-in without shift", lambda: Presence(kind=PresenceKind.CHECK_IN), "shift_id",
     "required for check_in"),
    ("check-out without shift", lambda: Presence(kind="check_out"), "shift_id",
     "required for check_out"),
    ("unknown presence", lambda: Presence(kind="asleep"), "kind", "'asleep' is not one of"),
    ("battery 101%", lambda: Presence(kind="heartbeat", battery_pct=101), "battery_pct",
     "outside [0, 100]"),
    ("battery bool", lambda: Presence(kind="heartbeat", battery_pct=True), "battery_pct",
     "got bool"),
    ("presence kind deep", lambda: Presence(kind=DEEP), "kind", "a list of length 1"),
    ("presence kind huge", lambda: Presence(kind=10**5000), "kind", "bit integer"),
    ("battery event no value", lambda: Event(kind=EventKind.BATTERY, time_ms=T), "value",
     "required for battery"),
    ("eviction no count", lambda: Event(kind="snapshots_evicted", time_ms=T), "value",
     "required for snapshots_evicted"),
    ("battery event 120", lambda: Event(kind="battery", time_ms=T, value=120), "value",
     "battery 120% is outside [0, 100]"),
    ("event value 2^31", lambda: Event(kind="sos", time_ms=T, value=2**31), "value", "outside"),
    ("detail NUL", lambda: Event(kind="sos", time_ms=T, detail="a\x00b"), "detail",
     "control characters"),
    ("detail too long", lambda: Event(kind="sos", time_ms=T, detail="x" * 201), "detail",
     "length 201 is outside [0, 200]"),
    ("detail surrogate", lambda: Event(kind="sos", time_ms=T, detail="\ud800"), "detail",
     "surrogate"),
    # --- snapshots -------------------------------------------------------------------------
    ("not a JPEG", lambda: snapshot(jpeg=b"\x89PNG" + b"\x00" * 8,
                                    sha256=hashlib.sha256(b"\x89PNG" + b"\x00" * 8).digest()),
     "jpeg", "JPEG SOI marker (FF D8)"),
    ("hash mismatch", lambda: snapshot(sha256=b"\x00" * 32), "sha256",
     "does not match the JPEG content"),
    ("hash of 31 bytes", lambda: snapshot(sha256=SHA[:31]), "sha256", "31 bytes is outside"),
    ("hash as hex text", lambda: snapshot(sha256=SHA.hex()), "sha256", "expected bytes, got str"),
    ("jpeg too big", lambda: snapshot(jpeg=b"\xff\xd8" + bytes(512 * 1024)), "jpeg",
     "524290 bytes is outside [4, 524288]"),
    ("width 0", lambda: snapshot(width=0), "width", "outside [1, 8192]"),
    ("height 8193", lambda: snapshot(height=8193), "height", "outside [1, 8192]"),
    ("unknown trigger", lambda: snapshot(trigger="motion"), "trigger", "not one of"),
    # --- responses -------------------------------------------------------------------------
    ("unknown status", lambda: DispatchResponse(dispatch_id="d", status="lost", time_ms=T),
     "status", "'lost' is not one of"),
    ("reason too long", lambda: DispatchResponse(
        dispatch_id="d", status=ResponseStatus.DECLINED, time_ms=T, reason="r" * 201),
     "reason", "length 201"),
    ("answer hash short", lambda: RollCallAnswer(
        rollcall_id="rc", time_ms=T, snapshot_sha256=b"\x00" * 16), "snapshot_sha256",
     "16 bytes"),
    # --- checkpoints -----------------------------------------------------------------------
    ("checkpoint seq 0", lambda: checkpoint(first_seq=0), "first_seq", "outside [1, "),
    ("checkpoint reversed", lambda: checkpoint(first_seq=5, last_seq=4, digests=b"\x01" * 16),
     "last_seq", "before first_seq"),
    ("checkpoint span 1025", lambda: checkpoint(last_seq=1025, digests=b"\x01" * 16 * 1024),
     "last_seq", "span 1025 exceeds 1024"),
    ("digests too few", lambda: checkpoint(digests=b"\x01" * 48), "digests", "3 digests for 4"),
    ("digests too many", lambda: checkpoint(digests=b"\x01" * 80), "digests", "5 digests for 4"),
    ("digests ragged", lambda: checkpoint(digests=b"\x01" * 65), "digests",
     "not a multiple of 16"),
    ("signature 63 bytes", lambda: checkpoint(signature=b"\x02" * 63), "signature", "63 bytes"),
    # --- acks ------------------------------------------------------------------------------
    ("ack with no ranges", lambda: StoredAck(ranges=()), "ranges", "0 items"),
    ("ack reversed range", lambda: StoredAck(ranges=((5, 4),)), "ranges[0]",
     "first 5 is after last 4"),
    ("ack descending", lambda: StoredAck(ranges=((5, 6), (1, 2))), "ranges[1]",
     "ascending and disjoint"),
    ("ack overlapping", lambda: StoredAck(ranges=((1, 5), (5, 9))), "ranges[1]",
     "ascending and disjoint"),
    ("ack range of 3", lambda: StoredAck(ranges=((1, 2, 3),)), "ranges[0]", "3 items"),
    ("ack seq 0", lambda: StoredAck(ranges=((0, 2),)), "ranges[0][0]", "outside [1, "),
    ("ack seq bool", lambda: StoredAck(ranges=((True, 2),)), "ranges[0][0]", "got bool"),
    ("ack of nothing", lambda: StoredAck.of([]), "ranges", "0 items"),
    ("ack 513 ranges", lambda: StoredAck.of(list(range(1, 1026, 2))), "ranges", "513 items"),
    # --- commands --------------------------------------------------------------------------
    ("expires at sent", lambda: command(expires_ms=T), "expires_ms", "must be after sent_ms"),
    ("expires before sent", lambda: command(expires_ms=T - 1), "expires_ms", "after sent_ms"),
    ("priority 0", lambda: command(priority=0), "priority", "outside [1, 3]"),
    ("priority bool", lambda: command(priority=True), "priority", "got bool"),
    ("command lat NaN", lambda: command(lat=math.nan), "lat", "not a finite number"),
    ("note too long", lambda: command(note="n" * 501), "note", "length 501"),
    ("unknown incident", lambda: command(kind="riot"), "kind", "'riot' is not one of"),
    ("deadline at sent", lambda: RollCall(rollcall_id="rc", sent_ms=T, deadline_ms=T),
     "deadline_ms", "must be after sent_ms"),
    ("want_snapshot 1", lambda: RollCall(
        rollcall_id="rc", sent_ms=T, deadline_ms=T + 1, want_snapshot=1), "want_snapshot",
     "expected true or false, got int"),
    ("config version 0", lambda: ConfigPush(version=0, settings=()), "version", "outside"),
    ("config twice", lambda: ConfigPush(version=1, settings=(
        (Setting.HEARTBEAT_S, 30), ("heartbeat_s", 60))), "settings", "names a setting twice"),
    ("config unknown", lambda: ConfigPush(version=1, settings=(("volume", 3),)),
     "settings[0].name", "'volume' is not one of"),
    ("config out of range", lambda: ConfigPush(version=1, settings=(("heartbeat_s", 1),)),
     "settings[0].heartbeat_s", "1 is outside [5, 3600]"),
    ("config bool value", lambda: ConfigPush(version=1, settings=(("heartbeat_s", True),)),
     "settings[0].heartbeat_s", "got bool"),
    ("config triple", lambda: ConfigPush(version=1, settings=(("heartbeat_s", 30, 1),)),
     "settings[0]", "3 items"),
    # --- envelope --------------------------------------------------------------------------
    ("party with /", lambda: Envelope("a/b", 1, 1, T, Presence(kind="heartbeat")), "party",
     "does not match"),
    ("party with +", lambda: Envelope("+", 1, 1, T, Presence(kind="heartbeat")), "party",
     "does not match"),
    ("negative key id", lambda: Envelope("a", -1, 1, T, Presence(kind="heartbeat")), "key_id",
     "outside"),
    ("seq 2^53", lambda: Envelope("a", 1, 2**53, T, Presence(kind="heartbeat")), "seq",
     "outside [0, 9007199254740991]"),
    ("seq bool", lambda: Envelope("a", 1, True, T, Presence(kind="heartbeat")), "seq",
     "got bool"),
    ("sent in 1999", lambda: Envelope("a", 1, 1, 0, Presence(kind="heartbeat")), "sent_ms",
     "outside"),
    ("message not a message", lambda: Envelope("a", 1, 1, T, fix()), "message",
     "expected a Message, got Fix"),
]


@pytest.mark.parametrize(
    ("build", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_construction_rejects(build: Callable[[], object], field: str, words: str) -> None:
    with pytest.raises(InvalidField) as info:
        build()
    error = info.value
    assert error.field == field
    assert words in error.reason
    assert str(error) == f"{field}: {error.reason}"
    assert len(str(error)) < 300  # short enough for a log line, even for hostile input


def test_replace_revalidates() -> None:
    good = command()
    assert replace(good, priority=2).priority == 2
    with pytest.raises(InvalidField) as info:
        replace(good, expires_ms=good.sent_ms)
    assert info.value.field == "expires_ms"


def test_instances_are_frozen() -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        fix().lat = 0.0  # type: ignore[misc]


def test_enum_values_are_accepted_as_text() -> None:
    assert fix(source="sim").source == "sim"
    assert Presence(kind="check_in", shift_id="s1").kind is PresenceKind.CHECK_IN


def test_byte_like_values_become_bytes() -> None:
    made = snapshot(sha256=bytearray(SHA), jpeg=memoryview(JPEG))
    assert type(made.sha256) is bytes and type(made.jpeg) is bytes
    assert made == snapshot()


# --- the same rules on the wire ---------------------------------------------------------------


def _sealed_with_body(message: object, body: list[object]) -> bytes:
    envelope = Envelope("term-1", 1, 1, T, message)  # type: ignore[arg-type]
    payload = seal_mac(envelope, MAC_KEY)
    raw = msgpack.unpackb(payload[2:-16], raw=False)
    raw[5] = body
    return payload[:2] + msgpack.packb(raw, use_bin_type=True) + payload[-16:]


WIRE_CASES: list[tuple[str, object, Callable[[list[Any]], None], type[ProtocolError], str]] = [
    ("lat beyond 90°", Position(fix=fix()), lambda b: b[0].__setitem__(1, 900_000_001),
     InvalidField, "Position.fix.lat"),
    ("lat as float", Position(fix=fix()), lambda b: b[0].__setitem__(1, 31.2),
     InvalidField, "Position.fix.lat"),
    ("time as bool", Position(fix=fix()), lambda b: b[0].__setitem__(0, True),
     InvalidField, "Position.fix.time_ms"),
    ("course 3600", Position(fix=fix(course_deg=1.0)), lambda b: b[0].__setitem__(5, 3600),
     InvalidField, "Position.fix.course_deg"),
    ("fix not a list", Position(fix=fix()), lambda b: b.__setitem__(0, {"lat": 1}),
     MalformedFrame, "Position.fix"),
    ("second fix short", PositionBatch(fixes=(fix(), fix())), lambda b: b[0][1].pop(),
     MalformedFrame, "PositionBatch.fixes[1]"),
    ("check-in without shift", Presence(kind="check_in", shift_id="s"), lambda b: b.pop(),
     InvalidField, "Presence.shift_id"),
    ("snapshot altered", snapshot(), lambda b: b.__setitem__(5, b[5][:-1] + b"\x01"),
     InvalidField, "Snapshot.sha256"),
    ("jpeg as text", snapshot(), lambda b: b.__setitem__(5, "\xff\xd8"),
     InvalidField, "Snapshot.jpeg"),
    ("ack unordered", StoredAck(ranges=((1, 2), (4, 5))), lambda b: b[0].reverse(),
     InvalidField, "StoredAck.ranges[1]"),
    ("command expired", command(), lambda b: b.__setitem__(7, b[6]),
     InvalidField, "DispatchCommand.expires_ms"),
    ("checkpoint digests", checkpoint(), lambda b: b.__setitem__(2, b[2] + b"\x00" * 16),
     InvalidField, "Checkpoint.digests"),
    ("config setting unknown", ConfigPush(version=3, settings=((Setting.HEARTBEAT_S, 30),)),
     lambda b: b[1][0].__setitem__(0, "volume"), InvalidField, "ConfigPush.settings[0].name"),
    ("body not a list", Presence(kind="heartbeat"), lambda b: b.clear(),
     MalformedFrame, "Presence"),
]


@pytest.mark.parametrize(
    ("message", "mutate", "error", "field"), [c[1:] for c in WIRE_CASES],
    ids=[c[0] for c in WIRE_CASES],
)
def test_decoding_runs_the_same_rules(
    message: Any, mutate: Callable[[list[Any]], None], error: type[ProtocolError], field: str
) -> None:
    body = message.to_wire()
    mutate(body)
    with pytest.raises(error) as info:
        decode(_sealed_with_body(message, body))
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")


def test_bool_is_not_a_message_type() -> None:
    """msgpack ``true`` must not decode as type 1 (Python's True == 1)."""
    payload = seal_mac(Envelope("term-1", 1, 1, T, Position(fix=fix())), MAC_KEY)
    raw = msgpack.unpackb(payload[2:-16], raw=False)
    raw[0] = True
    forged = payload[:2] + msgpack.packb(raw, use_bin_type=True) + payload[-16:]
    with pytest.raises(MalformedFrame) as info:
        decode(forged)
    assert info.value.field == "type"
    assert "must be an integer, got True" in str(info.value)


@settings(max_examples=80, deadline=None)
@given(message=st.one_of(*MESSAGE_STRATEGIES.values()), data=st.data())
def test_any_single_field_replaced_by_junk_is_rejected_or_valid(
    message: Any, data: st.DataObject
) -> None:
    """Replacing one top-level wire item by any value either still builds a valid message or
    raises a ProtocolError naming a field path within that message type."""
    body = message.to_wire()
    index = data.draw(st.integers(0, len(body) - 1))
    body[index] = data.draw(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                  st.binary(max_size=8), st.lists(st.integers(), max_size=3))
    )
    try:
        rebuilt = type(message).from_wire(body)
    except ProtocolError as exc:
        assert str(exc)
        assert isinstance(exc, (InvalidField, MalformedFrame))
    else:
        assert type(message).from_wire(rebuilt.to_wire()) == rebuilt


@settings(max_examples=50, deadline=None)
@given(fixes())
def test_a_valid_fix_is_valid_on_every_path(made: Fix) -> None:
    """Constructing from the decoded values is the identity: check() is idempotent."""
    again = Fix.from_wire(made.to_wire())
    assert again == made and hash(again) == hash(made)


@given(st.sets(st.integers(min_value=1, max_value=5000), min_size=1, max_size=1500))
def test_acks_covering_any_seqs_cover_exactly_them_within_the_range_limit(seqs: set[int]) -> None:
    acks = StoredAck.covering(seqs)
    assert all(1 <= len(a.ranges) <= 512 for a in acks)
    covered = {s for a in acks for first, last in a.ranges for s in range(first, last + 1)}
    assert covered == seqs
    # As few acks as the limit allows.
    ranges = sum(len(a.ranges) for a in acks)
    assert len(acks) == -(-ranges // 512)


def test_acks_covering_nothing_is_refused_by_name() -> None:
    with pytest.raises(InvalidField, match="ranges"):
        StoredAck.covering([])
