"""Message types exchanged between agent and server, as frozen, validating dataclasses.

Each type has a one-byte ``TYPE`` code (its identity on the wire), a ``DIRECTION`` and a
``TOPIC`` suffix (see ``protocol.topics``). Constructing a message validates it; decoding runs
the very same rules. Uplink types are sent by terminals, downlink by the server.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import ClassVar

from .errors import InvalidField
from .fields import (
    MAX_TIME_MS,
    MIN_TIME_MS,
    Bool,
    Bytes,
    Choice,
    Codec,
    Int,
    ListOf,
    Maybe,
    Nested,
    Record,
    Scaled,
    Str,
    wire,
)

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
"""Ids of devices, units, dispatches, ... : safe in MQTT topics and ACL patterns (no / + # $)."""

TIME = Int(MIN_TIME_MS, MAX_TIME_MS)
IDENT = Str(64, pattern=ID_PATTERN, min_len=1)
MAX_SEQ = 2**53 - 1  # exact in every JSON consumer, and a day of 10 Hz fixes is only 864,000

#: A checkpoint covers at most this many sequence numbers; the digest is 16 bytes each.
CHECKPOINT_MAX_SPAN = 1024
DIGEST_SIZE = 16
#: Snapshots larger than this must be split or re-encoded smaller (issue #5 decides which).
MAX_JPEG_BYTES = 512 * 1024


class Direction(enum.Enum):
    UPLINK = "up"
    DOWNLINK = "down"


class FixSource(enum.StrEnum):
    GNSS = "gnss"
    NETWORK = "net"
    MANUAL = "manual"
    SIMULATED = "sim"


@dataclass(frozen=True, slots=True)
class Fix(Record):
    """One position. Resolution: 1e-7° (~1 cm), accuracy and altitude 0.1 m, speed 0.01 m/s."""

    time_ms: int = wire(TIME)
    lat: float = wire(Scaled(10**7, -90.0, 90.0))
    lon: float = wire(Scaled(10**7, -180.0, 180.0))
    accuracy_m: float | None = wire(Maybe(Scaled(10, 0.0, 100_000.0)), default=None)
    speed_mps: float | None = wire(Maybe(Scaled(100, 0.0, 300.0)), default=None)
    course_deg: float | None = wire(
        Maybe(Scaled(10, 0.0, 360.0, hi_open=True)), default=None
    )
    alt_m: float | None = wire(Maybe(Scaled(10, -1_000.0, 20_000.0)), default=None)
    satellites: int | None = wire(Maybe(Int(0, 255)), default=None)
    source: FixSource = wire(Choice(FixSource), default=FixSource.GNSS)


class Message(Record):
    """Base of every top-level message type."""

    TYPE: ClassVar[int]
    DIRECTION: ClassVar[Direction]
    TOPIC: ClassVar[str]


class IncidentKind(enum.StrEnum):
    """What an incident (and a clue) is about."""

    FIGHT = "fight"
    THEFT = "theft"
    MEDICAL = "medical"
    FIRE = "fire"
    TRAFFIC = "traffic"
    DISPUTE = "dispute"
    SEARCH = "search"
    OTHER = "other"


# --- uplink -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position(Message):
    """The newest position: the live lane."""

    TYPE = 1
    DIRECTION = Direction.UPLINK
    TOPIC = "pos"

    fix: Fix = wire(Nested(Fix))


@dataclass(frozen=True, slots=True)
class PositionBatch(Message):
    """Many fixes in one message: the backfill lane after time offline, oldest first."""

    TYPE = 2
    DIRECTION = Direction.UPLINK
    TOPIC = "pos"

    fixes: tuple[Fix, ...] = wire(ListOf(Nested(Fix), min_len=1, max_len=1000))


class PresenceKind(enum.StrEnum):
    HEARTBEAT = "heartbeat"
    CHECK_IN = "check_in"
    CHECK_OUT = "check_out"
    OFFLINE = "offline"  # said by the agent on orderly shutdown, or by the broker as its will


@dataclass(frozen=True, slots=True)
class Presence(Message):
    TYPE = 3
    DIRECTION = Direction.UPLINK
    TOPIC = "pres"

    kind: PresenceKind = wire(Choice(PresenceKind))
    shift_id: str | None = wire(Maybe(IDENT), default=None)
    battery_pct: int | None = wire(Maybe(Int(0, 100)), default=None)
    fix: Fix | None = wire(Maybe(Nested(Fix)), default=None)
    #: The terminal's clock minus GNSS time, ms, as the agent last measured it (positive: the
    #: terminal's clock is ahead). None without a GNSS fix to measure against.
    clock_skew_ms: int | None = wire(Maybe(Int(-(2**40), 2**40)), default=None)

    def validate(self) -> None:
        needs_shift = (PresenceKind.CHECK_IN, PresenceKind.CHECK_OUT)
        if self.kind in needs_shift and self.shift_id is None:
            raise InvalidField("shift_id", f"required for {self.kind.value}")


class EventKind(enum.StrEnum):
    SOS = "sos"
    BUTTON = "button"
    BATTERY = "battery"
    TAMPER = "tamper"
    SNAPSHOTS_EVICTED = "snapshots_evicted"  # value: how many the disk budget dropped
    FIXES_THINNED = "fixes_thinned"  # value: how many fixes thinning removed
    #: value: how many sealed frames the terminal dropped unsent because the server would
    #: refuse them as older than the replay window (``auth.REPLAY_WINDOW_MS``)
    FRAMES_EXPIRED = "frames_expired"


@dataclass(frozen=True, slots=True)
class Event(Message):
    TYPE = 4
    DIRECTION = Direction.UPLINK
    TOPIC = "evt"

    kind: EventKind = wire(Choice(EventKind))
    time_ms: int = wire(TIME)
    value: int | None = wire(Maybe(Int(-(2**31), 2**31 - 1)), default=None)
    fix: Fix | None = wire(Maybe(Nested(Fix)), default=None)
    detail: str | None = wire(Maybe(Str(200)), default=None)

    def validate(self) -> None:
        counted = (
            EventKind.SNAPSHOTS_EVICTED,
            EventKind.FIXES_THINNED,
            EventKind.FRAMES_EXPIRED,
            EventKind.BATTERY,
        )
        if self.kind in counted and self.value is None:
            raise InvalidField("value", f"required for {self.kind.value}")
        if self.kind is EventKind.BATTERY and self.value is not None and not 0 <= self.value <= 100:
            raise InvalidField("value", f"battery {self.value}% is outside [0, 100]")


class SnapshotTrigger(enum.StrEnum):
    PERIODIC = "periodic"
    SCENE_CHANGE = "scene_change"
    EVENT = "event"
    REQUEST = "request"
    CLUE = "clue"  # the photo of a clue report; ``request_id`` names the clue


@dataclass(frozen=True, slots=True)
class Snapshot(Message):
    """A JPEG with what it shows and when; ``sha256`` must match ``jpeg``."""

    TYPE = 5
    DIRECTION = Direction.UPLINK
    TOPIC = "snap"

    captured_ms: int = wire(TIME)
    trigger: SnapshotTrigger = wire(Choice(SnapshotTrigger))
    width: int = wire(Int(1, 8192))
    height: int = wire(Int(1, 8192))
    sha256: bytes = wire(Bytes(32, min_len=32))
    jpeg: bytes = wire(Bytes(MAX_JPEG_BYTES, min_len=4))
    fix: Fix | None = wire(Maybe(Nested(Fix)), default=None)
    request_id: str | None = wire(Maybe(IDENT), default=None)

    def validate(self) -> None:
        # JPEG SOI marker FFD8 (ITU T.81 B.1.1.3); the end marker may be lost to truncation, so
        # the hash is what catches a damaged body.
        if self.jpeg[:2] != b"\xff\xd8":
            raise InvalidField("jpeg", "does not start with a JPEG SOI marker (FF D8)")
        if hashlib.sha256(self.jpeg).digest() != self.sha256:
            raise InvalidField("sha256", "does not match the JPEG content")


class ResponseStatus(enum.StrEnum):
    DELIVERED = "delivered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    ON_SCENE = "on_scene"


@dataclass(frozen=True, slots=True)
class DispatchResponse(Message):
    TYPE = 6
    DIRECTION = Direction.UPLINK
    TOPIC = "resp"

    dispatch_id: str = wire(IDENT)
    status: ResponseStatus = wire(Choice(ResponseStatus))
    time_ms: int = wire(TIME)
    fix: Fix | None = wire(Maybe(Nested(Fix)), default=None)
    reason: str | None = wire(Maybe(Str(200)), default=None)


@dataclass(frozen=True, slots=True)
class RollCallAnswer(Message):
    TYPE = 7
    DIRECTION = Direction.UPLINK
    TOPIC = "resp"

    rollcall_id: str = wire(IDENT)
    time_ms: int = wire(TIME)
    fix: Fix | None = wire(Maybe(Nested(Fix)), default=None)
    snapshot_sha256: bytes | None = wire(Maybe(Bytes(32, min_len=32)), default=None)


@dataclass(frozen=True, slots=True)
class TaskAck(Message):
    """The volunteer has read a published task (任务发布)."""

    TYPE = 9
    DIRECTION = Direction.UPLINK
    TOPIC = "resp"

    task_id: str = wire(IDENT)
    time_ms: int = wire(TIME)


@dataclass(frozen=True, slots=True)
class Clue(Message):
    """A clue a volunteer reports (线索举报): what, where, when. A photo, if any, follows as a
    ``Snapshot`` with trigger ``clue`` and ``request_id`` = ``clue_id``, on the picture lane,
    so the text is never held up behind the picture's bytes."""

    TYPE = 10
    DIRECTION = Direction.UPLINK
    TOPIC = "clue"

    clue_id: str = wire(IDENT)
    time_ms: int = wire(TIME)
    text: str = wire(Str(1000, min_len=1))
    category: IncidentKind = wire(Choice(IncidentKind), default=IncidentKind.OTHER)
    fix: Fix | None = wire(Maybe(Nested(Fix)), default=None)
    photo_sha256: bytes | None = wire(Maybe(Bytes(32, min_len=32)), default=None)


@dataclass(frozen=True, slots=True)
class Checkpoint(Message):
    """An Ed25519 signature over the digests of a contiguous range of the sender's frames.

    ``digests`` holds one 16-byte truncated SHA-256 per sequence number ``first_seq`` to
    ``last_seq``, each of that whole frame as sent, tag included (``protocol.auth.digest``).
    The checkpoint is self-contained: with it and one stored frame an inspector proves the
    terminal's key produced that frame, even if other frames of the range were never
    delivered. See ``protocol.auth``.
    """

    TYPE = 8
    DIRECTION = Direction.UPLINK
    TOPIC = "ckpt"

    first_seq: int = wire(Int(1, MAX_SEQ))
    last_seq: int = wire(Int(1, MAX_SEQ))
    digests: bytes = wire(
        Bytes(DIGEST_SIZE * CHECKPOINT_MAX_SPAN, min_len=DIGEST_SIZE, multiple_of=DIGEST_SIZE)
    )
    signature: bytes = wire(Bytes(64, min_len=64))

    def validate(self) -> None:
        span = self.last_seq - self.first_seq + 1
        if span < 1:
            raise InvalidField("last_seq", "is before first_seq")
        if span > CHECKPOINT_MAX_SPAN:
            raise InvalidField("last_seq", f"span {span} exceeds {CHECKPOINT_MAX_SPAN}")
        if len(self.digests) != span * DIGEST_SIZE:
            raise InvalidField("digests", f"{len(self.digests) // DIGEST_SIZE} digests for {span}")

    def digest_of(self, seq: int) -> bytes:
        if not self.first_seq <= seq <= self.last_seq:
            raise InvalidField("seq", f"{seq} is outside [{self.first_seq}, {self.last_seq}]")
        start = (seq - self.first_seq) * DIGEST_SIZE
        return self.digests[start : start + DIGEST_SIZE]


# --- downlink ---------------------------------------------------------------------------------

SeqRange = tuple[int, int]
_MAX_ACK_RANGES = 512


class _SeqRangeCodec(ListOf[int]):
    def __init__(self) -> None:
        super().__init__(Int(1, MAX_SEQ), min_len=2, max_len=2)


@dataclass(frozen=True, slots=True)
class StoredAck(Message):
    """The server's word that these sequence numbers are durable: the agent may forget them.

    ``ranges`` are inclusive, ascending and disjoint. Duplicates are acknowledged too (they
    are stored, once), so a resent frame always ends in an ack.
    """

    TYPE = 32
    DIRECTION = Direction.DOWNLINK
    TOPIC = "ack"

    ranges: tuple[tuple[int, ...], ...] = wire(
        ListOf(_SeqRangeCodec(), min_len=1, max_len=_MAX_ACK_RANGES)
    )

    def validate(self) -> None:
        previous = 0
        for i, (first, last) in enumerate(self.ranges):
            if first > last:
                raise InvalidField(f"ranges[{i}]", f"first {first} is after last {last}")
            if first <= previous:
                raise InvalidField(f"ranges[{i}]", "ranges must be ascending and disjoint")
            previous = last

    def covers(self, seq: int) -> bool:
        return any(first <= seq <= last for first, last in self.ranges)

    def to_wire(self) -> list[object]:
        # What Record.to_wire makes of the one field, spelt out: the server seals an ack per
        # terminal and batch, and the generic walk through the codecs costs five times this.
        return [[list(r) for r in self.ranges]]

    @classmethod
    def covering(cls, seqs: set[int] | list[int]) -> list[StoredAck]:
        """Acks covering exactly ``seqs``: one, or as many as it takes at the wire's limit of
        ranges per ack (a terminal whose resends left many gaps can have more in one batch)."""
        ordered = sorted(set(seqs))
        if not ordered:
            raise InvalidField("ranges", "an ack covers at least one seq")
        chunks: list[list[int]] = [[]]
        ranges = 0
        previous: int | None = None
        for seq in ordered:
            if previous is None or seq != previous + 1:
                ranges += 1
                if ranges > _MAX_ACK_RANGES:
                    chunks.append([])
                    ranges = 1
            chunks[-1].append(seq)
            previous = seq
        return [cls.of(chunk) for chunk in chunks]

    @classmethod
    def of(cls, seqs: set[int] | list[int]) -> StoredAck:
        """The ack covering exactly ``seqs`` (non-empty), as the fewest ranges."""
        ordered = sorted(set(seqs))
        ranges: list[tuple[int, int]] = []
        for seq in ordered:
            if ranges and seq == ranges[-1][1] + 1:
                ranges[-1] = (ranges[-1][0], seq)
            else:
                ranges.append((seq, seq))
        if (
            1 <= len(ranges) <= _MAX_ACK_RANGES
            and all(type(seq) is int for seq in ordered)
            and ordered[0] >= 1
            and ordered[-1] <= MAX_SEQ
        ):
            # Valid by construction (ascending, disjoint, each first <= last, every seq in
            # range, few enough ranges): what validation would return, without running it
            # again. This is on the server's path once per terminal and batch.
            ack = cls.__new__(cls)
            object.__setattr__(ack, "ranges", tuple(ranges))
            return ack
        return cls(ranges=tuple(ranges))  # raises the InvalidField that names the field


@dataclass(frozen=True, slots=True)
class DispatchCommand(Message):
    """Go to a place. The agent must not ring for it after ``expires_ms``, whatever the broker."""

    TYPE = 33
    DIRECTION = Direction.DOWNLINK
    TOPIC = "cmd"

    dispatch_id: str = wire(IDENT)
    incident_id: str = wire(IDENT)
    kind: IncidentKind = wire(Choice(IncidentKind))
    priority: int = wire(Int(1, 3))
    lat: float = wire(Scaled(10**7, -90.0, 90.0))
    lon: float = wire(Scaled(10**7, -180.0, 180.0))
    sent_ms: int = wire(TIME)
    expires_ms: int = wire(TIME)
    note: str = wire(Str(500), default="")

    def validate(self) -> None:
        if self.expires_ms <= self.sent_ms:
            raise InvalidField("expires_ms", "must be after sent_ms")


@dataclass(frozen=True, slots=True)
class DispatchCancel(Message):
    """Stop ringing for a dispatch: the officer called it off or closed the incident."""

    TYPE = 36
    DIRECTION = Direction.DOWNLINK
    TOPIC = "cmd"

    dispatch_id: str = wire(IDENT)
    sent_ms: int = wire(TIME)
    reason: str = wire(Str(200), default="")


@dataclass(frozen=True, slots=True)
class Task(Message):
    """A task published to volunteers (任务发布): shown until read or ``expires_ms``; the
    agent answers ``TaskAck`` when the volunteer has read it."""

    TYPE = 37
    DIRECTION = Direction.DOWNLINK
    TOPIC = "cmd"

    task_id: str = wire(IDENT)
    title: str = wire(Str(100, min_len=1))
    sent_ms: int = wire(TIME)
    expires_ms: int = wire(TIME)
    text: str = wire(Str(1000), default="")
    priority: int = wire(Int(1, 3), default=2)
    lat: float | None = wire(Maybe(Scaled(10**7, -90.0, 90.0)), default=None)
    lon: float | None = wire(Maybe(Scaled(10**7, -180.0, 180.0)), default=None)

    def validate(self) -> None:
        if self.expires_ms <= self.sent_ms:
            raise InvalidField("expires_ms", "must be after sent_ms")
        if (self.lat is None) != (self.lon is None):
            raise InvalidField("lat", "a place needs both lat and lon, or neither")


@dataclass(frozen=True, slots=True)
class RollCall(Message):
    """A spot check: answer with a fresh fix (and a snapshot if asked) before the deadline."""

    TYPE = 34
    DIRECTION = Direction.DOWNLINK
    TOPIC = "cmd"

    rollcall_id: str = wire(IDENT)
    sent_ms: int = wire(TIME)
    deadline_ms: int = wire(TIME)
    want_snapshot: bool = wire(Bool(), default=False)

    def validate(self) -> None:
        if self.deadline_ms <= self.sent_ms:
            raise InvalidField("deadline_ms", "must be after sent_ms")


class Setting(enum.StrEnum):
    """Agent settings the server may push; each has a rule in ``SETTING_RULES``."""

    INTERVAL_MOVING_S = "interval_moving_s"
    INTERVAL_STILL_S = "interval_still_s"
    MIN_DISTANCE_M = "min_distance_m"
    HEARTBEAT_S = "heartbeat_s"
    ACK_TIMEOUT_S = "ack_timeout_s"
    DISK_BUDGET_MB = "disk_budget_mb"


SETTING_RULES: dict[Setting, Int] = {
    Setting.INTERVAL_MOVING_S: Int(1, 3600),
    Setting.INTERVAL_STILL_S: Int(1, 86_400),
    Setting.MIN_DISTANCE_M: Int(0, 10_000),
    Setting.HEARTBEAT_S: Int(5, 3600),
    Setting.ACK_TIMEOUT_S: Int(1, 3600),
    Setting.DISK_BUDGET_MB: Int(1, 1_000_000),
}


class _SettingPair(ListOf[object]):
    """A [name, value] pair; the value's rule depends on the name."""

    def __init__(self) -> None:
        super().__init__(Codec[object](), min_len=2, max_len=2)  # items checked in _pair

    def _pair(self, value: object, name: str) -> tuple[object, ...]:
        items = self._length(value, name)
        setting = Choice(Setting).check(items[0], f"{name}.name")
        return (setting, SETTING_RULES[setting].check(items[1], f"{name}.{setting.value}"))

    def check(self, value: object, name: str) -> tuple[object, ...]:
        return self._pair(value, name)

    def to_wire(self, value: tuple[object, ...]) -> object:
        setting, number = value
        assert isinstance(setting, Setting)
        return [setting.value, number]

    def from_wire(self, raw: object, name: str) -> tuple[object, ...]:
        return self._pair(raw, name)


@dataclass(frozen=True, slots=True)
class ConfigPush(Message):
    """New values for some agent settings, versioned so an agent applies each push once."""

    TYPE = 35
    DIRECTION = Direction.DOWNLINK
    TOPIC = "cfg"

    version: int = wire(Int(1, MAX_SEQ))
    settings: tuple[tuple[object, ...], ...] = wire(ListOf(_SettingPair(), max_len=len(Setting)))

    def validate(self) -> None:
        names = [pair[0] for pair in self.settings]
        if len(names) != len(set(names)):
            raise InvalidField("settings", "names a setting twice")

    def as_dict(self) -> dict[Setting, int]:
        return {Setting(str(k)): int(str(v)) for k, v in self.settings}


UPLINK_TYPES: tuple[type[Message], ...] = (
    Position,
    PositionBatch,
    Presence,
    Event,
    Snapshot,
    DispatchResponse,
    RollCallAnswer,
    TaskAck,
    Clue,
    Checkpoint,
)
DOWNLINK_TYPES: tuple[type[Message], ...] = (
    StoredAck,
    DispatchCommand,
    RollCall,
    ConfigPush,
    DispatchCancel,
    Task,
)
MESSAGE_TYPES: dict[int, type[Message]] = {t.TYPE: t for t in UPLINK_TYPES + DOWNLINK_TYPES}
