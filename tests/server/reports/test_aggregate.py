"""Sums up the tree with hand-computed figures: rates are ratios of sums, terminals counted
once over the union of their shifts' windows (the organisation is in ``fakes``)."""

from __future__ import annotations

import pytest

from server.duty.rules import Segment, ShiftResult, State, tally_of
from server.org.model import Shift
from server.reports.aggregate import Aggregate, build, union_length

from .fakes import FLAGS, POSTS, SHIFTS, SPOT_STATS, UNITS, VOLUNTEERS, FakeDuty, H

IN_PERIOD = [s for s in SHIFTS if s.shift_id in "ABCD"]


def _build(root: str = "futian") -> Aggregate:
    duty = FakeDuty()
    sub = {"futian": {"futian", "s1", "s2", "t1"}, "s1": {"s1", "t1"}, "sz": None}[root]
    units = [u for u in UNITS if sub is None or u.unit_id in sub]
    return build(
        root_id=root,
        units=units,
        shifts=IN_PERIOD,
        results={s.shift_id: duty.recompute(s) for s in IN_PERIOD},
        posts={p.post_id: p for p in POSTS},
        volunteers={v.volunteer_id: v for v in VOLUNTEERS},
        flags=[f for fs in FLAGS.values() for f in fs],
        spot_stats=SPOT_STATS,
    )


def test_team_row_sums_its_own_shifts() -> None:
    t1 = _build().units["t1"]
    assert (t1.shifts, t1.volunteers) == (2, 2)  # A and B
    assert t1.scheduled_s == 3 * H
    assert t1.on_post_s == H + H // 2
    assert t1.on_post_backfilled_s == H // 2
    assert (t1.off_post_s, t1.no_fix_s, t1.offline_s) == (H // 2, H // 2, H // 2)
    assert t1.on_duty_rate == pytest.approx(0.5)
    # d1: 2 h scheduled, alive 1.5 h; d2: 1 h, alive all of it.
    assert (t1.terminals, t1.terminal_scheduled_s, t1.terminal_alive_s) == (2, 3 * H, 2.5 * H)
    assert t1.usage_rate == pytest.approx(2.5 / 3)
    assert (t1.spot_checks_sent, t1.spot_checks_answered) == (2, 1)  # v1
    assert t1.spot_check_answer_rate == pytest.approx(0.5)
    assert t1.flags == {"speed_jump": 1}


def test_station_counts_a_terminal_on_two_overlapping_shifts_once() -> None:
    s1 = _build().units["s1"]
    assert s1.shifts == 3  # A, B (t1) and C (s1's own post)
    assert s1.scheduled_s == 5 * H
    assert s1.on_post_s == 3 * H
    assert s1.on_duty_rate == pytest.approx(0.6)
    # d1 on A (08:00-10:00) and C (09:30-11:30): 3.5 h once, not 4 h; alive 08:00-09:30 and
    # 10:00-11:30 = 3 h. d2: 1 h of 1 h.
    assert s1.terminals == 2
    assert s1.terminal_scheduled_s == int(4.5 * H)
    assert s1.terminal_alive_s == 4 * H
    assert s1.usage_rate == pytest.approx(4 / 4.5)
    assert (s1.spot_checks_sent, s1.spot_checks_answered) == (3, 1)  # v1 (t1) and v4 (s1)
    assert s1.flags == {"shared_terminal": 1, "speed_jump": 1}


def test_district_rate_is_the_ratio_of_sums_not_the_mean_of_rates() -> None:
    agg = _build()
    s1, s2, futian = agg.units["s1"], agg.units["s2"], agg.units["futian"]
    assert s2.on_duty_rate == pytest.approx(1.0)  # D: 6 h on post of 6 h
    assert futian.scheduled_s == s1.scheduled_s + s2.scheduled_s == 11 * H
    assert futian.on_post_s == 9 * H
    assert futian.on_duty_rate == pytest.approx(9 / 11)  # 0.8182, not (0.6 + 1.0) / 2 = 0.8
    assert futian.on_duty_rate != pytest.approx((0.6 + 1.0) / 2)
    assert futian.terminal_scheduled_s == int(4.5 * H) + 6 * H
    assert futian.spot_check_answer_rate == pytest.approx(2 / 4)
    assert futian.flags == {"clock_skew": 1, "shared_terminal": 1, "speed_jump": 1}
    assert futian.volunteers == 4 and futian.terminals == 3


def test_empty_rates_are_none_not_zero() -> None:
    agg = build(
        root_id="s2",
        units=[u for u in UNITS if u.unit_id == "s2"],
        shifts=[],
        results={},
        posts={},
        volunteers={},
    )
    row = agg.units["s2"]
    assert row.scheduled_s == 0
    assert row.on_duty_rate is None
    assert row.usage_rate is None
    assert row.spot_check_answer_rate is None
    assert row.flags == {}


def test_volunteer_rows_with_late_and_early_leave() -> None:
    agg = _build()
    v1 = agg.volunteers["v1"]
    assert v1.shifts == ("A",)
    assert (v1.name, v1.unit_id) == ("张三", "t1")
    assert v1.on_duty_rate == pytest.approx(0.5)
    assert v1.usage_rate == pytest.approx(0.75)
    assert v1.late_s == 0  # on post from the first second
    assert v1.early_leave_s == H  # last on post at 09:00, the shift ends at 10:00
    assert v1.flags == {"speed_jump": 1}
    v4 = agg.volunteers["v4"]
    assert v4.late_s == H // 2
    assert v4.early_leave_s == 0
    assert (v4.spot_checks_sent, v4.spot_checks_answered, v4.spot_check_answer_rate) == (1, 0, 0)


def test_shift_rows_in_start_order_with_the_posts_unit() -> None:
    rows = _build().shifts
    assert [r.shift_id for r in rows] == ["A", "B", "C", "D"]
    c = rows[2]
    assert (c.unit_id, c.post_name, c.volunteer_name) == ("s1", "派出所门口", "赵六")
    assert c.device_id == "d1"
    assert c.on_duty_rate == pytest.approx(0.75)
    assert c.flags == {"shared_terminal": 1}


def test_records_outside_the_subtree_count_for_its_root() -> None:
    agg = _build("s1")  # D is at s2's post, v3 lives in s2: not in this subtree
    s1 = agg.units["s1"]
    assert set(agg.units) == {"s1", "t1"}
    assert s1.shifts == 4
    assert s1.flags["clock_skew"] == 1
    assert s1.spot_checks_sent == 4


def test_a_shift_without_a_result_is_refused() -> None:
    with pytest.raises(ValueError, match="no recomputed result"):
        build(
            root_id="t1",
            units=[u for u in UNITS if u.unit_id == "t1"],
            shifts=IN_PERIOD[:1],
            results={},
            posts={},
            volunteers={},
        )


def test_a_shift_without_a_terminal_is_no_terminal_time() -> None:
    shift = Shift("X", "v1", "p1", SHIFTS[0].start_ms, SHIFTS[0].end_ms, None)
    start, end = shift.start_ms // 1000, shift.end_ms // 1000
    segs = [Segment(start, end, State.OFFLINE)]
    result = ShiftResult("X", None, start, end, tally_of("X", start, end, segs), tuple(segs))
    agg = build(
        root_id="t1",
        units=[u for u in UNITS if u.unit_id == "t1"],
        shifts=[shift],
        results={"X": result},
        posts={p.post_id: p for p in POSTS},
        volunteers={v.volunteer_id: v for v in VOLUNTEERS},
    )
    row = agg.units["t1"]
    assert (row.terminals, row.terminal_scheduled_s, row.usage_rate) == (0, 0, None)
    assert row.on_duty_rate == 0.0
    assert agg.volunteers["v1"].usage_rate == 0.0  # scheduled, never seen


@pytest.mark.parametrize(
    ("intervals", "length"),
    [
        ([], 0),
        ([(0, 10)], 10),
        ([(0, 10), (5, 15)], 15),
        ([(5, 15), (0, 10), (20, 30)], 25),
        ([(0, 10), (10, 20)], 20),
        ([(0, 30), (5, 10)], 30),
    ],
)
def test_union_length(intervals: list[tuple[int, int]], length: int) -> None:
    assert union_length(intervals) == length
