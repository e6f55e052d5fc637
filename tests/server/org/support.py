"""A small organisation for the organisation tests: Shenzhen, two districts, stations, grids.

::

    sz (city)
    ├── ft (district, Futian)
    │   ├── ft-s1 (station) ── ft-s1-g1 (grid) ── ft-s1-t1 (team)
    │   └── ft-s2 (station)
    └── ns (district, Nanshan) ── ns-s1 (station)

Volunteers li (ft-s1-g1) and wang (ft-s1) in Futian, chen (ns-s1) in Nanshan; terminal t-1
(ft-s1, held by li) and t-2 (ns-s1, held by chen); posts bar (circle, ft-s1-g1), route
(corridor, ft-s1) and park (polygon, ns-s1).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from server.duty.geo import Circle, Corridor, Polygon
from server.org.model import (
    Post,
    PostKind,
    PostMode,
    Terminal,
    Unit,
    UnitLevel,
    Volunteer,
    VolunteerKind,
)
from server.org.store import OrgStore

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: When the example terminals were handed out.
ISSUED_MS = 1_767_225_600_000  # 2026-01-01T00:00Z

UNITS = [
    Unit("sz", "深圳市", UnitLevel.CITY),
    Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"),
    Unit("ft-s1", "福田派出所", UnitLevel.STATION, "ft"),
    Unit("ft-s1-g1", "一级网格", UnitLevel.GRID, "ft-s1"),
    Unit("ft-s1-t1", "轮值队", UnitLevel.TEAM, "ft-s1-g1"),
    Unit("ft-s2", "沙头派出所", UnitLevel.STATION, "ft"),
    Unit("ns", "南山区", UnitLevel.DISTRICT, "sz"),
    Unit("ns-s1", "南头派出所", UnitLevel.STATION, "ns"),
]
BAR = Post("bar", "酒吧街", PostKind.STRICT_ORDER_AREA, "ft-s1-g1", Circle(22.5431, 114.0579, 80))
ROUTE = Post(
    "route",
    "巡段 1",
    PostKind.PATROL_SEGMENT,
    "ft-s1",
    Corridor(((22.540, 114.050), (22.545, 114.055)), 25),
    PostMode.PATROL,
)
PARK = Post(
    "park",
    "公园",
    PostKind.NEIGHBOURHOOD_WATCH,
    "ns-s1",
    Polygon(((22.53, 113.93), (22.53, 113.94), (22.54, 113.94))),
)


def local_ms(text: str) -> int:
    """Epoch ms of a Shanghai wall-clock time, ``"2026-03-06 20:00"``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()) * 1000


def build(store: OrgStore) -> None:
    for unit in UNITS:
        store.put_unit(unit)
    store.put_volunteer(Volunteer("li", "李", "ft-s1-g1", VolunteerKind.DUTY, "13800000001"))
    store.put_volunteer(Volunteer("wang", "王", "ft-s1"))
    store.put_volunteer(Volunteer("chen", "陈", "ns-s1"))
    store.put_terminal(Terminal("t-1", "ft-s1", holder="li"), at_ms=ISSUED_MS)
    store.put_terminal(Terminal("t-2", "ns-s1", holder="chen"), at_ms=ISSUED_MS)
    for post in (BAR, ROUTE, PARK):
        store.put_post(post)
