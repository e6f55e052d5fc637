"""The organisation's REST API through aiohttp's test client: roles, scope (404 out of scope
for reads, 403 for writes), errors naming the field, roster generation and imports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.org.store import OrgStore
from server.sqlite_store import SqliteStore
from server.web import org_routes
from server.web.access import Principal, Role
from server.web.keys import ORG
from tests.server.support import api_app

from .support import ISSUED_MS, build, local_ms

NOW_MS = ISSUED_MS + 86_400_000
TOKENS = {
    "admin": Principal("Admin", Role.ADMIN),
    "admin-ft-s1": Principal("Station admin", Role.ADMIN, "ft-s1"),
    "officer-ft": Principal("Officer Li", Role.OFFICER, "ft"),
    "officer-all": Principal("Officer Zhou", Role.OFFICER),
    "inspector-ns": Principal("Inspector Wang", Role.INSPECTOR, "ns"),
    "inspector-gone": Principal("Inspector Ma", Role.INSPECTOR, "deleted-unit"),
    "volunteer": Principal("Volunteer Chen", Role.VOLUNTEER),
}

Client = TestClient[web.Request, web.Application]
Body = Callable[[Client, OrgStore], Awaitable[None]]


def run(tmp_path: Path, body: Body) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        org = OrgStore(tmp_path / "org.db")
        build(org)
        app = api_app(
            tmp_path,
            store,
            TOKENS,
            routes=[org_routes.routes],
            services={ORG: org},
            clock=lambda: NOW_MS / 1000,
        )
        try:
            async with TestClient(TestServer(app)) as client:
                await body(client, org)
        finally:
            org.close()
            store.close()

    asyncio.run(main())


def as_(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


async def get_json(client: Client, path: str, token: str, status: int = 200) -> Any:
    r = await client.get(path, headers=as_(token))
    assert r.status == status, await r.text()
    return await r.json()


API = "/api/v1/org"


def test_reads_are_cut_to_the_scope(tmp_path: Path) -> None:
    async def body(client: Client, org: OrgStore) -> None:
        units = await get_json(client, f"{API}/units", "officer-ft")
        assert [u["unit_id"] for u in units["units"]] == [
            "ft",
            "ft-s1",
            "ft-s1-g1",
            "ft-s1-t1",
            "ft-s2",
        ]
        everything = await get_json(client, f"{API}/units", "officer-all")
        assert len(everything["units"]) == 8
        vols = await get_json(client, f"{API}/volunteers", "inspector-ns")
        assert [v["volunteer_id"] for v in vols["volunteers"]] == ["chen"]
        posts = await get_json(client, f"{API}/posts?unit=ft-s1-g1", "officer-ft")
        assert [p["post_id"] for p in posts["posts"]] == ["bar"]
        assert posts["posts"][0]["fence"]["type"] == "circle"
        # ?unit= outside the scope shows nothing rather than everything.
        assert (await get_json(client, f"{API}/posts?unit=ns", "officer-ft"))["posts"] == []
        terminals = await get_json(client, f"{API}/terminals", "officer-ft")
        assert terminals["terminals"] == [
            {"device_id": "t-1", "unit_id": "ft-s1", "kind": "handheld", "holder": "li"}
        ]
        # A scope whose unit is gone sees nothing at all.
        assert (await get_json(client, f"{API}/units", "inspector-gone"))["units"] == []

    run(tmp_path, body)


def test_one_record_out_of_scope_is_not_found(tmp_path: Path) -> None:
    async def body(client: Client, org: OrgStore) -> None:
        li = await get_json(client, f"{API}/volunteers/li", "officer-ft")
        assert li == {
            "volunteer_id": "li",
            "name": "李",
            "unit_id": "ft-s1-g1",
            "kind": "duty",
            "phone": "13800000001",
        }
        for path in ("volunteers/chen", "posts/park", "units/ns", "terminals/t-2"):
            missing = await get_json(client, f"{API}/{path}", "officer-ft", 404)
            absent = await get_json(client, f"{API}/{path}-nope", "officer-ft", 404)
            # The same answer as for an id that does not exist: ids do not leak.
            assert missing["error"].replace("'", "") + "-nope" == absent["error"].replace("'", "")
        await get_json(client, f"{API}/volunteers/chen", "inspector-ns")
        held = await get_json(client, f"{API}/terminals/t-1/holdings", "officer-ft")
        assert held["holdings"] == [{"volunteer_id": "li", "from_ms": ISSUED_MS, "to_ms": None}]
        await get_json(client, f"{API}/terminals/t-2/holdings", "officer-ft", 404)

    run(tmp_path, body)


def test_roles_for_reads_and_writes(tmp_path: Path) -> None:
    async def body(client: Client, org: OrgStore) -> None:
        r = await client.get(f"{API}/units")
        assert r.status == 401
        r = await client.get(f"{API}/units", headers=as_("volunteer"))
        assert r.status == 403
        doc = {"name": "新站", "level": "station", "parent_id": "ft"}
        for token in ("officer-all", "inspector-ns"):
            r = await client.put(f"{API}/units/ft-s3", json=doc, headers=as_(token))
            assert r.status == 403 and "admin" in (await r.json())["error"]
            r = await client.delete(f"{API}/shifts/x", headers=as_(token))
            assert r.status == 403
        r = await client.put(f"{API}/units/ft-s3", json=doc, headers=as_("admin"))
        assert r.status == 201 and await r.json() == {"unit_id": "ft-s3", **doc}
        r = await client.put(f"{API}/units/ft-s3", json=doc | {"name": "新"}, headers=as_("admin"))
        assert r.status == 200
        assert org.unit("ft-s3").name == "新"  # type: ignore[union-attr]

    run(tmp_path, body)


def test_a_scoped_admin_writes_only_inside_the_subtree(tmp_path: Path) -> None:
    async def body(client: Client, org: OrgStore) -> None:
        h = as_("admin-ft-s1")
        zhao = {"name": "赵", "unit_id": "ft-s1-t1"}
        r = await client.put(f"{API}/volunteers/zhao", json=zhao, headers=h)
        assert r.status == 201
        r = await client.put(f"{API}/volunteers/zhao", json=zhao | {"unit_id": "ft-s2"}, headers=h)
        assert r.status == 403 and "'ft-s2'" in (await r.json())["error"]
        r = await client.put(f"{API}/volunteers/chen", json=zhao, headers=h)
        assert r.status == 403 and "exists outside your scope" in (await r.json())["error"]
        r = await client.put(
            f"{API}/units/ft-s1",
            json={"name": "改名", "level": "station", "parent_id": "ft"},
            headers=h,
        )
        assert r.status == 200  # renaming the own station, which stays where it is
        r = await client.put(
            f"{API}/units/ft-s1",
            json={"name": "x", "level": "station", "parent_id": "ns"},
            headers=h,
        )
        assert r.status == 403
        r = await client.put(f"{API}/units/gz", json={"name": "广州", "level": "city"}, headers=h)
        assert r.status == 403 and "top of the tree" in (await r.json())["error"]
        r = await client.delete(f"{API}/units/ft-s1", headers=h)
        assert r.status == 403 and "your own scope" in (await r.json())["error"]
        r = await client.delete(f"{API}/volunteers/chen", headers=h)
        assert r.status == 404
        r = await client.delete(f"{API}/volunteers/zhao", headers=h)
        assert r.status == 204
        assert org.volunteer("zhao") is None

    run(tmp_path, body)


def test_bad_requests_name_the_field(tmp_path: Path) -> None:
    async def body(client: Client, org: OrgStore) -> None:
        h = as_("admin", **{"Content-Type": "application/json"})
        r = await client.put(f"{API}/units/x", data="{not json", headers=h)
        assert r.status == 400 and (await r.json())["error"].startswith("body: not JSON")
        cases = [
            ("units/x", {"name": "x", "level": "province", "parent_id": "sz"}, "level: "),
            ("units/x", {"name": "x", "level": "district", "parent": "sz"}, "parent: unknown"),
            ("units/x", {"name": "x", "level": "station", "parent_id": "sz"}, "parent_id: a "),
            ("units/x", {"unit_id": "y", "name": "x", "level": "city"}, "unit_id: 'y' differs"),
            ("volunteers/x", {"name": "x", "unit_id": "nowhere"}, "unit_id: no unit"),
            ("posts/x", {"name": "x", "kind": "duty_point", "unit_id": "ft", "fence": {}}, "fence"),
        ]
        for path, doc, start in cases:
            r = await client.put(f"{API}/{path}", data=json.dumps(doc), headers=h)
            assert r.status == 400, (path, doc)
            assert (await r.json())["error"].startswith(start), await r.text()
        r = await client.delete(f"{API}/units/ft", headers=h)
        assert r.status == 409 and "still has" in (await r.json())["error"]
        r = await client.get(f"{API}/shifts?since_ms=soon", headers=h)
        assert r.status == 400 and (await r.json())["error"] == "since_ms: 'soon' is not an integer"

    run(tmp_path, body)


def test_shifts_over_rest(tmp_path: Path) -> None:
    async def body(client: Client, org: OrgStore) -> None:
        h = as_("admin")
        night = {
            "volunteer_id": "li",
            "post_id": "bar",
            "start_ms": local_ms("2026-03-06 20:00"),
            "end_ms": local_ms("2026-03-07 02:00"),
        }
        r = await client.put(f"{API}/shifts/n1", json=night, headers=h)
        assert r.status == 201
        made = await r.json()
        assert made["device_id"] == "t-1" and made["role"] == "member"  # left out: resolved
        r = await client.put(f"{API}/shifts/n2", json=night | {"device_id": None}, headers=h)
        assert r.status == 409 and "'n1'" in (await r.json())["error"]
        r = await client.put(
            f"{API}/shifts/n2", json=night | {"volunteer_id": "chen", "device_id": None}, headers=h
        )
        assert r.status == 201 and (await r.json())["device_id"] is None
        r = await client.put(
            f"{API}/shifts/d1",
            json=night
            | {
                "volunteer_id": "chen",
                "post_id": "park",
                "start_ms": local_ms("2026-03-08 08:00"),
                "end_ms": local_ms("2026-03-08 12:00"),
            },
            headers=h,
        )
        assert r.status == 201

        async def ids(query: str, token: str = "admin") -> list[str]:
            doc = await get_json(client, f"{API}/shifts{query}", token)
            return [s["shift_id"] for s in doc["shifts"]]

        assert await ids("") == ["n1", "n2", "d1"]
        assert await ids("", "officer-ft") == ["n1", "n2"]  # n2 is chen's, on a Futian post
        assert await ids("", "inspector-ns") == ["d1"]
        since = local_ms("2026-03-07 01:00")
        assert await ids(f"?since_ms={since}&until_ms={since + 1000}") == ["n1", "n2"]
        assert await ids(f"?since_ms={local_ms('2026-03-07 02:00')}") == ["d1"]
        assert await ids("?volunteer=chen") == ["n2", "d1"]
        assert await ids("?unit=ns") == ["d1"]
        assert await ids("?device=t-1") == ["n1"]
        doc = await get_json(client, f"{API}/shifts?limit=2", "admin")
        assert doc["truncated"] is True and len(doc["shifts"]) == 2
        await get_json(client, f"{API}/shifts/d1", "officer-ft", 404)

    run(tmp_path, body)


def test_roster_generation_over_rest(tmp_path: Path) -> None:
    async def body(client: Client, org: OrgStore) -> None:
        roster = {
            "post_id": "bar",
            "members": ["li", "wang"],
            "start": "20:00",
            "end": "02:00",
            "weekdays": [4, 5],
            "name": "酒吧街夜巡",
        }
        h = as_("admin-ft-s1")
        r = await client.put(f"{API}/rosters/bar-night", json=roster, headers=h)
        assert r.status == 201
        stored = await r.json()
        assert stored["rotation"] == "all" and stored["tz"] == "Asia/Shanghai"
        gen = f"{API}/rosters/bar-night/generate"
        r = await client.post(gen, json={"from": "2026-03-01", "to": "2026-05-02"}, headers=h)
        assert r.status == 400 and "62 days" in (await r.json())["error"]
        r = await client.post(gen, json={"from": "2026-03-08", "to": "2026-03-01"}, headers=h)
        assert r.status == 400
        r = await client.post(gen, json={"from": "March", "to": "2026-03-01"}, headers=h)
        assert r.status == 400 and (await r.json())["error"].startswith("from:")
        r = await client.post(gen, json={"from": "2026-03-02", "to": "2026-03-08"}, headers=h)
        assert r.status == 200
        created = (await r.json())["created"]
        assert [s["shift_id"] for s in created] == [
            "bar-night-20260306-li",
            "bar-night-20260306-wang",
            "bar-night-20260307-li",
            "bar-night-20260307-wang",
        ]
        r = await client.post(gen, json={"from": "2026-03-02", "to": "2026-03-08"}, headers=h)
        assert (await r.json())["created"] == []
        r = await client.post(
            gen, json={"from": "2026-03-02", "to": "2026-03-08"}, headers=as_("officer-ft")
        )
        assert r.status == 403
        await get_json(client, f"{API}/rosters/bar-night", "inspector-ns", 404)
        rosters = await get_json(client, f"{API}/rosters", "officer-ft")
        assert [x["roster_id"] for x in rosters["rosters"]] == ["bar-night"]

    run(tmp_path, body)


def test_imports_over_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(client: Client, org: OrgStore) -> None:
        url = f"{API}/import/volunteers"
        csv_h = as_("admin", **{"Content-Type": "text/csv"})
        good = "volunteer_id,name,unit_id\nzhao,赵,ft-s2\nqian,钱,ft-s2\n"
        r = await client.post(url, data=good.encode(), headers=csv_h)
        assert r.status == 200
        report = await r.json()
        assert (report["created"], report["updated"], report["imported"]) == (2, 0, True)

        bad = "volunteer_id,name,unit_id\nsun,孙,ft-s2\nli2,李,nowhere\n"
        r = await client.post(url, data=bad.encode(), headers=csv_h)
        assert r.status == 422
        report = await r.json()
        assert report["errors"] == [{"row": 2, "field": "unit_id", "message": "no unit 'nowhere'"}]
        assert report["imported"] is False and org.volunteer("sun") is None

        # A Chinese Excel file in GB18030, saying so.
        gbk = "volunteer_id,name,unit_id\nsun,孙,ft-s2\n".encode("gb18030")
        r = await client.post(url, data=gbk, headers=csv_h)
        assert r.status == 400 and "charset=gb18030" in (await r.json())["error"]
        r = await client.post(
            url, data=gbk, headers=as_("admin", **{"Content-Type": "text/csv; charset=gb18030"})
        )
        assert r.status == 200 and org.volunteer("sun").name == "孙"  # type: ignore[union-attr]

        geo = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [114.0579, 22.5431]},
                    "properties": {
                        "post_id": "gate",
                        "name": "大门",
                        "kind": "duty_point",
                        "unit_id": "ft-s1",
                        "radius_m": 30,
                    },
                }
            ],
        }
        geo_h = as_("admin-ft-s1", **{"Content-Type": "application/geo+json"})
        r = await client.post(f"{API}/import/posts", data=json.dumps(geo), headers=geo_h)
        assert r.status == 200, await r.text()
        assert org.post("gate").fence.lat == 22.5431  # type: ignore[union-attr]
        geo["features"][0]["properties"]["unit_id"] = "ns-s1"  # type: ignore[index]
        r = await client.post(f"{API}/import/posts", data=json.dumps(geo), headers=geo_h)
        assert r.status == 422
        assert (await r.json())["errors"][0]["message"] == "'ns-s1' is outside your scope ('ft-s1')"

        r = await client.post(url, data=json.dumps(geo), headers=geo_h)
        assert r.status == 415
        r = await client.post(
            url, data=good, headers=as_("admin", **{"Content-Type": "text/plain"})
        )
        assert r.status == 415
        r = await client.post(f"{API}/import/rosters", data=good, headers=csv_h)
        assert r.status == 404
        r = await client.post(
            url, data=good, headers=as_("officer-all", **{"Content-Type": "text/csv"})
        )
        assert r.status == 403

        monkeypatch.setattr(org_routes, "MAX_BYTES", 1000)
        big = "volunteer_id,name,unit_id\n" + "x,y,ft-s2\n" * 200
        r = await client.post(url, data=big.encode(), headers=csv_h)
        assert r.status == 413 and "split the file" in (await r.json())["error"]

        async def chunks() -> Any:  # no Content-Length: the limit holds while reading
            for _ in range(200):
                yield b"x,y,ft-s2\n"

        r = await client.post(url, data=chunks(), headers=csv_h)
        assert r.status == 413

    run(tmp_path, body)
