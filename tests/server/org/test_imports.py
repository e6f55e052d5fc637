"""Bulk import: good files, every kind of row error with its row number, all or nothing, the
GeoJSON coordinate order, limits and scope."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from server.duty.geo import Circle, Corridor, Polygon
from server.org import imports
from server.org.imports import ImportRefused, RowError, import_csv, import_geojson
from server.org.model import PostMode, ShiftRole, Unit, UnitLevel
from server.org.store import OrgStore

from .support import ISSUED_MS, local_ms

AT = ISSUED_MS + 86_400_000


def test_units_may_refer_to_parents_earlier_in_the_file(store: OrgStore) -> None:
    text = (
        "unit_id,name,level,parent_id\r\n"
        "sz,深圳市,city,\r\n"
        "ft,福田区,district,sz\r\n"
        "ft-s1,福田派出所,station,ft\r\n"
        "ft-s1-g1,一级网格,grid,ft-s1\r\n"
    )
    report = import_csv(store, "units", "\ufeff" + text, at_ms=AT)  # with Excel's BOM
    assert report.errors == [] and (report.created, report.updated, report.rows) == (4, 0, 4)
    assert store.ancestors("ft-s1-g1") == ["sz", "ft", "ft-s1"]
    again = import_csv(store, "units", text.replace("福田区", "福田"), at_ms=AT)
    assert (again.created, again.updated) == (0, 4)
    assert store.unit("ft") == Unit("ft", "福田", UnitLevel.DISTRICT, "sz")


def test_every_bad_row_is_reported_and_nothing_is_imported(org: OrgStore) -> None:
    text = (
        "unit_id,name,level,parent_id\n"
        "ft-s3,新站,station,ft\n"  # 1: good
        "ft-s4,新站,precinct,ft\n"  # 2: no such level
        "ft-s5,新站,station,nowhere\n"  # 3: unknown parent
        "ft-s6,新站,station\n"  # 4: a cell short
        "\n"  # 5: blank, skipped but counted
        "ft-s3,again,station,ft\n"  # 6: the same id twice
        "ft-s7,,station,ft\n"  # 7: empty name
        "ft-s8,station under a city,station,sz\n"  # 8: wrong parent level
        'bad id,"quoted, with a comma",station,ft\n'  # 9: not an id
        "ft-s9,新站,grid,ft-s3\n"  # 10: good, under the row 1 unit
        "ft-s1-g2,二级网格,grid,ft-s1-g1\n"  # 11: good
        "ft-s1-g1,网格,grid,ft-s1-g2\n"  # 12: a cycle
    )
    report = import_csv(org, "units", text, at_ms=AT)
    assert [(e.row, e.field) for e in report.errors] == [
        (2, "level"),
        (3, "parent_id"),
        (4, "row"),
        (6, "unit_id"),
        (7, "name"),
        (8, "parent_id"),
        (9, "unit_id"),
        (12, "parent_id"),
    ]
    assert "'precinct'" in report.errors[0].message
    assert report.errors[1].message == "no unit 'nowhere'"
    assert report.errors[2].message == "3 cells; the header has 4"
    assert report.errors[3].message == "'ft-s3' is also in row 1"
    assert "cycle" in report.errors[7].message
    assert (report.created, report.updated, report.ok) == (0, 0, False)
    assert org.unit("ft-s3") is None and org.unit("ft-s9") is None
    assert org.unit("ft-s1-g1") == Unit("ft-s1-g1", "一级网格", UnitLevel.GRID, "ft-s1")
    assert report.to_json()["errors"][0] == {
        "row": 2,
        "field": "level",
        "message": report.errors[0].message,
    }


def test_header_errors_are_row_zero(store: OrgStore) -> None:
    report = import_csv(store, "volunteers", "volunteer_id,Name,unit,phone\n", at_ms=AT)
    assert report.errors == [
        RowError(0, "unit_id", "missing column"),
        RowError(0, "unit", "unknown column"),
    ]
    assert import_csv(store, "volunteers", "", at_ms=AT).errors[0] == RowError(
        0, "volunteer_id", "missing column"
    )


def test_volunteers_and_terminals(org: OrgStore) -> None:
    report = import_csv(
        org,
        "volunteers",
        "volunteer_id,name,unit_id,kind,phone\n"
        "zhao,赵,ft-s2,duty,13900000000\n"
        "qian,钱,ft-s2,,\n"
        "sun,孙,ft-s2,paid,\n",
        at_ms=AT,
    )
    assert report.errors == [
        RowError(3, "kind", "'paid': one of duty, voluntary"),
    ]
    report = import_csv(
        org,
        "volunteers",
        "volunteer_id,name,unit_id,kind,phone\nzhao,赵,ft-s2,duty,13900000000\nqian,钱,ft-s2,,\n",
        at_ms=AT,
    )
    assert report.ok and report.created == 2
    assert org.volunteer("qian").kind == "voluntary"  # type: ignore[union-attr]
    report = import_csv(
        org,
        "terminals",
        "device_id,unit_id,kind,holder\n"
        "t-3,ft-s2,bodycam,zhao\n"
        "t-1,ft-s1,handheld,qian\n"  # li hands t-1 over to qian
        "t-4,ft-s2,,zhao\n",  # zhao already holds t-3 (from row 1)
        at_ms=AT,
    )
    assert report.errors == [
        RowError(
            3,
            "holder",
            "'zhao' already holds terminal 't-3' "
            "(a volunteer holds at most one phone and one other terminal)",
        )
    ]
    report = import_csv(
        org,
        "terminals",
        "device_id,unit_id,kind,holder\nt-3,ft-s2,bodycam,zhao\nt-1,ft-s1,handheld,qian\n",
        at_ms=AT,
    )
    assert (report.created, report.updated) == (1, 1)
    assert org.holdings("t-1") == [("li", ISSUED_MS, AT), ("qian", AT, None)]


def test_posts_from_csv(org: OrgStore) -> None:
    polygon = json.dumps(
        {"type": "polygon", "points": [[22.5, 114.0], [22.5, 114.1], [22.6, 114.1]]}
    )
    corridor = json.dumps(
        {"type": "corridor", "points": [[22.5, 114.0], [22.6, 114.0]], "half_width_m": 20}
    )
    quoted = '"' + polygon.replace('"', '""') + '"'
    quoted_route = '"' + corridor.replace('"', '""') + '"'
    text = (
        "post_id,name,kind,unit_id,mode,lat,lon,radius_m,fence\n"
        "gate,大门,duty_point,ft-s2,,22.54,114.05,30,\n"
        f"yard,院子,internal_prevention,ft-s2,,,,,{quoted}\n"
        f"walk,巡段,patrol_segment,ft-s2,,,,,{quoted_route}\n"
        f"grid,网格,key_prevention_area,ft-s2,patrol,,,,{quoted}\n"
    )
    report = import_csv(org, "posts", text, at_ms=AT)
    assert report.errors == [] and report.created == 4
    assert org.post("gate").fence == Circle(22.54, 114.05, 30)  # type: ignore[union-attr]
    assert isinstance(org.post("yard").fence, Polygon)  # type: ignore[union-attr]
    walk = org.post("walk")
    assert isinstance(walk.fence, Corridor) and walk.mode is PostMode.PATROL  # type: ignore[union-attr]
    assert org.post("grid").mode is PostMode.PATROL  # type: ignore[union-attr]

    bad = (
        "post_id,name,kind,unit_id,mode,lat,lon,radius_m,fence\n"
        f"a,A,duty_point,ft-s2,,22.5,114.0,30,{quoted}\n"  # both
        "b,B,duty_point,ft-s2,,22.5,114.0,,\n"  # no radius
        "c,C,duty_point,ft-s2,,north,114.0,30,\n"  # not a number
        "d,D,duty_point,ft-s2,,95,114.0,30,\n"  # off the globe
        "e,E,duty_point,ft-s2,,,,,{not json\n"  # bad JSON
        "f,F,duty_point,ft-s2,,,,,\n"  # no fence
        f"g,G,duty_point,ft-s2,fixed,,,,{quoted_route}\n"  # a fixed route
        "h,H,duty_point,ft-s2,,22.5,114.0,0,\n"  # zero radius
    )
    report = import_csv(org, "posts", bad, at_ms=AT)
    assert [(e.row, e.field) for e in report.errors] == [
        (1, "fence"),
        (2, "radius_m"),
        (3, "lat"),
        (4, "lat"),
        (5, "fence"),
        (6, "fence"),
        (7, "fence"),
        (8, "radius_m"),
    ]
    assert org.post("h") is None


def test_shifts_from_csv(org: OrgStore) -> None:
    text = (
        "shift_id,volunteer_id,post_id,start,end,role\n"
        "n1,li,bar,2026-03-06T20:00+08:00,2026-03-07T02:00+08:00,captain\n"
        f"n2,wang,bar,{local_ms('2026-03-06 20:00')},{local_ms('2026-03-07 02:00')},\n"
    )
    report = import_csv(org, "shifts", text, at_ms=AT)
    assert report.ok and report.created == 2
    n1 = org.shift("n1")
    assert n1 is not None and n1.device_id == "t-1" and n1.role is ShiftRole.CAPTAIN
    assert (n1.start_ms, n1.end_ms) == (local_ms("2026-03-06 20:00"), local_ms("2026-03-07 02:00"))
    assert org.shift("n2").device_id is None  # type: ignore[union-attr]

    bad = (
        "shift_id,volunteer_id,post_id,start,end,device_id\n"
        "m1,chen,park,2026-03-06 20:00,2026-03-07T02:00+08:00,\n"  # no offset
        "m2,chen,park,2026-03-06T20:00+08:00,2026-03-06T19:00+08:00,\n"  # ends before
        "m3,chen,park,soon,2026-03-06T19:00+08:00,\n"
        "m4,chen,park,2026-03-06T20:00+08:00,2026-03-07T02:00+08:00,t-2\n"  # good
        "m5,chen,park,2026-03-07T01:00+08:00,2026-03-07T03:00+08:00,\n"  # overlaps m4
        "m6,ghost,park,2026-03-06T20:00+08:00,2026-03-07T02:00+08:00,\n"
        "m7,li,bar,2026-03-06T21:00+08:00,2026-03-06T23:00+08:00,\n"  # overlaps n1
    )
    report = import_csv(org, "shifts", bad, at_ms=AT)
    assert [(e.row, e.field) for e in report.errors] == [
        (1, "start"),
        (2, "end"),
        (3, "start"),
        (5, "start"),
        (6, "volunteer_id"),
        (7, "start"),
    ]
    assert "+08:00" in report.errors[0].message
    assert "'m4'" in report.errors[3].message and "'n1'" in report.errors[5].message
    assert org.shift("m4") is None


def feature(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    base = {"post_id": "p-1", "name": "post", "kind": "duty_point", "unit_id": "ft-s2"}
    return {"type": "Feature", "geometry": geometry, "properties": base | props}


def collection(*features: dict[str, Any]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def test_geojson_posts_swap_lon_lat(org: OrgStore) -> None:
    text = collection(
        feature({"type": "Point", "coordinates": [114.0579, 22.5431]}, post_id="gate", radius_m=40),
        feature(
            {
                "type": "Polygon",
                "coordinates": [
                    [[113.93, 22.53], [113.94, 22.53], [113.94, 22.54], [113.93, 22.53]]
                ],
            },
            post_id="yard",
        ),
        feature(
            {"type": "LineString", "coordinates": [[114.05, 22.54, 12.0], [114.06, 22.55, 13.0]]},
            post_id="walk",
            half_width_m=25,
            kind="patrol_segment",
        ),
    )
    report = import_geojson(org, text, at_ms=AT)
    assert report.errors == [] and report.created == 3
    assert org.post("gate").fence == Circle(22.5431, 114.0579, 40)  # type: ignore[union-attr]
    # The closing point is dropped; every point is (lat, lon).
    assert org.post("yard").fence.points == ((22.53, 113.93), (22.53, 113.94), (22.54, 113.94))  # type: ignore[union-attr]
    walk = org.post("walk")
    assert walk is not None and walk.mode is PostMode.PATROL
    assert walk.fence == Corridor(((22.54, 114.05), (22.55, 114.06)), 25)


def test_geojson_errors_name_the_feature_and_where_in_it(org: OrgStore) -> None:
    ring = [[113.93, 22.53], [113.94, 22.53], [113.94, 22.54]]
    text = collection(
        feature({"type": "Point", "coordinates": [114.0, 22.5]}, post_id="a"),  # 1: no radius
        feature({"type": "Polygon", "coordinates": [ring, ring]}, post_id="b"),  # 2: a hole
        feature({"type": "MultiPolygon", "coordinates": [[ring]]}, post_id="c"),  # 3
        feature({"type": "Point", "coordinates": [22.5, 114.0]}, post_id="d", radius_m=9),  # 4
        feature({"type": "LineString", "coordinates": [[114, 22.5]]}, post_id="e", half_width_m=9),
        feature({"type": "Point", "coordinates": [114.0, 22.5]}, post_id="f", radius_m=9, fid=3),
        {"type": "Feature", "geometry": None, "properties": {"name": "no id"}},  # 7
        feature({"type": "Point", "coordinates": [114.0, 22.5]}, post_id="h", radius_m=-1),  # 8
        feature({"type": "Point", "coordinates": [114.0, 22.5]}, post_id="i", radius_m=9),  # good
    )
    report = import_geojson(org, text, at_ms=AT)
    assert [(e.row, e.field) for e in report.errors] == [
        (1, "properties.radius_m"),
        (2, "geometry.coordinates"),
        (3, "geometry.type"),
        (4, "geometry.coordinates"),  # lat 114: given as [lat, lon] by mistake
        (5, "geometry.coordinates"),
        (6, "properties.fid"),
        (7, "properties.post_id"),
        (8, "properties.radius_m"),
    ]
    assert "lat 114" in report.errors[3].message
    assert org.post("i") is None
    assert import_geojson(org, "[]", at_ms=AT).errors == [
        RowError(0, "type", "expected a GeoJSON FeatureCollection")
    ]
    assert import_geojson(org, "{", at_ms=AT).errors[0].field == "file"


def test_limits_refuse_the_file(store: OrgStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "MAX_ROWS", 3)
    header = "unit_id,name,level,parent_id\n"
    ok = import_csv(store, "units", header + "a,A,city,\nb,B,city,\nc,C,city,\n", at_ms=AT)
    assert ok.ok and ok.created == 3
    with pytest.raises(ImportRefused, match="more than 3 rows"):
        import_csv(store, "units", header + "d,D,city,\n" * 4, at_ms=AT)
    assert store.unit("d") is None
    with pytest.raises(ImportRefused, match="more than 3 features"):
        import_geojson(store, collection(*[feature({})] * 4), at_ms=AT)
    monkeypatch.setattr(imports, "MAX_BYTES", 100)
    with pytest.raises(ImportRefused, match="larger than"):
        import_csv(store, "units", header + "x" * 100, at_ms=AT)
    with pytest.raises(ImportRefused, match="no CSV import for rosters"):
        import_csv(store, "rosters", header, at_ms=AT)


def test_a_scoped_import_stays_in_its_subtree(org: OrgStore) -> None:
    text = (
        "volunteer_id,name,unit_id\n"
        "zhao,赵,ft-s1-t1\n"  # inside ft-s1
        "qian,钱,ns-s1\n"  # outside
        "chen,陈,ft-s1\n"  # moving someone in from outside
    )
    report = import_csv(org, "volunteers", text, at_ms=AT, scope="ft-s1")
    assert report.errors == [
        RowError(2, "unit_id", "'ns-s1' is outside your scope ('ft-s1')"),
        RowError(3, "unit_id", "'ns-s1' is outside your scope ('ft-s1')"),
    ]
    units = "unit_id,name,level,parent_id\nft-s1-g2,二级,grid,ft-s1-g1\ngz,广州,city,\n"
    report = import_csv(org, "units", units, at_ms=AT, scope="ft-s1")
    assert report.errors == [
        RowError(2, "parent_id", "the top of the tree is outside your scope ('ft-s1')")
    ]


def test_the_examples_in_the_docs_import(store: OrgStore) -> None:
    doc = (Path(__file__).parents[3] / "docs" / "import.md").read_text()
    blocks = re.findall(r"```(csv|json)\n(.*?)```", doc, re.S)
    csvs = [text for lang, text in blocks if lang == "csv"]
    for kind, text in zip(
        ("units", "volunteers", "terminals", "posts", "shifts"), csvs, strict=True
    ):
        report = import_csv(store, kind, text, at_ms=AT)
        assert report.ok, (kind, report.errors)
    geojson = [text for lang, text in blocks if lang == "json"][-1]
    report = import_geojson(store, geojson, at_ms=AT)
    assert report.ok and report.updated == 3, report.errors
    assert store.post("gate").fence == Circle(22.5431, 114.0579, 30)  # type: ignore[union-attr]
