"""What the agent does with what the server sends: acks, config pushes, forgeries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.agent import MB, Agent
from agent.sim_gps import SimulatedWalker
from protocol import ConfigPush, RollCall, ServerEndpoint, Setting
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


def test_a_broadcast_roll_call_to_its_unit_is_taken(parts) -> None:
    agent, server, _ = parts
    call = RollCall(rollcall_id="rc-1", sent_ms=T0, deadline_ms=T0 + 60_000)
    out = server.broadcast("futian", call, sent_ms=T0)
    agent._handle("msg", out.topic, out.payload)
    assert [e.message for e in agent.stats.commands] == [call]


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
