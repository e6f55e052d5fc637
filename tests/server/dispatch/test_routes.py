"""REST for dispatch: roles, scope, and bad requests that name the field."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from protocol import DispatchCancel, DispatchCommand
from server.sqlite_store import SqliteStore
from server.web import dispatch_routes
from server.web.access import Principal, Role
from server.web.keys import DISPATCH, ORG
from tests.server.support import api_app

from .support import LAT, LON, World, world

TOKENS = {
    "officer": Principal("Li", Role.OFFICER),
    "officer-s1": Principal("Zhao", Role.OFFICER, scope="s1"),
    "officer-s2": Principal("Sun", Role.OFFICER, scope="s2"),
    "inspector": Principal("Wang", Role.INSPECTOR),
    "admin": Principal("Admin", Role.ADMIN),
    "volunteer": Principal("Chen", Role.VOLUNTEER),
}

Client = TestClient[web.Request, web.Application]
Body = Callable[[Client, World], Awaitable[None]]
INCIDENT = {"kind": "medical", "priority": 1, "lat": LAT, "lon": LON}


def _run(tmp_path: Path, body: Body) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        w = world(tmp_path)
        w.live.add("x2", 40, unit="s2")
        service = w.dispatcher()
        app = api_app(
            tmp_path,
            store,
            TOKENS,
            routes=[dispatch_routes.routes],
            services={DISPATCH: service, ORG: w.org},
            clock=w.clock,
        )
        try:
            async with TestClient(TestServer(app)) as client:
                await body(client, w)
        finally:
            service.close()
            store.close()

    asyncio.run(main())


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _post(client: Client, token: str, path: str, doc: object) -> tuple[int, Any]:
    r = await client.post(path, json=doc, headers=h(token))
    return r.status, await r.json()


async def _get(client: Client, token: str, path: str) -> tuple[int, Any]:
    r = await client.get(path, headers=h(token))
    return r.status, await r.json()


def test_officers_and_admins_dispatch_inspectors_read_volunteers_do_neither(
    tmp_path: Path,
) -> None:
    async def body(client: Client, w: World) -> None:
        r = await client.post("/api/v1/incidents", json=INCIDENT)
        assert r.status == 401
        for token in ("inspector", "volunteer"):
            status, got = await _post(client, token, "/api/v1/incidents", INCIDENT)
            assert status == 403 and "officer" in got["error"], token
        status, doc = await _post(
            client, "officer", "/api/v1/incidents", {**INCIDENT, "unit_id": "s1"}
        )
        assert status == 201, doc
        assert doc["created_by"] == "officer:Li" and doc["state"] == "open"
        assert doc["unit_id"] == "s1" and doc["dispatches"] == [] and doc["auto_escalate"] is True
        iid = doc["incident_id"]

        for token in ("inspector", "volunteer"):
            status, _ = await _get(client, token, f"/api/v1/incidents/{iid}/proposals")
            assert status == 403, token
            status, _ = await _post(
                client, token, f"/api/v1/incidents/{iid}/dispatches", {"device_ids": ["a"]}
            )
            assert status == 403, token
            status, _ = await _post(client, token, f"/api/v1/incidents/{iid}/close", {})
            assert status == 403, token
        status, _ = await _get(client, "volunteer", f"/api/v1/incidents/{iid}")
        assert status == 403
        assert w.broker.sent == []

        status, got = await _get(client, "admin", f"/api/v1/incidents/{iid}/proposals")
        assert status == 200
        assert [c["minutes"] for c in got["circles"]] == [1, 3, 5]
        assert [x["device_id"] for x in got["circles"][0]["candidates"]] == ["a", "x2", "b"]

        status, got = await _post(
            client, "officer", f"/api/v1/incidents/{iid}/dispatches", {"device_ids": ["a", "b"]}
        )
        assert status == 201, got
        ids = [d["dispatch_id"] for d in got["dispatches"]]
        assert [type(m) for _, m, _ in w.broker.sent] == [DispatchCommand] * 2

        status, got = await _get(client, "inspector", f"/api/v1/incidents/{iid}")
        assert status == 200
        assert [s["step"] for s in got["steps"]] == ["opened", "dispatched", "dispatched"]
        assert got["steps"][1]["actor"] == "officer:Li"
        status, got = await _get(client, "inspector", "/api/v1/incidents")
        assert status == 200 and [i["incident_id"] for i in got["incidents"]] == [iid]

        status, got = await _post(client, "officer", f"/api/v1/dispatches/{ids[0]}/cancel", {})
        assert status == 200 and got["state"] == "cancelled"
        assert isinstance(w.broker.sent[-1][1], DispatchCancel)
        status, got = await _post(client, "officer", f"/api/v1/dispatches/{ids[0]}/cancel", {})
        assert status == 409
        w_ms = w.clock.ms
        w.clock.advance(1)
        status, got = await _post(
            client, "admin", f"/api/v1/incidents/{iid}/close", {"note": "all well"}
        )
        assert status == 200 and got["state"] == "closed" and got["closed_ms"] == w_ms + 1000
        status, got = await _get(client, "inspector", "/api/v1/incidents?state=closed")
        assert [i["incident_id"] for i in got["incidents"]] == [iid]
        status, got = await _get(client, "inspector", "/api/v1/incidents")
        assert got["incidents"] == []

    _run(tmp_path, body)


def test_scope_hides_and_guards_incidents(tmp_path: Path) -> None:
    async def body(client: Client, w: World) -> None:
        # Scoped: the unit defaults to the caller's scope unit; another unit is refused.
        status, doc = await _post(client, "officer-s1", "/api/v1/incidents", INCIDENT)
        assert status == 201 and doc["unit_id"] == "s1"
        mine = doc["incident_id"]
        status, got = await _post(
            client, "officer-s1", "/api/v1/incidents", {**INCIDENT, "unit_id": "s2"}
        )
        assert status == 403 and "s2" in got["error"]
        status, doc = await _post(
            client, "officer-s1", "/api/v1/incidents", {**INCIDENT, "unit_id": "g1"}
        )
        assert status == 201

        for path in (f"/api/v1/incidents/{mine}", f"/api/v1/incidents/{mine}/proposals"):
            status, got = await _get(client, "officer-s2", path)
            assert status == 404 and got["error"] == f"no incident {mine!r}", path
        status, got = await _get(client, "officer-s2", "/api/v1/incidents")
        assert got["incidents"] == []
        status, got = await _get(client, "officer-s1", "/api/v1/incidents")
        assert len(got["incidents"]) == 2
        status, got = await _post(
            client, "officer-s2", f"/api/v1/incidents/{mine}/dispatches", {"device_ids": ["x2"]}
        )
        assert status == 403
        status, got = await _post(client, "officer-s2", f"/api/v1/incidents/{mine}/close", {})
        assert status == 403
        # Proposals and dispatches reach only the caller's terminals.
        status, got = await _get(client, "officer-s1", f"/api/v1/incidents/{mine}/proposals")
        assert [x["device_id"] for x in got["circles"][0]["candidates"]] == ["a", "b"]
        status, got = await _post(
            client, "officer-s1", f"/api/v1/incidents/{mine}/dispatches", {"device_ids": ["x2"]}
        )
        assert status == 400 and got["error"] == "device_ids: x2 is outside your scope"
        status, got = await _post(
            client, "officer", f"/api/v1/incidents/{mine}/dispatches", {"device_ids": ["a"]}
        )
        assert status == 201
        did = got["dispatches"][0]["dispatch_id"]
        status, got = await _post(client, "officer-s2", f"/api/v1/dispatches/{did}/cancel", {})
        assert status == 403
        assert len(w.broker.sent) == 1

    _run(tmp_path, body)


def test_bad_bodies_name_the_field_and_send_nothing(tmp_path: Path) -> None:
    async def body(client: Client, w: World) -> None:
        cases: list[tuple[object, str]] = [
            ({**INCIDENT, "kind": "riot"}, "kind: 'riot' is not one of"),
            ({**INCIDENT, "priority": 0}, "priority: 0 is not 1, 2 or 3"),
            ({**INCIDENT, "lat": 95}, "lat: 95 is outside [-90, 90]"),
            ({**INCIDENT, "lon": "east"}, "lon: 'east' is not a number"),
            ({k: v for k, v in INCIDENT.items() if k != "lat"}, "lat: required"),
            ({**INCIDENT, "note": 5}, "note: must be text"),
            ({**INCIDENT, "auto_escalate": "yes"}, "auto_escalate: 'yes' is not true or false"),
            ({**INCIDENT, "unit_id": "nowhere"}, "unit_id: no unit 'nowhere'"),
            ({**INCIDENT, "urgent": True}, "urgent: unknown field"),
            ([1, 2], "body: expected a JSON object"),
        ]
        for doc, message in cases:
            status, got = await _post(client, "officer", "/api/v1/incidents", doc)
            assert status == 400 and got["error"].startswith(message), (doc, got)
        r = await client.post("/api/v1/incidents", data=b"{nope", headers=h("officer"))
        assert r.status == 400 and (await r.json())["error"].startswith("body: not JSON")

        status, doc = await _post(client, "officer", "/api/v1/incidents", INCIDENT)
        iid = doc["incident_id"]
        path = f"/api/v1/incidents/{iid}/dispatches"
        for doc, message in [
            ({}, "device_ids: required"),
            ({"device_ids": []}, "device_ids: required"),
            ({"device_ids": [1]}, "device_ids: every item"),
            ({"device_ids": ["a"], "ttl_s": 5}, "ttl_s: 5 is not a whole number in [30, 3600]"),
            ({"device_ids": ["a"], "ttl_s": "60"}, "ttl_s: '60' is not a whole number"),
            ({"device_ids": ["a", "nobody"]}, "device_ids: nobody is not a known terminal"),
            ({"device_ids": [f"t{i}" for i in range(21)]}, "device_ids: at most 20"),
            ({"devices": ["a"]}, "devices: unknown field"),
        ]:
            status, got = await _post(client, "officer", path, doc)
            assert status == 400 and got["error"].startswith(message), (doc, got)
        assert w.broker.sent == []
        status, got = await _get(client, "officer", "/api/v1/incidents?state=maybe")
        assert status == 400 and got["error"].startswith("state:")
        status, got = await _post(
            client, "officer", "/api/v1/incidents/i-none/dispatches", {"device_ids": ["a"]}
        )
        assert status == 404
        status, got = await _post(client, "officer", "/api/v1/dispatches/d-none/cancel", {})
        assert status == 404
        status, got = await _post(
            client, "officer", f"/api/v1/incidents/{iid}/close", {"note": "x" * 501}
        )
        assert status == 400 and got["error"].startswith("note:")

    _run(tmp_path, body)
