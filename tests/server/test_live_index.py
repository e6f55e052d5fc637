"""The grid index answers exactly what a scan of every point would, across cell borders; and
``LiveState.nearest`` on top of it filters, sorts and limits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import Fix, Position, PositionBatch, Presence, PresenceKind
from server.ingest import Accepted
from server.live import Candidate, Hub, LiveState
from server.live_index import M_PER_DEG, GridIndex, haversine_m, haversine_np

from .support import T0

LAT0, LON0 = 22.54, 114.05


def brute(points: dict[str, tuple[float, float]], lat: float, lon: float, r: float) -> set[str]:
    return {k for k, (plat, plon) in points.items() if haversine_m(lat, lon, plat, plon) <= r}


def near_border(r: float, points: dict[str, tuple[float, float]], lat: float, lon: float) -> set:
    """Points within a micrometre of the circle: float rounding may put them either side."""
    return {k for k, p in points.items() if abs(haversine_m(lat, lon, *p) - r) < 1e-6}


# Offsets in metres from a centre: a few kilometres, so many cells; coarse steps make points
# land exactly on cell borders and on each other.
metres = st.one_of(
    st.floats(-3000, 3000, allow_nan=False),
    st.integers(-12, 12).map(lambda k: k * 250.0),  # on the borders of 250 m cells
)
point = st.tuples(metres, metres)


def at(lat0: float, lon0: float, north: float, east: float) -> tuple[float, float]:
    return (lat0 + north / M_PER_DEG, lon0 + east / (M_PER_DEG * math.cos(math.radians(lat0))))


@settings(max_examples=300, deadline=None)
@given(
    offsets=st.lists(point, min_size=0, max_size=300),
    moves=st.lists(st.tuples(st.integers(0, 299), point), max_size=60),
    removals=st.lists(st.integers(0, 299), max_size=20),
    scale=st.sampled_from([1.0, 0.1]),  # 0.1: hundreds in one circle, sorted in chunks
    centre=point,
    radius=st.one_of(st.floats(0, 2500, allow_nan=False), st.sampled_from([0.0, 250.0, 600.0])),
    cell_m=st.sampled_from([50.0, 250.0, 1000.0]),
    base=st.sampled_from([(LAT0, LON0), (0.0, 0.0), (-33.9, 151.2), (59.9, 10.7)]),
)
def test_within_matches_brute_force(
    offsets: list[tuple[float, float]],
    moves: list[tuple[int, tuple[float, float]]],
    removals: list[int],
    scale: float,
    centre: tuple[float, float],
    radius: float,
    cell_m: float,
    base: tuple[float, float],
) -> None:
    index = GridIndex(cell_m)
    points: dict[str, tuple[float, float]] = {}
    for k, (n, e) in enumerate(offsets):
        points[f"t{k}"] = at(*base, n * scale, e * scale)
        index.put(f"t{k}", *points[f"t{k}"])
    for k, (n, e) in moves:  # terminals walk: the index must follow them between cells
        if f"t{k}" in points:
            points[f"t{k}"] = at(*base, n * scale, e * scale)
            index.put(f"t{k}", *points[f"t{k}"])
    for k in removals:
        index.remove(f"t{k}")
        points.pop(f"t{k}", None)
    lat, lon = at(*base, centre[0] * scale, centre[1] * scale)

    found = list(index.within(lat, lon, radius))
    ids = [k for k, _ in found]
    assert len(ids) == len(set(ids))
    fuzzy = near_border(radius, points, lat, lon)
    assert set(ids) - fuzzy == brute(points, lat, lon, radius) - fuzzy
    distances = [d for _, d in found]
    assert distances == sorted(distances)
    for k, d in found:
        assert d == pytest.approx(haversine_m(lat, lon, *points[k]), abs=1e-6)
    assert len(index) == len(points)
    # Every point exactly once, filed in the cell it is in now (no stale entry left behind).
    everything = [k for k, _ in index.within(lat, lon, 20_000)]
    assert sorted(everything) == sorted(points)
    for k, p in points.items():
        assert k in [j for j, _ in index.within(*p, 0.001)]


@pytest.mark.parametrize("seed", range(5))
def test_a_crowd_walking_between_cells(seed: int) -> None:
    """Many terminals sharing few cells, moving and leaving at random: every query agrees
    with a scan, and every terminal is filed once, where it is now."""
    rng = np.random.default_rng(seed)
    index = GridIndex(100.0)
    points: dict[str, tuple[float, float]] = {}
    for step in range(3000):
        key = f"t{rng.integers(0, 40)}"
        if rng.random() < 0.1:
            index.remove(key)
            points.pop(key, None)
        else:
            points[key] = at(LAT0, LON0, *rng.uniform(-300, 300, 2).tolist())
            index.put(key, *points[key])
        if step % 50 == 0:
            lat, lon = at(LAT0, LON0, *rng.uniform(-300, 300, 2).tolist())
            radius = float(rng.uniform(0, 400))
            found = [k for k, _ in index.within(lat, lon, radius)]
            assert len(found) == len(set(found))
            assert set(found) == brute(points, lat, lon, radius)
            assert sorted(k for k, _ in index.within(LAT0, LON0, 5000)) == sorted(points)
            assert len(index) == len(points)


def test_points_on_the_corner_of_four_cells() -> None:
    index = GridIndex(100.0, ref_lat=0.0)
    corner = (0.0, 0.0)  # a corner of cells (-1, -1), (-1, 0), (0, -1) and (0, 0)
    d = 1 / M_PER_DEG
    index.put("ne", d, d)
    index.put("nw", d, -d)
    index.put("se", -d, d)
    index.put("sw", -d, -d)
    assert sorted(k for k, _ in index.within(*corner, 2)) == ["ne", "nw", "se", "sw"]
    assert list(index.within(*corner, 1)) == []


def test_put_moves_and_remove_forgets() -> None:
    index = GridIndex(250.0)
    index.put("a", LAT0, LON0)
    assert "a" in index and len(index) == 1
    index.put("a", LAT0 + 0.1, LON0)
    assert list(index.within(LAT0, LON0, 1000)) == []
    assert [k for k, _ in index.within(LAT0 + 0.1, LON0, 1)] == ["a"]
    index.remove("a")
    index.remove("a")
    index.remove("never")
    assert "a" not in index and len(index) == 0
    assert list(index.within(LAT0 + 0.1, LON0, 1)) == []
    index.put("a", LAT0, LON0)
    assert [k for k, _ in index.within(LAT0, LON0, 1)] == ["a"]


def test_many_in_one_circle_come_out_sorted() -> None:
    index = GridIndex(250.0)
    rng = np.random.default_rng(3)
    lats = LAT0 + rng.uniform(-0.005, 0.005, 3000)
    lons = LON0 + rng.uniform(-0.005, 0.005, 3000)
    for k in range(3000):
        index.put(f"t{k}", float(lats[k]), float(lons[k]))
    dist = haversine_np(LAT0, LON0, lats, lons)
    inside = np.flatnonzero(dist <= 400)
    assert len(inside) > 1000
    found = list(index.within(LAT0, LON0, 400))
    assert [k for k, _ in found] == [f"t{k}" for k in inside[np.argsort(dist[inside])]]
    assert np.allclose([d for _, d in found], np.sort(dist[inside]), rtol=0, atol=1e-6)


def test_grows_past_its_first_arrays() -> None:
    index = GridIndex(250.0)
    rng = np.random.default_rng(7)
    lats = LAT0 + rng.uniform(-0.02, 0.02, 1000)
    lons = LON0 + rng.uniform(-0.02, 0.02, 1000)
    for k in range(1000):
        index.put(f"t{k}", float(lats[k]), float(lons[k]))
    dist = haversine_np(LAT0, LON0, lats, lons)
    expected = {f"t{k}" for k in np.flatnonzero(dist <= 800)}
    assert {k for k, _ in index.within(LAT0, LON0, 800)} == expected


def test_a_huge_circle_and_a_polar_cap_still_answer() -> None:
    index = GridIndex(250.0, ref_lat=LAT0)
    index.put("here", LAT0, LON0)
    index.put("pole", 89.9999, 10.0)
    assert [k for k, _ in index.within(LAT0, LON0, 50_000)] == ["here"]
    assert [k for k, _ in index.within(89.99, -170.0, 5_000)] == ["pole"]


def test_empty_index_and_bad_arguments() -> None:
    index = GridIndex()
    assert list(index.within(LAT0, LON0, 600)) == []
    with pytest.raises(ValueError):
        GridIndex(0)
    with pytest.raises(ValueError):
        index.put("a", 91.0, 0.0)


def test_haversine_numpy_agrees_with_scalar() -> None:
    lats = np.array([22.5, 22.6, -10.0])
    lons = np.array([114.0, 114.1, 20.0])
    got = haversine_np(LAT0, LON0, lats, lons)
    for k in range(3):
        assert got[k] == pytest.approx(haversine_m(LAT0, LON0, lats[k], lons[k]), rel=1e-12)


NOW = T0 + 1_000_000
ON_POST = ("shift-1", "bar", "on_post")


def accepted(device: str, seq: int, message: Position | PositionBatch | Presence) -> Accepted:
    return Accepted(device, seq, message, NOW)


class Clock:
    def __call__(self) -> float:
        return NOW / 1000


# --- LiveState.nearest: the index behind the dispatch panel ---------------------------------------

M = 1 / 111_195  # degrees of latitude per metre, near enough


def placed(live: LiveState, device: str, north_m: float, **kw: Any) -> None:
    age_ms = kw.pop("age_ms", 1000)
    received = kw.pop("received_ms", NOW)
    f = Fix(time_ms=NOW - age_ms, lat=22.54 + north_m * M, lon=114.05, speed_mps=0.0)
    live.apply([Accepted(device, 1, Position(fix=f), received)])


def test_nearest_filters_sorts_and_limits() -> None:
    live = LiveState(Hub(), clock=Clock())
    for k, name in enumerate(["near", "mid", "far", "out"]):
        placed(live, name, [10, 100, 300, 700][k])
    placed(live, "stale", 20, age_ms=150_001)
    placed(live, "silent", 30, received_ms=NOW - 150_001)
    placed(live, "sos", 40)
    placed(live, "busy", 50)
    placed(live, "off", 60)
    placed(live, "elsewhere", 70)
    everyone = [
        "near", "mid", "far", "out", "stale", "silent", "sos", "busy", "off", "elsewhere"
    ]  # fmt: skip
    live.set_duty({d: ON_POST for d in everyone if d != "off"})
    live.set_directory({d: "ns-s1" if d == "elsewhere" else "ft-s1" for d in everyone}, {})
    live.set_sos("sos", NOW)
    live.set_engaged("busy", "d1")
    gone = Presence(kind=PresenceKind.OFFLINE)
    placed(live, "will", 5)
    live.set_duty({d: ON_POST for d in [*everyone, "will"] if d != "off"})
    live.apply([accepted("will", 0, gone)])

    def names(**kw: Any) -> list[str]:
        return [c.device_id for c in live.nearest(22.54, 114.05, 600, **kw)]

    assert names() == ["near", "elsewhere", "mid", "far"]
    assert names(units={"ft-s1"}) == ["near", "mid", "far"]
    assert names(units=set()) == []
    assert names(limit=2) == ["near", "elsewhere"]
    assert names(exclude_engaged=False) == ["near", "busy", "elsewhere", "mid", "far"]
    assert names(on_duty_only=False) == ["near", "off", "elsewhere", "mid", "far"]
    assert "stale" in names(max_fix_age_s=200)
    [first, *_] = live.nearest(22.54, 114.05, 600)
    assert first.distance_m == pytest.approx(10, abs=0.05)
    assert first.doc["device"] == "near" and first.doc["status"] == "on_post"
    assert live.nearest(22.54, 114.05, 5) == []
    with pytest.raises(ValueError, match="radius"):
        live.nearest(22.54, 114.05, -1)


def test_nearest_follows_the_marker() -> None:
    live = LiveState(Hub(), clock=Clock())
    placed(live, "a", 0, age_ms=5000)
    live.set_duty({"a": ON_POST})
    assert [c.device_id for c in live.nearest(22.54, 114.05, 50)] == ["a"]
    # Moves 2 km north: found there, no longer here.
    f = Fix(time_ms=NOW - 1000, lat=22.54 + 2000 * M, lon=114.05)
    live.apply([accepted("a", 2, Position(fix=f))])
    assert live.nearest(22.54, 114.05, 50) == []
    assert [c.device_id for c in live.nearest(f.lat, f.lon, 50)] == ["a"]
    # Backfill of older fixes does not move it back, in the index either.
    old = Fix(time_ms=NOW - 4000, lat=22.54, lon=114.05)
    live.apply([accepted("a", 3, PositionBatch(fixes=(old,)))])
    assert live.nearest(22.54, 114.05, 50) == []


def test_candidate_validates() -> None:
    with pytest.raises(ValueError):
        Candidate("a", -1.0, {})
    with pytest.raises(ValueError):
        Candidate("", 1.0, {})
