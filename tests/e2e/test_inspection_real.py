"""The inspector's whole path with every part real: agents on real Mosquitto feed the server,
an inspector signs in with a scoped token, runs a report of the district in headless
Chromium, drills down, and spot-checks a terminal that answers through the broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.agent import Agent
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from server.web.access import Principal, Role
from tests.helpers import enrol, wait_until
from yijing.broker import LocalBroker
from yijing.demo import FUTIAN_POSTS
from yijing.demo_org import seed_org

pytestmark = pytest.mark.e2e

TERMINALS = 4


@pytest.fixture
def fleet(tmp_path: Path, broker: LocalBroker, server_factory: Any) -> Iterator[Any]:
    server = server_factory(broker).server
    now_ms = int(time.time() * 1000)
    seed_org(server.org, FUTIAN_POSTS[:2], TERMINALS, now_ms - 120_000)
    server.duty.refresh()
    agents = []
    for i in range(TERMINALS):
        place = FUTIAN_POSTS[i % 2]
        agent = Agent(
            enrol(server, f"ft-{i + 1:04d}", broker),
            tmp_path / f"agent-{i}",
            source=SimulatedWalker(place.lat, place.lon, radius_m=50, seed=i),
            policy=ReportingPolicy(interval_moving_s=1, interval_still_s=2, heartbeat_s=2),
        )
        agent.start()
        agents.append(agent)
    wait_until(lambda: server.store.fix_count() >= 2 * TERMINALS, 30, "fixes from every agent")
    try:
        yield server
    finally:
        for agent in agents:
            agent.stop()


def test_inspector_reports_and_spot_checks_on_the_real_server(
    tmp_path: Path, fleet: Any, browser: Any
) -> None:
    server = fleet
    token = "inspector-of-futian"
    server.auth.add(token, Principal("督导 王", Role.INSPECTOR, scope="futian"))
    page = browser.new_page(
        viewport={"width": 1360, "height": 900},
        locale="zh-CN",
        timezone_id="Asia/Shanghai",  # a station's browser; reports' days are local
    )
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{server.url}/login?token={token}&next=/static/reports.html")
    assert page.url.endswith("/static/reports.html")
    # The scope is Futian: the city above it is not offered.
    page.wait_for_selector("#unit-tree button[data-unit='futian']")
    assert page.locator("#unit-tree button[data-unit='shenzhen']").count() == 0
    page.click("#unit-tree button[data-unit='futian']")
    # The day the shifts started on, in the reports' time zone (near midnight it is not
    # the machine's "today").
    start_ms = min(s.start_ms for s in server.org.shifts())
    day = datetime.fromtimestamp(start_ms / 1000, ZoneInfo("Asia/Shanghai")).date()
    page.fill("#from", day.isoformat())
    page.fill("#to", day.isoformat())
    page.click("#run")
    page.wait_for_selector("#report-body:not([hidden])", timeout=30_000)
    assert page.locator("#children tbody tr[data-unit]").count() == 2  # two stations
    on_duty = page.locator("[data-fig='onDuty'] .fig-value").inner_text()
    assert on_duty.endswith("%") and on_duty != "0.0%", on_duty
    page.wait_for_function("document.querySelector('#chart').naturalWidth > 0")
    # Drill down into a station.
    page.click("#children tr[data-unit='futian-hqb'] td:nth-child(4)")
    page.wait_for_function(
        "document.querySelector('#report-h').textContent.includes('华强北')",
        timeout=30_000,
    )
    # A spot check of one named terminal: it answers through the broker.
    page.check("input[name='mode'][value='devices']")
    page.fill("#sc-devices", "ft-0001")
    page.fill("#sc-deadline", "60")
    page.click("#sc-start")
    page.wait_for_selector(
        "#sc-targets tr[data-device='ft-0001'] .result[data-result='answered']",
        timeout=30_000,
    )
    page.screenshot(path=str(tmp_path / "inspection.png"), full_page=True)
    assert not errors, errors
    checks = server.spotchecks.history(units=None, since_ms=None, until_ms=None, limit=10)
    assert [t.result.value for t in checks[0].judged(int(time.time() * 1000)).targets] == [
        "answered"
    ]
