"""The live map in real headless Chromium, fed by real agents through a real Mosquitto."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.agent import Agent
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from protocol import Snapshot, SnapshotTrigger
from server.web.access import Principal, Role
from tests.helpers import enrol, wait_until
from yijing.broker import LocalBroker

pytestmark = pytest.mark.e2e



def _picture() -> Snapshot:
    import time

    import cv2
    import numpy as np

    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (200, 80, 20)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    jpeg = encoded.tobytes()
    return Snapshot(
        captured_ms=int(time.time() * 1000),
        trigger=SnapshotTrigger.PERIODIC,
        width=64,
        height=48,
        sha256=hashlib.sha256(jpeg).digest(),
        jpeg=jpeg,
    )




def test_officer_sees_terminals_move_on_the_live_map(
    tmp_path: Path, broker: LocalBroker, server_factory, browser
) -> None:
    st = server_factory(broker)
    server = st.server
    server.auth.add("officer-token", Principal("Officer Li", Role.OFFICER))
    agents = []
    for i in range(5):
        device = f"ft-{i + 1:04d}"
        agents.append(
            Agent(
                enrol(server, device, broker),
                tmp_path / device,
                source=SimulatedWalker(22.5431, 114.0579, speed_mps=8, seed=i),
                policy=ReportingPolicy(
                    interval_moving_s=0.3, interval_still_s=0.3, min_distance_m=0
                ),
            )
        )
    agents[2].outbox.record_snapshot(_picture())  # ft-0003 has sent a picture
    for agent in agents:
        agent.start()
    page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="en-US")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        # Anonymous: the page loads and says how to sign in, rather than showing nothing.
        page.goto(server.url + "/")
        page.wait_for_timeout(500)
        assert page.evaluate("window.yijing.positionsDrawn") == 0

        page.goto(f"{server.url}/login?token=officer-token")
        page.wait_for_selector("#conn[data-state='open']", timeout=10_000)
        page.wait_for_function(
            "document.querySelector('#count-total').textContent.trim() === '5'", timeout=15_000
        )
        page.wait_for_function("window.yijing.positionsDrawn === 5", timeout=15_000)
        for i in range(5):
            assert page.locator(f"#terminal-list [data-device='ft-{i + 1:04d}']").count() == 1

        def position(device: str) -> tuple[float, float]:
            t = page.evaluate(
                "(d) => { const t = window.yijing.terminals; const x = t.get ? t.get(d) : t[d];"
                " return [x.fix.lat, x.fix.lon]; }",
                device,
            )
            return (t[0], t[1])

        before = position("ft-0001")
        wait_until(lambda: position("ft-0001") != before, 10, "ft-0001 to move on the page")
        page.screenshot(path=str(tmp_path / "dashboard-en.png"))

        html_lang = page.evaluate("document.documentElement.lang")
        page.click("#lang")
        page.wait_for_function(f"document.documentElement.lang !== '{html_lang}'")
        assert page.evaluate("document.documentElement.lang").startswith("zh")
        page.screenshot(path=str(tmp_path / "dashboard-zh.png"))

        page.click("#terminal-list [data-device='ft-0003']")
        page.wait_for_function("document.querySelector('#detail').textContent.includes('ft-0003')")
        # Its latest picture, fetched with the sign-in cookie and decoded by the browser.
        page.wait_for_function(
            "(() => { const i = document.querySelector('#detail figure.snapshot img');"
            " return i && i.complete && i.naturalWidth === 64; })()",
            timeout=15_000,
        )
        page.screenshot(path=str(tmp_path / "dashboard-snapshot.png"))
    finally:
        page.close()
        for agent in agents:
            agent.stop()
    unexpected = [e for e in errors if "401" not in e]
    assert not unexpected, unexpected
