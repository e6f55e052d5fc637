"""REST for spot checks: who may start and read them, scope, and bad requests that say why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.spotcheck.service import SpotChecks
from server.sqlite_store import SqliteStore
from server.web import spotcheck_routes
from server.web.access import Principal, Role
from server.web.keys import ORG, SPOTCHECKS
from tests.server.support import api_app

from .support import Broker, Clock, FakeOrg, answer, fix_at, futian, make_service, picture

TOKENS = {
    "officer": Principal("Officer Li", Role.OFFICER),
    "inspector": Principal("Inspector Wang", Role.INSPECTOR),
    "inspector-s1": Principal("Inspector Zhao", Role.INSPECTOR, scope="s1"),
    "inspector-gone": Principal("Inspector Qian", Role.INSPECTOR, scope="dissolved"),
    "officer-s2": Principal("Officer Sun", Role.OFFICER, scope="s2"),
    "admin": Principal("Admin", Role.ADMIN),
    "volunteer": Principal("Volunteer Chen", Role.VOLUNTEER),
}

Client = TestClient[web.Request, web.Application]
Body = Callable[[Client, SpotChecks, Clock, Broker], Awaitable[None]]


def _run(tmp_path: Path, body: Body, org: FakeOrg | None = None) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        service, clock, broker = make_service(tmp_path, org or futian())
        app = api_app(
            tmp_path,
            store,
            TOKENS,
            routes=[spotcheck_routes.routes],
            services={SPOTCHECKS: service, ORG: org or futian()},
            clock=clock,
        )
        try:
            async with TestClient(TestServer(app)) as client:
                await body(client, service, clock, broker)
        finally:
            service.close()
            store.close()

    asyncio.run(main())


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _post(client: Client, token: str, doc: object) -> tuple[int, dict[str, object]]:
    r = await client.post("/api/v1/spotchecks", json=doc, headers=h(token))
    return r.status, await r.json()


def test_inspectors_and_admins_start_checks_officers_and_volunteers_may_not(
    tmp_path: Path,
) -> None:
    async def body(client: Client, service: SpotChecks, clock: Clock, broker: Broker) -> None:
        doc = {"unit": "s1", "devices": ["ft-1", "ft-3"], "deadline_s": 60, "want_snapshot": True}
        r = await client.post("/api/v1/spotchecks", json=doc)
        assert r.status == 401
        for token in ("officer", "volunteer"):
            status, got = await _post(client, token, doc)
            assert status == 403 and "inspector" in str(got["error"]), token
        assert broker.sent == []

        status, got = await _post(client, "inspector", doc)
        assert status == 201
        check = got["check"]
        assert isinstance(check, dict)
        assert check["unit_id"] == "s1" and check["created_by"] == "Inspector Wang"
        assert check["deadline_ms"] == clock.ms + 60_000 and check["want_snapshot"] is True
        assert (check["total"], check["answered"], check["answer_rate"]) == (2, 0, 0.0)
        first = check["targets"][0]
        assert first == {
            "device_id": "ft-1",
            "volunteer_id": "v-1",
            "shift_id": "sh-1",
            "rollcall_id": f"{check['check_id']}.1",
            "sent_ms": clock.ms,
            "answered_ms": None,
            "result": "pending",
            "reason": None,
            "fix": None,
            "snapshot_url": None,
            "error": None,
        }
        assert [d for d, _ in broker.sent] == ["ft-1", "ft-3"]

        status, got = await _post(client, "admin", {"unit": "s2", "sample": 1})
        assert status == 201
        assert [t["device_id"] for t in got["check"]["targets"]] == ["ft-9"]  # type: ignore[index]

    _run(tmp_path, body)


def test_scope_limits_what_may_be_checked_and_seen(tmp_path: Path) -> None:
    async def body(client: Client, service: SpotChecks, clock: Clock, broker: Broker) -> None:
        status, got = await _post(client, "inspector-s1", {"unit": "s2", "devices": ["ft-9"]})
        assert status == 403 and got["error"] == "unit 's2' is outside your scope (s1)"
        status, got = await _post(client, "inspector-s1", {"unit": "futian", "sample": 2})
        assert status == 403 and "futian" in str(got["error"])
        # Inside the scope, but a terminal of another station: the service names it.
        status, got = await _post(client, "inspector-s1", {"unit": "s1", "devices": ["ft-9"]})
        assert status == 400
        assert got["error"] == "devices: ft-9 belongs to s2, outside s1"
        status, got = await _post(client, "inspector-s1", {"unit": "g1", "devices": ["ft-3"]})
        assert status == 201
        in_grid = got["check"]["check_id"]  # type: ignore[index]
        # A scope the organisation no longer knows sees nothing, rather than everything.
        status, got = await _post(client, "inspector-gone", {"unit": "s1", "sample": 1})
        assert status == 403

        other = service.create(by="Inspector Wang", unit_id="s2", devices=["ft-9"])
        whole = service.create(by="Inspector Wang", unit_id="futian", devices=["ft-1"])

        async def listed(token: str, query: str = "") -> list[str]:
            r = await client.get(f"/api/v1/spotchecks{query}", headers=h(token))
            assert r.status == 200, await r.text()
            return [c["check_id"] for c in (await r.json())["checks"]]

        assert await listed("inspector") == [whole.check_id, other.check_id, in_grid]
        assert await listed("inspector-s1") == [in_grid]
        assert await listed("officer-s2") == [other.check_id]
        assert await listed("inspector-gone") == []
        assert await listed("inspector", "?unit=s1") == [in_grid]  # s1 and the units below it
        r = await client.get("/api/v1/spotchecks?unit=s2", headers=h("inspector-s1"))
        assert r.status == 403 and (await r.json())["error"] == (
            "unit 's2' is outside your scope (s1)"
        )

        r = await client.get(f"/api/v1/spotchecks/{other.check_id}", headers=h("officer-s2"))
        assert r.status == 200
        for token in ("inspector-s1", "inspector-gone"):
            r = await client.get(f"/api/v1/spotchecks/{other.check_id}", headers=h(token))
            assert r.status == 404
            assert (await r.json())["error"] == f"no spot check {other.check_id!r}"
        r = await client.get("/api/v1/spotchecks/sc-none", headers=h("inspector"))
        assert r.status == 404

    _run(tmp_path, body)


def test_reading_needs_a_watch_role_and_shows_results(tmp_path: Path) -> None:
    async def body(client: Client, service: SpotChecks, clock: Clock, broker: Broker) -> None:
        broker.down.add("ft-3")
        check = service.create(
            by="Inspector Wang", unit_id="s1", devices=["ft-1", "ft-2", "ft-3"], want_snapshot=True
        )
        rid = broker.call_to("ft-1").rollcall_id
        now = clock.ms
        shot = picture("ft-1", rid, now + 4_000)
        service.on_accepted([answer("ft-1", rid, now + 2_000, fix_at(now + 1_000)), shot])
        clock.advance(200)

        r = await client.get(f"/api/v1/spotchecks/{check.check_id}", headers=h("volunteer"))
        assert r.status == 403
        r = await client.get(f"/api/v1/spotchecks/{check.check_id}", headers=h("officer"))
        assert r.status == 200
        doc = (await r.json())["check"]
        one, two, three = doc["targets"]
        sha = shot.message.sha256.hex()  # type: ignore[attr-defined]
        assert one["result"] == "answered" and one["answered_ms"] == now + 4_000
        assert one["fix"] == {
            "lat": 22.5431,
            "lon": 114.0579,
            "time_ms": now + 1_000,
            "accuracy_m": 6.0,
        }
        assert one["snapshot_url"] == f"/api/v1/snapshots/{sha}.jpg"
        assert two["result"] == "missed" and two["reason"] == "no answer"
        assert two["volunteer_id"] == "v-2" and two["shift_id"] is None
        assert three["result"] == "not_sent" and "not connected" in three["error"]
        assert (doc["total"], doc["answered"], doc["answer_rate"]) == (3, 1, 0.5)

        r = await client.get("/api/v1/spotchecks", headers=h("officer"))
        [listed] = (await r.json())["checks"]
        assert "targets" not in listed
        assert listed["counts"] == {
            "pending": 0,
            "answered": 1,
            "late": 0,
            "missed": 1,
            "not_sent": 1,
        }
        r = await client.get(f"/api/v1/spotchecks?since_ms={now + 1}", headers=h("officer"))
        assert (await r.json())["checks"] == []
        r = await client.get(f"/api/v1/spotchecks?until_ms={now + 1}&limit=1", headers=h("admin"))
        assert len((await r.json())["checks"]) == 1

    _run(tmp_path, body)


def test_bad_requests_name_the_field(tmp_path: Path) -> None:
    async def body(client: Client, service: SpotChecks, clock: Clock, broker: Broker) -> None:
        cases: list[tuple[object, str]] = [
            ([1, 2], "body: expected a JSON object"),
            ({"unit": "s1", "devices": ["ft-1"], "deadline": 60}, "deadline: unknown field"),
            ({"devices": ["ft-1"]}, "unit: required"),
            ({"unit": 5, "devices": ["ft-1"]}, "unit: required"),
            ({"unit": "s1"}, "devices: give either devices or sample"),
            ({"unit": "s1", "devices": ["ft-1"], "sample": 2}, "devices: give either"),
            ({"unit": "s1", "devices": "ft-1"}, "devices: a non-empty list"),
            ({"unit": "s1", "devices": []}, "devices: a non-empty list"),
            ({"unit": "s1", "devices": [1]}, "devices: every item must be a device id"),
            ({"unit": "s1", "devices": ["x"] * 101}, "devices: at most 100"),
            ({"unit": "s1", "sample": "3"}, "sample: '3' is not a whole number"),
            ({"unit": "s1", "sample": 0}, "sample: 0 is outside [1, 100]"),
            ({"unit": "s1", "sample": 2, "deadline_s": 5}, "deadline_s: 5 is outside [10, 3600]"),
            ({"unit": "s1", "sample": 2, "deadline_s": 60.5}, "deadline_s: 60.5 is not a whole"),
            ({"unit": "s1", "sample": 2, "want_snapshot": "yes"}, "want_snapshot: 'yes' is not"),
            ({"unit": "nowhere", "sample": 2}, "unit: no unit 'nowhere'"),
            ({"unit": "s1", "devices": ["ft-1", "ft-1"]}, "devices: ft-1 is listed twice"),
            ({"unit": "s1", "devices": ["ft-404"]}, "devices: ft-404 is not a known terminal"),
        ]
        for doc, message in cases:
            status, got = await _post(client, "inspector", doc)
            assert status == 400, (doc, got)
            assert str(got["error"]).startswith(message), (doc, got)
        r = await client.post("/api/v1/spotchecks", data=b"{not json", headers=h("inspector"))
        assert r.status == 400 and (await r.json())["error"].startswith("body: not JSON")
        big = json.dumps({"unit": "s1", "devices": ["x" * 60] * 1200}).encode()
        r = await client.post("/api/v1/spotchecks", data=big, headers=h("inspector"))
        assert r.status == 413
        assert (await r.json())["error"] == "body: larger than 65536 bytes"
        for query, message in (
            ("limit=0", "limit: 0 is outside [1, 500]"),
            ("since_ms=abc", "since_ms: 'abc' is not an integer"),
            ("unit=nowhere", "unit: no unit 'nowhere'"),
        ):
            r = await client.get(f"/api/v1/spotchecks?{query}", headers=h("officer"))
            assert r.status == 400 and (await r.json())["error"] == message
        assert broker.sent == [] and service.history() == []

    _run(tmp_path, body)
