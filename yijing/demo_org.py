"""The demo's organisation: Shenzhen → Futian → two stations, a post at each demo place, one
volunteer per terminal holding it, and an 8-hour shift for each from the demo's start.

Idempotent: re-running the demo updates the same records, and keeps a volunteer's shift that
is still running instead of making an overlapping one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from server.duty.geo import Circle
from server.org.model import (
    Post,
    PostKind,
    Terminal,
    TerminalKind,
    Unit,
    UnitLevel,
    Volunteer,
    VolunteerKind,
)
from server.org.store import OrgStore

SHIFT_MS = 8 * 3_600_000
POST_RADIUS_M = 200.0

STATIONS = (
    Unit("futian-hqb", "华强北派出所 Huaqiangbei station", UnitLevel.STATION, "futian"),
    Unit("futian-xmh", "香蜜湖派出所 Xiangmihu station", UnitLevel.STATION, "futian"),
)
KINDS = tuple(PostKind)
SURNAMES = "李王张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚"


class Place(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def lat(self) -> float: ...

    @property
    def lon(self) -> float: ...


def seed_org(org: OrgStore, places: Sequence[Place], terminals: int, now_ms: int) -> int:
    """Create or update the demo's organisation; return how many shifts run now."""
    org.put_unit(Unit("shenzhen", "深圳市 Shenzhen", UnitLevel.CITY))
    org.put_unit(Unit("futian", "福田区 Futian", UnitLevel.DISTRICT, "shenzhen"))
    for station in STATIONS:
        org.put_unit(station)
    for i, place in enumerate(places):
        station = STATIONS[i % len(STATIONS)]
        org.put_post(
            Post(
                f"post-{i + 1}",
                place.name,
                KINDS[i % len(KINDS)],
                station.unit_id,
                Circle(place.lat, place.lon, POST_RADIUS_M),
            )
        )
    running = 0
    for i in range(terminals):
        place_index = i % len(places)
        station = STATIONS[place_index % len(STATIONS)]
        volunteer_id = f"v-{i + 1:04d}"
        device_id = f"ft-{i + 1:04d}"
        name = SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7) % len(GIVEN)]
        kind = VolunteerKind.DUTY if i % 3 == 0 else VolunteerKind.VOLUNTARY
        org.put_volunteer(Volunteer(volunteer_id, name, station.unit_id, kind))
        org.put_terminal(
            Terminal(device_id, station.unit_id, TerminalKind.HANDHELD, holder=volunteer_id),
            at_ms=now_ms,
        )
        ensure_shift(org, volunteer_id, f"post-{place_index + 1}", now_ms)
        running += 1
    return running


def ensure_shift(org: OrgStore, volunteer_id: str, post_id: str, now_ms: int) -> None:
    """The volunteer's 8-hour demo shift from this minute, unless one is running already."""
    if org.shifts(volunteer_id=volunteer_id, since_ms=now_ms, until_ms=now_ms + 1):
        return
    start_ms = now_ms // 60_000 * 60_000
    org.put_shift(
        org.make_shift(
            f"demo-{volunteer_id}-{start_ms // 1000}",
            volunteer_id,
            post_id,
            start_ms,
            start_ms + SHIFT_MS,
        )
    )
