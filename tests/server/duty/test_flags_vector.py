"""The anti-gaming rules over the store's packed fix array give exactly the flags of the
reference per-fix code over ``fix_rows`` tuples — value and sentence included — and a quiet
shift costs the array path no per-fix Python at all."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.duty import motion_flags as flag_rules
from server.duty.flags import (
    MAX_SPEED_MPS,
    Flag,
    FlagKind,
    future_time,
    shift_flags,
    speed_jumps,
    still_in_drawer,
)
from server.duty.geo import M_PER_DEG
from server.fixpack import FIX_DTYPE, FixArray, pack, unpack
from server.org.model import Shift

from .test_flags import DEV, LAT, LON, T0, WHO, H, north, result_of, row

Row = tuple[Any, ...]
RULES: tuple[Callable[..., list[Flag]], ...] = (speed_jumps, still_in_drawer, future_time)


def packed(rows: list[Row]) -> FixArray:
    """The rows as the store's ``fix_array`` gives them (accuracy ``None`` as NaN)."""
    return unpack(pack(rows)) if rows else np.zeros(0, dtype=FIX_DTYPE)


def store_order(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r[0], r[1], r[2]))


# --- random tracks -------------------------------------------------------------------------------

#: Where tracks are: a post, the antimeridian, next to a pole, the equator, the prime meridian.
ORIGINS = [(LAT, LON), (0.0, 179.99999), (89.99998, 10.0), (-33.9, -70.6), (0.0, 0.0)]
#: First fix times: ordinary, and near both ends of int64 (where a difference of times wraps).
STARTS = [T0, -(2**62), 2**62 - 24 * H, 0]
#: Intervals, around the 1 s floor of SPEED_JUMP and the 150 s gap of STILL_IN_DRAWER.
STEPS_MS = [0, 1, 200, 999, 1000, 1001, 5000, 60_000, 149_999, 150_000, 150_001, 600_000]
#: Differences from the limit of SPEED_JUMP, in metres: the scalar and the vector path must
#: agree on the limit itself and a rounding either side of it.
NEAR_LIMIT_M = [-1e-6, -1e-9, -1e-12, 0.0, 1e-12, 1e-9, 1e-6, 0.5, -0.5, 100.0, 5e5, 2e7]
#: Distances of a still run's fixes from its middle: around STILL_RADIUS_M (from the first fix,
#: twice that can be reached), and a frozen or nearly frozen position.
JITTER_M = [0.0, 1e-7, 1.0, 1.5, 1.4999999, 1.5000001, 2.9, 2.9999999, 3.0, 3.0000001, 3.5]
#: Accuracy sets of a still run: frozen, within the spread limit, at it, just beyond it.
STILL_ACCS: list[tuple[float | None, ...]] = [
    (None,),
    (5.0,),
    (5.0, 5.2),
    (5.0, 5.5),
    (5.0, 5.5000001),
    (4.0, 4.5, 4.75),
    (0.0,),
    (99.9, 100.0),
]


@st.composite
def tracks(draw: st.DrawFn) -> list[Row]:
    """A terminal's fixes in segments: still runs (long, with tiny jitter, a frozen or nearly
    frozen accuracy), walks, jumps at the speed limit, and odd fixes (duplicates, identical
    times, no accuracy, flags set, vague or off-globe fixes, times at the ends of int64)."""
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))  # per-fix noise, uniformly random
    t = draw(st.sampled_from(STARTS))
    lat0, lon0 = draw(st.sampled_from(ORIGINS))
    per_m_lon = 1 / (M_PER_DEG * max(math.cos(math.radians(lat0)), 1e-9))
    y = x = 0.0  # metres north and east of the origin
    acc: float | None = 5.0
    seq = 0
    rows: list[Row] = []

    def add(t_ms: int, y_m: float, x_m: float, a: float | None, flags: int = 0) -> None:
        nonlocal seq
        seq += rnd.choice([1, 1, 1, 0])  # now and then the same seq (another idx)
        rows.append(
            (
                t_ms,
                seq,
                len(rows) % 7,
                lat0 + y_m / M_PER_DEG,
                lon0 + x_m * per_m_lon,
                a,
                flags,
                t_ms,
            )
        )

    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["still", "still", "walk", "jump", "odd"]))
        if kind == "still":
            n = draw(st.sampled_from([2, 40, 119, 120, 121, 122, 130, 160]))  # 2 h: 121 fixes
            step = draw(st.sampled_from([60_000, 60_000, 5_000, 149_999, 150_000, 150_001]))
            jitter = draw(st.sampled_from(JITTER_M))
            accs = draw(st.sampled_from(STILL_ACCS))
            for k in range(n):
                t += step if k else rnd.choice(STEPS_MS)
                angle = rnd.choice([0.0, math.pi / 2, math.pi, 1.5 * math.pi, rnd.uniform(0, 7)])
                r = jitter * rnd.choice([0.0, 1.0, 1.0, rnd.random()])
                acc = rnd.choice(accs)
                flags = 1 if rnd.random() < 0.02 else 0
                add(t, y + r * math.cos(angle), x + r * math.sin(angle), acc, flags)
        elif kind == "walk":
            step = draw(st.sampled_from([1000, 5000, 5000, 60_000]))
            for _k in range(draw(st.integers(1, 40))):
                t += step
                heading = rnd.uniform(0, 2 * math.pi)
                y += 1.4 * step / 1000 * math.cos(heading)
                x += 1.4 * step / 1000 * math.sin(heading)
                acc = rnd.choice([None, 3.0, 4.7, 8.0, 15.0])
                add(t, y, x, acc)
        elif kind == "jump":
            dt = draw(st.sampled_from(STEPS_MS))
            new_acc = draw(st.sampled_from([None, 5.0, 0.0, 37.5, 100.0]))
            limit = MAX_SPEED_MPS * max(dt / 1000, 1.0) + (acc or 0.0) + (new_acc or 0.0)
            metres = limit + draw(st.sampled_from(NEAR_LIMIT_M))
            if draw(st.booleans()):
                y += metres
            else:
                x += metres
            t += dt
            acc = new_acc
            add(t, y, x, acc)
            if draw(st.booleans()):  # and back: one flag for the out-and-back
                t += draw(st.sampled_from(STEPS_MS))
                y -= metres if rnd.random() < 0.5 else 0.0
                add(t, y, x, acc)
        else:
            last = rows[-1] if rows else (t, seq, 0, lat0, lon0, acc, 0, t)
            odd = draw(
                st.sampled_from(["copy", "same_time", "no_acc", "flagged", "vague", "off", "edge"])
            )
            if odd == "copy":
                rows.append(last)
            elif odd == "same_time":
                add(last[0], y + rnd.choice([0.0, 40.0, 60.0]), x, acc)
            elif odd == "no_acc":
                add(t + 1000, y, x, None)
            elif odd == "flagged":
                add(t + 1000, y + 9_000.0, x, acc, rnd.choice([1, 2, 3]))
            elif odd == "vague":
                add(t + 1000, y + 9_000.0, x, rnd.choice([100.0000001, 150.0, -1.0]))
            elif odd == "off":
                rows.append((t + 1000, seq, 0, 91.0, lon0, acc, 0, t))
            else:
                rows.append((rnd.choice([-(2**63), 2**63 - 1]), seq, 0, lat0, lon0, acc, 0, 0))
    return rows


def assert_same_flags(rows: list[Row], shuffled: list[Row]) -> None:
    for rule in RULES:
        expected = rule(WHO, rows)
        assert rule(WHO, packed(store_order(rows))) == expected, rule.__name__
        assert rule(WHO, packed(shuffled)) == expected, rule.__name__


@settings(deadline=None, max_examples=400)
@given(tracks(), st.data())
def test_the_array_path_gives_the_reference_flags(rows: list[Row], data: st.DataObject) -> None:
    assert_same_flags(rows, data.draw(st.permutations(rows)))


@settings(deadline=None, max_examples=150)
@given(tracks(), st.integers(-2 * H, 4 * H), st.integers(1, 8 * 3600), st.data())
def test_shift_flags_over_the_array_are_the_reference_flags(
    rows: list[Row], offset: int, seconds: int, data: st.DataObject
) -> None:
    first = min((r[0] for r in rows), default=T0)
    start = min(max(first + offset, 1000), 2**53 - 48 * H) // 1000 * 1000  # as Shift wants
    sh = Shift("sh-1", "vol-li", "post-1", start, start + seconds * 1000, DEV)
    result = result_of(sh, [])
    expected = shift_flags(sh, result, rows, [], [], [], [])
    shuffled = data.draw(st.permutations(rows))
    assert shift_flags(sh, result, packed(store_order(rows)), [], [], [], []) == expected
    assert shift_flags(sh, result, packed(shuffled), [], [], [], []) == expected


# --- the cases on the boundaries, by hand --------------------------------------------------------


def same(rows: list[Row]) -> list[Flag]:
    """The flags of both paths, asserted equal; the reference's returned."""
    expected = [f for rule in RULES for f in rule(WHO, rows)]
    assert [f for rule in RULES for f in rule(WHO, packed(rows))] == expected
    return expected


@pytest.mark.parametrize("beyond", [-1e-9, -1e-12, 0.0, 1e-12, 1e-9, 1e-6])
@pytest.mark.parametrize("dt_ms", [200, 1000, 10_000, 3_600_000])
def test_jumps_at_the_limit_itself(beyond: float, dt_ms: int) -> None:
    at = MAX_SPEED_MPS * max(dt_ms / 1000, 1.0) + 10  # beyond two 5 m circles
    same([row(T0), row(T0 + dt_ms, lat=north(at + beyond))])
    same([row(T0, acc=None), row(T0 + dt_ms, lon=LON + (at + beyond) / M_PER_DEG, acc=None)])


@pytest.mark.parametrize("metres", [2.9999999, 3.0, 3.0000001, 3.0001])
def test_a_drawer_run_ending_on_the_radius(metres: float) -> None:
    parked = [row(T0 + k * 60_000) for k in range(121)]
    edge = [row(T0 + (121 + k) * 60_000, lat=north(metres)) for k in range(5)]
    flags = same(parked + edge + [row(T0 + 130 * 60_000, lat=north(10))])
    assert [f.kind for f in flags] == [FlagKind.STILL_IN_DRAWER]


def test_the_accuracy_of_the_fix_that_ends_a_run_is_in_the_sentence_as_in_the_reference() -> None:
    # The reference widens lo/hi by the fix that breaks the run before it breaks; the array path
    # must say the same, not "better".
    parked = [row(T0 + k * 60_000) for k in range(131)]
    flags = same([*parked, row(T0 + 131 * 60_000, lat=north(10), acc=9.0)])
    assert "accuracy 5.0–9.0 m" in flags[0].detail


def test_drawer_runs_back_to_back_and_overlapping_candidates() -> None:
    # A run; a fix 4 m off ends it; then fixes 2.9 m either way of the spot, so that only the
    # starts on the spot itself make runs (the others have a fix 5.8 m away); then another.
    first = [row(T0 + k * 60_000) for k in range(130)]
    off = [row(T0 + 130 * 60_000, lat=north(4))]
    wobble = [
        row(T0 + (131 + k) * 60_000, lat=north(2.9 * (-1) ** k * (k % 3 != 0))) for k in range(200)
    ]
    last = [row(T0 + (331 + k) * 60_000, lat=north(50)) for k in range(125)]
    flags = same(first + off + wobble + last)
    assert [(f.kind, f.start_ms) for f in flags] == [
        (FlagKind.STILL_IN_DRAWER, T0),
        (FlagKind.STILL_IN_DRAWER, T0 + 131 * 60_000),
        (FlagKind.STILL_IN_DRAWER, T0 + 331 * 60_000),
    ]


def test_input_order_and_array_views_do_not_matter() -> None:
    rows = [row(T0 + k * 5_000, lat=north(1.4 * 5 * k)) for k in range(50)]
    rows += [row(T0 + 250_000, lat=north(10_000)), row(T0 + 250_000, seq=7, flags=1)]
    rows += [row(T0 + 300_000 + k * 60_000, lat=north(10_000)) for k in range(130)]
    expected = same(rows)
    assert {f.kind for f in expected} == {
        FlagKind.SPEED_JUMP,
        FlagKind.STILL_IN_DRAWER,
        FlagKind.FUTURE_TIME,
    }
    big = packed(rows[::-1] + rows)
    view = big[len(rows) :]  # a view, not a copy, as fixpack.window gives
    assert [f for rule in RULES for f in rule(WHO, view)] == expected


def test_a_quiet_shift_costs_no_per_fix_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """Walking on a post, GNSS jitter, accuracy moving, 8 h of 5 s fixes: no candidate reaches
    the reference code, and no fix becomes a Python object."""
    rnd = random.Random(7)
    rows: list[Row] = []
    y = x = 0.0
    acc = 5.0
    for k in range(5760):
        y, x = y * 0.9 + rnd.uniform(-3, 3), x * 0.9 + rnd.uniform(-3, 3)
        acc = min(max(acc + rnd.uniform(-0.4, 0.4), 3.0), 12.0)
        rows.append(row(T0 + k * 5000, lat=north(y), lon=LON + x / M_PER_DEG, acc=acc))
    arr = packed(rows)

    def forbidden(*args: object) -> None:
        raise AssertionError("per-fix Python on a quiet shift")

    monkeypatch.setattr(flag_rules, "_implied_speed", forbidden)
    monkeypatch.setattr(flag_rules, "_still_run", forbidden)
    monkeypatch.setattr(flag_rules, "distance_m", forbidden)
    monkeypatch.setattr(flag_rules._Track, "fix", forbidden)
    monkeypatch.setattr(flag_rules._Track, "fixes", forbidden)
    sh = Shift("sh-1", "vol-li", "post-1", T0, T0 + 8 * H, DEV)
    assert shift_flags(sh, result_of(sh, []), arr, [], [], [], []) == []


def test_no_fixes_at_all() -> None:
    empty = np.zeros(0, dtype=FIX_DTYPE)
    assert [rule(WHO, empty) for rule in RULES] == [[], [], []]
    sh = Shift("sh-1", "vol-li", "post-1", T0, T0 + H, DEV)
    assert shift_flags(sh, result_of(sh, []), empty, [], [], [], []) == []
