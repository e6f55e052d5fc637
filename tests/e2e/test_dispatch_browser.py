"""The duty officer's page in real headless Chromium, every part real: a volunteer on a running
shift carries a real agent through real Mosquitto; the officer places an incident on the map,
dispatches the volunteer from the proposals, and sees the acceptance live; then the volunteer
presses SOS, the page shows it within a second of the server storing it, and acknowledging it
clears it."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.agent import Agent
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker, offset
from protocol import DispatchCommand, EventKind, ResponseStatus
from server.duty.geo import Circle
from server.org.model import Post, PostKind, Terminal, Unit, UnitLevel, Volunteer
from server.web.access import Principal, Role
from tests.helpers import enrol, wait_until
from yijing.broker import LocalBroker

pytestmark = pytest.mark.e2e

LAT, LON = 22.5431, 114.0579
DEVICE = "ft-0001"
FAST = ReportingPolicy(interval_moving_s=1, interval_still_s=1, heartbeat_s=2, min_distance_m=0)


@pytest.fixture
def volunteer(tmp_path: Path, broker: LocalBroker, server_factory: Any) -> Iterator[Any]:
    """A station with one post; 李明 on a running shift there, his terminal a real agent a
    minute's walk from where the incident will be."""
    server = server_factory(broker).server
    org = server.org
    now_ms = int(time.time() * 1000)
    org.put_unit(Unit("sz", "深圳市", UnitLevel.CITY))
    org.put_unit(Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"))
    org.put_unit(Unit("ftpcs", "福田派出所", UnitLevel.STATION, "ft"))
    post_at = offset(LAT, LON, 60, 0)
    org.put_volunteer(Volunteer("v1", "李明", "ftpcs"))
    org.put_terminal(Terminal(DEVICE, "ftpcs", holder="v1"), at_ms=now_ms)
    org.put_post(Post("p1", "正义街值守点", PostKind.DUTY_POINT, "ftpcs", Circle(*post_at, 200.0)))
    start_ms = (now_ms // 1000 - 30) * 1000
    org.put_shift(org.make_shift("s1", "v1", "p1", start_ms, start_ms + 3_600_000))
    server.duty.refresh()
    agent = Agent(
        enrol(server, DEVICE, broker),
        tmp_path / "agent",
        source=SimulatedWalker(*post_at, radius_m=5, seed=1),
        policy=FAST,
    )
    agent.start()
    try:
        yield server, agent
    finally:
        agent.stop()




def click_map_at(page: Any, lat: float, lon: float) -> None:
    """Click the canvas where the page draws (lat, lon)."""
    x, y = page.evaluate("([lat, lon]) => YJ.map.toScreen(lat, lon)", [lat, lon])
    box = page.locator("#map").bounding_box()
    assert 0 < x < box["width"] and 0 < y < box["height"], (x, y, box)
    page.mouse.click(box["x"] + x, box["y"] + y)


def test_officer_dispatches_from_the_page_and_sees_sos(
    tmp_path: Path, volunteer: Any, browser: Any
) -> None:
    server, agent = volunteer
    server.auth.add("officer-token", Principal("值班员 李", Role.OFFICER))
    rang: list[DispatchCommand] = []
    ringing = threading.Event()

    def ring(command: DispatchCommand) -> None:  # on the agent's thread
        rang.append(command)
        ringing.set()

    agent.dispatch_listeners.append(ring)
    page = browser.new_page(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        officer_flow(tmp_path, server, agent, page, rang, ringing)
    finally:
        page.close()
    assert not errors, errors


def officer_flow(
    tmp_path: Path,
    server: Any,
    agent: Agent,
    page: Any,
    rang: list[DispatchCommand],
    ringing: threading.Event,
) -> None:
    page.goto(f"{server.url}/login?token=officer-token")
    page.wait_for_selector("#conn[data-state='open']", timeout=10_000)
    # On post on the live map: the server's status, drawn and counted.
    page.wait_for_selector(
        f"#terminal-list li[data-device='{DEVICE}'][data-status='on_post']", timeout=30_000
    )
    page.wait_for_function("document.querySelector('#count-on_post').textContent.trim() === '1'")

    # A new incident, placed by clicking the map 60 m south of the volunteer.
    page.click("[data-tab='dispatch']")
    page.click("#new-incident")
    page.wait_for_selector("#map.placing")
    click_map_at(page, LAT, LON)
    page.wait_for_function("!document.querySelector('#draft-where').textContent.includes('尚未')")
    page.select_option("#draft-kind", "fight")
    page.select_option("#draft-priority", "1")
    page.fill("#draft-note", "正义街路口两人斗殴")
    page.click("#draft-submit")

    # The volunteer is proposed in the 1-minute circle, ticked and dispatched.
    candidate = page.locator(f"#proposals li[data-device='{DEVICE}']")
    candidate.wait_for(timeout=10_000)
    assert "李明" in candidate.inner_text()
    candidate.locator("input[type=checkbox]").check()
    page.click("#dispatch-send")
    assert ringing.wait(10), "the terminal never rang"
    assert rang[0].note == "正义街路口两人斗殴"
    page.wait_for_selector(
        f".dispatch[data-device='{DEVICE}'][data-state='delivered']", timeout=10_000
    )
    agent.submit(lambda: agent.answer_dispatch(ResponseStatus.ACCEPTED))
    # 60 m away is within the on-scene allowance (50 m plus the fix's accuracy): the next fix
    # may turn "accepted" into "on scene" before the page is looked at.
    page.wait_for_selector(
        f".dispatch[data-device='{DEVICE}'][data-state='accepted'], "
        f".dispatch[data-device='{DEVICE}'][data-state='on_scene']",
        timeout=10_000,
    )
    # Engaged on the live map too (the terminals tab is hidden behind the dispatch tab).
    page.wait_for_selector(
        f"#terminal-list li[data-device='{DEVICE}'][data-status='dispatched']",
        state="attached",
        timeout=10_000,
    )
    # The incident's audit trail, step by step, as the server recorded it.
    page.click("#incident-audit summary")
    page.wait_for_selector("#incident-audit li[data-step='accepted']", timeout=10_000)
    steps = page.eval_on_selector_all(
        "#incident-audit li", "items => items.map(li => li.dataset.step)"
    )
    assert steps[:2] == ["opened", "dispatched"] and "delivered" in steps, steps
    shot = tmp_path / "dispatch.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 0

    # SOS: on the page within a second of the server storing it.
    before = server.ingest.stats.stored
    raised = time.monotonic()
    agent.submit(lambda: agent.raise_event(EventKind.SOS))
    wait_until(lambda: server.ingest.stats.stored > before, 5, "the SOS stored")
    stored = time.monotonic()
    card = page.locator(f".alert-card[data-device='{DEVICE}']")
    card.wait_for(timeout=2_000)
    shown = time.monotonic()
    assert shown - stored < 1.0, f"SOS shown {shown - stored:.2f} s after it was stored"
    assert shown - raised < 2.0
    assert "李明" in card.inner_text()
    page.screenshot(path=str(tmp_path / "sos.png"))
    card.locator(".btn-ack").click()
    card.wait_for(state="detached", timeout=5_000)
    assert page.locator("#alerts").is_hidden()
    assert not [a for a in server_alerts(server) if a["state"] == "open"], (
        "the alert is still open on the server"
    )


def server_alerts(server: Any) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        server.url + "/api/v1/alerts?state=all",
        headers={"Authorization": f"Bearer {server.first_admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.loads(response.read())["alerts"])
