"""SQLite connections and schema migrations, shared by the agent's outbox and the server store.

Migrations are numbered functions applied in order inside one transaction each; the number
applied so far is ``PRAGMA user_version`` (SQLite file format §1.3.23), so a database knows
its own schema without a bookkeeping table.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

#: A migration step gets the connection inside its transaction. The server's steps use
#: sqlite-utils' table API on it; the agent's are plain DDL, so a terminal's agent does not
#: load sqlite-utils and its dependencies (3.6 MB of its ~40 MB budget, docs/benchmarks.md).
Migration = Callable[[sqlite3.Connection], None]


class SchemaError(Exception):
    """The database is newer than this code, or a migration failed."""


def open_database(path: Path, *, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A WAL-mode database in autocommit mode (transactions are explicit: ``transaction``).

    ``synchronous=FULL`` makes each commit survive power loss, not only a crash.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


@contextlib.contextmanager
def transaction(
    conn: sqlite3.Connection, error: Callable[[str], Exception], what: str
) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception.

    sqlite3 errors become ``error(f"cannot {what}: …")`` (raised from the original); anything
    else (a refusal by the protocol, a KeyboardInterrupt) is re-raised as it is. Either way no
    write transaction is left open to break the next one.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise error(f"cannot {what}: {exc}") from exc
        raise


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Apply the migrations the database has not seen; return the schema version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > len(migrations):
        raise SchemaError(
            f"database schema version {current} is newer than this code ({len(migrations)})"
        )
    for version, step in enumerate(migrations[current:], start=current + 1):
        with transaction(conn, SchemaError, f"apply migration {version} ({step.__name__})"):
            step(conn)
            conn.execute(f"PRAGMA user_version={version}")
    return len(migrations)
