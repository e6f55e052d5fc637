"""A small SQLite file of evidence with one writer: spot checks, dispatch, field reports.

Each of those services keeps its own file (``spotchecks.db``, ``dispatch.db``, ``field.db``)
with its own migrations, written a few rows a minute, every commit fsynced
(``synchronous=FULL``): who was raised, sent or alerted, and when they answered, is evidence.
This is what the three share — opening and migrating, one lock around the one connection,
reads and transactions whose sqlite3 errors become ``StoreError`` naming the store — so each
store module holds only its tables and queries.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from yijing.sqlite import SchemaError, migrate, open_database, transaction

from .errors import StoreError

Migration = Callable[[sqlite3.Connection], None]


class EvidenceDb:
    def __init__(self, path: Path, migrations: Sequence[Migration], *, name: str) -> None:
        self.name = name
        try:
            self._conn = open_database(path, synchronous="FULL")
            migrate(self._conn, list(migrations))
        except (sqlite3.Error, SchemaError) as exc:
            raise StoreError(f"cannot open {name} {path}: {exc}") from exc
        self._lock = threading.Lock()
        self.path = path

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise StoreError(f"{self.name} read failed: {exc}") from exc

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock: committed when the block ends, rolled back (and
        a ``StoreError``) if it raises."""
        with self._lock, transaction(self._conn, StoreError, what):
            yield self._conn


def among(column: str, values: Collection[str] | None) -> tuple[str, list[object]]:
    """``column IN values`` through json_each: no limit on how many (a district's subtree can
    hold more units than SQLite allows parameters); None: any row."""
    if values is None:
        return "1", []
    return f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(sorted(values))]
