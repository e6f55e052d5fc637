"""The durable outbox: nothing leaves the terminal's disk until the server says it is stored.

Each message is numbered, sealed and written in one SQLite transaction (WAL,
``synchronous=FULL``: a commit survives kill -9 and power loss). The frame's bytes are fixed at
that moment, so a resend is byte-identical and the server's (device, seq) deduplication makes
delivery effectively exactly once. Rows are deleted only by a ``StoredAck`` covering them.

Lanes order what goes out first when the link returns: urgent (SOS, dispatch answers) before the
live position before backfill before snapshots. Within the live lane the newest goes first;
elsewhere the oldest.

Every ``CHECKPOINT_EVERY`` frames the outbox also writes a signed ``Checkpoint`` of their digests
(see ``protocol.auth``), in the same transaction as the frame that completes the range.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from protocol import (
    CHECKPOINT_EVERY,
    Checkpoint,
    DeviceEndpoint,
    DispatchResponse,
    Event,
    Message,
    Position,
    PositionBatch,
    Presence,
    RollCallAnswer,
    Snapshot,
    StoredAck,
)
from yijing.sqlite import SchemaError, migrate, open_database, transaction

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
    Position: Lane.LIVE,
    Presence: Lane.LIVE,
    PositionBatch: Lane.BACKFILL,
    Checkpoint: Lane.BACKFILL,
    Snapshot: Lane.SNAPSHOT,
}


@dataclass(frozen=True, slots=True)
class Item:
    seq: int
    lane: Lane
    topic: str
    payload: bytes


def _v1(db: sqlite_utils.Database) -> None:
    db.table("meta").create({"key": str, "value": int}, pk="key")
    db.table("meta").insert_all(
        [
            {"key": "next_seq", "value": 1},
            {"key": "checkpoint_from", "value": 1},  # first seq not yet in a checkpoint
            {"key": "last_checkpoint", "value": 0},  # seq of the newest checkpoint frame
        ]
    )
    db.table("items").create(
        {"seq": int, "lane": int, "created_ms": int, "topic": str, "payload": bytes},
        pk="seq",
    )
    db.table("items").create_index(["lane", "seq"])
    db.table("digests").create({"seq": int, "digest": bytes}, pk="seq")


MIGRATIONS = [_v1]


class Outbox:
    def __init__(
        self,
        path: Path,
        endpoint: DeviceEndpoint,
        *,
        clock_ms: Callable[[], int],
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> None:
        self._endpoint = endpoint
        self._clock_ms = clock_ms
        self._checkpoint_every = checkpoint_every
        try:
            self._db = open_database(path, synchronous="FULL")
            migrate(self._db, MIGRATIONS)
        except (sqlite3.Error, SchemaError) as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
        self._conn = self._db.conn

    def close(self) -> None:
        self._conn.close()

    def _meta(self, key: str) -> int:
        return int(self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0])

    def _append(self, message: Message, lane: Lane, now_ms: int) -> int:
        seq = self._meta("next_seq")
        out = self._endpoint.seal(message, seq=seq, sent_ms=now_ms)
        self._conn.execute(
            "INSERT INTO items(seq, lane, created_ms, topic, payload) VALUES (?,?,?,?,?)",
            (seq, int(lane), now_ms, out.topic, out.payload),
        )
        self._conn.execute("INSERT INTO digests(seq, digest) VALUES (?,?)", (seq, out.digest))
        self._conn.execute("UPDATE meta SET value=? WHERE key='next_seq'", (seq + 1,))
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
        """Number, seal and store ``message`` durably; return its sequence number.

        If sealing refuses (a ``ProtocolError``, e.g. a clock before 2000 at boot) nothing is
        written and no number is used.
        """
        now_ms = self._clock_ms()
        lane = LANE_OF[type(message)] if lane is None else lane
        with transaction(self._conn, OutboxError, f"store {type(message).__name__}"):
            seq = self._append(message, lane, now_ms)
            if seq - self._meta("checkpoint_from") + 1 >= self._checkpoint_every:
                self._checkpoint(now_ms)
        return seq

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
                cur = self._conn.execute(
                    "DELETE FROM items WHERE seq BETWEEN ? AND ?", (first, last)
                )
                removed += cur.rowcount
        return removed

    def next_items(self, limit: int, *, exclude: Collection[int] = frozenset()) -> list[Item]:
        """Up to ``limit`` unacknowledged items by lane priority, skipping ``exclude``."""
        items: list[Item] = []
        for lane in Lane:
            order = "DESC" if lane is Lane.LIVE else "ASC"
            cursor = self._conn.execute(
                f"SELECT seq, topic, payload FROM items WHERE lane=? ORDER BY seq {order}",
                (int(lane),),
            )
            for seq, topic, payload in cursor:
                if seq in exclude:
                    continue
                items.append(Item(seq, lane, topic, payload))
                if len(items) >= limit:
                    cursor.close()
                    return items
        return items

    def pending(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM items").fetchone()[0])

    @property
    def next_seq(self) -> int:
        return self._meta("next_seq")
