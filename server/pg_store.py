"""The PostgreSQL back end of ``server.store.Store`` (psycopg 3), for more than one machine.

Same semantics as ``server.sqlite_store``: a batch is one transaction, committed (fsync'd,
``synchronous_commit`` on) before ingest acknowledges; frames are kept whole and fixes are
unpacked into ``positions``, which is partitioned by UTC day (``server.pg_schema``). A batch
is a handful of statements whatever its size: frames go in with one ``INSERT … SELECT FROM
unnest(…) ON CONFLICT DO NOTHING RETURNING``, the rest are compared by digest to tell a
DUPLICATE from a CONFLICT, and fixes are streamed with ``COPY``.

One connection and a lock, like the SQLite store; several processes (ingest workers) may share
the database, each with its own ``PgStore``. psycopg errors become ``StoreError`` in ``_tx``
and nowhere else.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import psycopg

from . import fixpack, pg_schema
from .errors import StoreError
from .fixpack import HOUR_MS, FixArray
from .pg_schema import DAY_MS
from .sqlite_store import _POSITION_COLUMNS, _SNAPSHOT_COLUMNS, PACK_SETTLE_MS, _fix, _snapshot
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

_FRAME_COLUMNS = (
    "device_id, seq, key_id, type, sent_ms, received_ms, payload, digest, offline, skew_ms"
)
_FRAME_TYPES = "text[], bigint[], integer[], integer[], bigint[], bigint[], bytea[], bytea[], "
_FRAME_TYPES += "integer[], bigint[]"
_INSERT_FRAMES = (
    f"INSERT INTO frames({_FRAME_COLUMNS}) SELECT * FROM unnest("
    + ", ".join(f"%b::{t.strip()}" for t in _FRAME_TYPES.split(","))
    + ") ON CONFLICT (device_id, seq) DO NOTHING RETURNING device_id, seq"
)
_COPY_POSITIONS = (
    f"COPY positions(device_id, seq, idx, {_POSITION_COLUMNS}, received_ms, flags) "
    "FROM STDIN (FORMAT BINARY)"
)
_POSITION_TYPES = ["text", "int8", "int4", "int8", "float8", "float8", "float8", "float8",
                   "float8", "float8", "int4", "text", "int8", "int4"]  # fmt: skip
_FIX_ROW = "SELECT time_ms, seq, idx, lat, lon, accuracy_m, flags, received_ms FROM positions "


class PgStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._days: set[int] = set()  # day partitions known to exist
        try:
            self._conn = self._connect()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open store {_safe(url)}: {exc}") from exc
        try:
            pg_schema.migrate(self._conn)
            self._days = pg_schema.existing_days(self._conn)
        except (psycopg.Error, pg_schema.NewerSchema) as exc:
            self._conn.close()
            raise StoreError(f"cannot open store {_safe(url)}: {exc}") from exc

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, application_name="yijing")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _tx(self, what: str, *, one_statement: bool = False) -> Iterator[psycopg.Connection]:
        """The lock, one transaction, and the one place psycopg errors become ``StoreError``.
        A connection lost since the last call is opened again (the server restarted).
        ``one_statement``: the caller runs a single statement, which autocommit already makes
        a transaction of its own, so no BEGIN and COMMIT (two round trips fewer: ingest reads
        the revocations before every batch)."""
        with self._lock:
            try:
                if self._conn.broken:
                    self._conn = self._connect()
                if one_statement:
                    yield self._conn
                else:
                    with self._conn.transaction():
                        yield self._conn
            except psycopg.Error as exc:
                raise StoreError(f"cannot {what}: {exc}") from exc

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._tx("read", one_statement=True) as conn:
            return conn.execute(sql.encode(), params).fetchall()

    def _write(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        with self._tx("write") as conn, conn.cursor() as cur:
            cur.executemany(sql.encode(), rows)

    # --- devices and keys ----------------------------------------------------------------------

    def add_device(self, device: Device, key: DeviceKey) -> None:
        with self._tx("add a device") as conn:
            conn.execute(
                "INSERT INTO devices(device_id, label, units, created_ms) VALUES (%s,%s,%s,%s) "
                "ON CONFLICT (device_id) DO UPDATE SET label=excluded.label, units=excluded.units",
                (device.device_id, device.label, json.dumps(device.units), device.created_ms),
            )
            self._put_key(conn, key)

    def add_key(self, key: DeviceKey) -> None:
        with self._tx("add a key") as conn:
            self._put_key(conn, key)

    @staticmethod
    def _put_key(conn: psycopg.Connection, key: DeviceKey) -> None:
        conn.execute(
            "INSERT INTO device_keys(device_id, key_id, mac_key, public_key) "
            "VALUES (%s,%s,%s,%s) ON CONFLICT (device_id, key_id) DO UPDATE SET "
            "mac_key=excluded.mac_key, public_key=excluded.public_key",
            (key.device_id, key.key_id, key.mac_key, key.public_key),
        )

    def devices(self) -> list[Device]:
        rows = self._read(
            'SELECT device_id, label, units, created_ms FROM devices ORDER BY device_id COLLATE "C"'
        )
        return [Device(str(r[0]), str(r[1]), tuple(json.loads(str(r[2]))), int(r[3])) for r in rows]

    def keys(self) -> list[DeviceKey]:
        rows = self._read("SELECT device_id, key_id, mac_key, public_key FROM device_keys")
        return [DeviceKey(*r) for r in rows]

    def key(self, device_id: str, key_id: int) -> DeviceKey | None:
        rows = self._read(
            "SELECT device_id, key_id, mac_key, public_key FROM device_keys "
            "WHERE device_id=%s AND key_id=%s",
            (device_id, key_id),
        )
        return DeviceKey(*rows[0]) if rows else None

    def device_keys(self, device_id: str) -> list[DeviceKey]:
        rows = self._read(
            "SELECT device_id, key_id, mac_key, public_key FROM device_keys WHERE device_id=%s "
            "ORDER BY key_id",
            (device_id,),
        )
        return [DeviceKey(*r) for r in rows]

    def revoke_device(self, device_id: str, *, at_ms: int, reason: str) -> None:
        with self._tx("revoke a device") as conn:
            if not conn.execute(
                "SELECT 1 FROM devices WHERE device_id=%s", (device_id,)
            ).fetchone():
                raise StoreError(f"no terminal {device_id!r} is registered")
            conn.execute(
                "INSERT INTO revocations(device_id, revoked_ms, reason) VALUES (%s,%s,%s) "
                "ON CONFLICT (device_id) DO NOTHING",
                (device_id, at_ms, reason),
            )

    def revoked(self, *, after_rowid: int = 0) -> dict[str, tuple[int, int]]:
        rows = self._read(
            "SELECT device_id, revoked_ms, rowid FROM revocations WHERE rowid>%s ORDER BY rowid",
            (after_rowid,),
        )
        return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

    # --- frames -----------------------------------------------------------------------------

    def store_frames(self, frames: Sequence[IncomingFrame]) -> list[Outcome]:
        if not frames:
            return []
        # The first copy of each (device, seq) in the batch is the one that may be stored;
        # later copies are compared with whatever is stored once the batch is in.
        first: dict[tuple[str, int], int] = {}
        for i, f in enumerate(frames):
            first.setdefault((f.device_id, f.seq), i)
        # In key order, so two workers storing overlapping batches lock rows in one order.
        candidates = [frames[i] for _, i in sorted(first.items())]
        with self._tx(f"store {len(frames)} frames") as conn:
            inserted = {
                (str(d), int(s))
                for d, s in conn.execute(_INSERT_FRAMES.encode(), _columns(candidates)).fetchall()
            }
            new = [f for f in candidates if (f.device_id, f.seq) in inserted]
            stored = {(f.device_id, f.seq): f.digest for f in new}
            stored.update(self._digests(conn, [k for k in first if k not in inserted]))
            created = self._store_contents(conn, new)
        self._days |= created  # only once committed: a rolled-back partition does not exist
        outcomes = []
        for i, f in enumerate(frames):
            key = (f.device_id, f.seq)
            if first[key] == i and key in inserted:
                outcomes.append(Outcome.NEW)
            elif stored.get(key) == f.digest:
                outcomes.append(Outcome.DUPLICATE)
            else:
                outcomes.append(Outcome.CONFLICT)
        return outcomes

    @staticmethod
    def _digests(
        conn: psycopg.Connection, keys: list[tuple[str, int]]
    ) -> dict[tuple[str, int], bytes]:
        if not keys:
            return {}
        rows = conn.execute(
            "SELECT f.device_id, f.seq, f.digest FROM frames f JOIN unnest(%b::text[], "
            "%b::bigint[]) AS k(device_id, seq) ON f.device_id=k.device_id AND f.seq=k.seq",
            ([k[0] for k in keys], [k[1] for k in keys]),
        ).fetchall()
        return {(str(d), int(s)): bytes(g) for d, s, g in rows}

    def _store_contents(self, conn: psycopg.Connection, new: list[IncomingFrame]) -> set[int]:
        """Fixes, snapshots and checkpoints of the frames stored now; return the day
        partitions created for them."""
        created = set()
        with_fixes = [f for f in new if f.fixes]
        if with_fixes:
            for day in {pg_schema.day_of(x.time_ms) for f in with_fixes for x in f.fixes}:
                if day is not None and day not in self._days:
                    pg_schema.ensure_day(conn, day)
                    created.add(day)
            hours = {(f.device_id, x.time_ms // HOUR_MS) for f in with_fixes for x in f.fixes}
            # Binary parameters (%b): psycopg dumps a long list of text half as fast as text.
            conn.execute(
                "DELETE FROM fix_packs p USING unnest(%b::text[], %b::bigint[]) AS h(d, hour) "
                "WHERE p.device_id=h.d AND p.hour=h.hour",
                ([h[0] for h in hours], [h[1] for h in hours]),
            )
            with conn.cursor() as cur, cur.copy(_COPY_POSITIONS.encode()) as copy:
                copy.set_types(_POSITION_TYPES)
                for f in with_fixes:
                    for i, x in enumerate(f.fixes):
                        copy.write_row((
                            f.device_id, f.seq, i, x.time_ms, x.lat, x.lon, x.accuracy_m,
                            x.speed_mps, x.course_deg, x.alt_m, x.satellites, x.source.value,
                            f.received_ms, f.fix_flags[i] if f.fix_flags else 0,
                        ))  # fmt: skip
        snapshots = [f.snapshot for f in new if f.snapshot is not None]
        checkpoints = [(f.device_id, f.seq, *f.checkpoint_range) for f in new
                       if f.checkpoint_range is not None]  # fmt: skip
        with conn.cursor() as cur:
            if snapshots:
                cur.executemany(
                    f"INSERT INTO snapshots({_SNAPSHOT_COLUMNS}) VALUES "
                    "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)".encode(),
                    [(m.device_id, m.seq, m.sha256, m.captured_ms, m.trigger, m.width, m.height,
                      m.size, m.received_ms, m.request_id, m.lat, m.lon) for m in snapshots],
                )  # fmt: skip
            if checkpoints:
                cur.executemany(
                    "INSERT INTO checkpoints(device_id, seq, first_seq, last_seq) "
                    "VALUES (%s,%s,%s,%s)",
                    checkpoints,
                )
        return created

    def drop_days_before(self, day: str) -> None:
        """Retention: forget every fix timed before ``day`` (``YYYY-MM-DD``, UTC) by dropping
        whole day partitions (and the few such fixes in the default partition)."""
        cutoff = pg_schema.day_number(day)
        with self._tx(f"drop fixes before {day}") as conn:
            days = pg_schema.existing_days(conn)
            for old in sorted(d for d in days if d < cutoff):
                pg_schema.drop_day(conn, old)
            conn.execute("DELETE FROM positions_default WHERE time_ms<%s", (cutoff * DAY_MS,))
            conn.execute("DELETE FROM fix_packs WHERE hour<%s", (cutoff * DAY_MS // HOUR_MS,))
            self._days = {d for d in days if d >= cutoff}

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
            "WHERE device_id=%s AND time_ms>=%s AND time_ms<=%s ORDER BY time_ms, seq, idx "
            "LIMIT %s",
            (device_id, since_ms or 0, until_ms or 2**62, limit),
        )
        return [TrackPoint(int(r[0]), _fix(r[1:10]), int(r[10]), int(r[11])) for r in rows]

    def latest_fixes(self) -> dict[str, TrackPoint]:
        rows = self._read(
            f"SELECT DISTINCT ON (device_id) device_id, seq, {_POSITION_COLUMNS}, received_ms "
            "FROM positions WHERE flags=0 ORDER BY device_id, time_ms DESC, seq DESC, idx DESC"
        )
        return {str(r[0]): TrackPoint(int(r[1]), _fix(r[2:11]), int(r[11])) for r in rows}

    def frames_received(
        self, type_codes: Collection[int], since_ms: int
    ) -> list[tuple[str, int, int, bytes]]:
        if not type_codes:
            return []
        rows = self._read(
            "SELECT device_id, seq, received_ms, payload FROM frames "
            "WHERE type = ANY(%s::integer[]) AND received_ms>=%s "
            'ORDER BY received_ms, device_id COLLATE "C", seq',
            (sorted(type_codes), since_ms),
        )
        return [(str(r[0]), int(r[1]), int(r[2]), bytes(r[3])) for r in rows]

    def frame(self, device_id: str, seq: int) -> bytes | None:
        rows = self._read(
            "SELECT payload FROM frames WHERE device_id=%s AND seq=%s", (device_id, seq)
        )
        return bytes(rows[0][0]) if rows else None

    def checkpoint_covering(self, device_id: str, seq: int) -> bytes | None:
        rows = self._read(
            "SELECT f.payload FROM checkpoints c JOIN frames f ON f.device_id=c.device_id "
            "AND f.seq=c.seq WHERE c.device_id=%s AND c.first_seq<=%s AND c.last_seq>=%s "
            "LIMIT 1",
            (device_id, seq, seq),
        )
        return bytes(rows[0][0]) if rows else None

    # --- snapshots --------------------------------------------------------------------------

    def snapshots(
        self, device_id: str, *, since_ms: int | None = None, limit: int = 100
    ) -> list[SnapshotMeta]:
        rows = self._read(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE device_id=%s AND captured_ms>=%s "
            "ORDER BY captured_ms DESC, seq DESC LIMIT %s",
            (device_id, since_ms or 0, limit),
        )
        return [_snapshot(r) for r in rows]

    def snapshot(self, sha256: str) -> SnapshotMeta | None:
        rows = self._read(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE sha256=%s "
            "ORDER BY captured_ms DESC LIMIT 1",
            (sha256,),
        )
        return _snapshot(rows[0]) if rows else None

    def snapshots_received(self, trigger: str, since_ms: int) -> list[SnapshotMeta]:
        rows = self._read(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE trigger=%s AND received_ms>=%s "
            'ORDER BY received_ms, device_id COLLATE "C", seq',
            (trigger, since_ms),
        )
        return [_snapshot(r) for r in rows]

    def snapshot_hashes(self) -> set[str]:
        return {str(r[0]) for r in self._read("SELECT DISTINCT sha256 FROM snapshots")}

    def expire_snapshots(self, trigger: str, before_ms: int) -> list[str]:
        with self._tx("expire snapshots") as conn:
            expired = conn.execute(
                "DELETE FROM snapshots WHERE trigger=%s AND captured_ms<%s "
                "RETURNING device_id, seq, sha256",
                (trigger, before_ms),
            ).fetchall()
            # As in SQLite: empty the frame that held the picture; its digest stays.
            if expired:
                conn.execute(
                    "UPDATE frames f SET payload='' FROM unnest(%s::text[], %s::bigint[]) "
                    "AS k(device_id, seq) WHERE f.device_id=k.device_id AND f.seq=k.seq",
                    ([d for d, _, _ in expired], [s for _, s, _ in expired]),
                )
            gone = {str(sha) for _, _, sha in expired}
            still = {
                str(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT sha256 FROM snapshots WHERE sha256 = ANY(%s::text[])",
                    (list(gone),),
                ).fetchall()
            }
        return sorted(gone - still)

    # --- what the duty engine reads ---------------------------------------------------------

    def fix_rows(self, device_id: str, since_ms: int, until_ms: int) -> list[FixRow]:
        return self._read(
            _FIX_ROW + "WHERE device_id=%s AND time_ms>=%s AND time_ms<%s "
            "ORDER BY time_ms, seq, idx",
            (device_id, since_ms, until_ms),
        )

    def fix_array(self, device_id: str, since_ms: int, until_ms: int) -> FixArray:
        """``fix_rows`` as one packed array, from the per-hour cache where it can."""
        first, last = since_ms // HOUR_MS, (until_ms - 1) // HOUR_MS
        settled = (int(time.time() * 1000) - PACK_SETTLE_MS) // HOUR_MS
        with self._tx("read packed fixes") as conn:
            cached = {
                int(h): bytes(data)
                for h, data in conn.execute(
                    "SELECT hour, data FROM fix_packs WHERE device_id=%s AND hour>=%s AND hour<=%s",
                    (device_id, first, last),
                ).fetchall()
            }
            missing = [h for h in range(first, last + 1) if h not in cached]
            if missing:
                cached.update(self._pack_hours(conn, device_id, missing, settled))
        return fixpack.window([cached[h] for h in range(first, last + 1)], since_ms, until_ms)

    @staticmethod
    def _pack_hours(
        conn: psycopg.Connection, device_id: str, hours: list[int], settled: int
    ) -> dict[int, bytes]:
        """Pack device-hours from ``positions`` in the caller's transaction, caching the
        settled ones. The cache is not worth waiting for a flush: lost in a crash, rebuilt."""
        conn.execute("SET LOCAL synchronous_commit = off")
        out = {}
        for hour in hours:
            rows = conn.execute(
                _FIX_ROW + "WHERE device_id=%s AND time_ms>=%s AND time_ms<%s "
                "ORDER BY time_ms, seq, idx",
                (device_id, hour * HOUR_MS, (hour + 1) * HOUR_MS),
            ).fetchall()
            out[hour] = data = fixpack.pack(rows)
            if rows and hour < settled:
                conn.execute(
                    "INSERT INTO fix_packs(device_id, hour, n, data) VALUES (%s,%s,%s,%s) "
                    "ON CONFLICT (device_id, hour) DO UPDATE SET n=excluded.n, data=excluded.data",
                    (device_id, hour, len(rows), data),
                )
        return out

    def pack_settled(self, since_ms: int) -> int:
        """Pack every settled device-hour since ``since_ms`` that has no pack yet."""
        settled = (int(time.time() * 1000) - PACK_SETTLE_MS) // HOUR_MS
        todo = self._read(
            "SELECT DISTINCT p.device_id, p.time_ms / %s AS hour FROM positions p "
            "WHERE p.time_ms>=%s AND p.time_ms<%s AND NOT EXISTS (SELECT 1 FROM fix_packs f "
            "WHERE f.device_id=p.device_id AND f.hour=p.time_ms / %s)",
            (HOUR_MS, since_ms, settled * HOUR_MS, HOUR_MS),
        )
        by_device: dict[str, list[int]] = {}
        for device, hour in todo:
            by_device.setdefault(str(device), []).append(int(hour))
        for device, hours in by_device.items():
            with self._tx("pack fixes") as conn:
                self._pack_hours(conn, device, hours, settled)
        return len(todo)

    def evidence_rows(self, device_id: str, since_ms: int, until_ms: int) -> list[EvidenceRow]:
        return self._read(
            "SELECT sent_ms, offline FROM frames WHERE device_id=%s AND sent_ms>=%s "
            "AND sent_ms<%s AND sent_ms<=received_ms+%s ORDER BY sent_ms",
            (device_id, since_ms, until_ms, FUTURE_TOLERANCE_MS),
        )

    def skew_rows(self, device_id: str, since_ms: int, until_ms: int) -> list[tuple[int, int]]:
        return self._read(
            "SELECT sent_ms, skew_ms FROM frames WHERE device_id=%s AND sent_ms>=%s "
            "AND sent_ms<%s AND skew_ms IS NOT NULL ORDER BY sent_ms",
            (device_id, since_ms, until_ms),
        )

    def future_frame_times(self, device_id: str, since_ms: int, until_ms: int) -> list[int]:
        rows = self._read(
            "SELECT sent_ms FROM frames WHERE device_id=%s AND sent_ms>=%s AND sent_ms<%s "
            "AND sent_ms>received_ms+%s ORDER BY sent_ms",
            (device_id, since_ms, until_ms, FUTURE_TOLERANCE_MS),
        )
        return [int(r[0]) for r in rows]

    def add_rejections(self, day: str, counts: Mapping[tuple[str, str], int]) -> None:
        self._write(
            "INSERT INTO rejections(device_id, day, reason, count) VALUES (%s,%s,%s,%s) "
            "ON CONFLICT (device_id, day, reason) DO UPDATE "
            "SET count=rejections.count+excluded.count",
            [(device, day, reason, n) for (device, reason), n in counts.items()],
        )

    def rejections(
        self, *, device_id: str | None = None, first_day: str = "", last_day: str = "9999"
    ) -> list[tuple[str, str, str, int]]:
        order = 'device_id COLLATE "C", day COLLATE "C", reason COLLATE "C"'
        if device_id is None:
            return self._read(
                "SELECT device_id, day, reason, count FROM rejections WHERE day>=%s AND day<=%s "
                f"ORDER BY {order}",
                (first_day, last_day),
            )
        return self._read(
            "SELECT device_id, day, reason, count FROM rejections WHERE device_id=%s "
            f"AND day>=%s AND day<=%s ORDER BY {order}",
            (device_id, first_day, last_day),
        )

    def frame_count(self, device_id: str | None = None) -> int:
        if device_id is None:
            return int(self._read("SELECT count(*) FROM frames")[0][0])
        return int(self._read("SELECT count(*) FROM frames WHERE device_id=%s", (device_id,))[0][0])

    def fix_count(self, device_id: str | None = None) -> int:
        if device_id is None:
            return int(self._read("SELECT count(*) FROM positions")[0][0])
        return int(
            self._read("SELECT count(*) FROM positions WHERE device_id=%s", (device_id,))[0][0]
        )


def _columns(frames: Sequence[IncomingFrame]) -> tuple[list[Any], ...]:
    """The frames as ten parallel column lists, for ``unnest``."""
    return (
        [f.device_id for f in frames],
        [f.seq for f in frames],
        [f.key_id for f in frames],
        [f.type_code for f in frames],
        [f.sent_ms for f in frames],
        [f.received_ms for f in frames],
        [f.payload for f in frames],
        [f.digest for f in frames],
        [int(f.offline) for f in frames],
        [f.skew_ms for f in frames],
    )


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "(an unreadable PostgreSQL URL)"
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **params)
