"""The volunteer's screen in real headless Chromium, served by a real agent's local UI.

A signed dispatch reaches the agent through its downlink (as the MQTT link hands it over), the
page shows it, and the clicks end up as signed frames in the agent's outbox.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.agent import Agent
from agent.localui import LocalUI
from agent.sim_gps import SimulatedWalker
from protocol import (
    Clue,
    DispatchCommand,
    DispatchResponse,
    Event,
    EventKind,
    IncidentKind,
    Message,
    ResponseStatus,
    ServerEndpoint,
    Snapshot,
    SnapshotTrigger,
    Task,
    TaskAck,
    decode,
)
from provisioning import BrokerAddress, Enrolment, new_device
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

DEVICE = "ft-0042"


@dataclass
class Terminal:
    agent: Agent
    server: ServerEndpoint
    ui: LocalUI

    def deliver(self, message: Message) -> None:
        out = self.server.command(DEVICE, message, sent_ms=self.agent.now_ms())
        self.agent._inbox.put(("msg", out.topic, out.payload))  # what MqttLink's callback does

    def sent(self) -> list[Message]:
        items = self.agent.call(lambda: self.agent.outbox.next_items(200))
        return [decode(i.payload).envelope.message for i in items]

    def responses(self) -> list[tuple[str, ResponseStatus]]:
        return [(m.dispatch_id, m.status) for m in self.sent() if isinstance(m, DispatchResponse)]




@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    server_key = Ed25519PrivateKey.generate()
    identity = new_device(DEVICE, units=("futian",))
    enrolment = Enrolment(identity, server_key.public_key(), 1, BrokerAddress("127.0.0.1", 1))
    agent = Agent(enrolment, tmp_path / "agent", source=SimulatedWalker(22.5431, 114.0579))
    loop = threading.Thread(target=agent.run, daemon=True)  # the agent's loop; no broker needed
    loop.start()
    ui = LocalUI(agent, port=0)
    ui.start()
    try:
        yield Terminal(agent, ServerEndpoint(signing_key=server_key, key_id=1), ui)
    finally:
        ui.stop()
        agent._stop.set()
        loop.join(5)
        agent.outbox.close()


def _photo(path: Path) -> bytes:
    import cv2
    import numpy as np

    image = np.zeros((120, 160, 3), np.uint8)
    image[:, :80] = (30, 160, 220)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    path.write_bytes(encoded.tobytes())
    return encoded.tobytes()


def test_volunteer_accepts_a_dispatch_on_the_screen(
    tmp_path: Path, terminal: Terminal, browser
) -> None:
    agent = terminal.agent
    wait_until(lambda: agent.latest_fix is not None, 10, "a first fix")
    page = browser.new_page(viewport={"width": 412, "height": 915}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        page.goto(terminal.ui.url)
        page.wait_for_function("window.yijing.polls > 0", timeout=10_000)
        assert page.locator("#dispatch").is_hidden()
        assert page.evaluate("document.documentElement.lang") == "zh-CN"

        now = agent.now_ms()
        terminal.deliver(
            DispatchCommand(
                dispatch_id="d-77", incident_id="inc-9", kind=IncidentKind.FIGHT, priority=1,
                lat=22.5461, lon=114.0589, sent_ms=now, expires_ms=now + 300_000,
                note="酒吧街 bar street",
            )
        )  # fmt: skip
        page.wait_for_selector("#dispatch[data-id='d-77']", state="visible", timeout=10_000)
        assert "斗殴" in page.inner_text("#d-kind")
        assert "酒吧街" in page.inner_text("#d-note")
        assert " m" in page.inner_text("#d-where") or "km" in page.inner_text("#d-where")
        assert page.get_attribute("#d-nav", "href").startswith("geo:22.5461")
        assert ":" in page.inner_text("#left")  # m:ss left
        shot = tmp_path / "agent-dispatch-zh.png"
        page.screenshot(path=str(shot), full_page=True)

        page.click("#lang")
        page.wait_for_function("document.documentElement.lang === 'en'")
        assert page.inner_text("#d-kind") == "Fight"
        assert page.inner_text("#accept") == "Accept"
        page.screenshot(path=str(tmp_path / "agent-dispatch-en.png"), full_page=True)

        page.click("#accept")
        page.wait_for_selector("#current[data-id='d-77']", state="visible", timeout=10_000)
        assert page.locator("#dispatch").is_hidden()
        wait_until(
            lambda: ("d-77", ResponseStatus.ACCEPTED) in terminal.responses(), 10, "accepted"
        )
        page.click("#arrived")
        page.wait_for_selector("#c-onscene", state="visible", timeout=10_000)
        assert terminal.responses() == [
            ("d-77", ResponseStatus.DELIVERED),
            ("d-77", ResponseStatus.ACCEPTED),
            ("d-77", ResponseStatus.ON_SCENE),
        ]

        # A task: shown, then read.
        now = agent.now_ms()
        terminal.deliver(
            Task(task_id="t-5", title="School gate 15:30", sent_ms=now, expires_ms=now + 600_000)
        )
        page.wait_for_selector("#tasks li[data-task='t-5']", timeout=10_000)
        page.click("#tasks li[data-task='t-5'] button.read")
        page.wait_for_selector("#tasks li[data-task='t-5']", state="detached", timeout=10_000)
        assert [m.task_id for m in terminal.sent() if isinstance(m, TaskAck)] == ["t-5"]

        # SOS: one tap only arms it; the second sends it.
        def sos_events() -> list[Event]:
            return [m for m in terminal.sent() if isinstance(m, Event) and m.kind is EventKind.SOS]

        page.click("#sos")
        assert page.locator("#sos.armed").count() == 1
        page.wait_for_timeout(500)
        assert sos_events() == []
        page.click("#sos")
        wait_until(lambda: len(sos_events()) == 1, 10, "the SOS in the outbox")

        # A clue with a photo from the file input.
        photo = _photo(tmp_path / "clue.jpg")
        page.fill("#clue-text", "Two men forcing a bike lock")
        page.select_option("#clue-category", "theft")
        page.set_input_files("#clue-photo", str(tmp_path / "clue.jpg"))
        page.click("#clue-send")
        page.wait_for_selector("#clue-status[data-clue]", timeout=10_000)
        clue_id = page.get_attribute("#clue-status", "data-clue")
        messages = terminal.sent()
        clues = [m for m in messages if isinstance(m, Clue)]
        assert [(c.clue_id, c.category) for c in clues] == [(clue_id, IncidentKind.THEFT)]
        snaps = [m for m in messages if isinstance(m, Snapshot)]
        assert [(s.trigger, s.request_id, s.jpeg) for s in snaps] == [
            (SnapshotTrigger.CLUE, clue_id, photo)
        ]
        page.screenshot(path=str(tmp_path / "agent-after-en.png"), full_page=True)
    finally:
        page.close()
    assert shot.exists() and shot.stat().st_size > 10_000  # a rendered page, not a blank
    assert not errors, errors  # a CSP violation would show here too
