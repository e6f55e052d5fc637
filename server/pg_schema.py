"""The PostgreSQL schema of ``server.pg_store``: numbered migrations and daily partitions.

Each step mirrors the SQLite migration of the same number (``server.sqlite_store``), so a
store's ``schema_version`` means the same thing on either back end. A step runs in its own
transaction under an advisory lock, so two processes opening a new database at once apply
it once. Versions applied are rows of ``schema_version``.

``positions`` is range-partitioned on ``time_ms``: one partition per UTC day, created on
demand by the transaction that stores the first fix of that day (``ensure_day``), and a
default partition for times outside ``PARTITIONED_FROM_MS`` … ``PARTITIONED_UNTIL_MS`` (a
terminal whose clock says 1970). Retention drops whole day partitions
(``PgStore.drop_days_before``): no row-by-row delete, no vacuum debt.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

DAY_MS = 86_400_000
#: Fixes timed in [2000-01-01, 2200-01-01) UTC get a day partition; others go to the default
#: partition (never in a day's range, so creating a day partition never has to move rows).
PARTITIONED_FROM_MS = 946_684_800_000
PARTITIONED_UNTIL_MS = 7_258_118_400_000
#: Two processes migrating the same database take turns on this advisory lock.
_MIGRATION_LOCK = 0x79_6A_69_6E_67  # "yjing"
_DAY_TABLE = re.compile(r"^positions_(\d{8})$")

Step = Callable[[psycopg.Connection], None]


def _run(conn: psycopg.Connection, *statements: str) -> None:
    for statement in statements:
        conn.execute(statement.encode())


def _v1(conn: psycopg.Connection) -> None:
    """Mirrors SQLite ``_v1``: devices, keys, frames, positions, checkpoints. ``positions``'
    key leads with ``time_ms`` (PostgreSQL wants the partition column in a partitioned
    table's key) and so also serves as SQLite's ``(device_id, time_ms)`` index."""
    _run(
        conn,
        "CREATE TABLE devices (device_id text PRIMARY KEY, label text NOT NULL, "
        "units text NOT NULL, created_ms bigint NOT NULL)",
        "CREATE TABLE device_keys (device_id text NOT NULL REFERENCES devices(device_id), "
        "key_id integer NOT NULL, mac_key bytea NOT NULL, public_key bytea NOT NULL, "
        "PRIMARY KEY (device_id, key_id))",
        "CREATE TABLE frames (device_id text NOT NULL, seq bigint NOT NULL, "
        "key_id integer NOT NULL, type integer NOT NULL, sent_ms bigint NOT NULL, "
        "received_ms bigint NOT NULL, payload bytea NOT NULL, digest bytea NOT NULL, "
        "PRIMARY KEY (device_id, seq))",
        "CREATE TABLE positions (device_id text NOT NULL, seq bigint NOT NULL, "
        "idx integer NOT NULL, time_ms bigint NOT NULL, lat double precision NOT NULL, "
        "lon double precision NOT NULL, accuracy_m double precision, "
        "speed_mps double precision, course_deg double precision, alt_m double precision, "
        "satellites integer, source text NOT NULL, received_ms bigint NOT NULL, "
        "PRIMARY KEY (device_id, time_ms, seq, idx)) PARTITION BY RANGE (time_ms)",
        "CREATE TABLE positions_default PARTITION OF positions DEFAULT",
        "CREATE TABLE checkpoints (device_id text NOT NULL, seq bigint NOT NULL, "
        "first_seq bigint NOT NULL, last_seq bigint NOT NULL, PRIMARY KEY (device_id, seq))",
        "CREATE INDEX checkpoints_device_last ON checkpoints (device_id, last_seq)",
    )


def _v2(conn: psycopg.Connection) -> None:
    """Mirrors SQLite ``_v2``: a flag bit set per fix (``FixFlag``)."""
    _run(conn, "ALTER TABLE positions ADD COLUMN flags integer NOT NULL DEFAULT 0")


def _v3(conn: psycopg.Connection) -> None:
    """Mirrors SQLite ``_v3``: snapshot metadata."""
    _run(
        conn,
        "CREATE TABLE snapshots (device_id text NOT NULL, seq bigint NOT NULL, "
        "sha256 text NOT NULL, captured_ms bigint NOT NULL, trigger text NOT NULL, "
        "width integer NOT NULL, height integer NOT NULL, size integer NOT NULL, "
        "received_ms bigint NOT NULL, request_id text, lat double precision, "
        "lon double precision, PRIMARY KEY (device_id, seq))",
        "CREATE INDEX snapshots_sha256 ON snapshots (sha256)",
        "CREATE INDEX snapshots_device_captured ON snapshots (device_id, captured_ms)",
        "CREATE INDEX snapshots_trigger_captured ON snapshots (trigger, captured_ms)",
    )


def _v4(conn: psycopg.Connection) -> None:
    """Mirrors SQLite ``_v4``: evidence (offline, skew), rejection counts, the fix-pack
    cache (``server.fixpack``)."""
    _run(
        conn,
        "ALTER TABLE frames ADD COLUMN offline integer NOT NULL DEFAULT 0",
        "ALTER TABLE frames ADD COLUMN skew_ms bigint",
        "CREATE INDEX frames_device_sent ON frames (device_id, sent_ms)",
        "CREATE TABLE rejections (device_id text NOT NULL, day text NOT NULL, "
        "reason text NOT NULL, count bigint NOT NULL, PRIMARY KEY (device_id, day, reason))",
        "CREATE TABLE fix_packs (device_id text NOT NULL, hour bigint NOT NULL, "
        "n integer NOT NULL, data bytea NOT NULL, PRIMARY KEY (device_id, hour))",
    )


def _v5(conn: psycopg.Connection) -> None:
    """Mirrors SQLite ``_v5``: replaying frames of some types received since a time."""
    _run(conn, "CREATE INDEX frames_type_received ON frames (type, received_ms)")


def _v6(conn: psycopg.Connection) -> None:
    """Mirrors SQLite ``_v6``: the append-only revocation log. ``rowid`` stands in for
    SQLite's implicit one (the key ring reads the rows after the last it saw)."""
    _run(
        conn,
        "CREATE TABLE revocations (device_id text PRIMARY KEY, revoked_ms bigint NOT NULL, "
        "reason text NOT NULL, rowid bigint GENERATED ALWAYS AS IDENTITY UNIQUE)",
    )


MIGRATIONS: list[Step] = [_v1, _v2, _v3, _v4, _v5, _v6]


class NewerSchema(Exception):
    """The database was migrated by newer code than this."""


def migrate(conn: psycopg.Connection, migrations: Sequence[Step] = MIGRATIONS) -> int:
    """Apply the steps the database has not seen, one transaction each; return the version.
    ``conn`` is in autocommit mode."""
    _run(
        conn,
        "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
        "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            current = schema_version(conn)
            if current > len(migrations):
                raise NewerSchema(
                    f"database schema version {current} is newer than this code ({len(migrations)})"
                )
            if current == len(migrations):
                return current
            step = migrations[current]
            step(conn)
            conn.execute(
                "INSERT INTO schema_version(version, name) VALUES (%s, %s)",
                (current + 1, step.__name__.lstrip("_")),
            )


def schema_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


# --- day partitions ----------------------------------------------------------------------------


def day_of(time_ms: int) -> int | None:
    """The day number (days since 1970-01-01 UTC) whose partition holds ``time_ms``, or
    ``None`` for the default partition."""
    if PARTITIONED_FROM_MS <= time_ms < PARTITIONED_UNTIL_MS:
        return time_ms // DAY_MS
    return None


def day_table(day: int) -> str:
    return "positions_" + (dt.date(1970, 1, 1) + dt.timedelta(days=day)).strftime("%Y%m%d")


def day_number(iso_day: str) -> int:
    """``YYYY-MM-DD`` → days since 1970-01-01."""
    return (dt.date.fromisoformat(iso_day) - dt.date(1970, 1, 1)).days


def existing_days(conn: psycopg.Connection) -> set[int]:
    """The day partitions ``positions`` has, as day numbers."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'positions'::regclass"
    ).fetchall()
    days = set()
    for (name,) in rows:
        match = _DAY_TABLE.match(str(name))
        if match:
            date = dt.datetime.strptime(match.group(1), "%Y%m%d").date()
            days.add((date - dt.date(1970, 1, 1)).days)
    return days


def ensure_day(conn: psycopg.Connection, day: int) -> None:
    """Create the partition of ``day`` if missing, inside the caller's transaction. Another
    process creating it at the same moment is not an error (the savepoint absorbs it)."""
    statement = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF positions FOR VALUES FROM ({}) TO ({})"
    ).format(sql.Identifier(day_table(day)), sql.Literal(day * DAY_MS),
             sql.Literal((day + 1) * DAY_MS))  # fmt: skip
    try:
        with conn.transaction():
            conn.execute(statement)
    except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
        pass


def drop_day(conn: psycopg.Connection, day: int) -> None:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(day_table(day))))
