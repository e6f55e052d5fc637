"""field.db itself: the audit cannot be rewritten, and the schema knows its version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from server.errors import StoreError
from server.field.model import Step, Subject
from server.field.store import MIGRATIONS, FieldStore

from .support import NOW_MS


def test_the_audit_is_append_only(tmp_path: Path) -> None:
    store = FieldStore(tmp_path / "field.db")
    try:
        step = Step(NOW_MS, "officer:Li", Subject.TASK, "tk-1", "published")
        store.mark_expired(["tk-none"], NOW_MS, [step])  # any write carries its steps
        assert store.steps(Subject.TASK, "tk-1") == [step]
    finally:
        store.close()
    conn = sqlite3.connect(tmp_path / "field.db")
    try:
        for sql in ("UPDATE steps SET actor='someone else'", "DELETE FROM steps"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        conn.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "field.db"
    FieldStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this code"):
        FieldStore(path)
