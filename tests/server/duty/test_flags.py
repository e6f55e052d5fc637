"""Anti-gaming flags: each rule's positive and negative cases with concrete numbers, edge cases,
properties (never raise, order of rows irrelevant, the packed array gives the tuples' flags),
and one scan through a real SqliteStore. ``test_flags_vector`` holds the array path to the
tuples' on tracks made to sit on the rules' thresholds."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import Fix, Position, PositionBatch, Presence, PresenceKind
from protocol.errors import BadTag, MalformedFrame, TopicError, UnknownKey
from server.duty.flag_scan import scan_shift
from server.duty.flags import (
    AUTHENTICITY_FAILURES,
    FIX_MARGIN_MS,
    MAX_SPEED_MPS,
    STILL_MAX_GAP_S,
    VALUE_UNIT,
    Flag,
    FlagKind,
    SpotRequest,
    Subject,
    clock_skew,
    distance_m,
    future_time,
    shared_terminal,
    shared_terminal_pairs,
    shift_flags,
    signature_failures,
    speed_jumps,
    spot_check_gaps,
    still_in_drawer,
)
from server.duty.geo import M_PER_DEG
from server.duty.rules import Segment, ShiftResult, State, tally_of
from server.fixpack import FIX_DTYPE, FixArray, pack, unpack
from server.org.model import Shift
from server.sqlite_store import SqliteStore
from server.store import FixFlag

from ..support import Terminal, device_key, device_record

#: 2026-01-05 08:00:00 UTC, a Monday.
T0 = 1_767_600_000_000
S0 = T0 // 1000
H = 3_600_000
LAT, LON = 22.5431, 114.0579
DEV = "ft-0042"
WHO = Subject(DEV, "sh-1", "vol-li")


def north(metres: float) -> float:
    """The latitude ``metres`` north of LAT."""
    return LAT + metres / M_PER_DEG


def row(
    t_ms: int,
    lat: float = LAT,
    lon: float = LON,
    acc: float | None = 5.0,
    flags: int = 0,
    seq: int | None = None,
) -> tuple[object, ...]:
    """A ``fix_rows`` tuple: (time_ms, seq, idx, lat, lon, accuracy_m, flags, received_ms)."""
    return (t_ms, t_ms // 1000 if seq is None else seq, 0, lat, lon, acc, flags, t_ms + 500)


def kinds(flags: list[Flag]) -> list[FlagKind]:
    return [f.kind for f in flags]


def packed(rows: list[tuple[object, ...]]) -> FixArray:
    """The rows as the store's ``fix_array`` gives them (accuracy ``None`` as NaN)."""
    return unpack(pack(rows)) if rows else np.zeros(0, dtype=FIX_DTYPE)


def test_distance_is_the_haversine_on_the_fences_sphere() -> None:
    assert distance_m(LAT, LON, north(1000), LON) == pytest.approx(1000, abs=1e-6)
    assert distance_m(LAT, LON, LAT, LON) == 0.0
    # A quarter of the equator: a quarter of the sphere's circumference.
    assert distance_m(0, 0, 0, 90) == pytest.approx(M_PER_DEG * 90)


def test_every_kind_has_a_unit() -> None:
    assert set(VALUE_UNIT) == set(FlagKind)


# --- SPEED_JUMP --------------------------------------------------------------------------------


def test_a_fix_10_km_away_10_s_later_is_a_speed_jump_of_about_1000_m_s() -> None:
    flags = speed_jumps(WHO, [row(T0), row(T0 + 10_000, lat=north(10_000))])
    assert kinds(flags) == [FlagKind.SPEED_JUMP]
    f = flags[0]
    assert f.value == pytest.approx((10_000 - 5 - 5) / 10)  # both accuracies allowed for
    assert (f.start_ms, f.end_ms) == (T0, T0 + 10_000)
    assert (f.device_id, f.shift_id, f.volunteer_id) == (DEV, "sh-1", "vol-li")
    assert "10.00 km" in f.detail and "999 m/s" in f.detail


def test_a_walk_at_1_4_m_s_is_not_a_jump() -> None:
    walk = [row(T0 + k * 5_000, lat=north(1.4 * 5 * k)) for k in range(120)]
    assert speed_jumps(WHO, walk) == []


def test_a_taxi_on_an_expressway_at_100_km_h_is_not_a_jump() -> None:
    drive = [row(T0 + k * 5_000, lat=north(27.8 * 5 * k)) for k in range(60)]
    assert speed_jumps(WHO, drive) == []


def test_the_limit_itself_is_allowed() -> None:
    at = MAX_SPEED_MPS * 10 + 10  # 10 s at the limit, beyond two 5 m circles
    assert speed_jumps(WHO, [row(T0), row(T0 + 10_000, lat=north(at - 0.01))]) == []
    over = speed_jumps(WHO, [row(T0), row(T0 + 10_000, lat=north(at + 10))])
    assert [f.value for f in over] == [pytest.approx(MAX_SPEED_MPS + 1)]


def test_accuracy_is_allowed_for_on_both_ends() -> None:
    # 500 m in 10 s: 49 m/s beyond two 5 m circles, only 30 m/s beyond two 100 m circles.
    assert kinds(speed_jumps(WHO, [row(T0), row(T0 + 10_000, lat=north(500))])) == [
        FlagKind.SPEED_JUMP
    ]
    wide = [row(T0, acc=100.0), row(T0 + 10_000, lat=north(500), acc=100.0)]
    assert speed_jumps(WHO, wide) == []


def test_an_outlier_out_and_back_is_one_flag() -> None:
    fixes = [
        row(T0),
        row(T0 + 5_000, lat=north(7)),
        row(T0 + 10_000, lat=north(3_000)),  # spoofed
        row(T0 + 15_000, lat=north(14)),
        row(T0 + 20_000, lat=north(21)),
    ]
    flags = speed_jumps(WHO, fixes)
    assert len(flags) == 1
    assert (flags[0].start_ms, flags[0].end_ms) == (T0 + 5_000, T0 + 15_000)
    assert flags[0].value == pytest.approx((3_000 - 7 - 10) / 5, rel=1e-6)  # the faster leg
    assert "2 consecutive moves" in flags[0].detail


def test_two_separate_jumps_are_two_flags() -> None:
    fixes = [
        row(T0),
        row(T0 + 10_000, lat=north(5_000)),
        row(T0 + 20_000, lat=north(5_007)),
        row(T0 + 30_000, lat=north(5_014)),
        row(T0 + 40_000, lat=north(20_000)),
    ]
    flags = speed_jumps(WHO, fixes)
    assert [(f.start_ms, f.end_ms) for f in flags] == [
        (T0, T0 + 10_000),
        (T0 + 30_000, T0 + 40_000),
    ]


def test_same_second_fixes_count_as_one_second_apart() -> None:
    same = [row(T0, seq=1), row(T0, seq=2)]
    assert speed_jumps(WHO, same) == []  # an exact duplicate goes nowhere
    apart = [row(T0, seq=1), row(T0 + 200, lat=north(100), seq=2)]
    flags = speed_jumps(WHO, apart)
    assert [f.value for f in flags] == [pytest.approx(90.0)]  # 90 m beyond accuracy / 1 s
    # 40 m within a fifth of a second is 150 m/s, but the 1 s floor understates it: no flag.
    assert speed_jumps(WHO, [row(T0), row(T0 + 200, lat=north(40 + 10))]) == []


def test_fixes_the_rate_ignores_do_not_make_jumps() -> None:
    future = [row(T0), row(T0 + 10_000, lat=north(10_000), flags=FixFlag.FUTURE_TIME)]
    vague = [row(T0), row(T0 + 10_000, lat=north(10_000), acc=150.0)]
    assert speed_jumps(WHO, future) == []
    assert speed_jumps(WHO, vague) == []


def test_no_accuracy_is_taken_as_exact() -> None:
    # 450 m in 10 s: 45 m/s with no accuracy; 44 m/s beyond two 5 m circles.
    bare = [row(T0, acc=None), row(T0 + 10_000, lat=north(450), acc=None)]
    assert [round(f.value) for f in speed_jumps(WHO, bare)] == [45]


def test_no_fix_or_one_fix_has_no_jump() -> None:
    assert speed_jumps(WHO, []) == []
    assert speed_jumps(WHO, [row(T0)]) == []


# --- STILL_IN_DRAWER ---------------------------------------------------------------------------


def minutes(n: int, start: int = T0, **kw: object) -> list[tuple[object, ...]]:
    """A fix a minute for ``n`` minutes (the agent's still interval), then one at the end."""
    return [row(start + k * 60_000, **kw) for k in range(n + 1)]  # type: ignore[arg-type]


def test_2_h_10_min_of_identical_fixes_is_still_in_drawer() -> None:
    flags = still_in_drawer(WHO, minutes(130))
    assert kinds(flags) == [FlagKind.STILL_IN_DRAWER]
    f = flags[0]
    assert (f.start_ms, f.end_ms) == (T0, T0 + 130 * 60_000)
    assert f.value == pytest.approx(130 / 60)
    assert "131 fixes" in f.detail and "accuracy 5.0–5.0 m" in f.detail


def test_1_h_50_min_is_not_long_enough() -> None:
    assert still_in_drawer(WHO, minutes(110)) == []


def test_gps_jitter_of_4_m_is_a_carried_receiver() -> None:
    jitter = [row(T0 + k * 60_000, lat=north(4.0 * (k % 2))) for k in range(131)]
    assert still_in_drawer(WHO, jitter) == []


def test_jitter_within_3_m_but_a_moving_accuracy_is_a_real_receiver() -> None:
    fixes = [
        row(T0 + k * 60_000, lat=north(2.0 * (k % 2)), acc=4.0 + (k % 4) * 0.7) for k in range(131)
    ]
    assert still_in_drawer(WHO, fixes) == []
    frozen = [row(T0 + k * 60_000, lat=north(2.0 * (k % 2)), acc=4.0) for k in range(131)]
    assert kinds(still_in_drawer(WHO, frozen)) == [FlagKind.STILL_IN_DRAWER]


def test_accuracy_moving_by_at_most_half_a_metre_counts_as_frozen() -> None:
    fixes = [row(T0 + k * 60_000, acc=5.0 + 0.5 * (k % 2)) for k in range(131)]
    assert kinds(still_in_drawer(WHO, fixes)) == [FlagKind.STILL_IN_DRAWER]


def test_a_walk_then_the_drawer_reports_the_drawer_only() -> None:
    walk = [row(T0 + k * 5_000, lat=north(1.4 * 5 * k)) for k in range(360)]  # 30 min
    parked = minutes(125, start=T0 + 30 * 60_000, lat=north(1.4 * 5 * 360))
    flags = still_in_drawer(WHO, walk + parked)
    assert [(f.start_ms, f.end_ms) for f in flags] == [
        (T0 + 30 * 60_000, T0 + 155 * 60_000),
    ]


def test_a_gap_longer_than_a_fix_is_credited_breaks_the_run() -> None:
    first = minutes(75)
    second = minutes(75, start=T0 + 75 * 60_000 + STILL_MAX_GAP_S * 1000 + 60_000)
    assert still_in_drawer(WHO, first + second) == []


def test_fixes_without_accuracy_all_along_count_as_frozen() -> None:
    assert kinds(still_in_drawer(WHO, minutes(130, acc=None))) == [FlagKind.STILL_IN_DRAWER]


def test_drawer_edge_cases() -> None:
    assert still_in_drawer(WHO, []) == []
    assert still_in_drawer(WHO, [row(T0)]) == []
    # The same fix many times at one instant spans nothing.
    assert still_in_drawer(WHO, [row(T0, seq=k) for k in range(50)]) == []


# --- SHARED_TERMINAL ---------------------------------------------------------------------------


def shift(
    shift_id: str = "sh-1",
    volunteer: str = "vol-li",
    start: int = T0,
    end: int = T0 + 4 * H,
    device: str | None = DEV,
) -> Shift:
    return Shift(shift_id, volunteer, "post-1", start, end, device)


def test_two_volunteers_on_one_terminal_at_once() -> None:
    mine = shift()
    theirs = shift("sh-2", "vol-wang", T0 + 3 * H, T0 + 7 * H)
    flags = shared_terminal(mine, [theirs])
    assert kinds(flags) == [FlagKind.SHARED_TERMINAL]
    f = flags[0]
    assert (f.start_ms, f.end_ms, f.value) == (T0 + 3 * H, T0 + 4 * H, 1.0)
    assert (f.shift_id, f.volunteer_id) == ("sh-1", "vol-li")
    for name in ("sh-1", "sh-2", "vol-li", "vol-wang", DEV):
        assert name in f.detail


def test_no_shared_terminal_without_overlap_or_with_one_volunteer() -> None:
    mine = shift()
    assert shared_terminal(mine, [shift("sh-2", "vol-wang", T0 + 4 * H, T0 + 8 * H)]) == []
    assert shared_terminal(mine, [shift("sh-2", "vol-li", T0 + H, T0 + 2 * H)]) == []
    assert shared_terminal(mine, [shift("sh-2", "vol-wang", device="ft-0043")]) == []
    assert shared_terminal(mine, [mine]) == []
    assert shared_terminal(shift(device=None), [shift("sh-2", "vol-wang", device=None)]) == []


def test_shared_terminal_pairs_give_one_flag_per_pair() -> None:
    a = shift("sh-a", "vol-a", T0, T0 + 4 * H)
    b = shift("sh-b", "vol-b", T0 + 2 * H, T0 + 6 * H)
    c = shift("sh-c", "vol-c", T0 + 5 * H, T0 + 9 * H)
    flags = shared_terminal_pairs([c, b, a])
    assert [(f.shift_id, f.start_ms, f.end_ms) for f in flags] == [
        ("sh-a", T0 + 2 * H, T0 + 4 * H),
        ("sh-b", T0 + 5 * H, T0 + 6 * H),
    ]


# --- CLOCK_SKEW and FUTURE_TIME ----------------------------------------------------------------


def test_the_worst_skew_beyond_10_s_is_one_flag() -> None:
    skews = [(T0, 2_000), (T0 + 60_000, -95_000), (T0 + 120_000, 30_000)]
    flags = clock_skew(WHO, skews)
    assert kinds(flags) == [FlagKind.CLOCK_SKEW]
    f = flags[0]
    assert (f.start_ms, f.end_ms, f.value) == (T0 + 60_000, T0 + 120_000, -95.0)
    assert "95.0 s behind" in f.detail and "worst of 2" in f.detail


def test_skews_within_10_s_are_not_flagged() -> None:
    assert clock_skew(WHO, [(T0, 10_000), (T0 + 1, -10_000), (T0 + 2, 300)]) == []
    assert clock_skew(WHO, []) == []


def test_future_fixes_are_counted() -> None:
    fixes = [row(T0), *(row(T0 + k * 1000, flags=FixFlag.FUTURE_TIME) for k in (5, 9, 7))]
    flags = future_time(WHO, fixes)
    assert kinds(flags) == [FlagKind.FUTURE_TIME]
    assert (flags[0].value, flags[0].start_ms, flags[0].end_ms) == (3.0, T0 + 5000, T0 + 9000)
    assert "does not count them" in flags[0].detail
    assert future_time(WHO, [row(T0), row(T0 + 1000)]) == []


# --- SIGNATURE_FAILURES ------------------------------------------------------------------------


def reason(exc: Exception) -> str:
    """The reason string ingest records (``server.ingest.Ingest._reject``)."""
    return f"{type(exc).__name__}: {getattr(exc, 'field', '')}"


def test_authenticity_failures_are_the_authentication_error_subtree() -> None:
    import protocol.errors as errors

    subtree = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.AuthenticationError)
    }
    assert subtree == {"AuthenticationError", "BadTag", "UnknownKey", "Revoked", "Stale"}
    assert subtree == AUTHENTICITY_FAILURES


def test_forged_and_unknown_key_frames_on_the_shifts_day_are_counted() -> None:
    bad_tag, unknown = reason(BadTag("tag", "x")), reason(UnknownKey("key_id", "x"))
    rows = [
        (DEV, "2026-01-05", bad_tag, 3),
        (DEV, "2026-01-05", unknown, 1),
        (DEV, "2026-01-05", reason(MalformedFrame("", "x")), 5),  # not about authenticity
        (DEV, "2026-01-05", reason(TopicError("topic", "x")), 2),
        ("ft-0043", "2026-01-05", bad_tag, 7),  # another terminal
        (DEV, "2026-01-04", bad_tag, 9),  # the day before
    ]
    flags = signature_failures(WHO, rows, T0, T0 + 4 * H)
    assert kinds(flags) == [FlagKind.SIGNATURE_FAILURES]
    f = flags[0]
    assert f.value == 4.0
    assert (f.start_ms, f.end_ms) == (T0 - 8 * H, T0 + 16 * H)  # the whole UTC day
    assert "BadTag: tag ×3" in f.detail and "UnknownKey: key_id ×1" in f.detail


def test_a_night_shift_takes_both_days() -> None:
    night = (T0 + 12 * H, T0 + 18 * H)  # 20:00 to 02:00 UTC
    rows = [(DEV, "2026-01-05", "BadTag: tag", 1), (DEV, "2026-01-06", "BadTag: tag", 2)]
    flags = signature_failures(WHO, rows, *night)
    assert [(f.value, f.start_ms, f.end_ms) for f in flags] == [(3.0, T0 - 8 * H, T0 + 40 * H)]
    # A shift ending at midnight does not reach into the next day.
    assert [f.value for f in signature_failures(WHO, rows, T0, T0 + 16 * H)] == [1.0]


def test_malformed_frames_alone_are_no_flag() -> None:
    rows = [
        (DEV, "2026-01-05", "MalformedFrame: ", 40),
        (DEV, "2026-01-05", "InvalidField: seq", 2),
    ]
    assert signature_failures(WHO, rows, T0, T0 + H) == []
    assert signature_failures(WHO, [], T0, T0 + H) == []


# --- SPOT_CHECK_GAP ----------------------------------------------------------------------------


def timeline(*cuts: tuple[int, State], end: int = 3600) -> list[Segment]:
    """Segments of a shift starting at S0 from ``(offset_s, state)`` cuts."""
    starts = [c[0] for c in cuts]
    ends = [*starts[1:], end]
    return [Segment(S0 + a, S0 + b, s) for (a, s), b in zip(cuts, ends, strict=True)]


ON, OFF = State.ON_POST, State.OFFLINE


def check(
    sent_s: int, deadline_s: int, answered_s: int | None = None
) -> tuple[int, int, int | None]:
    answered = None if answered_s is None else T0 + answered_s * 1000
    return (T0 + sent_s * 1000, T0 + deadline_s * 1000, answered)


def test_switched_off_just_for_the_check() -> None:
    segs = timeline((0, ON), (1000, OFF), (1500, ON))
    flags = spot_check_gaps(WHO, [check(1100, 1400)], segs)
    assert kinds(flags) == [FlagKind.SPOT_CHECK_GAP]
    f = flags[0]
    assert (f.start_ms, f.end_ms, f.value) == (T0 + 1_100_000, T0 + 1_400_000, 500.0)
    assert "offline when it was sent" in f.detail
    assert "began 100 s before the check and ended 100 s after its deadline" in f.detail
    assert "switching off just for the check" in f.detail


def test_an_answered_check_passed() -> None:
    segs = timeline((0, ON), (1000, OFF), (1500, ON))
    assert spot_check_gaps(WHO, [check(1100, 1400, answered_s=1390)], segs) == []


def test_a_late_answer_is_no_answer() -> None:
    segs = timeline((0, ON), (1000, OFF), (1500, ON))
    flags = spot_check_gaps(WHO, [check(1100, 1400, answered_s=1510)], segs)
    assert kinds(flags) == [FlagKind.SPOT_CHECK_GAP]
    assert "late answer" in flags[0].detail


def test_an_unanswered_check_while_alive_is_not_this_flag() -> None:
    segs = timeline((0, ON), (1000, OFF), (1500, ON))
    assert spot_check_gaps(WHO, [check(2000, 2300)], segs) == []


def test_a_long_outage_is_flagged_but_not_as_a_framed_one() -> None:
    segs = timeline((0, ON), (100, OFF), (3000, ON))
    flags = spot_check_gaps(WHO, [check(1100, 1400)], segs)
    assert [f.value for f in flags] == [2900.0]
    assert "switching off" not in flags[0].detail


def test_going_offline_after_the_check_arrived() -> None:
    # The duty engine keeps a terminal alive ALIVE_GAP_S after its last frame: switched off at
    # the check, it shows offline only later, still before the deadline.
    segs = timeline((0, ON), (1200, OFF), (1500, ON))
    flags = spot_check_gaps(WHO, [check(1100, 1400)], segs)
    assert kinds(flags) == [FlagKind.SPOT_CHECK_GAP]
    assert "going offline before its deadline" in flags[0].detail
    assert "switching off just for the check" in flags[0].detail


def test_offline_to_the_end_of_the_shift_is_not_framed() -> None:
    segs = timeline((0, ON), (1000, OFF), end=1500)
    flags = spot_check_gaps(WHO, [check(1100, 1400)], segs)
    assert len(flags) == 1 and "switching off" not in flags[0].detail


def test_checks_outside_the_timeline_and_without_one_are_not_judged() -> None:
    segs = timeline((0, OFF))
    assert spot_check_gaps(WHO, [check(-600, -300), check(3600, 3900)], segs) == []
    assert spot_check_gaps(WHO, [check(100, 400)], []) == []


# --- one shift ---------------------------------------------------------------------------------


def result_of(sh: Shift, segs: list[Segment]) -> ShiftResult:
    start_s, end_s = sh.start_ms // 1000, sh.end_ms // 1000
    return ShiftResult(
        sh.shift_id,
        sh.device_id,
        start_s,
        end_s,
        tally_of(sh.shift_id, start_s, end_s, segs),
        tuple(segs),
    )


def test_shift_flags_applies_every_rule_in_report_order() -> None:
    sh = shift(end=T0 + 3 * H)
    segs = timeline((0, ON), (1000, OFF), (1500, ON), end=3 * 3600)
    fixes = [
        # Beyond the margin: not read (9 km in 160 s would be a 56 m/s jump into the shift).
        row(T0 - FIX_MARGIN_MS - 10_000, lat=north(9_000)),
        *minutes(150),  # parked on post for the whole shift
        row(T0 + 2 * H + 1000, lat=north(1000), flags=FixFlag.FUTURE_TIME),
    ]
    flags = shift_flags(
        sh,
        result_of(sh, segs),
        fixes,
        [(T0 + 600_000, 40_000)],
        [(DEV, "2026-01-05", "BadTag: tag", 2)],
        [check(1100, 1400)],
        [shift("sh-2", "vol-wang", T0 + 2 * H, T0 + 5 * H)],
    )
    assert [(f.kind, f.start_ms) for f in flags] == [
        (FlagKind.SIGNATURE_FAILURES, T0 - 8 * H),
        (FlagKind.STILL_IN_DRAWER, T0),
        (FlagKind.CLOCK_SKEW, T0 + 600_000),
        (FlagKind.SPOT_CHECK_GAP, T0 + 1_100_000),
        (FlagKind.SHARED_TERMINAL, T0 + 2 * H),
        (FlagKind.FUTURE_TIME, T0 + 2 * H + 1000),
    ]
    assert all(f.shift_id == "sh-1" and f.device_id == DEV for f in flags)


def test_shift_flags_reads_the_fix_just_before_the_start() -> None:
    sh = shift(end=T0 + H)
    segs = timeline((0, ON), end=3600)
    fixes = [row(T0 - 60_000), row(T0 + 10_000, lat=north(10_000))]
    flags = shift_flags(sh, result_of(sh, segs), fixes, [], [], [], [])
    assert [(f.kind, f.start_ms) for f in flags] == [(FlagKind.SPEED_JUMP, T0 - 60_000)]
    # A jump wholly before the shift is another shift's business.
    early = [row(T0 - 100_000), row(T0 - 90_000, lat=north(10_000))]
    assert shift_flags(sh, result_of(sh, segs), early, [], [], [], []) == []


def test_a_shift_without_a_terminal_has_no_flags() -> None:
    sh = shift(device=None)
    segs = timeline((0, OFF), end=4 * 3600)
    assert shift_flags(sh, result_of(sh, segs), [row(T0)], [(T0, 99_000)], [], [], []) == []


def test_a_result_of_another_shift_is_refused() -> None:
    sh = shift()
    other = result_of(shift("sh-9"), timeline((0, ON), end=4 * 3600))
    with pytest.raises(ValueError, match="sh-9"):
        shift_flags(sh, other, [], [], [], [], [])


# --- properties --------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
times = st.one_of(st.integers(T0 - H, T0 + 4 * H), st.integers(-(2**62), 2**62))
fix_rows = st.one_of(
    # anything finite
    st.tuples(
        times,
        st.integers(0, 2**40),
        st.integers(0, 999),
        finite,
        finite,
        st.none() | finite,
        st.integers(0, 3),
        times,
    ),
    # near one spot on a one-minute grid, with a few accuracies: drawers and jumps do occur
    st.tuples(
        st.integers(0, 200).map(lambda k: T0 + k * 60_000),
        st.integers(0, 5),
        st.just(0),
        st.sampled_from([LAT, north(1), north(2.5), north(4), north(5_000)]),
        st.just(LON),
        st.sampled_from([None, 5.0, 5.2, 9.0, 150.0]),
        st.sampled_from([0, 0, 0, 1]),
        st.just(T0),
    ),
)


@settings(deadline=None, max_examples=300)
@given(st.lists(fix_rows, max_size=60), st.data())
def test_fix_rules_never_raise_and_ignore_row_order(
    rows: list[tuple[object, ...]], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(rows))
    for rule in (speed_jumps, still_in_drawer, future_time):
        got = rule(WHO, rows)
        assert got == rule(WHO, shuffled)
        assert got == rule(WHO, packed(shuffled))  # the array path: the same flags
        for f in got:
            assert f.start_ms <= f.end_ms and math.isfinite(f.value) and f.detail


segments = st.lists(
    st.tuples(st.integers(-5, 60), st.integers(0, 60), st.sampled_from(list(State))),
    max_size=8,
).map(lambda cuts: [Segment(S0 + a * 60, S0 + a * 60 + b * 60, s) for a, b, s in cuts])
requests = st.lists(
    st.tuples(times, st.integers(-H, H), st.none() | times).map(
        lambda r: (r[0], r[0] + r[1], r[2])
    ),
    max_size=8,
)
rejection_rows = st.lists(
    st.tuples(
        st.sampled_from([DEV, "ft-0043"]),
        st.sampled_from(["2026-01-04", "2026-01-05", "2026-01-06", "not a day", "2026-1-5"]),
        st.sampled_from(["BadTag: tag", "UnknownKey: key_id", "MalformedFrame: ", "x", ""]),
        st.integers(-5, 5),
    ),
    max_size=8,
)
skew_rows = st.lists(st.tuples(times, st.integers(-(2**40), 2**40)), max_size=8)
shifts = st.lists(
    st.builds(
        Shift,
        st.sampled_from(["sh-1", "sh-2", "sh-3"]),
        st.sampled_from(["vol-li", "vol-wang"]),
        st.just("post-1"),
        st.integers(0, 8).map(lambda k: T0 + k * H),
        st.integers(9, 12).map(lambda k: T0 + k * H),
        st.sampled_from([DEV, "ft-0043", None]),
    ),
    max_size=5,
)


@settings(deadline=None, max_examples=300)
@given(segments, requests, rejection_rows, skew_rows, shifts, times, times, st.data())
def test_other_rules_never_raise_and_ignore_row_order(
    segs: list[Segment],
    reqs: list[SpotRequest],
    rejections: list[tuple[str, str, str, int]],
    skews: list[tuple[int, int]],
    others: list[Shift],
    start: int,
    end: int,
    data: st.DataObject,
) -> None:
    def same(rule: Callable[..., list[Flag]], *args: object) -> None:
        shuffled = [data.draw(st.permutations(a)) if isinstance(a, list) else a for a in args]
        assert rule(WHO, *args) == rule(WHO, *shuffled)

    same(spot_check_gaps, reqs, segs)
    same(signature_failures, rejections, start, end)
    same(clock_skew, skews)
    mine = shift()
    assert shared_terminal(mine, others) == shared_terminal(
        mine, data.draw(st.permutations(others))
    )
    assert shared_terminal_pairs(others) == shared_terminal_pairs(
        data.draw(st.permutations(others))
    )


@settings(deadline=None, max_examples=200)
@given(st.lists(fix_rows, max_size=40), skew_rows, rejection_rows, requests, shifts, st.data())
def test_shift_flags_ignore_row_order(
    fixes: list[tuple[object, ...]],
    skews: list[tuple[int, int]],
    rejections: list[tuple[str, str, str, int]],
    reqs: list[SpotRequest],
    others: list[Shift],
    data: st.DataObject,
) -> None:
    sh = shift()
    segs = timeline((0, ON), (1000, OFF), (1500, State.NO_FIX), end=4 * 3600)
    result = result_of(sh, segs)
    got = shift_flags(sh, result, fixes, skews, rejections, reqs, others)
    again = shift_flags(
        sh,
        result,
        data.draw(st.permutations(fixes)),
        data.draw(st.permutations(skews)),
        data.draw(st.permutations(rejections)),
        data.draw(st.permutations(reqs)),
        data.draw(st.permutations(others)),
    )
    assert got == again
    assert got == shift_flags(sh, result, packed(fixes), skews, rejections, reqs, others)
    assert [(f.start_ms, list(FlagKind).index(f.kind)) for f in got] == sorted(
        (f.start_ms, list(FlagKind).index(f.kind)) for f in got
    )


# --- through a real store ----------------------------------------------------------------------


def test_scan_shift_reads_a_sqlite_store(tmp_path: Path) -> None:
    term = Terminal(DEV)
    store = SqliteStore(tmp_path / "yijing.db")
    try:
        store.add_device(device_record(term.identity), device_key(term.identity))
        parked = tuple(
            Fix(time_ms=T0 + k * 60_000, lat=LAT, lon=LON, accuracy_m=5.0) for k in range(131)
        )
        jump = Fix(time_ms=T0 + 131 * 60_000 + 10_000, lat=north(10_000), lon=LON, accuracy_m=5.0)
        ahead = Fix(time_ms=T0 + 3 * H, lat=LAT, lon=LON, accuracy_m=5.0)
        heartbeat = Presence(kind=PresenceKind.HEARTBEAT, clock_skew_ms=-60_000)
        frames = [
            term.incoming(PositionBatch(fixes=parked), 1, sent_ms=T0 + 131 * 60_000),
            term.incoming(Position(fix=jump), 2, sent_ms=jump.time_ms),
            dataclasses.replace(
                term.incoming(Position(fix=ahead), 3, sent_ms=T0, received_ms=T0),
                fix_flags=(FixFlag.FUTURE_TIME,),
            ),
            dataclasses.replace(term.incoming(heartbeat, 4, sent_ms=T0 + H), skew_ms=-60_000),
        ]
        store.store_frames(frames)
        store.add_rejections("2026-01-05", {(DEV, "BadTag: tag"): 3, (DEV, "MalformedFrame: "): 1})
        store.add_rejections("2026-01-05", {("ft-0043", "BadTag: tag"): 5})

        sh = shift(end=T0 + 4 * H)
        segs = timeline((0, ON), (1000, OFF), (1500, ON), end=4 * 3600)
        flags = scan_shift(
            store,
            sh,
            result_of(sh, segs),
            spot_requests=[check(1100, 1400)],
            other_shifts=[shift("sh-2", "vol-wang", T0 + 3 * H, T0 + 6 * H)],
        )
    finally:
        store.close()
    got = {f.kind: f.value for f in flags}
    assert got == {
        FlagKind.SIGNATURE_FAILURES: 3.0,
        FlagKind.STILL_IN_DRAWER: pytest.approx(130 / 60),
        FlagKind.SPOT_CHECK_GAP: 500.0,
        FlagKind.CLOCK_SKEW: -60.0,
        FlagKind.SPEED_JUMP: pytest.approx((10_000 - 10) / 70),
        FlagKind.SHARED_TERMINAL: 1.0,
        FlagKind.FUTURE_TIME: 1.0,
    }
    assert [f.start_ms for f in flags] == sorted(f.start_ms for f in flags)


def test_scan_shift_of_a_quiet_terminal_is_empty(tmp_path: Path) -> None:
    term = Terminal(DEV)
    store = SqliteStore(tmp_path / "yijing.db")
    try:
        store.add_device(device_record(term.identity), device_key(term.identity))
        walk = tuple(
            Fix(time_ms=T0 + k * 5_000, lat=north(1.4 * 5 * k), lon=LON, accuracy_m=5.0)
            for k in range(200)
        )
        store.store_frames([term.incoming(PositionBatch(fixes=walk), 1, sent_ms=T0 + H)])
        sh = shift(end=T0 + H)
        flags = scan_shift(store, sh, result_of(sh, timeline((0, ON), end=3600)))
    finally:
        store.close()
    assert flags == []


def test_frames_sealed_in_the_future_are_flagged_and_are_not_evidence(tmp_path: Path) -> None:
    term = Terminal(DEV)
    store = SqliteStore(tmp_path / "yijing.db")
    try:
        store.add_device(device_record(term.identity), device_key(term.identity))
        heartbeat = Presence(kind=PresenceKind.HEARTBEAT)
        # Sealed an hour into the shift, but received at its start: the clock ran ahead.
        store.store_frames([term.incoming(heartbeat, 1, sent_ms=T0 + H, received_ms=T0)])
        store.store_frames(
            [term.incoming(heartbeat, 2, sent_ms=T0 + 60_000, received_ms=T0 + 60_000)]
        )
        assert store.evidence_rows(DEV, T0, T0 + 2 * H) == [(T0 + 60_000, 0)]
        assert store.future_frame_times(DEV, T0, T0 + 2 * H) == [T0 + H]
        sh = shift(end=T0 + 2 * H)
        flags = scan_shift(store, sh, result_of(sh, timeline((0, ON), end=7200)))
    finally:
        store.close()
    assert [(f.kind, f.value) for f in flags] == [(FlagKind.FUTURE_TIME, 1.0)]
    assert "1 frames sealed" in flags[0].detail
