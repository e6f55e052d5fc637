"""The volunteer's side of dispatch on the agent: cancel, tasks, clues, arrival, the light."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.agent import ON_THE_WAY_S, Agent
from agent.clues import jpeg_size
from agent.errors import AgentNotRunning, ReportError
from agent.sim_gps import SimulatedWalker
from firmware_bridge.messages import Alert, AlertKind, LightPattern, SetLight
from protocol import (
    Clue,
    DispatchCancel,
    DispatchCommand,
    DispatchResponse,
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
from protocol.messages import MAX_JPEG_BYTES
from provisioning import BrokerAddress, Enrolment, new_device

T0 = 1_763_900_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = T0 / 1000

    def __call__(self) -> float:
        return self.now


Parts = tuple[Agent, ServerEndpoint, FakeClock]


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    server_key = Ed25519PrivateKey.generate()
    identity = new_device("ft-0001", units=("futian",))
    enrolment = Enrolment(identity, server_key.public_key(), 1, BrokerAddress("127.0.0.1", 1))
    clock = FakeClock()
    agent = Agent(enrolment, tmp_path, source=SimulatedWalker(22.5431, 114.0579), clock=clock)
    yield agent, ServerEndpoint(signing_key=server_key, key_id=1), clock
    agent.outbox.close()


def deliver(parts: Parts, message: Message) -> None:
    agent, server, clock = parts
    out = server.command("ft-0001", message, sent_ms=int(clock.now * 1000))
    agent._handle("msg", out.topic, out.payload)


def dispatch(dispatch_id: str, *, ttl_ms: int = 300_000) -> DispatchCommand:
    return DispatchCommand(
        dispatch_id=dispatch_id, incident_id="inc-1", kind=IncidentKind.FIGHT, priority=1,
        lat=22.5441, lon=114.0589, sent_ms=T0 - 1000, expires_ms=T0 + ttl_ms, note="bar street",
    )  # fmt: skip


def task(task_id: str, *, ttl_ms: int = 600_000, priority: int = 2) -> Task:
    return Task(
        task_id=task_id, title="Watch the school gate", sent_ms=T0 - 1000,
        expires_ms=T0 + ttl_ms, text="15:30-16:30", priority=priority,
    )  # fmt: skip


def sent(agent: Agent) -> list[Message]:
    return [decode(i.payload).envelope.message for i in agent.outbox.next_items(100)]


def responses(agent: Agent) -> list[tuple[str, ResponseStatus]]:
    return [(m.dispatch_id, m.status) for m in sent(agent) if isinstance(m, DispatchResponse)]


def jpeg(width: int = 64, height: int = 48) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (200, 80, 20)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


# --- cancel ---------------------------------------------------------------------------------------


def test_a_cancel_stops_the_ringing_dispatch_and_tells_listeners(parts: Parts) -> None:
    agent = parts[0]
    stopped: list[tuple[str, str]] = []
    agent.cancel_listeners.append(lambda d, r: stopped.append((d, r)))
    deliver(parts, dispatch("d-1"))
    assert agent.active_dispatch is not None
    deliver(parts, DispatchCancel(dispatch_id="d-1", sent_ms=T0, reason="resolved"))
    assert agent.active_dispatch is None
    assert stopped == [("d-1", "cancelled: resolved")]
    assert agent.last_cancel is not None and agent.last_cancel[0].reason == "resolved"
    assert not agent.answer_dispatch(ResponseStatus.ACCEPTED)
    assert responses(agent) == [("d-1", ResponseStatus.DELIVERED)]


def test_a_cancel_before_its_command_means_the_command_never_rings(parts: Parts) -> None:
    agent = parts[0]
    rung: list[DispatchCommand] = []
    stopped: list[tuple[str, str]] = []
    agent.dispatch_listeners.append(rung.append)
    agent.cancel_listeners.append(lambda d, r: stopped.append((d, r)))
    deliver(parts, DispatchCancel(dispatch_id="d-2", sent_ms=T0))
    deliver(parts, dispatch("d-2"))  # delivered late by the broker
    assert rung == [] and stopped == [] and agent.active_dispatch is None
    assert responses(agent) == []


def test_a_cancel_of_another_dispatch_leaves_the_ringing_one(parts: Parts) -> None:
    agent = parts[0]
    deliver(parts, dispatch("d-3"))
    deliver(parts, DispatchCancel(dispatch_id="d-other", sent_ms=T0))
    assert agent.active_dispatch is not None and agent.active_dispatch.dispatch_id == "d-3"
    assert agent.last_cancel is None


def test_a_cancel_after_accepting_clears_the_current_dispatch(parts: Parts) -> None:
    agent = parts[0]
    deliver(parts, dispatch("d-4"))
    assert agent.answer_dispatch(ResponseStatus.ACCEPTED)
    assert agent.current_dispatch is not None
    deliver(parts, DispatchCancel(dispatch_id="d-4", sent_ms=T0, reason="closed"))
    assert agent.current_dispatch is None
    assert not agent.arrived()


# --- arrival and expiry ---------------------------------------------------------------------------


def test_arrived_answers_on_scene_for_the_accepted_dispatch_once(parts: Parts) -> None:
    agent = parts[0]
    agent.sample()
    assert not agent.arrived()  # nothing accepted
    deliver(parts, dispatch("d-5"))
    assert not agent.arrived()  # ringing, not yet accepted
    assert agent.answer_dispatch(ResponseStatus.ACCEPTED)
    assert agent.active_dispatch is None
    assert agent.current_dispatch is not None and agent.current_dispatch.dispatch_id == "d-5"
    assert agent.arrived()
    assert agent.on_scene_ms == T0
    assert not agent.arrived()  # said once
    assert responses(agent) == [
        ("d-5", ResponseStatus.DELIVERED),
        ("d-5", ResponseStatus.ACCEPTED),
        ("d-5", ResponseStatus.ON_SCENE),
    ]
    on_scene = [m for m in sent(agent) if isinstance(m, DispatchResponse)][-1]
    assert on_scene.fix == agent.latest_fix


def test_declining_leaves_nothing_to_arrive_at(parts: Parts) -> None:
    agent = parts[0]
    deliver(parts, dispatch("d-6"))
    assert agent.answer_dispatch(ResponseStatus.DECLINED, reason="off duty")
    assert agent.active_dispatch is None and agent.current_dispatch is None
    assert not agent.arrived()


def test_a_ringing_dispatch_is_pruned_at_expiry_and_listeners_hear_it(parts: Parts) -> None:
    agent, _, clock = parts
    stopped: list[tuple[str, str]] = []
    agent.cancel_listeners.append(lambda d, r: stopped.append((d, r)))
    deliver(parts, dispatch("d-7", ttl_ms=5000))
    agent.prune()
    assert agent.active_dispatch is not None
    clock.now += 5
    agent.prune()
    assert agent.active_dispatch is None
    assert stopped == [("d-7", "expired")]


def test_an_accepted_dispatch_stays_for_the_walk_then_goes(parts: Parts) -> None:
    agent, _, clock = parts
    deliver(parts, dispatch("d-8", ttl_ms=60_000))
    assert agent.answer_dispatch(ResponseStatus.ACCEPTED)
    clock.now += 120  # past its expiry: that bounded the time to answer, not the walk
    agent.prune()
    assert agent.current_dispatch is not None
    clock.now += ON_THE_WAY_S
    agent.prune()
    assert agent.current_dispatch is None
    assert not agent.arrived()


# --- tasks ----------------------------------------------------------------------------------------


def test_a_task_is_kept_once_until_read_and_acknowledged(parts: Parts) -> None:
    agent = parts[0]
    heard: list[str] = []
    agent.task_listeners.append(lambda t: heard.append(t.task_id))
    deliver(parts, task("t-1"))
    deliver(parts, task("t-1"))  # QoS 1 redelivery
    assert list(agent.tasks) == ["t-1"] and heard == ["t-1"]
    assert agent.ack_task("t-1")
    assert agent.tasks == {}
    assert not agent.ack_task("t-1")
    acks = [m for m in sent(agent) if isinstance(m, TaskAck)]
    assert [(a.task_id, a.time_ms) for a in acks] == [("t-1", T0)]
    deliver(parts, task("t-1"))  # the server resending before our ack arrived
    assert agent.tasks == {} and heard == ["t-1"]


def test_a_task_arriving_expired_is_never_shown(parts: Parts) -> None:
    agent, _, clock = parts
    heard: list[Task] = []
    agent.task_listeners.append(heard.append)
    clock.now += 700  # the task's ten minutes are over when the broker delivers it
    deliver(parts, task("t-2"))
    assert agent.tasks == {} and heard == []
    assert agent.stats.expired_tasks == 1


def test_a_task_expires_on_the_loop_and_can_no_longer_be_acked(parts: Parts) -> None:
    agent, _, clock = parts
    deliver(parts, task("t-3", ttl_ms=30_000))
    deliver(parts, task("t-4", ttl_ms=90_000))
    clock.now += 30
    agent.prune()
    assert list(agent.tasks) == ["t-4"]
    assert not agent.ack_task("t-3")
    clock.now += 60
    assert not agent.ack_task("t-4")  # expired, even before the loop pruned it
    assert not [m for m in sent(agent) if isinstance(m, TaskAck)]


def test_tasks_are_replaced_whole_so_other_threads_read_a_consistent_dict(parts: Parts) -> None:
    agent = parts[0]
    deliver(parts, task("t-5"))
    before = agent.tasks
    deliver(parts, task("t-6"))
    assert list(before) == ["t-5"]  # the old value is untouched
    assert sorted(agent.tasks) == ["t-5", "t-6"]


# --- clues ----------------------------------------------------------------------------------------


def test_a_clue_without_a_photo_carries_the_latest_fix(parts: Parts) -> None:
    agent = parts[0]
    agent.sample()
    clue_id = agent.report_clue("two men forcing a bike lock", IncidentKind.THEFT)
    assert re.fullmatch(r"c-[0-9a-f]{16}", clue_id)
    clues = [m for m in sent(agent) if isinstance(m, Clue)]
    assert len(clues) == 1
    clue = clues[0]
    assert (clue.clue_id, clue.text, clue.category) == (
        clue_id, "two men forcing a bike lock", IncidentKind.THEFT,
    )  # fmt: skip
    assert clue.fix == agent.latest_fix and clue.photo_sha256 is None
    assert not [m for m in sent(agent) if isinstance(m, Snapshot)]


def test_a_clue_with_a_photo_sends_a_clue_snapshot(parts: Parts) -> None:
    agent = parts[0]
    agent.sample()
    photo = jpeg(80, 60)
    clue_id = agent.report_clue("smoke from a window", IncidentKind.FIRE, photo)
    messages = sent(agent)
    clue = next(m for m in messages if isinstance(m, Clue))
    snap = next(m for m in messages if isinstance(m, Snapshot))
    assert clue.photo_sha256 == hashlib.sha256(photo).digest() == snap.sha256
    assert snap.trigger is SnapshotTrigger.CLUE and snap.request_id == clue_id
    assert (snap.width, snap.height, snap.jpeg) == (80, 60, photo)
    assert snap.fix == agent.latest_fix
    assert messages.index(clue) < messages.index(snap)  # the text is never behind the picture


@pytest.mark.parametrize(
    ("photo", "says"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "not a JPEG"),
        (b"\xff\xd8\xff\xd9", "damaged JPEG"),
        (b"\xff\xd8" + b"\x00" * (MAX_JPEG_BYTES - 1), "over the limit"),
    ],
)
def test_a_photo_that_is_not_a_usable_jpeg_is_refused_and_nothing_is_sent(
    parts: Parts, photo: bytes, says: str
) -> None:
    agent = parts[0]
    with pytest.raises(ReportError, match=says):
        agent.report_clue("something", IncidentKind.OTHER, photo)
    assert sent(agent) == []


def test_empty_clue_text_is_refused(parts: Parts) -> None:
    with pytest.raises(ReportError, match="text"):
        parts[0].report_clue("")


def test_jpeg_size_reads_the_frame_header() -> None:
    assert jpeg_size(jpeg(123, 45)) == (123, 45)
    assert jpeg_size(b"\xff\xd8") is None
    assert jpeg_size(b"\xff\xd8\x00\x00\x00\x00") is None


# --- threads --------------------------------------------------------------------------------------


def test_call_runs_on_the_agent_thread_and_returns_or_raises(parts: Parts) -> None:
    agent = parts[0]
    loop = threading.Thread(target=agent.run, daemon=True)
    loop.start()
    try:
        where = agent.call(lambda: threading.current_thread())
        assert where is loop
        assert agent.call(lambda: agent.call(lambda: 7)) == 7  # nested: runs at once, no deadlock
        with pytest.raises(ReportError):
            agent.call(lambda: agent.report_clue(""))
    finally:
        agent._stop.set()
        loop.join(5)


def test_call_without_a_running_loop_times_out(parts: Parts) -> None:
    with pytest.raises(AgentNotRunning):
        parts[0].call(lambda: 1, timeout=0.05)


# --- the shoulder light ---------------------------------------------------------------------------


class FakeBridge:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, command: object) -> int:
        self.sent.append(command)
        return len(self.sent)


def test_the_light_goes_dark_on_cancel_and_on_an_answer_from_the_screen(parts: Parts) -> None:
    from agent.mcu import McuLink

    agent = parts[0]
    mcu = McuLink(agent, port="loop://")
    bridge = FakeBridge()
    mcu.bridge = bridge  # type: ignore[assignment]
    deliver(parts, dispatch("d-9"))
    assert any(isinstance(c, SetLight) and c.pattern is LightPattern.FLASH_RED_BLUE
               for c in bridge.sent)  # fmt: skip
    bridge.sent.clear()
    deliver(parts, DispatchCancel(dispatch_id="d-9", sent_ms=T0))
    assert [c.pattern for c in bridge.sent if isinstance(c, SetLight)] == [LightPattern.OFF]
    bridge.sent.clear()
    deliver(parts, dispatch("d-10"))
    bridge.sent.clear()
    assert agent.answer_dispatch(ResponseStatus.ACCEPTED)  # as the screen does
    assert [c.pattern for c in bridge.sent if isinstance(c, SetLight)] == [LightPattern.OFF]
    bridge.sent.clear()
    deliver(parts, task("t-9"))
    assert [(c.kind, c.duration_ms) for c in bridge.sent if isinstance(c, Alert)] == [
        (AlertKind.BEEP, 300)
    ]
