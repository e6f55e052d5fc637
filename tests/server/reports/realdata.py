"""A server data folder written through the real stores: organisation, telemetry, roll calls.

On 2026-03-02 (Asia/Shanghai), team t1 of station s1 (福田派出所) has post p1 and two shifts
from 08:00 to 09:00:

- A: 张三 (v1) with terminal d1, which reports every 30 s from 07:59 — on the post until
  08:30, then 200 m north until 09:00. On post 30 min of 60 (50 %), alive all hour (100 %).
- B: 李四 (v2) with terminal d2, which never reports: offline all hour (0 %, 0 %).

A spot check at 08:45 calls d1 and d2; d1 answers in 20 s, d2 never. Team figures: on duty
30 min of 120 (25 %), terminals alive 60 min of 120 (50 %), roll calls answered 1 of 2.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from protocol import Fix, Position, RollCallAnswer
from server.duty.geo import Circle
from server.ingest import Accepted
from server.org.model import Post, PostKind, Terminal, Unit, UnitLevel, Volunteer
from server.org.store import OrgStore
from server.spotcheck.service import SpotChecks
from server.sqlite_store import SqliteStore

from ..support import Terminal as Keys
from ..support import device_key, device_record

TZ = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2026, 3, 2)
LAT0, LON0 = 22.5431, 114.0579
NORTH_200M = 200 / 111_194.92664455873


def at(hour: int, minute: int = 0, second: int = 0) -> int:
    local = dt.datetime.combine(DAY, dt.time(hour, minute, second), tzinfo=TZ)
    return int(local.timestamp()) * 1000


def write_org(path: Path) -> None:
    org = OrgStore(path)
    try:
        for unit in (
            Unit("sz", "深圳市", UnitLevel.CITY),
            Unit("futian", "福田区", UnitLevel.DISTRICT, "sz"),
            Unit("s1", "福田派出所", UnitLevel.STATION, "futian"),
            Unit("t1", "一队", UnitLevel.TEAM, "s1"),
        ):
            org.put_unit(unit)
        org.put_volunteer(Volunteer("v1", "张三", "t1"))
        org.put_volunteer(Volunteer("v2", "李四", "t1"))
        org.put_terminal(Terminal("d1", "t1", holder="v1"), at_ms=at(0))
        org.put_terminal(Terminal("d2", "t1", holder="v2"), at_ms=at(0))
        org.put_post(Post("p1", "华强北路口", PostKind.DUTY_POINT, "t1", Circle(LAT0, LON0, 50)))
        org.put_shift(org.make_shift("A", "v1", "p1", at(8), at(9)))
        org.put_shift(org.make_shift("B", "v2", "p1", at(8), at(9)))
        assert org.shift("A") is not None and org.shift("A").device_id == "d1"  # type: ignore[union-attr]
    finally:
        org.close()


def write_telemetry(path: Path) -> None:
    store = SqliteStore(path)
    try:
        for device in ("d1", "d2"):
            keys = Keys(device)
            store.add_device(device_record(keys.identity), device_key(keys.identity))
            if device != "d1":
                continue
            frames = []
            for seq, t in enumerate(range(at(7, 59), at(9), 30_000), start=1):
                lat = LAT0 if t < at(8, 30) else LAT0 + NORTH_200M
                fix = Fix(time_ms=t, lat=lat, lon=LON0, accuracy_m=5.0)
                frames.append(keys.incoming(Position(fix=fix), seq, sent_ms=t, received_ms=t + 400))
            store.store_frames(frames)
    finally:
        store.close()


def write_spot_checks(path: Path, org_path: Path) -> None:
    now = [at(8, 45) / 1000]
    org = OrgStore(org_path)
    checks = SpotChecks(path=path, org=org, send=lambda device, call: None, clock=lambda: now[0])
    try:
        check = checks.create(by="Inspector Wang", unit_id="t1", devices=["d1", "d2"])
        d1 = next(t for t in check.targets if t.device_id == "d1")
        fix = Fix(time_ms=at(8, 45, 19), lat=LAT0, lon=LON0, accuracy_m=5.0)
        answer = RollCallAnswer(rollcall_id=d1.rollcall_id, time_ms=at(8, 45, 19), fix=fix)
        checks.on_accepted([Accepted("d1", 999, answer, at(8, 45, 20))])
    finally:
        checks.close()
        org.close()


def write_data_dir(data: Path) -> Path:
    """The folder a server would have written, as ``yijing report --data`` reads it."""
    data.mkdir(parents=True, exist_ok=True)
    write_org(data / "org.db")
    write_telemetry(data / "yijing.db")
    write_spot_checks(data / "spotchecks.db", data / "org.db")
    return data
