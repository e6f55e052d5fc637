"""The durable outbox: nothing leaves the terminal's disk until the server says it is stored.

Two stages, each row written in one SQLite transaction (WAL, ``synchronous=FULL``: a commit
survives kill -9 and power loss):

1. **Backlog** (``backlog`` table): accepted fixes and snapshots, not yet numbered. Fixes wait
   here while the link is down, so that when it returns the newest one can go first as the live
   ``Position`` and the rest go oldest first, a hundred to a ``PositionBatch``. Only the backlog
   is ever evicted to keep within the disk budget (``agent.budget``), so eviction never leaves a
   hole in the sequence numbers.
2. **Sealed frames** (``items`` table): numbered, sealed, and fixed byte for byte, so a resend
   is identical and the server's (device, seq) deduplication makes delivery effectively exactly
   once. A frame is deleted only by a ``StoredAck`` covering it. Urgent and control messages
   (SOS, dispatch answers, check-in/out, eviction reports) are sealed as soon as they are put;
   backlog rows are sealed only when the link has room for them (``next_items``).

Lanes order what goes out first: urgent, then the live position (newest first), then backfill
(oldest first), then snapshots.

Every ``CHECKPOINT_EVERY`` frames the outbox also seals a signed ``Checkpoint`` of their digests
(see ``protocol.auth``), in the same transaction as the frame that completes the range.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable, Collection, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgpack

from protocol import (
    CHECKPOINT_EVERY,
    REPLAY_WINDOW_MS,
    Checkpoint,
    Clue,
    DeviceEndpoint,
    DispatchResponse,
    Event,
    EventKind,
    Fix,
    Message,
    Position,
    PositionBatch,
    Presence,
    RollCallAnswer,
    Snapshot,
    StoredAck,
    TaskAck,
)
from yijing.sqlite import SchemaError, migrate, open_database, transaction

from . import budget as budget_rules
from .errors import OutboxError


class Lane(enum.IntEnum):
    URGENT = 0
    LIVE = 1
    BACKFILL = 2
    SNAPSHOT = 3


LANE_OF: dict[type[Message], Lane] = {
    Event: Lane.URGENT,
    DispatchResponse: Lane.URGENT,
    RollCallAnswer: Lane.URGENT,
    # A clue is something happening now; a task's read receipt is small and counted.
    Clue: Lane.URGENT,
    TaskAck: Lane.URGENT,
    Position: Lane.LIVE,
    Presence: Lane.LIVE,
    PositionBatch: Lane.BACKFILL,
    Checkpoint: Lane.BACKFILL,
    Snapshot: Lane.SNAPSHOT,
}
#: Events that only report a state; they need not jump the queue ahead of the live position.
_ROUTINE_EVENTS = frozenset(
    {EventKind.BATTERY, EventKind.SNAPSHOTS_EVICTED, EventKind.FIXES_THINNED}
)

#: Fixes per PositionBatch: a 100-fix batch is ~2.7 kB, small enough never to hold up an urgent
#: frame for long on a slow uplink, large enough to drain a day (17,280 fixes) in 173 frames.
BATCH_FIXES = 100


def lane_of(message: Message) -> Lane:
    if isinstance(message, Event) and message.kind in _ROUTINE_EVENTS:
        return Lane.LIVE
    return LANE_OF[type(message)]


class Backlog(enum.IntEnum):
    """What kind of row waits in the backlog."""

    FIX = 1
    SNAPSHOT = 2


@dataclass(frozen=True, slots=True)
class Item:
    seq: int
    lane: Lane
    topic: str
    payload: bytes


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` inside the caller's transaction.

    Not ``executescript``: it COMMITs a pending transaction first (Python 3.11), which would
    split a migration from its ``user_version`` bump.
    """
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    for statement in " ".join(lines).split(";"):
        if statement.strip():
            conn.execute(statement)


def _v1(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);
        INSERT INTO meta (key, value) VALUES
            ('next_seq', 1),
            ('checkpoint_from', 1),  -- first seq not yet in a checkpoint
            ('last_checkpoint', 0);  -- seq of the newest checkpoint frame
        CREATE TABLE items (
            seq INTEGER PRIMARY KEY, lane INTEGER, created_ms INTEGER, topic TEXT, payload BLOB
        );
        CREATE INDEX idx_items_lane_seq ON items (lane, seq);
        CREATE TABLE digests (seq INTEGER PRIMARY KEY, digest BLOB);
        """,
    )


def _v2(conn: sqlite3.Connection) -> None:
    # kind: Backlog; time_ms: the fix's (or capture's) time, for ordering and thinning;
    # body: the Fix or Snapshot in its wire form (msgpack).
    _execute_script(
        conn,
        """
        CREATE TABLE backlog (id INTEGER PRIMARY KEY, kind INTEGER, time_ms INTEGER, body BLOB);
        CREATE INDEX idx_backlog_kind_time_ms ON backlog (kind, time_ms);
        -- Durable counters: what was accepted, and what the disk budget took. The server must
        -- end up with (accepted - evicted) of each, which the fault tests check. *_reported:
        -- how much of each eviction count has gone to the server in Events. live_time_ms: the
        -- fix time of the newest fix sealed as the live Position. bytes_used: logical bytes
        -- held (frame payloads + backlog bodies), kept in the same transactions that change
        -- them so the budget check costs one lookup.
        INSERT INTO meta (key, value) VALUES
            ('fixes_accepted', 0), ('fixes_thinned', 0),
            ('snapshots_accepted', 0), ('snapshots_evicted', 0),
            ('fixes_thinned_reported', 0), ('snapshots_evicted_reported', 0),
            ('live_time_ms', 0), ('bytes_used', 0);
        """,
    )


def _v3(conn: sqlite3.Connection) -> None:
    # frames_expired: sealed frames dropped unsent because the server would refuse them as
    # older than the replay window (protocol.REPLAY_WINDOW_MS); reported like evictions.
    _execute_script(
        conn,
        "INSERT INTO meta (key, value) VALUES "
        "('frames_expired', 0), ('frames_expired_reported', 0)",
    )


MIGRATIONS = [_v1, _v2, _v3]

#: A sealed frame is dropped this long before the server's replay window would refuse it, so
#: a terminal clock a little behind the server's does not send frames only to have them refused.
EXPIRY_MARGIN_MS = 86_400_000


class Outbox:
    def __init__(
        self,
        path: Path,
        endpoint: DeviceEndpoint,
        *,
        clock_ms: Callable[[], int],
        checkpoint_every: int = CHECKPOINT_EVERY,
        budget_bytes: int | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._clock_ms = clock_ms
        self._checkpoint_every = checkpoint_every
        self.budget_bytes = budget_bytes
        try:
            self._conn = open_database(path, synchronous="FULL")
            migrate(self._conn, MIGRATIONS)
        except (sqlite3.Error, SchemaError) as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
        self.path = path

    def close(self) -> None:
        self._conn.close()

    # --- bookkeeping -------------------------------------------------------------------------

    def _meta(self, key: str) -> int:
        return int(self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0])

    def _bump(self, key: str, delta: int) -> None:
        self._conn.execute("UPDATE meta SET value=value+? WHERE key=?", (delta, key))

    def counters(self) -> dict[str, int]:
        """Durable counts: accepted, evicted and reported fixes and snapshots, and what waits."""
        doc = {str(k): int(v) for k, v in self._conn.execute("SELECT key, value FROM meta")}
        doc["frames_unacked"] = self._count("SELECT count(*) FROM items")
        doc["backlog_fixes"] = self._count("SELECT count(*) FROM backlog WHERE kind=?", Backlog.FIX)
        doc["backlog_snapshots"] = self._count(
            "SELECT count(*) FROM backlog WHERE kind=?", Backlog.SNAPSHOT
        )
        return doc

    def _count(self, sql: str, *params: object) -> int:
        return int(self._conn.execute(sql, params).fetchone()[0])

    def bytes_used(self) -> int:
        """Logical bytes held: sealed frames plus backlog bodies (what the budget limits)."""
        return self._meta("bytes_used")

    def pending(self) -> int:
        """Everything not yet acknowledged: sealed frames plus backlog rows."""
        return self._count("SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM backlog)")

    @property
    def next_seq(self) -> int:
        return self._meta("next_seq")

    # --- sealing -----------------------------------------------------------------------------

    def _append(self, message: Message, lane: Lane, now_ms: int) -> int:
        seq = self._meta("next_seq")
        out = self._endpoint.seal(message, seq=seq, sent_ms=now_ms)
        self._conn.execute(
            "INSERT INTO items(seq, lane, created_ms, topic, payload) VALUES (?,?,?,?,?)",
            (seq, int(lane), now_ms, out.topic, out.payload),
        )
        self._conn.execute("INSERT INTO digests(seq, digest) VALUES (?,?)", (seq, out.digest))
        self._conn.execute("UPDATE meta SET value=? WHERE key='next_seq'", (seq + 1,))
        self._bump("bytes_used", len(out.payload))
        if seq - self._meta("checkpoint_from") + 1 >= self._checkpoint_every:
            self._checkpoint(now_ms)
        return seq

    def _checkpoint(self, now_ms: int) -> None:
        first = self._meta("checkpoint_from")
        rows = self._conn.execute(
            "SELECT seq, digest FROM digests WHERE seq>=? ORDER BY seq", (first,)
        ).fetchall()
        # Nothing to sign, or only the previous checkpoint itself: signing that again would
        # add a frame per flush forever.
        if not rows or (len(rows) == 1 and rows[0][0] == self._meta("last_checkpoint")):
            return
        digests = b"".join(row[1] for row in rows)
        last = rows[-1][0]
        checkpoint = self._endpoint.checkpoint(first_seq=first, digests=digests)
        self._conn.execute("DELETE FROM digests WHERE seq<=?", (last,))
        self._conn.execute("UPDATE meta SET value=? WHERE key='checkpoint_from'", (last + 1,))
        seq = self._append(checkpoint, Lane.BACKFILL, now_ms)
        self._conn.execute("UPDATE meta SET value=? WHERE key='last_checkpoint'", (seq,))

    def put(self, message: Message, lane: Lane | None = None) -> int:
        """Number, seal and store ``message`` durably now; return its sequence number.

        For messages that must never be evicted (urgent, presence, reports). If sealing refuses
        (a ``ProtocolError``, e.g. a clock before 2000 at boot) nothing is written and no number
        is used.
        """
        now_ms = self._clock_ms()
        lane = lane_of(message) if lane is None else lane
        with transaction(self._conn, OutboxError, f"store {type(message).__name__}"):
            return self._append(message, lane, now_ms)

    def flush_checkpoint(self) -> None:
        """Sign the frames not yet covered by a checkpoint (at shutdown, or when idle).

        Calling it again with nothing new to sign writes nothing.
        """
        with transaction(self._conn, OutboxError, "write a checkpoint"):
            self._checkpoint(self._clock_ms())

    def acknowledge(self, ack: StoredAck) -> int:
        """Forget what the server stored; return how many rows went."""
        removed = 0
        with transaction(self._conn, OutboxError, "apply an ack"):
            for first, last in ack.ranges:
                sizes = self._conn.execute(
                    "DELETE FROM items WHERE seq BETWEEN ? AND ? RETURNING length(payload)",
                    (first, last),
                ).fetchall()
                removed += len(sizes)
                self._bump("bytes_used", -sum(size for (size,) in sizes))
        return removed

    # --- the backlog -------------------------------------------------------------------------

    def record_fix(self, fix: Fix) -> None:
        """Accept a fix durably; it is numbered and sealed when the link has room."""
        self._record(Backlog.FIX, fix.time_ms, fix.to_wire(), "fixes_accepted")

    def record_snapshot(self, snapshot: Snapshot) -> None:
        """Accept a snapshot durably; evicted first when the disk budget is exceeded."""
        self._record(
            Backlog.SNAPSHOT, snapshot.captured_ms, snapshot.to_wire(), "snapshots_accepted"
        )

    def _record(self, kind: Backlog, time_ms: int, wire: list[object], counter: str) -> None:
        body = msgpack.packb(wire, use_bin_type=True)
        with transaction(self._conn, OutboxError, f"record a {kind.name.lower()}"):
            self._conn.execute(
                "INSERT INTO backlog(kind, time_ms, body) VALUES (?,?,?)",
                (int(kind), time_ms, body),
            )
            self._bump(counter, 1)
            self._bump("bytes_used", len(body))
        if self.budget_bytes is not None and self.bytes_used() > self.budget_bytes:
            self._enforce_budget(self.budget_bytes)

    def _enforce_budget(self, budget: int) -> None:
        """Evict from the backlog in the documented order until within ``budget``."""
        with transaction(self._conn, OutboxError, "evict for the disk budget"):
            excess = self.bytes_used() - budget
            snaps = self._conn.execute(
                "SELECT id, length(body) FROM backlog WHERE kind=? ORDER BY time_ms, id",
                (int(Backlog.SNAPSHOT),),
            ).fetchall()
            for row_id, size in snaps:
                if excess <= 0:
                    break
                self._conn.execute("DELETE FROM backlog WHERE id=?", (row_id,))
                self._bump("snapshots_evicted", 1)
                self._bump("bytes_used", -size)
                excess -= size
            newest = self._conn.execute(
                "SELECT coalesce(max(time_ms), 0) FROM backlog WHERE kind=?", (int(Backlog.FIX),)
            ).fetchone()[0]
            cutoff = newest - budget_rules.KEEP_RECENT_S * 1000
            for step_s in budget_rules.THINNING_STEPS_S:
                if excess <= 0:
                    break
                excess -= self._delete_fixes(
                    budget_rules.thin(self._old_fixes(cutoff), step_s * 1000)
                )
            if excess > 0:  # last resort: the oldest fixes, newest always kept
                oldest = self._conn.execute(
                    "SELECT id, length(body) FROM backlog WHERE kind=? AND time_ms<? "
                    "ORDER BY time_ms, id",
                    (int(Backlog.FIX), newest),
                ).fetchall()
                doomed: list[int] = []
                for row_id, size in oldest:
                    if excess <= 0:
                        break
                    doomed.append(row_id)
                    excess -= size
                self._delete_fixes(doomed)
        self._report_evictions()

    def _old_fixes(self, cutoff_ms: int) -> list[tuple[int, int]]:
        return [
            (int(i), int(t))
            for i, t in self._conn.execute(
                "SELECT id, time_ms FROM backlog WHERE kind=? AND time_ms<?",
                (int(Backlog.FIX), cutoff_ms),
            )
        ]

    def _delete_fixes(self, ids: list[int]) -> int:
        """Delete backlog fixes by id, count them as thinned; return the bytes freed."""
        freed = 0
        for row_id in ids:
            row = self._conn.execute(
                "DELETE FROM backlog WHERE id=? RETURNING length(body)", (row_id,)
            ).fetchone()
            if row is not None:
                freed += int(row[0])
                self._bump("fixes_thinned", 1)
        self._bump("bytes_used", -freed)
        return freed

    def _report_evictions(self) -> None:
        """Seal an Event for each count not yet reported, in the transaction that marks it so."""
        now_ms = self._clock_ms()
        for counter, kind in (
            ("snapshots_evicted", EventKind.SNAPSHOTS_EVICTED),
            ("fixes_thinned", EventKind.FIXES_THINNED),
            ("frames_expired", EventKind.FRAMES_EXPIRED),
        ):
            with transaction(self._conn, OutboxError, f"report {counter}"):
                delta = self._meta(counter) - self._meta(f"{counter}_reported")
                if delta > 0:
                    self._append(Event(kind=kind, time_ms=now_ms, value=delta), Lane.LIVE, now_ms)
                    self._bump(f"{counter}_reported", delta)

    def _expire_stale(self) -> None:
        """Drop sealed frames the server would refuse as replays (sealed longer ago than the
        replay window): only those in flight when the terminal went quiet for a month can be
        that old. Counted durably and reported, like the disk budget's evictions."""
        cutoff = self._clock_ms() - (REPLAY_WINDOW_MS - EXPIRY_MARGIN_MS)
        if not self._count("SELECT count(*) FROM items WHERE created_ms<?", cutoff):
            return
        with transaction(self._conn, OutboxError, "drop expired frames"):
            sizes = self._conn.execute(
                "DELETE FROM items WHERE created_ms<? RETURNING length(payload)", (cutoff,)
            ).fetchall()
            self._bump("frames_expired", len(sizes))
            self._bump("bytes_used", -sum(size for (size,) in sizes))
        self._report_evictions()

    def _seal_from_backlog(self, lane: Lane) -> Item | None:
        """Number and seal the next backlog row(s) for ``lane``; None when there are none."""
        now_ms = self._clock_ms()
        with transaction(self._conn, OutboxError, f"seal {lane.name.lower()} backlog"):
            if lane is Lane.LIVE:
                rows = self._conn.execute(
                    "SELECT id, body FROM backlog WHERE kind=? AND time_ms>? "
                    "ORDER BY time_ms DESC, id DESC LIMIT 1",
                    (int(Backlog.FIX), self._meta("live_time_ms")),
                ).fetchall()
                if not rows:
                    return None
                fix = Fix.from_wire(msgpack.unpackb(rows[0][1]))
                message: Message = Position(fix=fix)
                self._conn.execute(
                    "UPDATE meta SET value=? WHERE key='live_time_ms'", (fix.time_ms,)
                )
            elif lane is Lane.BACKFILL:
                rows = self._conn.execute(
                    "SELECT id, body FROM backlog WHERE kind=? ORDER BY time_ms, id LIMIT ?",
                    (int(Backlog.FIX), BATCH_FIXES),
                ).fetchall()
                if not rows:
                    return None
                message = PositionBatch(
                    fixes=tuple(Fix.from_wire(msgpack.unpackb(body)) for _, body in rows)
                )
            elif lane is Lane.SNAPSHOT:
                rows = self._conn.execute(
                    "SELECT id, body FROM backlog WHERE kind=? ORDER BY time_ms, id LIMIT 1",
                    (int(Backlog.SNAPSHOT),),
                ).fetchall()
                if not rows:
                    return None
                message = Snapshot.from_wire(msgpack.unpackb(rows[0][1]))
            else:
                return None
            self._conn.executemany("DELETE FROM backlog WHERE id=?", [(r[0],) for r in rows])
            self._bump("bytes_used", -sum(len(body) for _, body in rows))
            seq = self._append(message, lane, now_ms)
            topic, payload = self._conn.execute(
                "SELECT topic, payload FROM items WHERE seq=?", (seq,)
            ).fetchone()
        return Item(seq, lane, topic, payload)

    def next_items(self, limit: int, *, exclude: Collection[int] = frozenset()) -> list[Item]:
        """``iter_items`` as a list."""
        return list(self.iter_items(limit, exclude=exclude))

    def iter_items(
        self,
        limit: int,
        *,
        exclude: Collection[int] = frozenset(),
        lane_room: Mapping[Lane, int] | None = None,
    ) -> Generator[Item, None, None]:
        """Up to ``limit`` frames to send now, by lane priority, skipping ``exclude``.

        In each lane: first sealed frames not yet acknowledged (a resend), then frames sealed
        now from the backlog. So a reconnect after a day offline sends the urgent frames, then
        the newest fix, then the day oldest first in batches, then the snapshots. Lazy: each
        frame is sealed (one synced transaction) only when the caller asks for it, so the
        first can be on the wire before the rest of the window is sealed. ``lane_room`` caps
        how many frames a lane may give (the agent keeps one snapshot on the wire at a time).
        """
        # Counts evicted but never reported (the process died between an eviction's commit and
        # its report, or sealing the report was refused): report them now, or never.
        if self._count(
            "SELECT count(*) FROM meta a JOIN meta b ON b.key = a.key || '_reported' "
            "WHERE a.key IN ('snapshots_evicted', 'fixes_thinned', 'frames_expired') "
            "AND a.value > b.value"
        ):
            self._report_evictions()
        self._expire_stale()
        given = 0
        for lane in Lane:
            room = (lane_room or {}).get(lane, limit)
            if room <= 0:
                continue
            lane_limit = min(limit, given + room)
            order = "DESC" if lane is Lane.LIVE else "ASC"
            sealed = self._conn.execute(
                f"SELECT seq, topic, payload FROM items WHERE lane=? ORDER BY seq {order}",
                (int(lane),),
            ).fetchall()
            for seq, topic, payload in sealed:
                if given >= lane_limit:
                    break
                if seq not in exclude:
                    given += 1
                    yield Item(seq, lane, topic, payload)
            while given < lane_limit:
                item = self._seal_from_backlog(lane)
                if item is None:
                    break
                given += 1
                yield item
            if given >= limit:
                return
