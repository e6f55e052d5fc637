"""The SQLite back end of ``server.store.Store``: one file, WAL, one writer.

Each batch is one transaction with ``synchronous=FULL``, so what ingest acknowledges has been
fsync'd. Frames are kept whole (the exact bytes the terminal sealed: audit evidence); fixes are
also unpacked into ``positions`` for queries.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from protocol import Fix, FixSource
from yijing.sqlite import SchemaError, migrate, open_database, transaction

from . import fixpack
from .errors import StoreError
from .fixpack import HOUR_MS, FixArray
from .store import (
    FUTURE_TOLERANCE_MS,
    Device,
    DeviceKey,
    EvidenceRow,
    FixRow,
    IncomingFrame,
    Outcome,
    SnapshotMeta,
    TrackPoint,
)


def _v1(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    db.table("devices").create(
        {"device_id": str, "label": str, "units": str, "created_ms": int}, pk="device_id"
    )
    db.table("device_keys").create(
        {"device_id": str, "key_id": int, "mac_key": bytes, "public_key": bytes},
        pk=("device_id", "key_id"),
        foreign_keys=[("device_id", "devices", "device_id")],
    )
    db.table("frames").create(
        {
            "device_id": str,
            "seq": int,
            "key_id": int,
            "type": int,
            "sent_ms": int,
            "received_ms": int,
            "payload": bytes,
            "digest": bytes,
        },
        pk=("device_id", "seq"),
    )
    db.table("positions").create(
        {
            "device_id": str,
            "seq": int,
            "idx": int,
            "time_ms": int,
            "lat": float,
            "lon": float,
            "accuracy_m": float,
            "speed_mps": float,
            "course_deg": float,
            "alt_m": float,
            "satellites": int,
            "source": str,
            "received_ms": int,
        },
        pk=("device_id", "seq", "idx"),
    )
    db.table("positions").create_index(["device_id", "time_ms"])
    db.table("checkpoints").create(
        {"device_id": str, "seq": int, "first_seq": int, "last_seq": int}, pk=("device_id", "seq")
    )
    db.table("checkpoints").create_index(["device_id", "last_seq"])


def _v2(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    db.table("positions").add_column("flags", int, not_null_default=0)


def _v3(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    db.table("snapshots").create(
        {
            "device_id": str,
            "seq": int,
            "sha256": str,
            "captured_ms": int,
            "trigger": str,
            "width": int,
            "height": int,
            "size": int,
            "received_ms": int,
            "request_id": str,
            "lat": float,
            "lon": float,
        },
        pk=("device_id", "seq"),
    )
    db.table("snapshots").create_index(["sha256"])
    db.table("snapshots").create_index(["device_id", "captured_ms"])
    db.table("snapshots").create_index(["trigger", "captured_ms"])


def _v4(conn: sqlite3.Connection) -> None:
    """What the duty engine reads: every frame is evidence the terminal was on when it sealed
    it (an orderly "offline" presence is evidence it was switched off); the clock skew the
    terminal reported; and rejected frames, counted per device and day for inspectors."""
    db = sqlite_utils.Database(conn)
    db.table("frames").add_column("offline", int, not_null_default=0)
    db.table("frames").add_column("skew_ms", int)
    db.table("frames").create_index(["device_id", "sent_ms"])
    db.table("rejections").create(
        {"device_id": str, "day": str, "reason": str, "count": int},
        pk=("device_id", "day", "reason"),
    )
    # A cache of one device-hour of ``positions`` as packed arrays (``server.fixpack``): the
    # duty recomputation reads millions of fixes, and SQLite hands them out one Python object
    # per value. Dropped whenever a fix lands in that hour, so it never disagrees.
    db.table("fix_packs").create(
        {"device_id": str, "hour": int, "n": int, "data": bytes}, pk=("device_id", "hour")
    )


def _v5(conn: sqlite3.Connection) -> None:
    """Dispatch and field reports replay the answers, clues and alarms received since a time
    (``frames_received``): after a crash between the commit and the dispatch service's own
    write, the frames are stored and acknowledged, and only this replay finds them."""
    sqlite_utils.Database(conn).table("frames").create_index(["type", "received_ms"])


def _v6(conn: sqlite3.Connection) -> None:
    """Revocation: a revoked terminal's frames are refused from the next one on. The log is
    append-only (a revocation is never undone: a recovered terminal is enrolled again under a
    new certificate); ``rowid`` lets the server's key ring pick up new rows cheaply."""
    sqlite_utils.Database(conn).table("revocations").create(
        {"device_id": str, "revoked_ms": int, "reason": str}, pk="device_id"
    )


MIGRATIONS = [_v1, _v2, _v3, _v4, _v5, _v6]

_SNAPSHOT_COLUMNS = (
    "device_id, seq, sha256, captured_ms, trigger, width, height, size, received_ms, "
    "request_id, lat, lon"
)


def _snapshot(row: Sequence[Any]) -> SnapshotMeta:
    return SnapshotMeta(*row)


_POSITION_COLUMNS = (
    "time_ms, lat, lon, accuracy_m, speed_mps, course_deg, alt_m, satellites, source"
)


def _fix(row: Sequence[Any]) -> Fix:
    time_ms, lat, lon, acc, speed, course, alt, sats, source = row
    return Fix(
        time_ms=time_ms,
        lat=lat,
        lon=lon,
        accuracy_m=acc,
        speed_mps=speed,
        course_deg=course,
        alt_m=alt,
        satellites=sats,
        source=FixSource(source),
    )


_INSERT_FRAME = (
    "INSERT INTO frames(device_id, seq, key_id, type, sent_ms, received_ms, payload, digest, "
    "offline, skew_ms) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_POSITION = (
    f"INSERT INTO positions(device_id, seq, idx, {_POSITION_COLUMNS}, received_ms, flags) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
#: Keys looked up per statement (two variables each: well within SQLite's limit, and a full
#: chunk's statement text is the same each time, so it stays prepared).
_LOOKUP_CHUNK = 250

#: An hour is packed for the cache only once this long has passed since its end: late fixes
#: would drop the pack again at once.
PACK_SETTLE_MS = 10 * 60_000


class SqliteStore:
    def __init__(self, path: Path) -> None:
        try:
            self._conn = open_database(path, synchronous="FULL")
            migrate(self._conn, MIGRATIONS)
        except (sqlite3.Error, SchemaError) as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        # One connection shared by ingest (writer) and web (readers): SQLite serialises anyway,
        # and the lock keeps a reader from interleaving with a writer's open transaction.
        self._lock = threading.Lock()
        self.path = path

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _write(self, sql_batches: list[tuple[str, Sequence[Sequence[object]]]]) -> None:
        with self._lock, transaction(self._conn, StoreError, "write"):
            for sql, rows in sql_batches:
                self._conn.executemany(sql, rows)

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise StoreError(f"read failed: {exc}") from exc

    # --- devices and keys ----------------------------------------------------------------------

    def add_device(self, device: Device, key: DeviceKey) -> None:
        self._write(
            [
                (
                    "INSERT INTO devices(device_id, label, units, created_ms) VALUES (?,?,?,?) "
                    "ON CONFLICT(device_id) DO UPDATE SET "
                    "label=excluded.label, units=excluded.units",
                    [(device.device_id, device.label, json.dumps(device.units), device.created_ms)],
                ),
                (
                    "INSERT OR REPLACE INTO device_keys(device_id, key_id, mac_key, public_key) "
                    "VALUES (?,?,?,?)",
                    [(key.device_id, key.key_id, key.mac_key, key.public_key)],
                ),
            ]
        )

    def add_key(self, key: DeviceKey) -> None:
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO device_keys(device_id, key_id, mac_key, public_key) "
                    "VALUES (?,?,?,?)",
                    [(key.device_id, key.key_id, key.mac_key, key.public_key)],
                )
            ]
        )

    def devices(self) -> list[Device]:
        rows = self._read("SELECT device_id, label, units, created_ms FROM devices ORDER BY 1")
        return [Device(str(r[0]), str(r[1]), tuple(json.loads(str(r[2]))), int(r[3])) for r in rows]

    def device_keys(self, device_id: str) -> list[DeviceKey]:
        rows = self._read(
            "SELECT device_id, key_id, mac_key, public_key FROM device_keys WHERE device_id=? "
            "ORDER BY key_id",
            (device_id,),
        )
        return [DeviceKey(*r) for r in rows]

    def revoke_device(self, device_id: str, *, at_ms: int, reason: str) -> None:
        if not self._read("SELECT 1 FROM devices WHERE device_id=?", (device_id,)):
            raise StoreError(f"no terminal {device_id!r} is registered")
        self._write(
            [
                (
                    "INSERT OR IGNORE INTO revocations(device_id, revoked_ms, reason) "
                    "VALUES (?,?,?)",
                    [(device_id, at_ms, reason)],
                )
            ]
        )

    def revoked(self, *, after_rowid: int = 0) -> dict[str, tuple[int, int]]:
        """Revoked terminals: device → (revoked at ms, rowid), rows after ``after_rowid``."""
        rows = self._read(
            "SELECT device_id, revoked_ms, rowid FROM revocations WHERE rowid>? ORDER BY rowid",
            (after_rowid,),
        )
        return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

    def keys(self) -> list[DeviceKey]:
        rows = self._read("SELECT device_id, key_id, mac_key, public_key FROM device_keys")
        return [DeviceKey(*r) for r in rows]

    def key(self, device_id: str, key_id: int) -> DeviceKey | None:
        rows = self._read(
            "SELECT device_id, key_id, mac_key, public_key FROM device_keys "
            "WHERE device_id=? AND key_id=?",
            (device_id, key_id),
        )
        return DeviceKey(*rows[0]) if rows else None

    # --- frames -----------------------------------------------------------------------------

    def store_frames(self, frames: Sequence[IncomingFrame]) -> list[Outcome]:
        with self._lock, transaction(self._conn, StoreError, f"store {len(frames)} frames"):
            return self._store_batch(frames)

    def _store_batch(self, frames: Sequence[IncomingFrame]) -> list[Outcome]:
        """A handful of statements whatever the batch's size: one SELECT per
        ``_LOOKUP_CHUNK`` frames finds those stored before, then one ``executemany`` per
        table stores the rest. ``BEGIN IMMEDIATE`` holds the write lock from before that
        SELECT, so no other writer stores a frame in between."""
        conn = self._conn
        # The first copy of each (device, seq) in the batch is the one that may be stored;
        # later copies are compared with it, as with a copy stored by an earlier batch.
        first: dict[tuple[str, int], int] = {}
        for i, f in enumerate(frames):
            first.setdefault((f.device_id, f.seq), i)
        stored = self._stored_digests(list(first))
        new = [frames[i] for key, i in first.items() if key not in stored]
        conn.executemany(
            _INSERT_FRAME,
            [
                (f.device_id, f.seq, f.key_id, f.type_code, f.sent_ms, f.received_ms,
                 f.payload, f.digest, int(f.offline), f.skew_ms)
                for f in new
            ],
        )  # fmt: skip
        with_fixes = [f for f in new if f.fixes]
        if with_fixes:
            hours = {(f.device_id, x.time_ms // HOUR_MS): None for f in with_fixes for x in f.fixes}
            conn.executemany("DELETE FROM fix_packs WHERE device_id=? AND hour=?", list(hours))
            conn.executemany(
                _INSERT_POSITION,
                [
                    (f.device_id, f.seq, i, x.time_ms, x.lat, x.lon, x.accuracy_m, x.speed_mps,
                     x.course_deg, x.alt_m, x.satellites, x.source.value, f.received_ms,
                     f.fix_flags[i] if f.fix_flags else 0)
                    for f in with_fixes
                    for i, x in enumerate(f.fixes)
                ],
            )  # fmt: skip
        snapshots = [f.snapshot for f in new if f.snapshot is not None]
        if snapshots:
            conn.executemany(
                f"INSERT INTO snapshots({_SNAPSHOT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(m.device_id, m.seq, m.sha256, m.captured_ms, m.trigger, m.width, m.height,
                  m.size, m.received_ms, m.request_id, m.lat, m.lon) for m in snapshots],
            )  # fmt: skip
        checkpoints = [(f.device_id, f.seq, *f.checkpoint_range) for f in new
                       if f.checkpoint_range is not None]  # fmt: skip
        if checkpoints:
            conn.executemany(
                "INSERT INTO checkpoints(device_id, seq, first_seq, last_seq) VALUES (?,?,?,?)",
                checkpoints,
            )
        outcomes = []
        for i, f in enumerate(frames):
            key = (f.device_id, f.seq)
            kept = stored.get(key)
            if kept is None:
                if first[key] == i:
                    outcomes.append(Outcome.NEW)
                    continue
                kept = frames[first[key]].digest
            outcomes.append(Outcome.DUPLICATE if kept == f.digest else Outcome.CONFLICT)
        return outcomes

    def _stored_digests(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], bytes]:
        """The digest of each of these (device, seq) frames that is stored."""
        out: dict[tuple[str, int], bytes] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            rows = self._conn.execute(
                "WITH k(device_id, seq) AS (VALUES " + ",".join(["(?,?)"] * len(chunk)) + ") "
                # CROSS JOIN keeps k the outer loop: one primary-key probe per key, whatever
                # the statistics say.
                "SELECT f.device_id, f.seq, f.digest FROM k CROSS JOIN frames f "
                "ON f.device_id=k.device_id AND f.seq=k.seq",
                [v for key in chunk for v in key],
            )
            out.update(((str(d), int(s)), bytes(g)) for d, s, g in rows)
        return out

    def drop_days_before(self, day: str) -> None:
        """Retention: delete the fixes timed before ``day`` (``YYYY-MM-DD``, UTC)."""
        cutoff = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()) * 1000
        with self._lock, transaction(self._conn, StoreError, f"drop fixes before {day}"):
            self._conn.execute("DELETE FROM positions WHERE time_ms<?", (cutoff,))
            self._conn.execute("DELETE FROM fix_packs WHERE hour<?", (cutoff // HOUR_MS,))

    def track(
        self,
        device_id: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 10_000,
    ) -> list[TrackPoint]:
        rows = self._read(
            f"SELECT seq, {_POSITION_COLUMNS}, received_ms, flags FROM positions "
            "WHERE device_id=? AND time_ms>=? AND time_ms<=? ORDER BY time_ms, seq, idx LIMIT ?",
            (device_id, since_ms or 0, until_ms or 2**62, limit),
        )
        return [TrackPoint(int(r[0]), _fix(r[1:10]), int(r[10]), int(r[11])) for r in rows]

    def latest_fixes(self) -> dict[str, TrackPoint]:
        # The newest fix per device by fix time; ties broken by the later sequence number.
        rows = self._read(
            f"SELECT device_id, seq, {_POSITION_COLUMNS}, received_ms FROM ("
            f" SELECT *, row_number() OVER (PARTITION BY device_id ORDER BY time_ms DESC,"
            f" seq DESC, idx DESC) AS rn FROM positions WHERE flags=0) WHERE rn=1"
        )
        return {str(r[0]): TrackPoint(int(r[1]), _fix(r[2:11]), int(r[11])) for r in rows}

    def frames_received(
        self, type_codes: Collection[int], since_ms: int
    ) -> list[tuple[str, int, int, bytes]]:
        if not type_codes:
            return []
        marks = ",".join("?" * len(type_codes))
        rows = self._read(
            f"SELECT device_id, seq, received_ms, payload FROM frames WHERE type IN ({marks}) "
            "AND received_ms>=? ORDER BY received_ms, device_id, seq",
            (*sorted(type_codes), since_ms),
        )
        return [(str(r[0]), int(r[1]), int(r[2]), bytes(r[3])) for r in rows]

    def snapshots_received(self, trigger: str, since_ms: int) -> list[SnapshotMeta]:
        rows = self._read(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE trigger=? AND received_ms>=? "
            "ORDER BY received_ms, device_id, seq",
            (trigger, since_ms),
        )
        return [_snapshot(r) for r in rows]

    def frame(self, device_id: str, seq: int) -> bytes | None:
        rows = self._read(
            "SELECT payload FROM frames WHERE device_id=? AND seq=?", (device_id, seq)
        )
        return bytes(rows[0][0]) if rows else None

    def checkpoint_covering(self, device_id: str, seq: int) -> bytes | None:
        rows = self._read(
            "SELECT f.payload FROM checkpoints c JOIN frames f ON f.device_id=c.device_id "
            "AND f.seq=c.seq WHERE c.device_id=? AND c.first_seq<=? AND c.last_seq>=? LIMIT 1",
            (device_id, seq, seq),
        )
        return bytes(rows[0][0]) if rows else None

    def snapshots(
        self, device_id: str, *, since_ms: int | None = None, limit: int = 100
    ) -> list[SnapshotMeta]:
        rows = self._read(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE device_id=? AND captured_ms>=? "
            "ORDER BY captured_ms DESC, seq DESC LIMIT ?",
            (device_id, since_ms or 0, limit),
        )
        return [_snapshot(r) for r in rows]

    def snapshot(self, sha256: str) -> SnapshotMeta | None:
        rows = self._read(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE sha256=? "
            "ORDER BY captured_ms DESC LIMIT 1",
            (sha256,),
        )
        return _snapshot(rows[0]) if rows else None

    def snapshot_hashes(self) -> set[str]:
        return {str(r[0]) for r in self._read("SELECT DISTINCT sha256 FROM snapshots")}

    def expire_snapshots(self, trigger: str, before_ms: int) -> list[str]:
        with self._lock, transaction(self._conn, StoreError, "expire snapshots"):
            expired = self._conn.execute(
                "DELETE FROM snapshots WHERE trigger=? AND captured_ms<? "
                "RETURNING device_id, seq, sha256",
                (trigger, before_ms),
            ).fetchall()
            # The frame held the picture too: empty it, so retention really removes the
            # picture. Its digest stays, so the checkpoint still shows what was there.
            self._conn.executemany(
                "UPDATE frames SET payload=x'' WHERE device_id=? AND seq=?",
                [(device, seq) for device, seq, _ in expired],
            )
            gone = {str(sha) for _, _, sha in expired}
            still = (
                {
                    str(r[0])
                    for r in self._conn.execute(
                        f"SELECT DISTINCT sha256 FROM snapshots WHERE sha256 IN "
                        f"({','.join('?' * len(gone))})",
                        tuple(gone),
                    )
                }
                if gone
                else set()
            )
        return sorted(gone - still)

    # --- what the duty engine reads ---------------------------------------------------------

    def fix_rows(self, device_id: str, since_ms: int, until_ms: int) -> list[FixRow]:
        return self._read(
            "SELECT time_ms, seq, idx, lat, lon, accuracy_m, flags, received_ms FROM positions "
            "WHERE device_id=? AND time_ms>=? AND time_ms<? ORDER BY time_ms, seq, idx",
            (device_id, since_ms, until_ms),
        )

    def fix_array(self, device_id: str, since_ms: int, until_ms: int) -> FixArray:
        """``fix_rows`` as one packed array, from the per-hour cache where it can."""
        first, last = since_ms // HOUR_MS, (until_ms - 1) // HOUR_MS
        settled = (int(time.time() * 1000) - PACK_SETTLE_MS) // HOUR_MS
        with self._lock:
            try:
                cached = {
                    int(h): bytes(data)
                    for h, data in self._conn.execute(
                        "SELECT hour, data FROM fix_packs WHERE device_id=? AND hour>=? "
                        "AND hour<=?",
                        (device_id, first, last),
                    )
                }
                missing = [h for h in range(first, last + 1) if h not in cached]
                if missing:
                    cached.update(self._pack_hours(device_id, missing, settled))
            except sqlite3.Error as exc:
                raise StoreError(f"read failed: {exc}") from exc
        return fixpack.window([cached[h] for h in range(first, last + 1)], since_ms, until_ms)

    def _pack_hours(self, device_id: str, hours: list[int], settled: int) -> dict[int, bytes]:
        """Pack device-hours from ``positions``, caching the settled ones. Under the lock, the
        reads and the inserts in one transaction: a fix stored meanwhile cannot leave a stale
        pack. The cache is not worth an fsync: lost in a crash, it is rebuilt."""
        out = {}
        self._conn.execute("PRAGMA synchronous=NORMAL")
        try:
            with transaction(self._conn, StoreError, "pack fixes"):
                for hour in hours:
                    rows = self._conn.execute(
                        "SELECT time_ms, seq, idx, lat, lon, accuracy_m, flags, received_ms "
                        "FROM positions WHERE device_id=? AND time_ms>=? AND time_ms<? "
                        "ORDER BY time_ms, seq, idx",
                        (device_id, hour * HOUR_MS, (hour + 1) * HOUR_MS),
                    ).fetchall()
                    out[hour] = data = fixpack.pack(rows)
                    if rows and hour < settled:
                        self._conn.execute(
                            "INSERT OR REPLACE INTO fix_packs(device_id, hour, n, data) "
                            "VALUES (?,?,?,?)",
                            (device_id, hour, len(rows), data),
                        )
        finally:
            self._conn.execute("PRAGMA synchronous=FULL")
        return out

    def pack_settled(self, since_ms: int) -> int:
        """Pack every settled device-hour since ``since_ms`` that has no pack yet (the server
        runs this hourly, so reports find their fixes packed); return how many."""
        settled = (int(time.time() * 1000) - PACK_SETTLE_MS) // HOUR_MS
        todo = self._read(
            "SELECT DISTINCT p.device_id, p.time_ms / ? AS hour FROM positions p "
            "WHERE p.time_ms>=? AND p.time_ms<? AND NOT EXISTS (SELECT 1 FROM fix_packs f "
            "WHERE f.device_id=p.device_id AND f.hour=p.time_ms / ?)",
            (HOUR_MS, since_ms, settled * HOUR_MS, HOUR_MS),
        )
        by_device: dict[str, list[int]] = {}
        for device, hour in todo:
            by_device.setdefault(str(device), []).append(int(hour))
        for device, hours in by_device.items():
            with self._lock:
                self._pack_hours(device, hours, settled)
        return len(todo)

    def evidence_rows(self, device_id: str, since_ms: int, until_ms: int) -> list[EvidenceRow]:
        return self._read(
            "SELECT sent_ms, offline FROM frames WHERE device_id=? AND sent_ms>=? AND sent_ms<? "
            "AND sent_ms<=received_ms+? ORDER BY sent_ms",
            (device_id, since_ms, until_ms, FUTURE_TOLERANCE_MS),
        )

    def skew_rows(self, device_id: str, since_ms: int, until_ms: int) -> list[tuple[int, int]]:
        return self._read(
            "SELECT sent_ms, skew_ms FROM frames WHERE device_id=? AND sent_ms>=? AND sent_ms<? "
            "AND skew_ms IS NOT NULL ORDER BY sent_ms",
            (device_id, since_ms, until_ms),
        )

    def future_frame_times(self, device_id: str, since_ms: int, until_ms: int) -> list[int]:
        return [
            int(r[0])
            for r in self._read(
                "SELECT sent_ms FROM frames WHERE device_id=? AND sent_ms>=? AND sent_ms<? "
                "AND sent_ms>received_ms+? ORDER BY sent_ms",
                (device_id, since_ms, until_ms, FUTURE_TOLERANCE_MS),
            )
        ]

    def add_rejections(self, day: str, counts: Mapping[tuple[str, str], int]) -> None:
        self._write(
            [
                (
                    "INSERT INTO rejections(device_id, day, reason, count) VALUES (?,?,?,?) "
                    "ON CONFLICT(device_id, day, reason) DO UPDATE SET count=count+excluded.count",
                    [(device, day, reason, n) for (device, reason), n in counts.items()],
                )
            ]
        )

    def rejections(
        self, *, device_id: str | None = None, first_day: str = "", last_day: str = "9999"
    ) -> list[tuple[str, str, str, int]]:
        if device_id is None:
            return self._read(
                "SELECT device_id, day, reason, count FROM rejections WHERE day>=? AND day<=? "
                "ORDER BY 1, 2, 3",
                (first_day, last_day),
            )
        return self._read(
            "SELECT device_id, day, reason, count FROM rejections WHERE device_id=? AND day>=? "
            "AND day<=? ORDER BY 2, 3",
            (device_id, first_day, last_day),
        )

    def frame_count(self, device_id: str | None = None) -> int:
        if device_id is None:
            return int(self._read("SELECT count(*) FROM frames")[0][0])
        return int(self._read("SELECT count(*) FROM frames WHERE device_id=?", (device_id,))[0][0])

    def fix_count(self, device_id: str | None = None) -> int:
        if device_id is None:
            return int(self._read("SELECT count(*) FROM positions")[0][0])
        return int(
            self._read("SELECT count(*) FROM positions WHERE device_id=?", (device_id,))[0][0]
        )
