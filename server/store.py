"""What the server keeps, behind one interface that each back end implements.

SQLite is the back end today (``server.sqlite_store``); a PostgreSQL one (issue #9, not built
yet) is to implement the same ``Store`` protocol and pass the same tests. Writes come in
batches: ingest hands over every verified frame of a batch in one call, stored in one
transaction, and acknowledges to the terminals only after that call returns.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from protocol import Fix

from .fixpack import FixArray

#: How far ahead of the server's clock a timestamp may be before it is not believed: clocks
#: of phones and terminals synced by NTP or GNSS agree to well under a second; this allows
#: for a terminal whose clock is set by hand.
FUTURE_TOLERANCE_MS = 120_000

#: ``(time_ms, seq, idx, lat, lon, accuracy_m, flags, received_ms)``, in that order.
FixRow = tuple[Any, ...]
#: ``(sent_ms, offline)``: a stored frame sealed at ``sent_ms``; ``offline`` is 1 for an
#: orderly "switched off" presence.
EvidenceRow = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """One key generation of a terminal: its MAC key and its public signing key."""

    device_id: str
    key_id: int
    mac_key: bytes
    public_key: bytes


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    label: str
    units: tuple[str, ...]
    created_ms: int


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """What the store keeps about a snapshot; the JPEG is a file named by ``sha256``."""

    device_id: str
    seq: int
    sha256: str  # lowercase hex
    captured_ms: int
    trigger: str
    width: int
    height: int
    size: int
    received_ms: int
    request_id: str | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class IncomingFrame:
    """A verified uplink frame, ready to store. ``fixes`` are the positions it carries."""

    device_id: str
    seq: int
    key_id: int
    type_code: int
    sent_ms: int
    received_ms: int
    payload: bytes
    digest: bytes
    fixes: tuple[Fix, ...] = ()
    #: One ``FixFlag`` bit set per fix, parallel to ``fixes`` (empty: all zero).
    fix_flags: tuple[int, ...] = ()
    checkpoint_range: tuple[int, int] | None = None
    snapshot: SnapshotMeta | None = None
    #: An orderly "offline" presence: the terminal says it is being switched off.
    offline: bool = False
    #: The clock skew a presence reported (terminal minus GNSS time, ms).
    skew_ms: int | None = None

    def __reduce__(self) -> tuple[type[IncomingFrame], tuple[object, ...]]:
        # Ingest workers pickle every stored frame to the main process: the constructor with
        # the fields in order is about a third cheaper to unpickle than the generic slots
        # __setstate__ of a dataclass (which calls fields() for every object).
        return (
            IncomingFrame,
            (
                self.device_id, self.seq, self.key_id, self.type_code, self.sent_ms,
                self.received_ms, self.payload, self.digest, self.fixes, self.fix_flags,
                self.checkpoint_range, self.snapshot, self.offline, self.skew_ms,
            ),
        )  # fmt: skip


class FixFlag(enum.IntFlag):
    """Why a stored fix is not taken at face value. Flagged fixes are kept (audit) and shown,
    never silently dropped; they do not move a terminal's live marker."""

    FUTURE_TIME = 1  # its time is ahead of the server's clock at receipt (beyond tolerance)


class Outcome(enum.Enum):
    NEW = "new"  # stored now
    DUPLICATE = "duplicate"  # stored before, same bytes: acknowledge again
    CONFLICT = "conflict"  # stored before with different bytes: keep the first, flag it


@dataclass(frozen=True, slots=True)
class TrackPoint:
    seq: int
    fix: Fix
    received_ms: int
    flags: int = 0


class Store(Protocol):
    def close(self) -> None: ...

    def add_device(self, device: Device, key: DeviceKey) -> None: ...

    def add_key(self, key: DeviceKey) -> None: ...

    def devices(self) -> list[Device]: ...

    def keys(self) -> list[DeviceKey]: ...

    def key(self, device_id: str, key_id: int) -> DeviceKey | None: ...

    def device_keys(self, device_id: str) -> list[DeviceKey]:
        """Every key generation of a terminal, oldest first."""
        ...

    def revoke_device(self, device_id: str, *, at_ms: int, reason: str) -> None:
        """Record that the terminal is revoked (idempotent); ``StoreError`` if unknown."""
        ...

    def revoked(self, *, after_rowid: int = 0) -> dict[str, tuple[int, int]]:
        """Revoked terminals recorded after ``after_rowid``: device → (revoked ms, rowid)."""
        ...

    def store_frames(self, frames: Sequence[IncomingFrame]) -> list[Outcome]:
        """Store a batch in one transaction; one outcome per frame, in order."""
        ...

    def track(
        self,
        device_id: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 10_000,
    ) -> list[TrackPoint]:
        """A device's fixes in time order (fix time), within the window."""
        ...

    def latest_fixes(self) -> dict[str, TrackPoint]:
        """The newest unflagged fix (by fix time) of every device that has one."""
        ...

    def frame(self, device_id: str, seq: int) -> bytes | None: ...

    def frames_received(
        self, type_codes: Collection[int], since_ms: int
    ) -> list[tuple[str, int, int, bytes]]:
        """``(device_id, seq, received_ms, payload)`` of the stored frames of these message
        TYPE codes received at or after ``since_ms``, in the order received."""
        ...

    def checkpoint_covering(self, device_id: str, seq: int) -> bytes | None:
        """The stored frame of a checkpoint whose range includes ``seq``."""
        ...

    def snapshots(
        self, device_id: str, *, since_ms: int | None = None, limit: int = 100
    ) -> list[SnapshotMeta]:
        """A device's snapshots, newest first."""
        ...

    def snapshot(self, sha256: str) -> SnapshotMeta | None:
        """Any stored snapshot with this content (the newest)."""
        ...

    def snapshots_received(self, trigger: str, since_ms: int) -> list[SnapshotMeta]:
        """Pictures of one trigger received at or after ``since_ms``, metadata only (a
        replay must not read every JPEG of a day)."""
        ...

    def snapshot_hashes(self) -> set[str]:
        """Every picture some stored snapshot refers to."""
        ...

    def expire_snapshots(self, trigger: str, before_ms: int) -> list[str]:
        """Forget snapshots of ``trigger`` captured before ``before_ms``; return the hashes
        no snapshot refers to any more (their files may go)."""
        ...

    def pack_settled(self, since_ms: int) -> int:
        """Pack every settled device-hour since ``since_ms`` that has no pack yet; how many."""
        ...

    def drop_days_before(self, day: str) -> None:
        """Retention: forget every fix timed before ``day`` (``YYYY-MM-DD``, UTC); frames,
        the evidence, are kept."""
        ...

    def fix_rows(self, device_id: str, since_ms: int, until_ms: int) -> list[FixRow]:
        """Fixes with ``since_ms <= time_ms < until_ms``, ordered by (time_ms, seq, idx)."""
        ...

    def fix_array(self, device_id: str, since_ms: int, until_ms: int) -> FixArray:
        """``fix_rows`` as one packed array (``server.fixpack``): the fast path for
        recomputing millions of fixes."""
        ...

    def evidence_rows(self, device_id: str, since_ms: int, until_ms: int) -> list[EvidenceRow]:
        """Stored frames sealed in the window, those from the future excluded."""
        ...

    def skew_rows(self, device_id: str, since_ms: int, until_ms: int) -> list[tuple[int, int]]:
        """``(sent_ms, skew_ms)`` of frames that reported the terminal's clock skew."""
        ...

    def future_frame_times(self, device_id: str, since_ms: int, until_ms: int) -> list[int]:
        """``sent_ms`` of stored frames sealed in the window more than ``FUTURE_TOLERANCE_MS``
        ahead of the server's clock when they arrived (those ``evidence_rows`` leaves out)."""
        ...

    def add_rejections(self, day: str, counts: Mapping[tuple[str, str], int]) -> None:
        """Add to the per-(device, day, reason) counts of rejected frames."""
        ...

    def rejections(
        self, *, device_id: str | None = None, first_day: str = "", last_day: str = "9999"
    ) -> list[tuple[str, str, str, int]]:
        """``(device_id, day, reason, count)`` rows, days as ``YYYY-MM-DD`` (UTC)."""
        ...

    def frame_count(self, device_id: str | None = None) -> int: ...

    def fix_count(self, device_id: str | None = None) -> int: ...
