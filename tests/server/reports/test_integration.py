"""The reports over the real parts: OrgStore, SqliteStore, DutyService, SpotChecks and the
flag scan, from a data folder written through them (``realdata``), and the REST routes with
the real scope helper over the real organisation store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.duty.service import DutyService
from server.org.store import OrgStore
from server.reports.period import Period
from server.reports.service import Reports
from server.spotcheck.service import SpotChecks
from server.sqlite_store import SqliteStore
from server.web import report_routes
from server.web.access import Principal, Role
from server.web.keys import ORG, REPORTS
from tests.server.support import api_app

from .realdata import at, write_data_dir

DAY = Period.parse("2026-03-02", "2026-03-02")


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Reports, SqliteStore, OrgStore, DutyService]]:
    data = write_data_dir(tmp_path / "data")
    store = SqliteStore(data / "yijing.db")
    org = OrgStore(data / "org.db")
    duty = DutyService(store, org)
    checks = SpotChecks(path=data / "spotchecks.db", org=org, send=lambda d, c: None)
    reports = Reports(store, org, duty, checks)
    yield reports, store, org, duty
    reports.close()
    checks.close()
    org.close()
    store.close()


Parts = tuple[Reports, SqliteStore, OrgStore, DutyService]


def test_team_report_from_stored_fixes(parts: Parts) -> None:
    reports, _, org, duty = parts
    report = reports.unit_report("t1", DAY)
    t = report.totals
    assert (t.shifts, t.volunteers, t.terminals) == (2, 2, 2)
    assert (t.scheduled_s, t.on_post_s, t.off_post_s, t.offline_s) == (7200, 1800, 1800, 3600)
    assert t.on_duty_rate == pytest.approx(0.25)
    assert (t.terminal_scheduled_s, t.terminal_alive_s) == (7200, 3600)
    assert t.usage_rate == pytest.approx(0.5)
    assert (t.spot_checks_sent, t.spot_checks_answered) == (2, 1)
    # The duty engine's own terminal usage over the union of each terminal's windows agrees
    # with the figure the reports take from the shifts' timelines.
    alive = scheduled = 0
    for device in ("d1", "d2"):
        windows = [
            (s.start_ms // 1000, s.end_ms // 1000)
            for s in org.shifts(since_ms=DAY.since_ms, until_ms=DAY.until_ms, device_id=device)
        ]
        a, b = duty.terminal_usage(device, windows)
        alive, scheduled = alive + a, scheduled + b
    assert (alive, scheduled) == (t.terminal_alive_s, t.terminal_scheduled_s)
    assert [v.name for v in report.volunteers] == ["张三", "李四"]
    assert [s.shift_id for s in report.shifts] == ["A", "B"]
    # d2 stayed silent through the roll call: the real flag scan says so.
    assert {(str(f.kind), f.volunteer_id) for f in report.flags} == {("spot_check_gap", "v2")}
    up = reports.unit_report("sz", DAY)
    assert up.totals.on_duty_rate == t.on_duty_rate  # the same shifts, summed up the tree
    assert [c.unit_id for c in up.children] == ["futian"]


def test_shift_detail_from_stored_fixes(parts: Parts) -> None:
    reports = parts[0]
    detail = reports.shift_detail("A")
    assert [(s.start_s * 1000, s.end_s * 1000, s.state.name) for s in detail.result.segments] == [
        (at(8), at(8, 30), "ON_POST"),
        (at(8, 30), at(9), "OFF_POST"),
    ]
    assert [(c.sent_ms, c.answered) for c in detail.roll_calls] == [(at(8, 45), True)]
    assert detail.flags == ()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


TOKENS = {
    "inspector-s1": Principal("Inspector Zhou", Role.INSPECTOR, scope="s1"),
    "inspector-t9": Principal("Inspector Ma", Role.INSPECTOR, scope="t9"),
    "officer": Principal("Officer Li", Role.OFFICER),
}


def test_routes_over_the_real_organisation(tmp_path: Path, parts: Parts) -> None:
    reports, store, org, _ = parts

    async def main() -> None:
        app = api_app(
            tmp_path,
            store,
            TOKENS,
            routes=[report_routes.routes],
            services={REPORTS: reports, ORG: org},
        )
        async with TestClient(TestServer(app)) as client:
            who = bearer("inspector-s1")
            q = "from=2026-03-02&to=2026-03-02"
            r = await client.get(f"/api/v1/reports/units/futian?{q}", headers=who)
            assert r.status == 404
            r = await client.get(f"/api/v1/reports/units/s1?{q}", headers=who)
            assert r.status == 200
            doc = await r.json()
            assert doc["path"] == []  # the scope's top: nothing above it is shown
            assert doc["totals"]["usage_rate"] == 0.5
            r = await client.get(f"/api/v1/reports/units/s1?{q}", headers=bearer("inspector-t9"))
            assert r.status == 404  # a scope unit that does not exist sees nothing
            r = await client.get(f"/api/v1/reports/units/s1?{q}", headers=bearer("officer"))
            assert r.status == 403
            r = await client.post(
                "/api/v1/reports/jobs",
                json={"unit": "t1", "from": "2026-03-02", "to": "2026-03-02"},
                headers=who,
            )
            assert r.status == 202
            job_id = (await r.json())["job"]["id"]
            for _ in range(500):
                r = await client.get(f"/api/v1/reports/jobs/{job_id}", headers=who)
                job = (await r.json())["job"]
                if job["status"] != "running":
                    break
                await asyncio.sleep(0.02)
            assert job["status"] == "done", job
            assert job["report"]["totals"]["on_duty_rate"] == 0.25
            assert [u["unit_id"] for u in job["report"]["path"]] == ["s1"]
            r = await client.get("/api/v1/reports/shifts/A/timeline.svg?lang=zh", headers=who)
            assert r.status == 200 and r.content_type == "image/svg+xml"

    asyncio.run(main())
