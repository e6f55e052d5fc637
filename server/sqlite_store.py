"""The SQLite back end of ``server.store.Store``: one file, WAL, one writer.

Each batch is one transaction with ``synchronous=FULL``, so what ingest acknowledges has been
fsync'd. Frames are kept whole (the exact bytes the terminal sealed: audit evidence); fixes are
also unpacked into ``positions`` for queries.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from protocol import Fix, FixSource
from yijing.sqlite import SchemaError, migrate, open_database, transaction

from .errors import StoreError
from .store import Device, DeviceKey, IncomingFrame, Outcome, SnapshotMeta, TrackPoint


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


MIGRATIONS = [_v1, _v2, _v3]

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
            return [self._store_one(f) for f in frames]

    def _store_one(self, f: IncomingFrame) -> Outcome:
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO frames(device_id, seq, key_id, type, sent_ms, received_ms, "
            "payload, digest) VALUES (?,?,?,?,?,?,?,?)",
            (
                f.device_id,
                f.seq,
                f.key_id,
                f.type_code,
                f.sent_ms,
                f.received_ms,
                f.payload,
                f.digest,
            ),
        )
        if cur.rowcount == 0:
            row = self._conn.execute(
                "SELECT digest FROM frames WHERE device_id=? AND seq=?", (f.device_id, f.seq)
            ).fetchone()
            return Outcome.DUPLICATE if row and row[0] == f.digest else Outcome.CONFLICT
        if f.fixes:
            self._conn.executemany(
                f"INSERT INTO positions(device_id, seq, idx, {_POSITION_COLUMNS}, received_ms, "
                "flags) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        f.device_id,
                        f.seq,
                        i,
                        x.time_ms,
                        x.lat,
                        x.lon,
                        x.accuracy_m,
                        x.speed_mps,
                        x.course_deg,
                        x.alt_m,
                        x.satellites,
                        x.source.value,
                        f.received_ms,
                        f.fix_flags[i] if f.fix_flags else 0,
                    )
                    for i, x in enumerate(f.fixes)
                ],
            )
        if f.snapshot is not None:
            m = f.snapshot
            self._conn.execute(
                f"INSERT INTO snapshots({_SNAPSHOT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    m.device_id,
                    m.seq,
                    m.sha256,
                    m.captured_ms,
                    m.trigger,
                    m.width,
                    m.height,
                    m.size,
                    m.received_ms,
                    m.request_id,
                    m.lat,
                    m.lon,
                ),
            )
        if f.checkpoint_range is not None:
            self._conn.execute(
                "INSERT INTO checkpoints(device_id, seq, first_seq, last_seq) VALUES (?,?,?,?)",
                (f.device_id, f.seq, *f.checkpoint_range),
            )
        return Outcome.NEW

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
