"""The shoulder light and its buttons, end to end: a simulated MCU on a real pty, the agent,
a real Mosquitto and the server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.agent import Agent
from agent.mcu import McuLink
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from firmware_bridge.messages import LightPattern
from firmware_bridge.simulator import DeviceSimulator
from protocol import (
    DispatchCommand,
    DispatchResponse,
    Event,
    EventKind,
    IncidentKind,
    Message,
    ResponseStatus,
    decode,
)
from tests.helpers import enrol, wait_until
from yijing.broker import LocalBroker

pytestmark = pytest.mark.e2e
DEVICE = "ft-0101"


def stored(server, kind: type[Message]) -> list[Message]:
    rows = server.store._read(
        "SELECT payload FROM frames WHERE device_id=? AND type=? ORDER BY seq",
        (DEVICE, kind.TYPE),
    )
    return [decode(bytes(r[0])).envelope.message for r in rows]


@pytest.fixture
def rig(tmp_path: Path, broker: LocalBroker, server_factory) -> Iterator[tuple]:
    server = server_factory(broker).server
    simulator = DeviceSimulator(link=tmp_path / "ttyLIGHT")
    agent = Agent(
        enrol(server, DEVICE, broker),
        tmp_path / "agent",
        source=SimulatedWalker(22.5431, 114.0579, seed=3),
        policy=ReportingPolicy(interval_moving_s=0.5, interval_still_s=0.5, min_distance_m=0),
    )
    mcu = McuLink(agent, port=str(simulator.port))
    agent.start()
    mcu.start()
    try:
        wait_until(lambda: mcu.bridge.link_up and agent.link.connected, 15, "link up")
        wait_until(lambda: agent.latest_fix is not None, 10, "a fix")
        yield server, agent, mcu, simulator
    finally:
        mcu.close()
        agent.stop()
        simulator.close()


def dispatch(server, dispatch_id: str) -> None:
    now = int(server._clock() * 1000)
    command = DispatchCommand(
        dispatch_id=dispatch_id, incident_id="inc-1", kind=IncidentKind.FIGHT, priority=1,
        lat=22.544, lon=114.058, sent_ms=now, expires_ms=now + 300_000, note="bar street",
    )  # fmt: skip
    out = server.endpoint.command(DEVICE, command, sent_ms=now)
    server.link.publish(out.topic, out.payload, qos=1)


def responses(server) -> list[tuple[str, ResponseStatus]]:
    return [
        (m.dispatch_id, m.status) for m in stored(server, DispatchResponse)
        if isinstance(m, DispatchResponse)
    ]  # fmt: skip


def test_sos_press_reaches_the_station_once_with_a_position(rig) -> None:
    server, _agent, _mcu, simulator = rig
    simulator.press_sos()
    wait_until(lambda: stored(server, Event), 10, "the SOS stored")
    time.sleep(1.0)  # the device sends each button event three times: give repeats a chance
    sos = [m for m in stored(server, Event) if isinstance(m, Event) and m.kind is EventKind.SOS]
    assert len(sos) == 1
    assert sos[0].fix is not None and abs(sos[0].fix.lat - 22.5431) < 0.01


def test_dispatch_flashes_the_light_until_a_short_press_accepts_it(rig) -> None:
    server, _agent, _mcu, simulator = rig
    dispatch(server, "d-100")
    wait_until(lambda: simulator.light is LightPattern.FLASH_RED_BLUE, 10, "the light flashing")
    wait_until(lambda: ("d-100", ResponseStatus.DELIVERED) in responses(server), 10, "delivered")
    simulator.press_ack()
    wait_until(lambda: simulator.light is LightPattern.OFF, 10, "the light off")
    wait_until(lambda: ("d-100", ResponseStatus.ACCEPTED) in responses(server), 10, "accepted")
    assert responses(server) == [
        ("d-100", ResponseStatus.DELIVERED),
        ("d-100", ResponseStatus.ACCEPTED),
    ]


def test_battery_and_tamper_become_events(rig) -> None:
    server, _agent, _mcu, simulator = rig
    simulator.set_battery(15)
    simulator.open_case()

    def kinds() -> dict[EventKind, list[int | None]]:
        found: dict[EventKind, list[int | None]] = {}
        for m in stored(server, Event):
            if isinstance(m, Event):
                found.setdefault(m.kind, []).append(m.value)
        return found

    wait_until(lambda: 15 in kinds().get(EventKind.BATTERY, []), 10, "battery 15%")
    wait_until(lambda: kinds().get(EventKind.TAMPER) == [1], 10, "case opened")
    assert EventKind.SOS not in kinds()


def test_cable_pulled_and_put_back_the_light_comes_back(rig) -> None:
    server, _agent, mcu, simulator = rig
    dispatch(server, "d-200")
    wait_until(lambda: simulator.light is LightPattern.FLASH_RED_BLUE, 10, "flashing")
    simulator.close()
    wait_until(lambda: not mcu.bridge.link_up, 10, "link down")
    simulator.reopen()  # a new device boot: its light starts OFF
    wait_until(lambda: mcu.bridge.link_up, 15, "link up again")
    wait_until(lambda: simulator.light is LightPattern.FLASH_RED_BLUE, 10, "flashing again")
    simulator.press_ack()
    wait_until(lambda: ("d-200", ResponseStatus.ACCEPTED) in responses(server), 10, "accepted")
