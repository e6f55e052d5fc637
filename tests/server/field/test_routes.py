"""REST for field reports: who may act, scope, and bad requests that say why."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.org.model import Unit, UnitLevel
from server.sqlite_store import SqliteStore
from server.web import field_routes
from server.web.access import Principal, Role
from server.web.keys import FIELD, ORG
from tests.server.support import api_app

from .support import NOW_MS, World, clue, make_world, sos

TOKENS = {
    "officer": Principal("Officer Li", Role.OFFICER),
    "officer-s1": Principal("Officer Zhou", Role.OFFICER, scope="ft-s1"),
    "officer-s2": Principal("Officer Sun", Role.OFFICER, scope="ft-s2"),
    "inspector": Principal("Inspector Wang", Role.INSPECTOR),
    "admin": Principal("Admin", Role.ADMIN),
    "volunteer": Principal("Volunteer Chen", Role.VOLUNTEER),
}

Client = TestClient[web.Request, web.Application]
Body = Callable[[Client, World], Awaitable[None]]
TASK = {"title": "检查灭火器", "target_kind": "unit", "target": "ft-s1", "ttl_s": 600}


def _run(tmp_path: Path, body: Body) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        world = make_world(tmp_path)
        app = api_app(
            tmp_path,
            store,
            TOKENS,
            routes=[field_routes.routes],
            services={FIELD: world.service, ORG: world.org},
            clock=world.clock,
        )
        try:
            async with TestClient(TestServer(app)) as client:
                await body(client, world)
        finally:
            world.service.close()
            world.org.close()
            store.close()

    asyncio.run(main())


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    client: Client, method: str, path: str, token: str, doc: object = None
) -> tuple[int, Any]:
    r = await client.request(method, path, json=doc, headers=h(token))
    return r.status, await r.json()


def test_officers_and_admins_publish_tasks_inspectors_read_only(tmp_path: Path) -> None:
    async def body(client: Client, world: World) -> None:
        r = await client.post("/api/v1/tasks", json=TASK)
        assert r.status == 401
        for token in ("inspector", "volunteer"):
            status, got = await call(client, "POST", "/api/v1/tasks", token, TASK)
            assert status == 403 and "officer" in got["error"], token
        assert world.broker.sent == []

        status, task = await call(client, "POST", "/api/v1/tasks", "officer", TASK)
        assert status == 201
        assert task["created_by"] == "officer:Officer Li" and task["total"] == 4
        assert task["unit_id"] == "ft-s1" and task["acked"] == 0
        assert len(world.broker.sent) == 4
        status, _ = await call(client, "POST", "/api/v1/tasks", "admin", TASK)
        assert status == 201

        status, got = await call(client, "GET", "/api/v1/tasks", "inspector")
        assert status == 200 and len(got["tasks"]) == 2
        status, got = await call(client, "GET", f"/api/v1/tasks/{task['task_id']}", "inspector")
        assert status == 200 and got["task_id"] == task["task_id"]
        assert [s["step"] for s in got["steps"]] == ["published", "sent"]
        status, got = await call(client, "GET", "/api/v1/tasks?state=expired", "officer")
        assert status == 200 and got["tasks"] == []
        status, _ = await call(client, "GET", "/api/v1/tasks/tk-none", "officer")
        assert status == 404

    _run(tmp_path, body)


def test_bad_task_bodies_are_refused_naming_the_field(tmp_path: Path) -> None:
    async def body(client: Client, world: World) -> None:
        cases: list[tuple[object, str]] = [
            ({**TASK, "ttl": 60}, "ttl: unknown field"),
            ({k: v for k, v in TASK.items() if k != "title"}, "title: required"),
            ({**TASK, "title": ""}, "title: must not be empty"),
            ({**TASK, "priority": "high"}, "priority: 'high' is not a whole number"),
            ({**TASK, "priority": 0}, "priority:"),
            ({**TASK, "ttl_s": 5}, "ttl_s: 5 is outside"),
            ({**TASK, "lat": "north"}, "lat:"),
            ({**TASK, "lat": 22.5}, "lat: a place needs both"),
            ({**TASK, "target_kind": "everyone"}, "target_kind:"),
            ({**TASK, "target_kind": "post_kind", "target": "beach"}, "target:"),
            ({**TASK, "target": "nowhere"}, "target: no unit 'nowhere'"),
            ([TASK], "body: expected a JSON object"),
        ]
        for doc, words in cases:
            status, got = await call(client, "POST", "/api/v1/tasks", "officer", doc)
            assert status == 400 and got["error"].startswith(words), (doc, got)
        r = await client.post("/api/v1/tasks", data=b"{not json", headers=h("officer"))
        assert r.status == 400 and (await r.json())["error"].startswith("body: not JSON")
        # A task that reaches nobody: no post of that kind has anyone on it now.
        doc = {**TASK, "target_kind": "post_kind", "target": "patrol_segment"}
        status, got = await call(client, "POST", "/api/v1/tasks", "officer", doc)
        assert status == 400 and "patrol_segment" in got["error"]
        assert got["error"].startswith("target:") and "reaches no terminal" in got["error"]
        # ... nor a unit whose subtree has no terminal (a grid with none issued yet).
        world.org.put_unit(Unit("ft-s2-g9", "新网格", UnitLevel.GRID, "ft-s2"))
        doc = {**TASK, "target": "ft-s2-g9"}
        status, got = await call(client, "POST", "/api/v1/tasks", "officer", doc)
        assert status == 400 and got["error"] == "target: unit 'ft-s2-g9' reaches no terminal"
        assert world.broker.sent == []

    _run(tmp_path, body)


def test_tasks_stay_inside_the_callers_scope(tmp_path: Path) -> None:
    async def body(client: Client, world: World) -> None:
        status, got = await call(
            client, "POST", "/api/v1/tasks", "officer-s1", {**TASK, "target": "ft-s2"}
        )
        assert status == 403 and "ft-s2" in got["error"]
        doc = {**TASK, "target_kind": "post_kind", "target": "duty_point"}
        status, task = await call(client, "POST", "/api/v1/tasks", "officer-s1", doc)
        # Duty points with someone on them now: Zhao (ft-s2) and Chen (ft-s1); only Chen's
        # is inside the officer's station.
        assert status == 201 and [t["device_id"] for t in task["targets"]] == ["t-4"]
        assert task["unit_id"] == "ft-s1"
        status, _ = await call(client, "GET", f"/api/v1/tasks/{task['task_id']}", "officer-s2")
        assert status == 404
        status, got = await call(client, "GET", "/api/v1/tasks", "officer-s2")
        assert got["tasks"] == []
        status, got = await call(client, "GET", "/api/v1/tasks", "officer-s1")
        assert [t["task_id"] for t in got["tasks"]] == [task["task_id"]]

    _run(tmp_path, body)


def test_clues_read_and_handled_within_scope(tmp_path: Path) -> None:
    async def body(client: Client, world: World) -> None:
        world.service.on_accepted(
            [
                clue("t-1", "c1", 1, NOW_MS),
                clue("t-3", "c2", 1, NOW_MS + 1),
                clue("x-9", "c3", 1, NOW_MS + 2),  # not in the organisation
            ]
        )
        status, got = await call(client, "GET", "/api/v1/clues", "inspector")
        assert status == 200 and [c["id"] for c in got["clues"]] == ["x-9:c3", "t-3:c2", "t-1:c1"]
        status, got = await call(client, "GET", "/api/v1/clues?state=new", "officer-s1")
        assert [c["id"] for c in got["clues"]] == ["t-1:c1"]
        status, _ = await call(client, "GET", "/api/v1/clues/t-3:c2", "officer-s1")
        assert status == 404
        status, got = await call(client, "GET", "/api/v1/clues/t-1:c1", "officer-s1")
        assert status == 200 and got["steps"][0]["step"] == "reported"
        status, got = await call(client, "GET", "/api/v1/clues?state=old", "officer")
        assert status == 400 and got["error"].startswith("state:")

        path = "/api/v1/clues/t-3:c2/handle"
        status, _ = await call(client, "POST", path, "inspector", {})
        assert status == 403
        status, got = await call(client, "POST", path, "officer-s1", {"note": "x"})
        assert status == 403 and "outside your scope" in got["error"]
        status, got = await call(client, "POST", "/api/v1/clues/x-9:c3/handle", "officer-s1", {})
        assert status == 403  # an unknown terminal's clue belongs to no unit
        status, got = await call(client, "POST", path, "officer-s2", {"note": 5})
        assert status == 400 and got["error"].startswith("note:")
        status, got = await call(client, "POST", path, "officer-s2", {"note": "已处理"})
        assert status == 200 and got["state"] == "handled" and got["note"] == "已处理"
        assert got["handled_by"] == "officer:Officer Sun"
        status, got = await call(client, "POST", path, "officer", {})
        assert status == 409 and "Officer Sun" in got["error"]
        status, _ = await call(client, "POST", "/api/v1/clues/t-3:nope/handle", "officer", {})
        assert status == 404

    _run(tmp_path, body)


def test_alerts_read_and_acknowledged_within_scope(tmp_path: Path) -> None:
    async def body(client: Client, world: World) -> None:
        world.service.on_accepted([sos("t-1", 1, NOW_MS), sos("t-3", 1, NOW_MS + 1)])
        status, got = await call(client, "GET", "/api/v1/alerts", "inspector")
        assert status == 200 and [a["device_id"] for a in got["alerts"]] == ["t-3", "t-1"]
        status, got = await call(client, "GET", "/api/v1/alerts", "officer-s2")
        [alert] = got["alerts"]
        assert alert["device_id"] == "t-3" and alert["name"] == "Zhao Min"
        path = f"/api/v1/alerts/{alert['alert_id']}"

        status, _ = await call(client, "GET", path, "officer-s1")
        assert status == 404
        status, _ = await call(client, "POST", f"{path}/ack", "inspector")
        assert status == 403
        status, got = await call(client, "POST", f"{path}/ack", "officer-s1")
        assert status == 403 and "outside your scope" in got["error"]
        r = await client.post(f"{path}/ack", headers=h("officer-s2"))  # no body at all
        got = await r.json()
        assert r.status == 200 and got["state"] == "acked"
        assert got["acked_by"] == "officer:Officer Sun"
        assert world.live.sos["t-3"] is None
        status, got = await call(client, "POST", f"{path}/ack", "officer")
        assert status == 409
        status, got = await call(client, "POST", "/api/v1/alerts/al-none/ack", "officer")
        assert status == 404

        status, got = await call(client, "GET", "/api/v1/alerts", "officer-s2")
        assert got["alerts"] == []
        status, got = await call(client, "GET", "/api/v1/alerts?state=all", "officer-s2")
        assert [a["state"] for a in got["alerts"]] == ["acked"]
        status, got = await call(client, "GET", path, "officer-s2")
        assert status == 200 and [s["step"] for s in got["steps"]] == ["raised", "acked"]
        status, got = await call(client, "GET", "/api/v1/alerts?limit=0", "officer")
        assert status == 400 and got["error"].startswith("limit:")

    _run(tmp_path, body)
