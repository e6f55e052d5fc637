"""The inspector's reports page in real headless Chromium, against a canned API.

The report, shift and spot-check endpoints are specified by their JSON (issue #6); this test
serves the real static files and answers those routes with canned JSON that follows the
contract, so the page is exercised end to end in a browser whatever the server side's state.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

STATIC = Path(__file__).resolve().parents[2] / "server" / "web" / "static"
TOKEN = "inspector-token"
COLORS = {
    "on_post": "#15803d",
    "on_post_backfilled": "#86efac",
    "off_post": "#f97316",
    "no_fix": "#9ca3af",
    "offline": "#dc2626",
}

CITY = {"unit_id": "shenzhen", "name": "深圳市", "level": "city"}
UNITS = [  # the inspector's scope: Futian district and below (the city is above it)
    {"unit_id": "futian", "name": "福田区", "level": "district", "parent_id": "shenzhen"},
    {"unit_id": "futian-s1", "name": "沙头派出所", "level": "station", "parent_id": "futian"},
    {"unit_id": "futian-s2", "name": "香蜜湖派出所", "level": "station", "parent_id": "futian"},
    {"unit_id": "futian-s1-g1", "name": "沙头一网格", "level": "grid", "parent_id": "futian-s1"},
    {"unit_id": "futian-s1-t1", "name": "沙头一队", "level": "team", "parent_id": "futian-s1-g1"},
]
BY_ID = {u["unit_id"]: u for u in UNITS}
H = 3_600_000
DAY0 = int(datetime(2026, 11, 23, tzinfo=UTC).timestamp() * 1000)  # 08:00 in Shanghai


def _unit_row(unit: dict[str, Any], k: int) -> dict[str, Any]:
    sched = 8 * 3600 * (4 - k)
    on = round(sched * (0.875 - 0.025 * k))
    return {
        "unit_id": unit["unit_id"],
        "name": unit["name"],
        "level": unit["level"],
        "shifts": 4 - k,
        "volunteers": 3 - k,
        "scheduled_s": sched,
        "on_post_s": on,
        "on_post_backfilled_s": 3600,
        "off_post_s": 1800,
        "no_fix_s": 600,
        "offline_s": sched - on - 2400,
        "on_duty_rate": on / sched,
        "terminals": 3 - k,
        "terminal_scheduled_s": sched,
        "terminal_alive_s": round(sched * 0.9333),
        "usage_rate": 0.9333,
        "spot_checks_sent": 4 if k < 2 else 0,
        "spot_checks_answered": 3 if k < 2 else 0,
        "spot_check_answer_rate": 0.75 if k < 2 else None,
        "flags": {"still_in_drawer": 1, "spot_check_gap": 2},
    }


def _shift_row(sid: str, vid: str, start_h: int, device: str) -> dict[str, Any]:
    return {
        "shift_id": sid,
        "volunteer_id": vid,
        "post_id": "post-shatou-1",
        "post_name": "沙头街道口值守岗",
        "volunteer_name": "张伟" if vid == "v-001" else "李娜",
        "start_ms": DAY0 + start_h * H,
        "end_ms": DAY0 + (start_h + 8) * H,
        "device_id": device,
        "on_duty_rate": 0.625,
        "usage_rate": 0.958,
        "on_post_s": 18000,
        "scheduled_s": 28800,
        "flags": {"still_in_drawer": 1},
    }


def _report(unit_id: str, frm: str, to: str) -> dict[str, Any]:
    unit = BY_ID[unit_id]
    path: list[dict[str, str]] = []
    u: dict[str, Any] | None = unit
    while u is not None:
        path.insert(0, {k: u[k] for k in ("unit_id", "name", "level")})
        u = BY_ID.get(u["parent_id"] or "")
    path.insert(0, CITY)
    children = [u for u in UNITS if u["parent_id"] == unit_id]
    vols = [("v-001", "张伟", ["sh-1", "sh-2"]), ("v-002", "李娜", ["sh-3"])]
    return {
        "unit": path[-1],
        "path": path,
        "period": {"from": frm, "to": to, "tz": "Asia/Shanghai"},
        "totals": _unit_row(unit, 0),
        "children": [_unit_row(c, i + 1) for i, c in enumerate(children)],
        "volunteers": [
            {
                "volunteer_id": v,
                "name": n,
                "unit_id": unit_id,
                "shifts": s,
                "scheduled_s": 28800 * len(s),
                "on_post_s": 18000 * len(s),
                "on_post_backfilled_s": 3600,
                "off_post_s": 1800,
                "no_fix_s": 600,
                "offline_s": 1200,
                "on_duty_rate": 0.625,
                "usage_rate": 0.958,
                "late_s": 1800,
                "early_leave_s": 0,
                "spot_checks_sent": 2,
                "spot_checks_answered": 1,
                "flags": {"still_in_drawer": 1},
            }
            for v, n, s in vols
        ],
        "shifts": [
            _shift_row("sh-1", "v-001", 0, "ft-0001"),
            _shift_row("sh-2", "v-001", 24, "ft-0001"),
            _shift_row("sh-3", "v-002", 0, "ft-0002"),
        ],
        "flags": [
            {
                "kind": "still_in_drawer",
                "device_id": "ft-0001",
                "shift_id": "sh-1",
                "volunteer_id": "v-001",
                "start_ms": DAY0 + H,
                "end_ms": DAY0 + 3 * H + H // 2,
                "value": 2.5,
                "detail": "within 3 m for 2.5 h, accuracy frozen at 4.0 m",
            },
            {
                "kind": "spot_check_gap",
                "device_id": "ft-0001",
                "shift_id": "sh-1",
                "volunteer_id": "v-001",
                "start_ms": DAY0 + 6 * H,
                "end_ms": DAY0 + 6 * H + 120_000,
                "value": 420,
                "detail": "offline from 13:58 to 14:05 around spot check sc-7",
            },
        ],
    }


def _segments() -> list[dict[str, Any]]:
    s0 = DAY0 // 1000
    cuts = [
        (0, 20, "offline"),
        (20, 30, "no_fix"),
        (30, 180, "on_post"),
        (180, 210, "off_post"),
        (210, 270, "on_post_backfilled"),
        (270, 480, "on_post"),
    ]
    return [{"start_s": s0 + a * 60, "end_s": s0 + b * 60, "state": st} for a, b, st in cuts]


def _jpeg() -> bytes:
    import cv2
    import numpy as np

    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (40, 160, 40)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return bytes(encoded.tobytes())


CHART = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="480" height="160" viewBox="0 0 480 160">'
    '<rect width="480" height="160" fill="#fff"/><rect x="40" y="30" width="60" height="110" '
    'fill="#15803d"/><rect x="110" y="20" width="60" height="120" fill="#1d4ed8"/></svg>'
)


class CannedApi:
    """The issue #6 routes with canned JSON; records what the page asked for."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []  # {"body", "polls"}
        self.checks: list[dict[str, Any]] = []  # {"body", "polls", "check"}
        self.jpeg = _jpeg()

    def app(self) -> web.Application:
        @web.middleware
        async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path.startswith("/api/") and request.cookies.get("yj_token") != TOKEN:
                return _error(401, "sign in first: open the link printed by `yijing server`")
            response: web.StreamResponse = await handler(request)
            return response

        app = web.Application(middlewares=[auth])
        r = app.router
        r.add_get("/static/{name}", self.static)
        r.add_get("/api/v1/me", self.me)
        r.add_get("/api/v1/org/units", self.units)
        r.add_post("/api/v1/reports/jobs", self.job_start)
        r.add_get("/api/v1/reports/jobs/{id}", self.job_poll)
        r.add_get("/api/v1/reports/units/{unit}/chart.svg", self.chart)
        r.add_get("/api/v1/reports/units/{unit}/{name}", self.csv)
        r.add_get("/api/v1/reports/shifts/{id}", self.shift)
        r.add_post("/api/v1/spotchecks", self.check_start)
        r.add_get("/api/v1/spotchecks", self.check_list)
        r.add_get("/api/v1/spotchecks/{id}", self.check_poll)
        r.add_get("/api/v1/snapshots/{name}", self.snapshot)
        return app

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if "/" in name or name.startswith(".") or not (STATIC / name).is_file():
            return _error(404, f"no static file {name!r}")
        return web.FileResponse(STATIC / name)

    async def me(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"name": "督导 王", "role": "inspector"})

    async def units(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"units": UNITS})

    async def job_start(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("unit") not in BY_ID:
            return _error(404, f"no unit {body.get('unit')!r}")
        self.jobs.append({"body": body, "polls": 0})
        job = {"id": f"job-{len(self.jobs)}", "status": "queued", "done": 0, "total": 4}
        return web.json_response({"job": job}, status=202)

    async def job_poll(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["id"].removeprefix("job-"))
        rec = self.jobs[n - 1]
        rec["polls"] += 1
        done = {1: 1, 2: 3}.get(rec["polls"], 4)
        job: dict[str, Any] = {
            "id": f"job-{n}",
            "status": "running" if done < 4 else "done",
            "done": done,
            "total": 4,
        }
        if done == 4:
            b = rec["body"]
            job["report"] = _report(b["unit"], b["from"], b["to"])
        return web.json_response({"job": job})

    async def chart(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=CHART, content_type="image/svg+xml")

    async def csv(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="unit_id,on_duty_rate\nfutian,0.875\n", content_type="text/csv")

    async def shift(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        row = _shift_row(sid, "v-001", 0, "ft-0001")
        shift = {
            k: row[k]
            for k in ("shift_id", "volunteer_id", "post_id", "start_ms", "end_ms", "device_id")
        }
        return web.json_response(
            {
                "shift": shift,
                "post": {"post_id": "post-shatou-1", "name": "沙头街道口值守岗", "kind": "fixed"},
                "volunteer": {"volunteer_id": "v-001", "name": "张伟"},
                "tally": {
                    "scheduled_s": 28800,
                    "on_post_s": 21600,
                    "on_post_backfilled_s": 3600,
                    "off_post_s": 1800,
                    "no_fix_s": 600,
                    "offline_s": 1200,
                    "on_duty_rate": 0.75,
                    "usage_rate": 0.9583,
                    "late_s": 1800,
                    "early_leave_s": 0,
                },
                "tz": "Asia/Shanghai",
                "segments": _segments(),
                "flags": _report("futian", "2026-11-23", "2026-11-23")["flags"][:1],
                "roll_calls": [
                    {
                        "sent_ms": DAY0 + 2 * H,
                        "deadline_ms": DAY0 + 2 * H + 120_000,
                        "answered_ms": DAY0 + 2 * H + 40_000,
                        "answered": True,
                    },
                    {
                        "sent_ms": DAY0 + 6 * H,
                        "deadline_ms": DAY0 + 6 * H + 120_000,
                        "answered_ms": None,
                        "answered": False,
                    },
                ],
            }
        )

    async def check_start(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        devices = body.get("devices") or ["ft-0001", "ft-0002", "ft-0003"][: body.get("sample", 0)]
        now = int(datetime.now(UTC).timestamp() * 1000)
        check = {
            "check_id": f"sc-{len(self.checks) + 1}",
            "unit_id": body["unit"],
            "created_ms": now,
            "created_by": "督导 王",
            "deadline_ms": now + body["deadline_s"] * 1000,
            "want_snapshot": body["want_snapshot"],
            "total": len(devices),
            "answered": 0,
            "answer_rate": 0.0,
            "targets": [
                {
                    "device_id": d,
                    "volunteer_id": f"v-00{i + 1}",
                    "shift_id": f"sh-{i + 1}",
                    "rollcall_id": f"rc-{i + 1}",
                    "sent_ms": now + 200,
                    "answered_ms": None,
                    "result": "pending",
                    "reason": None,
                    "fix": None,
                    "snapshot_url": None,
                    "error": None,
                }
                for i, d in enumerate(devices)
            ],
        }
        self.checks.append({"body": body, "polls": 0, "check": check})
        return web.json_response({"check": check}, status=201)

    async def check_poll(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["id"]
        rec = next((c for c in self.checks if c["check"]["check_id"] == cid), None)
        if rec is None:
            return _error(404, f"no spot check {cid!r}")
        rec["polls"] += 1
        check, targets = rec["check"], rec["check"]["targets"]
        if rec["polls"] >= 2 and targets[0]["result"] == "pending":
            t0 = targets[0]
            t0.update(
                result="answered",
                answered_ms=t0["sent_ms"] + 4200,
                fix={
                    "lat": 22.5431,
                    "lon": 114.0579,
                    "time_ms": t0["sent_ms"] + 4000,
                    "accuracy_m": 6.0,
                },
            )
            if check["want_snapshot"]:
                t0["snapshot_url"] = "/api/v1/snapshots/" + "ab" * 32 + ".jpg"
        if rec["polls"] >= 3:
            for t in targets[1:]:
                t.update(result="missed", reason="no fix received with the roll call's id")
        check["answered"] = sum(t["result"] in ("answered", "late") for t in targets)
        check["answer_rate"] = check["answered"] / max(1, check["total"])
        return web.json_response({"check": check})

    async def check_list(self, request: web.Request) -> web.StreamResponse:
        unit = request.query.get("unit")
        keys = (
            "check_id",
            "unit_id",
            "created_ms",
            "created_by",
            "deadline_ms",
            "total",
            "answered",
            "answer_rate",
        )
        checks = [
            {k: c["check"][k] for k in keys} for c in self.checks if c["check"]["unit_id"] == unit
        ]
        return web.json_response({"checks": checks[::-1]})

    async def snapshot(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self.jpeg, content_type="image/jpeg")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class CannedServer:
    """The canned app on its own event loop thread, on a free port."""

    def __init__(self) -> None:
        self.api = CannedApi()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner = self._run(self._start())
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def _start(self) -> web.AppRunner:
        runner = web.AppRunner(self.api.app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self._run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    server = CannedServer()
    yield server
    server.close()




def _text(page: Page, selector: str) -> str:
    return page.locator(selector).first.inner_text().strip()


def test_signed_out_page_says_how_to_sign_in(canned: CannedServer, browser: Browser) -> None:
    page = browser.new_page(locale="zh-CN")
    try:
        page.goto(canned.url + "/static/reports.html")
        page.wait_for_selector("#message:not([hidden])")
        assert "登录" in _text(page, "#message .message-text")
        assert "yijing server" in _text(page, "#message .message-detail")  # the server's words
        assert "sign in first" in _text(page, "#unit-tree")
    finally:
        page.close()


def test_inspector_runs_reports_timelines_and_spot_checks(
    tmp_path: Path, canned: CannedServer, browser: Browser
) -> None:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, locale="zh-CN")
    context.add_cookies([{"name": "yj_token", "value": TOKEN, "url": canned.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    api = canned.api
    try:
        page.goto(canned.url + "/static/reports.html")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        page.wait_for_selector("#unit-tree button[data-unit='futian'][aria-current='true']")
        assert _text(page, "#me").startswith("督导 王")
        # Pick a unit: a station (its grid appears in the tree), then the district.
        page.click("#unit-tree button[data-unit='futian-s1']")
        page.wait_for_selector("#unit-tree button[data-unit='futian-s1-g1']")
        assert _text(page, "#current-unit") == "沙头派出所"
        page.click("#unit-tree button[data-unit='futian']")
        assert _text(page, "#current-unit") == "福田区"
        page.fill("#from", "2026-11-20")
        page.fill("#to", "2026-11-23")

        # Run the report: the progress bar moves through the polls, then the totals show.
        page.click("#run")
        page.wait_for_selector("#report-body:not([hidden])", timeout=10_000)
        assert api.jobs[0]["body"] == {"unit": "futian", "from": "2026-11-20", "to": "2026-11-23"}
        assert api.jobs[0]["polls"] == 3
        progress = page.evaluate("window.yijingReports.progress")
        running = [p for p in progress if p[2] == "running"]
        assert [p[0] for p in running] == [1, 3], progress
        assert progress[-1] == [4, 4, "done"]
        assert _text(page, "#job-text") == "报表已生成"
        assert page.get_attribute("#job-bar", "aria-valuenow") == "4"
        assert _text(page, "[data-fig='onDuty'] .fig-value") == "87.5%"
        assert _text(page, "[data-fig='usage'] .fig-value") == "93.3%"
        assert _text(page, "[data-fig='answer'] .fig-value") == "75.0%"
        assert _text(page, "[data-fig='flags'] .fig-value") == "3"
        assert _text(page, "[data-fig='onDuty'] .fig-sub") == "在岗 28:00 / 应在岗 32:00"
        assert _text(page, "#report-h").startswith("福田区")
        assert page.locator("#children tbody tr[data-unit]").count() == 2
        # The station without spot checks has no answer rate.
        assert _text(page, "#children tr[data-unit='futian-s2'] td:nth-child(7)").endswith("—")
        page.wait_for_function("document.querySelector('#chart').naturalWidth > 0")
        assert "lang=zh" in (page.get_attribute("#chart", "src") or "")
        assert page.get_attribute("#csv-units", "href") == (
            "/api/v1/reports/units/futian/units.csv?from=2026-11-20&to=2026-11-23"
        )
        assert page.get_attribute("#csv-volunteers", "href") == (
            "/api/v1/reports/units/futian/volunteers.csv?from=2026-11-20&to=2026-11-23"
        )
        flag = "#flags li[data-kind='still_in_drawer']"
        assert _text(page, f"{flag} .flag-kind") == "终端长时间不动（疑似未随身携带）"
        assert _text(page, f"{flag} .flag-value") == "2:30"  # hours as h:mm
        assert _text(page, f"{flag} .flag-detail").startswith("within 3 m for 2.5 h")  # as given
        assert _text(page, "#flags li[data-kind='spot_check_gap'] .flag-value") == "420 秒"

        # Drill down into a station (a click on the row), then back up by the breadcrumb.
        page.click("#children tr[data-unit='futian-s1'] td:nth-child(4)")
        page.wait_for_function(
            "document.querySelector('#report-h').textContent.startsWith('沙头派出所')",
            timeout=10_000,
        )
        assert api.jobs[1]["body"] == {
            "unit": "futian-s1",
            "from": "2026-11-20",
            "to": "2026-11-23",
        }
        crumbs = page.locator("#crumbs li")
        assert [crumbs.nth(i).inner_text() for i in range(3)] == ["深圳市", "福田区", "沙头派出所"]
        assert page.locator("#crumbs button").count() == 1  # the city is outside the scope
        assert _text(page, "#current-unit") == "沙头派出所"
        page.click("#crumbs button[data-unit='futian']")
        page.wait_for_function(
            "document.querySelector('#report-h').textContent.startsWith('福田区')", timeout=10_000
        )
        assert [j["body"]["unit"] for j in api.jobs] == ["futian", "futian-s1", "futian"]
        # Every volunteer of the subtree, not only the district's own.
        page.check("#all-vols")
        page.click("#run")
        page.wait_for_function("window.yijingReports.progress.some(p => p[2] === 'running')")
        page.wait_for_selector("#report-body:not([hidden])", timeout=10_000)
        assert api.jobs[3]["body"]["volunteers"] == "all"
        assert (page.get_attribute("#csv-volunteers", "href") or "").endswith("&volunteers=all")

        # A volunteer's shifts, then a shift's timeline drawn in SVG.
        page.click("#volunteers tr[data-volunteer='v-001'] th button")
        page.wait_for_selector("#shifts:not([hidden]) tr[data-shift='sh-1']")
        assert page.locator("#shift-table tbody tr").count() == 2
        assert _text(page, "#shifts-h") == "张伟 的班次"
        assert _text(page, "#shift-table tr[data-shift='sh-1'] td") == "沙头街道口值守岗"
        page.click("#shift-table tr[data-shift='sh-1'] button")
        page.wait_for_selector("#timeline:not([hidden]) svg.band rect.seg")
        segs = page.eval_on_selector_all(
            "#timeline svg.band rect.seg",
            "els => els.map(e =>"
            " [e.dataset.state, e.getAttribute('fill'), +e.getAttribute('width')])",
        )
        assert [s[0] for s in segs] == [s["state"] for s in _segments()]
        for state, fill, width in segs:
            assert fill == COLORS[state], (state, fill)
            assert width > 0
        widths = {s[0]: s[2] for s in segs}
        assert widths["on_post_backfilled"] == pytest.approx(2 * widths["off_post"], rel=0.01)
        assert page.locator("#timeline .rollcall").count() == 2
        assert page.locator("#timeline .rollcall[data-answered='false']").count() == 1
        ticks = page.eval_on_selector_all(
            "#timeline svg.band text", "els => els.map(e => e.textContent)"
        )
        assert ticks[0] == "08:00" and "16:00" in ticks, ticks  # hours in Asia/Shanghai
        assert page.locator("#timeline .tl-legend li").count() == 7
        assert _text(page, "#timeline [data-tally='on_duty_rate'] dd") == "75.0%"
        assert _text(page, "#timeline [data-tally='late'] dd") == "0:30"
        assert page.get_attribute("#timeline a[href*='timeline.png']", "href", timeout=1000) == (
            "/api/v1/reports/shifts/sh-1/timeline.png?lang=zh"
        )

        # A spot check on the district: a target goes from pending to answered, with its picture.
        page.fill("#sc-sample", "2")
        page.fill("#sc-deadline", "90")
        page.check("#sc-snapshot")
        page.click("#sc-start")
        page.wait_for_selector(
            "#sc-targets tr[data-device='ft-0001'] .result[data-result='pending']"
        )
        assert _text(page, "#sc-targets tr[data-device='ft-0001'] .result") == "等待中"
        assert "距截止还有 1:" in _text(page, "#sc-check .countdown")
        assert api.checks[0]["body"] == {
            "unit": "futian",
            "sample": 2,
            "deadline_s": 90,
            "want_snapshot": True,
        }
        page.wait_for_selector(
            "#sc-targets tr[data-device='ft-0001'] .result[data-result='answered']", timeout=10_000
        )
        assert _text(page, "#sc-targets tr[data-device='ft-0001'] .result") == "已应答"
        page.wait_for_function(
            "(() => { const i = document.querySelector('#sc-targets img.thumb');"
            " return i && i.complete && i.naturalWidth === 64; })()",
            timeout=10_000,
        )
        page.wait_for_selector("#sc-check .countdown[data-done='true']", timeout=10_000)
        assert _text(page, "#sc-targets tr[data-device='ft-0002'] .result") == "未应答"
        assert "roll call's id" in _text(page, "#sc-targets tr[data-device='ft-0002']")  # reason
        page.wait_for_selector("#sc-history tr[data-check='sc-1']")
        page.evaluate("window.scrollTo(0, 0)")  # the sticky side bar at the top of the picture
        page.screenshot(path=str(tmp_path / "reports-zh.png"), full_page=True)

        # English: the same stored preference as the dashboard, every label switched.
        page.click("#lang")
        page.wait_for_function("document.documentElement.lang === 'en'")
        assert page.evaluate("localStorage.getItem('yijing.lang')") == "en"
        assert page.title() == "Yijing · Inspection reports"
        assert _text(page, "[data-fig='onDuty'] .fig-label") == "On-duty rate"
        assert _text(page, "[data-fig='usage'] .fig-label") == "Terminal usage rate"
        assert _text(page, "[data-fig='answer'] .fig-label") == "Spot-check answer rate"
        assert _text(page, "#children thead th") == "Unit"
        assert _text(page, "#run") == "Run report"
        assert _text(page, "#job-text") == "Report ready"
        assert _text(page, "#sc-h") == "Spot checks"
        assert _text(page, "#sc-targets tr[data-device='ft-0001'] .result") == "Answered"
        assert _text(page, "#sc-targets tr[data-device='ft-0002'] .result") == "Missed"
        assert _text(page, f"{flag} .flag-kind") == "Terminal left still (not carried?)"
        assert _text(page, "#flags li[data-kind='spot_check_gap'] .flag-value") == "420 s"
        assert _text(page, "#shifts-h") == "Shifts of 张伟"
        assert "lang=en" in (page.get_attribute("#chart", "src") or "")
        legend = page.locator("#timeline .tl-legend").inner_text()
        assert "On post (backfilled)" in legend and "Offline" in legend
        body = page.locator("body").inner_text()
        leftovers = [k for k in ("rp.", "sc.", "fig.", "col.", "tl.", "state.") if k in body]
        assert not leftovers, leftovers  # no untranslated keys
        assert not [w for w in ("null", "undefined", "NaN") if w in body]
        page.wait_for_function("document.querySelector('#chart').naturalWidth > 0")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(tmp_path / "reports-en.png"), full_page=True)
        page.screenshot(path="/tmp/yijing-reports.png", full_page=True)
    finally:
        context.close()
    assert not errors, errors
