"""What a phone app cannot do, and what yijing does instead (docs/phones.md): tasks skip
phones (they can neither show nor acknowledge one)."""

from __future__ import annotations

from pathlib import Path

from server.duty.geo import Circle
from server.field.model import TargetKind
from server.field.targets import resolve
from server.org.model import Post, PostKind, Terminal, TerminalKind, Unit, UnitLevel, Volunteer
from server.org.store import OrgStore

NOW_MS = 1_765_000_000_000


def test_tasks_reach_signed_terminals_and_skip_phones(tmp_path: Path) -> None:
    org = OrgStore(tmp_path / "org.db")
    try:
        org.put_unit(Unit("sz", "深圳市", UnitLevel.CITY))
        org.put_unit(Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"))
        org.put_volunteer(Volunteer("v1", "李明", "ft"))
        org.put_volunteer(Volunteer("v2", "王芳", "ft"))
        org.put_terminal(Terminal("ft-0001", "ft", holder="v1"), at_ms=NOW_MS)
        org.put_terminal(Terminal("ph-v2", "ft", TerminalKind.PHONE, "v2"), at_ms=NOW_MS)
        org.put_post(Post("p1", "岗位1", PostKind.DUTY_POINT, "ft", Circle(22.5, 114.0, 100)))
        for sid, vid in (("s1", "v1"), ("s2", "v2")):
            org.put_shift(org.make_shift(sid, vid, "p1", NOW_MS - 60_000, NOW_MS + 60_000))
        by_unit = resolve(org, TargetKind.UNIT, "ft", units=None, now_ms=NOW_MS)
        assert [h.device_id for h in by_unit] == ["ft-0001"]
        by_post = resolve(
            org, TargetKind.POST_KIND, PostKind.DUTY_POINT.value, units=None, now_ms=NOW_MS
        )
        assert [h.device_id for h in by_post] == ["ft-0001"]
    finally:
        org.close()
