"""REST: inspectors and admins only, scope as 404, 400s that name the field, the job flow."""

from __future__ import annotations

import asyncio
import csv
import io
import threading
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.duty.rules import ShiftResult
from server.org.model import Shift
from server.reports.service import Reports
from server.sqlite_store import SqliteStore
from server.web import report_routes
from server.web.access import Principal, Role
from server.web.keys import ORG, REPORTS
from tests.server.support import api_app

from .fakes import FakeDuty, FakeOrg, FakeSpotChecks, fake_scan, make_reports

TOKENS = {
    "officer": Principal("Officer Li", Role.OFFICER),
    "volunteer": Principal("Volunteer Chen", Role.VOLUNTEER),
    "inspector": Principal("Inspector Wang", Role.INSPECTOR),  # the whole organisation
    "inspector-s1": Principal("Inspector Zhou", Role.INSPECTOR, scope="s1"),
    "inspector-gone": Principal("Inspector Ma", Role.INSPECTOR, scope="deleted-unit"),
    "admin": Principal("Admin", Role.ADMIN),
}
DAY = "from=2026-03-02&to=2026-03-02"

Body = Callable[[TestClient], Awaitable[None]]


def _run(tmp_path: Path, body: Body, reports: Reports | None = None) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        nonlocal reports
        reports = reports or make_reports()
        app = api_app(
            tmp_path,
            store,
            TOKENS,
            routes=[report_routes.routes],
            services={REPORTS: reports, ORG: reports.org},
        )
        try:
            async with TestClient(TestServer(app)) as client:
                await body(client)
        finally:
            reports.close()
            store.close()

    asyncio.run(main())


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ROUTES = [
    ("GET", f"/api/v1/reports/units/t1?{DAY}"),
    ("GET", f"/api/v1/reports/units/t1/units.csv?{DAY}"),
    ("GET", f"/api/v1/reports/units/t1/volunteers.csv?{DAY}"),
    ("GET", f"/api/v1/reports/units/t1/chart.svg?{DAY}"),
    ("GET", f"/api/v1/reports/units/t1/chart.png?{DAY}"),
    ("GET", "/api/v1/reports/shifts/A"),
    ("GET", "/api/v1/reports/shifts/A/timeline.svg"),
    ("GET", "/api/v1/reports/shifts/A/timeline.png"),
    ("GET", "/api/v1/reports/jobs/x"),
    ("POST", "/api/v1/reports/jobs"),
]


def test_officers_and_volunteers_may_not_read_reports(tmp_path: Path) -> None:
    async def body(client: TestClient) -> None:
        for method, url in ROUTES:
            r = await client.request(method, url)
            assert r.status == 401, url
            for token in ("officer", "volunteer"):
                r = await client.request(method, url, headers=as_(token))
                assert r.status == 403, (token, url)
                assert "inspector" in (await r.json())["error"]

    _run(tmp_path, body)


def test_inspector_and_admin_read_a_unit_report(tmp_path: Path) -> None:
    async def body(client: TestClient) -> None:
        for token in ("inspector", "admin"):
            r = await client.get(f"/api/v1/reports/units/futian?{DAY}", headers=as_(token))
            assert r.status == 200
            doc = await r.json()
            assert set(doc) == {
                "unit", "path", "period", "totals", "children", "volunteers", "shifts", "flags",
            }  # fmt: skip
            assert doc["unit"] == {"unit_id": "futian", "name": "福田区", "level": "district"}
            assert doc["path"] == [{"unit_id": "sz", "name": "深圳市", "level": "city"}]
            assert doc["period"] == {
                "from": "2026-03-02",
                "to": "2026-03-02",
                "tz": "Asia/Shanghai",
            }
            assert doc["totals"]["on_duty_rate"] == pytest.approx(9 / 11)
            assert [c["unit_id"] for c in doc["children"]] == ["s1", "s2"]
            assert len(doc["flags"]) == 3
        r = await client.get(
            f"/api/v1/reports/units/futian?{DAY}&volunteers=all", headers=as_("inspector")
        )
        assert [v["volunteer_id"] for v in (await r.json())["volunteers"]] == [
            "v1", "v2", "v3", "v4",
        ]  # fmt: skip

    _run(tmp_path, body)


def test_scope_hides_units_and_shifts_outside_it_as_404(tmp_path: Path) -> None:
    async def body(client: TestClient) -> None:
        who = as_("inspector-s1")
        outside = await client.get(f"/api/v1/reports/units/futian?{DAY}", headers=who)
        unknown = await client.get(f"/api/v1/reports/units/nowhere?{DAY}", headers=who)
        assert outside.status == unknown.status == 404
        assert (await outside.json())["error"] == "unit: no unit 'futian'"
        for url in (
            f"/api/v1/reports/units/s2/units.csv?{DAY}",
            f"/api/v1/reports/units/s2/chart.svg?{DAY}",
            "/api/v1/reports/shifts/D",
            "/api/v1/reports/shifts/D/timeline.png",
        ):
            r = await client.get(url, headers=who)
            assert r.status == 404, url
        r = await client.get(f"/api/v1/reports/units/t1?{DAY}", headers=who)
        assert r.status == 200
        doc = await r.json()
        assert [u["unit_id"] for u in doc["path"]] == ["s1"]  # the breadcrumb stops at the scope
        assert [s["shift_id"] for s in doc["shifts"]] == ["A", "B"]
        r = await client.get("/api/v1/reports/shifts/C", headers=who)
        assert r.status == 200
        # A token whose scope unit is gone sees nothing at all.
        r = await client.get(f"/api/v1/reports/units/t1?{DAY}", headers=as_("inspector-gone"))
        assert r.status == 404
        r = await client.post(
            "/api/v1/reports/jobs",
            json={"unit": "s2", "from": "2026-03-02", "to": "2026-03-02"},
            headers=who,
        )
        assert r.status == 404

    _run(tmp_path, body)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "from: required, as YYYY-MM-DD"),
        ("from=2026-03-02", "to: required, as YYYY-MM-DD"),
        ("from=2026-03-02&to=2026-03-01", "to: 2026-03-01 is before from (2026-03-02)"),
        ("from=2026-03-02&to=03/04/2026", "to: '03/04/2026' is not a date as YYYY-MM-DD"),
        ("from=2026-01-01&to=2026-12-31", "to: a period is at most 92 days, this is 365"),
        (f"{DAY}&tz=Nowhere/City", "tz: unknown timezone 'Nowhere/City'"),
        (f"{DAY}&volunteers=some", "volunteers: 'some': direct (the default) or all"),
    ],
)
def test_bad_queries_are_400_naming_the_field(tmp_path: Path, query: str, message: str) -> None:
    async def body(client: TestClient) -> None:
        r = await client.get(f"/api/v1/reports/units/t1?{query}", headers=as_("inspector"))
        assert r.status == 400
        assert (await r.json()) == {"error": message}

    _run(tmp_path, body)


def test_csv_downloads(tmp_path: Path) -> None:
    async def body(client: TestClient) -> None:
        r = await client.get(f"/api/v1/reports/units/futian/units.csv?{DAY}", headers=as_("admin"))
        assert r.status == 200
        assert r.content_type == "text/csv" and r.charset == "utf-8"
        assert r.headers["Content-Disposition"] == (
            'attachment; filename="report-futian-2026-03-02_2026-03-02-units.csv"'
        )
        data = await r.read()
        assert data.startswith(b"\xef\xbb\xbf")
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        assert [r["name"] for r in rows] == ["福田区", "福田派出所", "香蜜湖派出所"]
        r = await client.get(f"/api/v1/reports/units/t1/volunteers.csv?{DAY}", headers=as_("admin"))
        rows = list(csv.DictReader(io.StringIO((await r.read()).decode("utf-8-sig"))))
        assert [(r["volunteer_id"], r["name"]) for r in rows] == [("v1", "张三"), ("v2", "李四")]

    _run(tmp_path, body)


def test_charts_and_timelines(tmp_path: Path) -> None:
    async def body(client: TestClient) -> None:
        who = as_("inspector")
        r = await client.get(f"/api/v1/reports/units/futian/chart.svg?{DAY}&lang=en", headers=who)
        assert r.status == 200 and r.content_type == "image/svg+xml"
        assert "script-src" not in r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        svg = await r.read()
        ET.fromstring(svg)
        assert b"On-duty rate" in svg
        r = await client.get(f"/api/v1/reports/units/t1/chart.png?{DAY}", headers=who)
        assert r.content_type == "image/png"
        assert (await r.read()).startswith(b"\x89PNG")
        r = await client.get(f"/api/v1/reports/units/t1/chart.gif?{DAY}", headers=who)
        assert r.status == 404
        r = await client.get(f"/api/v1/reports/units/t1/chart.svg?{DAY}&lang=fr", headers=who)
        assert r.status == 400 and (await r.json())["error"] == "lang: 'fr': one of zh, en"
        r = await client.get("/api/v1/reports/shifts/A/timeline.svg?lang=en", headers=who)
        assert r.status == 200 and b"Off post" in await r.read()
        r = await client.get("/api/v1/reports/shifts/A/timeline.png", headers=who)
        assert (await r.read()).startswith(b"\x89PNG")
        r = await client.get("/api/v1/reports/shifts/nope/timeline.png", headers=who)
        assert r.status == 404 and (await r.json())["error"] == "shift: no shift 'nope'"

    _run(tmp_path, body)


def test_shift_detail_json(tmp_path: Path) -> None:
    async def body(client: TestClient) -> None:
        r = await client.get("/api/v1/reports/shifts/A", headers=as_("inspector"))
        assert r.status == 200
        doc = await r.json()
        assert set(doc) == {
            "shift", "post", "volunteer", "tz", "tally", "segments", "flags", "roll_calls",
            "devices", "phones", "trust", "phone_only",
        }  # fmt: skip
        assert doc["post"]["name"] == "华强北路口"
        # A terminal and no phone (docs/metrics.md §7): nothing rests on a phone.
        assert (doc["devices"], doc["phones"], doc["trust"], doc["phone_only"]) == (
            ["d1"], [], "signed", [],
        )  # fmt: skip
        assert (doc["tally"]["phone_on_post_s"], doc["tally"]["phone_only_rate"]) == (0, 0.0)
        assert [s["state"] for s in doc["segments"]] == ["on_post", "off_post", "offline"]
        assert doc["tally"]["early_leave_s"] == 3600
        assert [c["answered"] for c in doc["roll_calls"]] == [True, False]

    _run(tmp_path, body)


def test_a_big_report_asks_for_a_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_routes, "SYNC_MAX_SHIFTS", 1)

    async def body(client: TestClient) -> None:
        r = await client.get(f"/api/v1/reports/units/futian?{DAY}", headers=as_("inspector"))
        assert r.status == 422
        assert "report job" in (await r.json())["error"]

    _run(tmp_path, body)


async def _poll(client: TestClient, job_id: str, token: str) -> dict[str, object]:
    for _ in range(500):
        r = await client.get(f"/api/v1/reports/jobs/{job_id}", headers=as_(token))
        assert r.status == 200
        job: dict[str, object] = (await r.json())["job"]
        if job["status"] != "running":
            return job
        await asyncio.sleep(0.02)
    raise AssertionError("the job did not finish")


def test_job_flow_to_done_visible_only_to_its_owner(tmp_path: Path) -> None:
    async def body(client: TestClient) -> None:
        r = await client.post(
            "/api/v1/reports/jobs",
            json={"unit": "t1", "from": "2026-03-02", "to": "2026-03-02"},
            headers=as_("inspector-s1"),
        )
        assert r.status == 202
        job = (await r.json())["job"]
        assert set(job) == {"id", "status", "done", "total"}
        assert job["status"] == "running"
        done = await _poll(client, str(job["id"]), "inspector-s1")
        assert done["status"] == "done"
        assert (done["done"], done["total"]) == (2, 2)
        report = done["report"]
        assert isinstance(report, dict)
        assert report["totals"]["on_duty_rate"] == pytest.approx(0.5)
        assert [u["unit_id"] for u in report["path"]] == ["s1"]
        for other in ("inspector", "admin"):
            r = await client.get(f"/api/v1/reports/jobs/{job['id']}", headers=as_(other))
            assert r.status == 404

    _run(tmp_path, body)


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"not json", 400, "body: not JSON"),
        (b"[1, 2]", 400, "body: expected a JSON object"),
        (b'{"from": "2026-03-02", "to": "2026-03-02"}', 400, "unit: required"),
        (b'{"unit": "t1", "from": "2026-03-02"}', 400, "to: required, as YYYY-MM-DD"),
        (b'{"unit": "t1", "from": 20260302, "to": "2026-03-02"}', 400, "from: expected text"),
        (b'{"unit": "t1", "from": "2026-03-02", "to": "2026-03-02", "x": 1}', 400, "x: unknown"),
        (b'{"unit": "nowhere", "from": "2026-03-02", "to": "2026-03-02"}', 404, "unit: no unit"),
        (b"{" + b" " * 20_000 + b"}", 413, "body: larger than"),
    ],
)
def test_bad_job_requests(tmp_path: Path, payload: bytes, status: int, message: str) -> None:
    async def body(client: TestClient) -> None:
        r = await client.post(
            "/api/v1/reports/jobs",
            data=payload,
            headers={**as_("inspector"), "Content-Type": "application/json"},
        )
        assert r.status == status
        assert (await r.json())["error"].startswith(message)

    _run(tmp_path, body)


class _SlowDuty(FakeDuty):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def recompute_many(
        self, shifts: Sequence[Shift], *, progress: Callable[[int], None] | None = None
    ) -> list[ShiftResult]:
        self.release.wait(10)
        return super().recompute_many(shifts, progress=progress)


def test_too_many_jobs_at_once_is_429(tmp_path: Path) -> None:
    duty = _SlowDuty()
    reports = Reports(None, FakeOrg(), duty, FakeSpotChecks(), scan=fake_scan)

    async def body(client: TestClient) -> None:
        statuses = []
        for _ in range(5):
            r = await client.post(
                "/api/v1/reports/jobs",
                json={"unit": "futian", "from": "2026-03-02", "to": "2026-03-09"},
                headers=as_("admin"),
            )
            statuses.append(r.status)
        assert statuses == [202, 202, 202, 202, 429]
        assert (await r.json())["error"].startswith("jobs: you already have 4 reports running")
        # Someone else is not held back by the admin's queue.
        r = await client.post(
            "/api/v1/reports/jobs",
            json={"unit": "t1", "from": "2026-03-02", "to": "2026-03-02"},
            headers=as_("inspector"),
        )
        assert r.status == 202
        duty.release.set()
        assert (await _poll(client, (await r.json())["job"]["id"], "inspector"))["status"] == "done"

    try:
        _run(tmp_path, body, reports)
    finally:
        duty.release.set()
