"""Small fakes of what the reports read, and one organisation with hand-computed figures.

The organisation (times in Asia/Shanghai on 2026-03-02, the report's day)::

    sz 深圳市 (city) → futian 福田区 (district) → s1 福田派出所 (station) → t1 一队 (team)
                                              → s2 香蜜湖派出所 (station)

    posts: p1 (t1), p2 (s1 itself), p3 (s2)

    A  v1 张三 at p1 with d1, 08:00–10:00: on post 1 h, off post 30 min, offline 30 min
    B  v2 李四 at p1 with d2, 08:00–09:00: on post (backfilled) 30 min, no fix 30 min
    C  v4 赵六 at p2 with d1, 09:30–11:30: offline 30 min (d1 is still off), on post 1.5 h
    D  v3 王五 at p3 with d3, 20:00–02:00 next day: on post all 6 h
    E  v3 at p3, no terminal, the next day 20:00–22:00          (starts after the period)
    F  v3 at p3 with d3, the day before 22:00 to 00:30          (starts before the period)

d1 is on A and C at once from 09:30 to 10:00: its terminal time counts that half hour once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from server.duty.geo import Circle
from server.duty.rules import Segment, ShiftResult, State, tally_of
from server.org.model import Post, PostKind, Shift, Terminal, Unit, UnitLevel, Volunteer

TZ = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2026, 3, 2)


def at(hour: int, minute: int = 0, day: dt.date = DAY) -> int:
    """Epoch ms of a local time on ``day``."""
    return int(dt.datetime.combine(day, dt.time(hour, minute), tzinfo=TZ).timestamp()) * 1000


H = 3600
FENCE = Circle(22.5431, 114.0579, 50.0)

UNITS = [
    Unit("sz", "深圳市", UnitLevel.CITY),
    Unit("futian", "福田区", UnitLevel.DISTRICT, "sz"),
    Unit("s1", "福田派出所", UnitLevel.STATION, "futian"),
    Unit("s2", "香蜜湖派出所", UnitLevel.STATION, "futian"),
    Unit("t1", "一队", UnitLevel.TEAM, "s1"),
]
VOLUNTEERS = [
    Volunteer("v1", "张三", "t1"),
    Volunteer("v2", "李四", "t1"),
    Volunteer("v3", "王五", "s2"),
    Volunteer("v4", "赵六", "s1"),
]
TERMINALS = [Terminal("d1", "t1"), Terminal("d2", "t1"), Terminal("d3", "s2")]
POSTS = [
    Post("p1", "华强北路口", PostKind.DUTY_POINT, "t1", FENCE),
    Post("p2", "派出所门口", PostKind.DUTY_POINT, "s1", FENCE),
    Post("p3", "香蜜湖酒吧街", PostKind.NEIGHBOURHOOD_WATCH, "s2", FENCE),
]
NEXT = DAY + dt.timedelta(days=1)
BEFORE = DAY - dt.timedelta(days=1)
SHIFTS = [
    Shift("A", "v1", "p1", at(8), at(10), "d1"),
    Shift("B", "v2", "p1", at(8), at(9), "d2"),
    Shift("C", "v4", "p2", at(9, 30), at(11, 30), "d1"),
    Shift("D", "v3", "p3", at(20), at(2, day=NEXT), "d3"),
    Shift("E", "v3", "p3", at(20, day=NEXT), at(22, day=NEXT), None),
    Shift("F", "v3", "p3", at(22, day=BEFORE), at(0, 30), "d3"),
]
#: Each shift's timeline as (from, to, state) in seconds after its start.
TIMELINES: dict[str, list[tuple[int, int, State]]] = {
    "A": [(0, H, State.ON_POST), (H, H + 1800, State.OFF_POST), (H + 1800, 2 * H, State.OFFLINE)],
    "B": [(0, 1800, State.ON_POST_BACKFILLED), (1800, H, State.NO_FIX)],
    "C": [(0, 1800, State.OFFLINE), (1800, 2 * H, State.ON_POST)],
    "D": [(0, 6 * H, State.ON_POST)],
}
#: volunteer -> (roll calls sent, answered), as SpotChecks.answer_stats gives them.
SPOT_STATS = {"v1": (2, 1), "v3": (1, 1), "v4": (1, 0)}
#: device -> (sent_ms, deadline_ms, answered_ms)
ROLL_CALLS = {
    "d1": [(at(8, 30), at(8, 32), at(8, 30) + 20_000), (at(9, 45), at(9, 47), None)],
}


@dataclass(frozen=True, slots=True)
class FakeFlag:
    kind: str
    device_id: str | None
    shift_id: str | None
    volunteer_id: str | None
    start_ms: int
    end_ms: int
    value: float
    detail: str


FLAGS = {
    "A": [FakeFlag("speed_jump", "d1", "A", "v1", at(8, 10), at(8, 11), 80.0, "80 m/s")],
    "C": [FakeFlag("shared_terminal", "d1", "C", "v4", at(9, 30), at(10), 0.5, "d1 on A")],
    "D": [FakeFlag("clock_skew", "d3", "D", "v3", at(21), at(21), 45.0, "45 s ahead")],
}


class FakeOrg:
    """``OrgSource`` in memory, with OrgStore's meanings (shifts overlapping the window,
    ``units`` by the post's unit, ancestors root first)."""

    def __init__(
        self,
        units: Sequence[Unit] = UNITS,
        volunteers: Sequence[Volunteer] = VOLUNTEERS,
        posts: Sequence[Post] = POSTS,
        shifts: Sequence[Shift] = SHIFTS,
    ) -> None:
        self._units = {u.unit_id: u for u in units}
        self._volunteers = {v.volunteer_id: v for v in volunteers}
        self._posts = {p.post_id: p for p in posts}
        self._shifts = list(shifts)

    def unit(self, unit_id: str) -> Unit | None:
        return self._units.get(unit_id)

    def units(self, *, units: Collection[str] | None = None) -> list[Unit]:
        return [u for u in self._units.values() if units is None or u.unit_id in units]

    def children(self, unit_id: str) -> list[Unit]:
        return sorted(
            (u for u in self._units.values() if u.parent_id == unit_id), key=lambda u: u.unit_id
        )

    def subtree(self, unit_id: str) -> set[str]:
        if unit_id not in self._units:
            return set()
        found = {unit_id}
        for u in self.children(unit_id):
            found |= self.subtree(u.unit_id)
        return found

    def ancestors(self, unit_id: str) -> list[str]:
        out: list[str] = []
        unit = self._units.get(unit_id)
        while unit is not None and unit.parent_id is not None:
            out.insert(0, unit.parent_id)
            unit = self._units.get(unit.parent_id)
        return out

    def volunteer(self, volunteer_id: str) -> Volunteer | None:
        return self._volunteers.get(volunteer_id)

    def volunteers(self, *, units: Collection[str] | None = None) -> list[Volunteer]:
        return [v for v in self._volunteers.values() if units is None or v.unit_id in units]

    def post(self, post_id: str) -> Post | None:
        return self._posts.get(post_id)

    def posts(self, *, units: Collection[str] | None = None) -> list[Post]:
        return [p for p in self._posts.values() if units is None or p.unit_id in units]

    def shift(self, shift_id: str) -> Shift | None:
        return next((s for s in self._shifts if s.shift_id == shift_id), None)

    def shifts(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        units: Collection[str] | None = None,
        volunteer_id: str | None = None,
        device_id: str | None = None,
    ) -> list[Shift]:
        return sorted(
            (
                s
                for s in self._shifts
                if (until_ms is None or s.start_ms < until_ms)
                and (since_ms is None or s.end_ms > since_ms)
                and (units is None or self._posts[s.post_id].unit_id in units)
                and (volunteer_id is None or s.volunteer_id == volunteer_id)
                and (device_id is None or s.device_id == device_id)
            ),
            key=lambda s: (s.start_ms, s.shift_id),
        )


def result_of(shift: Shift, timeline: Sequence[tuple[int, int, State]] | None) -> ShiftResult:
    start, end = shift.start_ms // 1000, shift.end_ms // 1000
    spans = timeline or [(0, end - start, State.OFFLINE)]
    segments = [Segment(start + a, start + b, state) for a, b, state in spans]
    return ShiftResult(
        shift.shift_id,
        shift.device_id,
        start,
        end,
        tally_of(shift.shift_id, start, end, segments),
        tuple(segments),
    )


class FakeDuty:
    """``DutySource``: each shift's timeline from ``TIMELINES`` (offline throughout if absent)."""

    def __init__(self, timelines: dict[str, list[tuple[int, int, State]]] = TIMELINES) -> None:
        self.timelines = timelines
        self.recomputed: list[str] = []

    def recompute(self, shift: Shift) -> ShiftResult:
        self.recomputed.append(shift.shift_id)
        return result_of(shift, self.timelines.get(shift.shift_id))

    def recompute_many(
        self, shifts: Sequence[Shift], *, progress: Callable[[int], None] | None = None
    ) -> list[ShiftResult]:
        out = []
        for n, shift in enumerate(shifts, start=1):
            out.append(self.recompute(shift))
            if progress is not None:
                progress(n)
        return out


class FakeSpotChecks:
    def __init__(
        self,
        stats: dict[str, tuple[int, int]] = SPOT_STATS,
        calls: dict[str, list[tuple[int, int, int | None]]] = ROLL_CALLS,
    ) -> None:
        self.stats = stats
        self.calls = calls

    def answer_stats(
        self, *, units: Collection[str] | None, since_ms: int, until_ms: int
    ) -> dict[str, tuple[int, int]]:
        # The real one filters by the terminal's unit; here each volunteer's home stands in.
        homes = {v.volunteer_id: v.unit_id for v in VOLUNTEERS}
        if not since_ms <= at(12) < until_ms:  # the roll calls were all sent on DAY
            return {}
        return {v: n for v, n in self.stats.items() if units is None or homes.get(v) in units}

    def requests(
        self, device_id: str, since_ms: int, until_ms: int
    ) -> list[tuple[int, int, int | None]]:
        return [c for c in self.calls.get(device_id, []) if since_ms <= c[0] < until_ms]


def fake_scan(
    store: Any,
    shift: Shift,
    result: ShiftResult,
    *,
    spot_requests: Sequence[tuple[int, int, int | None]] = (),
    other_shifts: Sequence[Shift] = (),
) -> list[FakeFlag]:
    return list(FLAGS.get(shift.shift_id, []))


def make_reports(**kw: Any) -> Any:
    from server.reports.service import Reports

    return Reports(None, FakeOrg(), FakeDuty(), FakeSpotChecks(), scan=fake_scan, **kw)
