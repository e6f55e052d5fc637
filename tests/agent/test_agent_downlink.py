"""What the agent does with what the server sends: acks, config pushes, forgeries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.agent import MB, Agent
from agent.sim_gps import SimulatedWalker
from protocol import (
    ConfigPush,
    DispatchCommand,
    DispatchResponse,
    IncidentKind,
    ResponseStatus,
    RollCall,
    RollCallAnswer,
    ServerEndpoint,
    Setting,
    decode,
)
from provisioning import BrokerAddress, Enrolment, new_device

T0 = 1_763_900_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = T0 / 1000

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Agent, ServerEndpoint, FakeClock]]:
    server_key = Ed25519PrivateKey.generate()
    identity = new_device("ft-0001", units=("futian",))
    enrolment = Enrolment(identity, server_key.public_key(), 1, BrokerAddress("127.0.0.1", 1))
    clock = FakeClock()
    agent = Agent(enrolment, tmp_path, source=SimulatedWalker(22.5431, 114.0579), clock=clock)
    yield agent, ServerEndpoint(signing_key=server_key, key_id=1), clock
    agent.outbox.close()


def test_a_config_push_changes_policy_and_disk_budget(parts) -> None:
    agent, server, _ = parts
    push = ConfigPush(
        version=2,
        settings=((Setting.INTERVAL_MOVING_S, 2), (Setting.DISK_BUDGET_MB, 8)),
    )
    out = server.command("ft-0001", push, sent_ms=T0)
    agent._handle("msg", out.topic, out.payload)
    assert agent.policy.interval_moving_s == 2
    assert agent.outbox.budget_bytes == 8 * MB


def test_a_broadcast_roll_call_is_answered_with_the_freshest_fix_and_a_picture(parts) -> None:
    agent, server, _ = parts
    asked: list[str] = []
    agent.snapshot_requests.append(asked.append)
    agent.sample()
    call = RollCall(rollcall_id="rc-1", sent_ms=T0, deadline_ms=T0 + 60_000, want_snapshot=True)
    out = server.broadcast("futian", call, sent_ms=T0)
    agent._handle("msg", out.topic, out.payload)
    answers = [
        m for m in (decode(i.payload).envelope.message for i in agent.outbox.next_items(10))
        if isinstance(m, RollCallAnswer)
    ]  # fmt: skip
    assert [(a.rollcall_id, a.fix) for a in answers] == [("rc-1", agent.latest_fix)]
    assert asked == ["rc-1"]


def test_a_roll_call_past_its_deadline_is_not_answered(parts) -> None:
    agent, server, _clock = parts
    call = RollCall(rollcall_id="rc-2", sent_ms=T0 - 120_000, deadline_ms=T0 - 60_000)
    out = server.broadcast("futian", call, sent_ms=T0)
    agent._handle("msg", out.topic, out.payload)
    assert not any(
        isinstance(decode(i.payload).envelope.message, RollCallAnswer)
        for i in agent.outbox.next_items(10)
    )


def test_a_forged_command_is_refused_and_counted(parts) -> None:
    agent, _, _ = parts
    impostor = ServerEndpoint(signing_key=Ed25519PrivateKey.generate(), key_id=1)
    push = ConfigPush(version=9, settings=((Setting.INTERVAL_MOVING_S, 1),))
    out = impostor.command("ft-0001", push, sent_ms=T0)
    agent._handle("msg", out.topic, out.payload)
    assert agent.stats.rejected_downlink == 1
    assert agent.policy.interval_moving_s == 5  # unchanged
    agent._handle("msg", out.topic, b"\x00garbage")
    assert agent.stats.rejected_downlink == 2


def test_an_ack_forgets_exactly_what_it_covers(parts) -> None:
    agent, server, clock = parts
    agent.sample()
    clock.now += 10
    agent.sample()
    items = agent.outbox.next_items(10)
    assert len(items) == 2
    ack = server.ack(
        "ft-0001",
        [items[0].seq],
        mac_key=agent.endpoint._mac_key,
        key_id=1,
        sent_ms=T0,
    )
    agent._handle("msg", ack.topic, ack.payload)
    assert agent.stats.acked == 1
    assert [i.seq for i in agent.outbox.next_items(10)] == [items[1].seq]


# --- dispatch -------------------------------------------------------------------------------------


def _dispatch(dispatch_id: str, *, expires_ms: int) -> DispatchCommand:
    return DispatchCommand(
        dispatch_id=dispatch_id,
        incident_id="inc-1",
        kind=IncidentKind.FIGHT,
        priority=1,
        lat=22.5431,
        lon=114.0579,
        sent_ms=T0 - 1000,
        expires_ms=expires_ms,
        note="bar street",
    )


def _responses(agent: Agent) -> list[tuple[str, ResponseStatus]]:
    found = []
    for item in agent.outbox.next_items(100):
        message = decode(item.payload).envelope.message
        if isinstance(message, DispatchResponse):
            found.append((message.dispatch_id, message.status))
    return found


def test_a_fresh_dispatch_rings_once_and_is_answered(parts) -> None:
    agent, server, _ = parts
    rung: list[DispatchCommand] = []
    agent.dispatch_listeners.append(rung.append)
    out = server.command("ft-0001", _dispatch("d-1", expires_ms=T0 + 300_000), sent_ms=T0)
    agent._handle("msg", out.topic, out.payload)
    agent._handle("msg", out.topic, out.payload)  # a QoS 1 redelivery
    assert [c.dispatch_id for c in rung] == ["d-1"]
    assert agent.answer_dispatch(ResponseStatus.ACCEPTED)
    assert agent.active_dispatch is None
    assert _responses(agent) == [
        ("d-1", ResponseStatus.DELIVERED),
        ("d-1", ResponseStatus.ACCEPTED),
    ]


def test_a_stale_dispatch_never_rings(parts) -> None:
    agent, server, _ = parts
    rung: list[DispatchCommand] = []
    agent.dispatch_listeners.append(rung.append)
    out = server.command("ft-0001", _dispatch("d-2", expires_ms=T0), sent_ms=T0 - 1000)
    agent._handle("msg", out.topic, out.payload)
    assert rung == [] and agent.active_dispatch is None
    assert agent.stats.expired_dispatches == 1
    assert _responses(agent) == []
    assert not agent.answer_dispatch(ResponseStatus.ACCEPTED)


def test_a_dispatch_that_expires_while_ringing_cannot_be_accepted(parts) -> None:
    agent, server, clock = parts
    out = server.command("ft-0001", _dispatch("d-3", expires_ms=T0 + 5000), sent_ms=T0)
    agent._handle("msg", out.topic, out.payload)
    clock.now += 6
    assert not agent.answer_dispatch(ResponseStatus.ACCEPTED)
    assert _responses(agent) == [("d-3", ResponseStatus.DELIVERED)]


def test_calls_from_other_threads_run_on_the_agent_thread(parts) -> None:
    agent, _, _ = parts
    ran: list[int] = []
    agent.submit(lambda: ran.append(1))
    agent._drain_inbox(0.1)
    assert ran == [1]


def test_check_in_and_out_are_sealed_at_once_with_the_position(parts) -> None:
    from protocol import Presence, PresenceKind

    agent, _, _ = parts
    agent.sample()
    agent.check_in("shift-7")
    agent.check_out("shift-7")
    presences = [
        m for m in (decode(i.payload).envelope.message for i in agent.outbox.next_items(10))
        if isinstance(m, Presence)
    ]  # fmt: skip
    assert sorted((p.kind, p.shift_id) for p in presences) == [
        (PresenceKind.CHECK_IN, "shift-7"),
        (PresenceKind.CHECK_OUT, "shift-7"),
    ]
    assert all(p.fix == agent.latest_fix for p in presences)
