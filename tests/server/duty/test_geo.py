"""Fences: validation names the field; the scalar and the NumPy tests agree bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.duty.geo import (
    Circle,
    Corridor,
    FenceError,
    Polygon,
    fence_from_json,
    fence_to_json,
)

LAT0, LON0 = 22.5333, 114.0550
M = 1 / 111_194.92664455873

SQUARE = Polygon(
    ((LAT0, LON0), (LAT0 + 100 * M, LON0), (LAT0 + 100 * M, LON0 + 0.001), (LAT0, LON0 + 0.001))
)
FENCES = [
    Circle(LAT0, LON0, 50.0),
    SQUARE,
    Polygon(((LAT0, LON0), (LAT0 + 80 * M, LON0 + 0.0005), (LAT0 + 10 * M, LON0 + 0.0009))),
    Corridor(((LAT0, LON0), (LAT0 + 200 * M, LON0), (LAT0 + 200 * M, LON0 + 0.002)), 15.0),
]


def test_circle_counts_the_accuracy() -> None:
    c = Circle(LAT0, LON0, 50.0)
    assert c.contains(LAT0 + 49 * M, LON0, 0.0)
    assert not c.contains(LAT0 + 70 * M, LON0, 0.0)
    assert c.contains(LAT0 + 70 * M, LON0, 30.0)  # the accuracy circle touches the post


def test_polygon_inside_edges_and_allowance() -> None:
    assert SQUARE.contains(LAT0 + 50 * M, LON0 + 0.0005, 0.0)
    assert not SQUARE.contains(LAT0 + 120 * M, LON0 + 0.0005, 0.0)
    assert SQUARE.contains(LAT0 + 120 * M, LON0 + 0.0005, 25.0)
    closed = Polygon([*SQUARE.points, SQUARE.points[0]])  # GeoJSON repeats the first point
    assert closed.points == SQUARE.points


def test_corridor_follows_the_route() -> None:
    route = FENCES[3]
    assert route.contains(LAT0 + 100 * M, LON0, 0.0)
    assert not route.contains(LAT0 + 100 * M, LON0 + 0.001, 0.0)  # ~100 m off the route


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"type": "circle", "lat": 91, "lon": 0, "radius_m": 5}, "center"),
        ({"type": "circle", "lat": 0, "lon": 0, "radius_m": -5}, "radius_m"),
        ({"type": "circle", "lat": 0, "lon": 0}, "fence.radius_m"),
        ({"type": "polygon", "points": [[0, 0], [1, 1]]}, "points"),
        ({"type": "polygon", "points": [[0, 0], [1, 1], "x"]}, "points[2]"),
        ({"type": "corridor", "points": [[0, 0], [0, 1]], "half_width_m": float("nan")},
         "half_width_m"),
        ({"type": "hexagon"}, "fence.type"),
        ([1, 2], "fence"),
    ],
)
def test_bad_fences_name_the_field(doc: object, field: str) -> None:
    with pytest.raises(FenceError) as info:
        fence_from_json(doc)
    assert info.value.field == field


@pytest.mark.parametrize("fence", FENCES)
def test_json_round_trip(fence: Circle | Polygon | Corridor) -> None:
    assert fence_from_json(fence_to_json(fence)) == fence


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-300, 300, allow_nan=False),
            st.floats(-300, 300, allow_nan=False),
            st.floats(0, 100, allow_nan=False),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_scalar_and_vector_agree_bit_for_bit(points: list[tuple[float, float, float]]) -> None:
    lat = np.array([LAT0 + dy * M for dy, _, _ in points])
    lon = np.array([LON0 + dx * M for _, dx, _ in points])
    acc = np.array([a for _, _, a in points])
    for fence in FENCES:
        many = fence.contains_many(lat, lon, acc)
        one = [fence.contains(float(a), float(b), float(c)) for a, b, c in zip(lat, lon, acc,
                                                                               strict=True)]
        assert many.tolist() == one
