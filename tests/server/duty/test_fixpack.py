"""The packed fix cache gives exactly the rows, and a fix stored later drops its hour's pack."""

from __future__ import annotations

import time
from pathlib import Path

from protocol import Fix, FixSource
from server.fixpack import HOUR_MS, to_rows
from server.sqlite_store import SqliteStore
from server.store import IncomingFrame

T = 1_790_000_000_000  # ms, well in the past: its hours are settled


def frame(seq: int, times: list[int], accuracy: float | None = 5.0) -> IncomingFrame:
    fixes = tuple(
        Fix(time_ms=t, lat=22.5 + k * 1e-5, lon=114.0, accuracy_m=accuracy, source=FixSource.GNSS)
        for k, t in enumerate(times)
    )
    return IncomingFrame("d1", seq, 1, 2, times[0], times[0] + 100, b"p", b"d" * 16, fixes=fixes)


def test_packs_equal_rows_and_are_dropped_by_new_fixes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    try:
        times = [T + k * 5000 for k in range(2000)]  # spans three hours
        store.store_frames([frame(1, times[:1000]), frame(2, times[1000:], accuracy=None)])
        window = (T + 7000, T + 9_000_000)
        rows = store.fix_rows("d1", *window)
        assert to_rows(store.fix_array("d1", *window)) == rows  # builds the packs
        packed = store._read("SELECT count(*) FROM fix_packs")[0][0]
        assert packed >= 2
        assert to_rows(store.fix_array("d1", *window)) == rows  # from the packs
        # Backfill lands in a packed hour: that hour's pack goes, the answer stays right.
        late = T + 3 * HOUR_MS // 2 + 1
        store.store_frames([frame(3, [late])])
        assert store._read("SELECT count(*) FROM fix_packs")[0][0] == packed - 1
        rows = store.fix_rows("d1", *window)
        assert any(r[0] == late for r in rows)
        assert to_rows(store.fix_array("d1", *window)) == rows
    finally:
        store.close()


def test_recent_hours_are_not_cached(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    try:
        now = int(time.time() * 1000)
        store.store_frames([frame(1, [now - 1000, now - 500])])
        assert len(store.fix_array("d1", now - 60_000, now)) == 2
        assert store._read("SELECT count(*) FROM fix_packs")[0][0] == 0
        assert store.pack_settled(now - 2 * HOUR_MS) == 0
    finally:
        store.close()


def test_pack_settled_packs_old_hours(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    try:
        store.store_frames([frame(1, [T, T + HOUR_MS, T + HOUR_MS + 1])])
        assert store.pack_settled(T - HOUR_MS) == 2
        assert store.pack_settled(T - HOUR_MS) == 0
    finally:
        store.close()
