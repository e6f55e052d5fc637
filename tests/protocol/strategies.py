"""Hypothesis strategies producing VALID instances of every protocol message type.

Imported by the tests in this package as ``from .strategies import ...``. Every strategy here
must only ever produce values the constructors accept: the round-trip tests rely on that, and
a strategy that needs ``.filter`` to get there is a sign that a rule is undocumented.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st

from protocol import (
    Checkpoint,
    Clue,
    ConfigPush,
    DispatchCancel,
    DispatchCommand,
    DispatchResponse,
    Envelope,
    Event,
    EventKind,
    Fix,
    FixSource,
    IncidentKind,
    Message,
    Position,
    PositionBatch,
    Presence,
    PresenceKind,
    ResponseStatus,
    RollCall,
    RollCallAnswer,
    Setting,
    Snapshot,
    SnapshotTrigger,
    StoredAck,
    Task,
    TaskAck,
)
from protocol.fields import MAX_TIME_MS, MIN_TIME_MS
from protocol.messages import (
    CHECKPOINT_MAX_SPAN,
    DIGEST_SIZE,
    ID_PATTERN,
    MAX_SEQ,
    MESSAGE_TYPES,
    SETTING_RULES,
)

# --- keys used across the tests (fixed bytes: runs are reproducible) -------------------------

DEVICE = "term-0042"
OTHER_DEVICE = "term-0043"
UNIT = "unit.east-3"
KEY_ID = 7
MAC_KEY = bytes(range(32))
OTHER_MAC_KEY = bytes(range(1, 33))
DEVICE_SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
SERVER_SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
ROGUE_SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(b"\x03" * 32)
SERVER_KEY_ID = 1
NOW_MS = 1_763_900_000_000  # 2025-11-23

# --- scalars ---------------------------------------------------------------------------------

times = st.integers(MIN_TIME_MS, MAX_TIME_MS)
ids = st.from_regex(ID_PATTERN, fullmatch=True)
seqs = st.integers(1, MAX_SEQ)
key_ids = st.integers(0, 2**31 - 1)

_CONTROLS = [chr(c) for c in range(0x20) if chr(c) not in "\n\t"]
#: Free text as the ``Str`` codec admits it: any encodable character but C0 controls.
free_text_chars = st.characters(codec="utf-8", exclude_characters=_CONTROLS)


def free_text(max_size: int, *, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(free_text_chars, min_size=min_size, max_size=max_size)


def scaled(lo: float, hi: float, *, hi_open: bool = False) -> st.SearchStrategy[float]:
    """Numbers the ``Scaled`` codec accepts: any finite float in range, plus the bounds."""
    floats = st.floats(lo, hi, allow_nan=False, allow_infinity=False, exclude_max=hi_open)
    bounds = [lo] if hi_open else [lo, hi]
    return st.one_of(floats, st.sampled_from(bounds))


latitudes = scaled(-90.0, 90.0)
longitudes = scaled(-180.0, 180.0)


@st.composite
def fixes(draw: st.DrawFn) -> Fix:
    return Fix(
        time_ms=draw(times),
        lat=draw(latitudes),
        lon=draw(longitudes),
        accuracy_m=draw(st.none() | scaled(0.0, 100_000.0)),
        speed_mps=draw(st.none() | scaled(0.0, 300.0)),
        course_deg=draw(st.none() | scaled(0.0, 360.0, hi_open=True)),
        alt_m=draw(st.none() | scaled(-1_000.0, 20_000.0)),
        satellites=draw(st.none() | st.integers(0, 255)),
        source=draw(st.sampled_from(FixSource)),
    )


maybe_fix = st.none() | fixes()

# --- uplink ----------------------------------------------------------------------------------

positions = st.builds(Position, fix=fixes())
position_batches = st.builds(
    PositionBatch, fixes=st.lists(fixes(), min_size=1, max_size=20).map(tuple)
)


@st.composite
def presences(draw: st.DrawFn) -> Presence:
    kind = draw(st.sampled_from(PresenceKind))
    needs_shift = kind in (PresenceKind.CHECK_IN, PresenceKind.CHECK_OUT)
    return Presence(
        kind=kind,
        shift_id=draw(ids if needs_shift else st.none() | ids),
        battery_pct=draw(st.none() | st.integers(0, 100)),
        fix=draw(maybe_fix),
    )


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(EventKind))
    if kind is EventKind.BATTERY:
        value: int | None = draw(st.integers(0, 100))
    elif kind in (EventKind.SNAPSHOTS_EVICTED, EventKind.FIXES_THINNED, EventKind.FRAMES_EXPIRED):
        value = draw(st.integers(-(2**31), 2**31 - 1))
    else:
        value = draw(st.none() | st.integers(-(2**31), 2**31 - 1))
    return Event(
        kind=kind,
        time_ms=draw(times),
        value=value,
        fix=draw(maybe_fix),
        detail=draw(st.none() | free_text(200)),
    )


jpegs = st.binary(min_size=2, max_size=2048).map(lambda rest: b"\xff\xd8" + rest)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    jpeg = draw(jpegs)
    return Snapshot(
        captured_ms=draw(times),
        trigger=draw(st.sampled_from(SnapshotTrigger)),
        width=draw(st.integers(1, 8192)),
        height=draw(st.integers(1, 8192)),
        sha256=hashlib.sha256(jpeg).digest(),
        jpeg=jpeg,
        fix=draw(maybe_fix),
        request_id=draw(st.none() | ids),
    )


dispatch_responses = st.builds(
    DispatchResponse,
    dispatch_id=ids,
    status=st.sampled_from(ResponseStatus),
    time_ms=times,
    fix=maybe_fix,
    reason=st.none() | free_text(200),
)

rollcall_answers = st.builds(
    RollCallAnswer,
    rollcall_id=ids,
    time_ms=times,
    fix=maybe_fix,
    snapshot_sha256=st.none() | st.binary(min_size=32, max_size=32),
)

task_acks = st.builds(TaskAck, task_id=ids, time_ms=times)
clues = st.builds(
    Clue,
    clue_id=ids,
    time_ms=times,
    text=free_text(1000, min_size=1),
    category=st.sampled_from(IncidentKind),
    fix=maybe_fix,
    photo_sha256=st.none() | st.binary(min_size=32, max_size=32),
)


@st.composite
def checkpoints(draw: st.DrawFn, max_span: int = 80) -> Checkpoint:
    """Well-formed checkpoints; the signature is random bytes (a validity, not an auth, test)."""
    span = draw(st.integers(1, min(max_span, CHECKPOINT_MAX_SPAN)))
    first = draw(st.integers(1, MAX_SEQ - span + 1))
    return Checkpoint(
        first_seq=first,
        last_seq=first + span - 1,
        digests=draw(st.binary(min_size=span * DIGEST_SIZE, max_size=span * DIGEST_SIZE)),
        signature=draw(st.binary(min_size=64, max_size=64)),
    )


# --- downlink --------------------------------------------------------------------------------


@st.composite
def stored_acks(draw: st.DrawFn) -> StoredAck:
    """Ascending, disjoint ranges (not necessarily minimal: adjacent ranges are legal)."""
    steps = draw(
        st.lists(
            st.tuples(st.integers(1, 10**6), st.integers(0, 10**6)), min_size=1, max_size=40
        )
    )
    ranges: list[tuple[int, int]] = []
    last = 0
    for gap, length in steps:
        first = last + gap
        last = first + length
        if last > MAX_SEQ:
            break
        ranges.append((first, last))
    if not ranges:
        ranges = [(MAX_SEQ, MAX_SEQ)]
    return StoredAck(ranges=tuple(ranges))


@st.composite
def _ordered_times(draw: st.DrawFn) -> tuple[int, int]:
    sent = draw(st.integers(MIN_TIME_MS, MAX_TIME_MS - 1))
    return sent, draw(st.integers(sent + 1, MAX_TIME_MS))


@st.composite
def dispatch_commands(draw: st.DrawFn) -> DispatchCommand:
    sent, expires = draw(_ordered_times())
    return DispatchCommand(
        dispatch_id=draw(ids),
        incident_id=draw(ids),
        kind=draw(st.sampled_from(IncidentKind)),
        priority=draw(st.integers(1, 3)),
        lat=draw(latitudes),
        lon=draw(longitudes),
        sent_ms=sent,
        expires_ms=expires,
        note=draw(free_text(500)),
    )


@st.composite
def roll_calls(draw: st.DrawFn) -> RollCall:
    sent, deadline = draw(_ordered_times())
    return RollCall(
        rollcall_id=draw(ids),
        sent_ms=sent,
        deadline_ms=deadline,
        want_snapshot=draw(st.booleans()),
    )


@st.composite
def config_pushes(draw: st.DrawFn) -> ConfigPush:
    names = draw(st.lists(st.sampled_from(Setting), unique=True))
    settings = tuple(
        (name, draw(st.integers(SETTING_RULES[name].lo, SETTING_RULES[name].hi)))
        for name in names
    )
    return ConfigPush(version=draw(seqs), settings=settings)


dispatch_cancels = st.builds(
    DispatchCancel, dispatch_id=ids, sent_ms=times, reason=free_text(200)
)


@st.composite
def tasks(draw: st.DrawFn) -> Task:
    sent, expires = draw(_ordered_times())
    place = draw(st.none() | st.tuples(latitudes, longitudes))
    return Task(
        task_id=draw(ids),
        title=draw(free_text(100, min_size=1)),
        sent_ms=sent,
        expires_ms=expires,
        text=draw(free_text(1000)),
        priority=draw(st.integers(1, 3)),
        lat=None if place is None else place[0],
        lon=None if place is None else place[1],
    )


MESSAGE_STRATEGIES: dict[type[Message], st.SearchStrategy[Message]] = {
    Position: positions,
    PositionBatch: position_batches,
    Presence: presences(),
    Event: events(),
    Snapshot: snapshots(),
    DispatchResponse: dispatch_responses,
    RollCallAnswer: rollcall_answers,
    TaskAck: task_acks,
    Clue: clues,
    Checkpoint: checkpoints(),
    StoredAck: stored_acks(),
    DispatchCommand: dispatch_commands(),
    RollCall: roll_calls(),
    ConfigPush: config_pushes(),
    DispatchCancel: dispatch_cancels,
    Task: tasks(),
}
assert set(MESSAGE_STRATEGIES) == set(MESSAGE_TYPES.values()), "a message type has no strategy"

messages = st.one_of(*MESSAGE_STRATEGIES.values())


def envelopes(message: st.SearchStrategy[Message] = messages) -> st.SearchStrategy[Envelope]:
    return st.builds(
        Envelope,
        party=ids,
        key_id=key_ids,
        seq=st.integers(0, MAX_SEQ),
        sent_ms=times,
        message=message,
    )
