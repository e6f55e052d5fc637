"""Records to JSON and back: every kind round-trips, fences for any valid geometry, and a bad
document is refused naming its field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.duty.geo import Circle, Corridor, Fence, Polygon
from server.org.codec import Kind, Record, from_json, id_of, kind_of, to_json
from server.org.model import (
    OrgError,
    Post,
    PostKind,
    PostMode,
    Roster,
    Rotation,
    Shift,
    ShiftRole,
    Terminal,
    TerminalKind,
    Unit,
    UnitLevel,
    Volunteer,
    VolunteerKind,
)

from .support import BAR, PARK, ROUTE

EXAMPLES: list[Record] = [
    Unit("sz", "深圳市", UnitLevel.CITY),
    Unit("ft-s1-g1", "一级网格", UnitLevel.GRID, "ft-s1"),
    Volunteer("li", "李", "ft-s1-g1", VolunteerKind.DUTY, "13800000001"),
    Volunteer("wang", "王", "ft-s1"),
    Terminal("t-1", "ft-s1", TerminalKind.BODYCAM, "li"),
    Terminal("t-2", "ft-s1"),
    BAR,
    ROUTE,
    PARK,
    Shift("s1", "li", "bar", 1_772_798_400_000, 1_772_820_000_000, "t-1", ShiftRole.CAPTAIN, "r"),
    Shift("s2", "wang", "bar", 1_772_798_400_000, 1_772_820_000_000),
    Roster("r", "bar", ("li", "wang"), "20:00", "02:00", (4, 5), Rotation.WEEKLY_ONE, "2026-03-02"),
    Roster("r2", "bar", ("li",), "08:00", "12:00", name="早班", tz="Asia/Urumqi"),
]


def round_trip(record: Record) -> Record:
    doc = json.loads(json.dumps(to_json(record)))
    return from_json(kind_of(record), doc, id=id_of(record))


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: f"{kind_of(r)}-{id_of(r)}")
def test_every_kind_round_trips(record: Record) -> None:
    assert round_trip(record) == record


lat = st.floats(min_value=-89.0, max_value=89.0, allow_nan=False)
lon = st.floats(min_value=-180.0, max_value=180.0, allow_nan=False)
point = st.tuples(lat, lon)
circles = st.builds(Circle, lat, lon, st.floats(min_value=0.01, max_value=50_000.0))
polygons = st.lists(point, min_size=3, max_size=30, unique=True).map(
    lambda pts: Polygon(tuple(pts))
)
corridors = st.builds(
    Corridor,
    st.lists(point, min_size=2, max_size=30).map(tuple),
    st.floats(min_value=0.01, max_value=5_000.0),
)


@given(st.one_of(circles, polygons, corridors), st.sampled_from(PostKind))
def test_posts_round_trip_with_any_fence(fence: Fence, kind: PostKind) -> None:
    mode = PostMode.FIXED if isinstance(fence, Circle) else PostMode.PATROL
    post = Post("p-1", "post", kind, "ft-s1", fence, mode)
    assert round_trip(post) == post


def test_a_post_without_mode_is_a_patrol_only_along_a_route() -> None:
    doc: dict[str, Any] = {"name": "x", "kind": "duty_point", "unit_id": "u"}
    route = to_json(ROUTE)["fence"]
    bar = to_json(BAR)["fence"]
    park = to_json(PARK)["fence"]
    assert from_json("posts", doc | {"fence": route}, id="p").mode is PostMode.PATROL  # type: ignore[union-attr]
    assert from_json("posts", doc | {"fence": bar}, id="p").mode is PostMode.FIXED  # type: ignore[union-attr]
    assert from_json("posts", doc | {"fence": park}, id="p").mode is PostMode.FIXED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "doc", "field"),
    [
        ("units", [], "body"),
        ("units", {"name": "x"}, "level"),
        ("units", {"name": "x", "level": "province"}, "level"),
        ("units", {"name": "x", "level": "district", "parent": "sz"}, "parent"),
        ("units", {"name": "x", "level": "district"}, "parent_id"),
        ("units", {"unit_id": "other", "name": "x", "level": "city"}, "unit_id"),
        ("units", {"name": 5, "level": "city"}, "name"),
        ("volunteers", {"name": "x"}, "unit_id"),
        ("volunteers", {"name": "x", "unit_id": "u", "kind": "paid"}, "kind"),
        ("volunteers", {"name": "x", "unit_id": "u", "phone": 138}, "phone"),
        ("terminals", {"unit_id": "u", "holder": "not an id"}, "holder"),
        ("posts", {"name": "x", "kind": "duty_point", "unit_id": "u"}, "fence"),
        (
            "posts",
            {"name": "x", "kind": "duty_point", "unit_id": "u", "fence": {"type": "circle"}},
            "fence.lat",
        ),
        (
            "posts",
            {
                "name": "x",
                "kind": "duty_point",
                "unit_id": "u",
                "fence": {"type": "circle", "lat": 22.5, "lon": 114.0, "radius_m": -1},
            },
            "fence.radius_m",
        ),
        (
            "posts",
            {
                "name": "x",
                "kind": "duty_point",
                "unit_id": "u",
                "fence": {"type": "polygon", "points": [[22.5, 114], [22.6, 114], [91, 114]]},
            },
            "fence.points[2]",
        ),
        (
            "shifts",
            {"volunteer_id": "v", "post_id": "p", "start_ms": 1.5e12, "end_ms": 2},
            "start_ms",
        ),
        ("shifts", {"volunteer_id": "v", "post_id": "p", "start_ms": 1000}, "end_ms"),
        (
            "rosters",
            {"post_id": "p", "members": "li", "start": "20:00", "end": "02:00"},
            "members",
        ),
        (
            "rosters",
            {
                "post_id": "p",
                "members": ["li"],
                "start": "20:00",
                "end": "02:00",
                "weekdays": [True],
            },
            "weekdays",
        ),
        ("rosters", {"post_id": "p", "members": ["li"], "start": 2000, "end": "02:00"}, "start"),
        ("rosters", {"post_id": "p", "members": ["li"], "start": "8:00", "end": "02:00"}, "start"),
        ("incidents", {}, "kind"),
    ],
)
def test_bad_documents_name_the_field(kind: str, doc: object, field: str) -> None:
    with pytest.raises(OrgError) as e:
        from_json(kind, doc, id="x-1")
    assert e.value.field == field


def test_kinds_are_the_url_names() -> None:
    assert [str(k) for k in Kind] == [
        "units",
        "volunteers",
        "terminals",
        "posts",
        "shifts",
        "rosters",
    ]
    assert {kind_of(r) for r in EXAMPLES} == set(Kind)
