"""`yijing server --keep-fixes-days N`: the hourly retention drops the fixes of whole days
before the period and keeps the frames (the signed evidence) and everything newer."""

from __future__ import annotations

from pathlib import Path

from protocol import Position
from server.app import Server, ServerConfig

from .support import T0, Terminal, device_key, device_record, fix

DAY_MS = 86_400_000


def test_fixes_of_old_days_go_frames_stay(tmp_path: Path) -> None:
    now_s = (T0 + 40 * DAY_MS) / 1000
    server = Server(
        ServerConfig(data_dir=tmp_path, position_retention_days=31), clock=lambda: now_s
    )
    try:
        t = Terminal("ft-0001")
        server.store.add_device(device_record(t.identity), device_key(t.identity))
        old, kept = T0 + 2 * DAY_MS, T0 + 39 * DAY_MS
        server.store.store_frames(
            [t.incoming(Position(fix=fix(old)), 1), t.incoming(Position(fix=fix(kept)), 2)]
        )

        first_kept = server.expire_positions()

        assert first_kept is not None and first_kept > "2025-11-26"
        track = server.store.track("ft-0001")
        assert [p.fix.time_ms for p in track] == [kept]
        assert server.store.frame_count("ft-0001") == 2  # the evidence stays
    finally:
        server.store.close()


def test_without_a_period_nothing_is_dropped(tmp_path: Path) -> None:
    server = Server(ServerConfig(data_dir=tmp_path))
    try:
        assert server.expire_positions() is None
    finally:
        server.store.close()
