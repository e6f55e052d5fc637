"""The simulated receiver: repeatable, stays on patrol near its post, walks at walking speed."""

from __future__ import annotations

import itertools
import math

import pytest

from agent.sim_gps import SimulatedWalker, distance_m, offset
from protocol import Fix, FixSource

POST = (22.5431, 114.0579)
T0 = 1_763_900_000_000


def walk(walker: SimulatedWalker, n: int, step_ms: int = 1000) -> list[Fix]:
    return [walker.read(T0 + k * step_ms) for k in range(n)]


def test_same_seed_same_walk() -> None:
    a = walk(SimulatedWalker(*POST, seed=7), 300)
    b = walk(SimulatedWalker(*POST, seed=7), 300)
    assert a == b


def test_different_seeds_differ() -> None:
    a = walk(SimulatedWalker(*POST, seed=1), 50)
    b = walk(SimulatedWalker(*POST, seed=2), 50)
    assert [(f.lat, f.lon) for f in a] != [(f.lat, f.lon) for f in b]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("radius_m", [20.0, 150.0])
def test_stays_within_radius_of_the_post(seed: int, radius_m: float) -> None:
    walker = SimulatedWalker(*POST, radius_m=radius_m, seed=seed)
    for f in walk(walker, 2000, step_ms=2000):
        # 1e-7° quantisation is about a centimetre; allow a little more for the projection.
        assert distance_m(*POST, f.lat, f.lon) <= radius_m + 0.5


@pytest.mark.parametrize("step_ms", [200, 1000, 5000, 60_000])
def test_never_faster_than_configured(step_ms: int) -> None:
    speed = 1.3
    walker = SimulatedWalker(*POST, speed_mps=speed, seed=5)
    fixes = walk(walker, 500, step_ms=step_ms)
    moved_at_all = False
    for before, after in itertools.pairwise(fixes):
        assert after.speed_mps is not None and after.speed_mps <= speed
        dt = (after.time_ms - before.time_ms) / 1000
        moved = distance_m(before.lat, before.lon, after.lat, after.lon)
        moved_at_all = moved_at_all or moved > 0
        assert moved <= speed * dt + 0.05, f"{moved:.2f} m in {dt} s"
    assert moved_at_all


def test_fixes_are_valid_simulated_fixes() -> None:
    walker = SimulatedWalker(*POST, seed=3)
    for f in walk(walker, 100):
        assert f.source is FixSource.SIMULATED
        assert f.accuracy_m is not None and 3 <= f.accuracy_m <= 12
        assert f.course_deg is not None and 0 <= f.course_deg < 360
        assert f.satellites is not None and 6 <= f.satellites <= 14


def test_clock_going_backwards_does_not_move_the_walker_backwards_in_time() -> None:
    walker = SimulatedWalker(*POST, seed=4)
    first = walker.read(T0 + 10_000)
    again = walker.read(T0)  # an earlier time: dt is clamped to zero
    assert distance_m(first.lat, first.lon, again.lat, again.lon) < 0.05


@pytest.mark.parametrize(
    ("north", "east"), [(0.0, 0.0), (100.0, 0.0), (0.0, -100.0), (-120.0, 90.0), (300.0, 400.0)]
)
def test_offset_and_distance_agree(north: float, east: float) -> None:
    lat, lon = offset(*POST, north, east)
    expected = math.hypot(north, east)
    assert distance_m(*POST, lat, lon) == pytest.approx(expected, rel=1e-3, abs=1e-6)


def test_offset_directions() -> None:
    lat, lon = offset(*POST, 100.0, 0.0)
    assert lat > POST[0] and lon == pytest.approx(POST[1])
    lat, lon = offset(*POST, 0.0, 100.0)
    assert lon > POST[1] and lat == pytest.approx(POST[0])


def test_distance_is_symmetric_and_zero_on_itself() -> None:
    other = (22.55, 114.06)
    assert distance_m(*POST, *POST) == 0.0
    assert distance_m(*POST, *other) == pytest.approx(distance_m(*other, *POST))
    # One degree of latitude is about 111.2 km on a 6371 km sphere.
    assert distance_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(111_195, rel=1e-3)


def test_go_to_walks_straight_there_stays_then_resumes_patrol() -> None:
    walker = SimulatedWalker(*POST, radius_m=100, speed_mps=2.0, seed=3)
    walk(walker, 5)
    scene = offset(*POST, 400.0, -300.0)  # 500 m away, outside the patrol area
    walker.go_to(*scene)
    fixes = [walker.read(T0 + (5 + k) * 1000) for k in range(400)]
    arrived = next(i for i, f in enumerate(fixes) if distance_m(f.lat, f.lon, *scene) < 1.0)
    assert 240 <= arrived <= 320  # ~500-600 m at 2 m/s, in a straight line
    assert all(distance_m(f.lat, f.lon, *scene) < 1.0 for f in fixes[arrived:])
    assert fixes[-1].speed_mps == 0.0
    walker.resume()
    later = [walker.read(T0 + (405 + k) * 1000) for k in range(600)]
    assert distance_m(later[-1].lat, later[-1].lon, *POST) <= 101
