"""SerialBridge and DeviceSimulator through a real pty pair (the kernel's serial line)."""

from __future__ import annotations

import argparse
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_bridge.connection import CommandAcked, Event, LinkDown, LinkUp
from firmware_bridge.errors import BridgeConfigError
from firmware_bridge.messages import (
    Battery,
    ButtonEvent,
    ButtonKind,
    Heartbeat,
    LightPattern,
    SetLight,
    StartRecording,
    Tamper,
)
from firmware_bridge.serial_transport import SerialBridge
from firmware_bridge.simulator import DeviceSimulator
from tests.helpers import wait_until
from yijing import bridge_cli
from yijing.mqtt import Backoff

pytestmark = pytest.mark.e2e


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def count(self, event: Event) -> int:
        return self.events.count(event)

    def wait_for(self, event: Event, timeout: float = 5.0) -> None:
        wait_until(lambda: event in self.events, timeout, repr(event))


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[DeviceSimulator]:
    sim = DeviceSimulator(link=tmp_path / "shoulder0")
    yield sim
    sim.close()


@pytest.fixture
def make_bridge() -> Iterator[Callable[[str, Recorder], SerialBridge]]:
    bridges: list[SerialBridge] = []

    def make(port: str, recorder: Recorder) -> SerialBridge:
        bridge = SerialBridge(
            port=port,
            on_event=recorder,
            timeout=0.05,
            backoff=Backoff(base=0.05, cap=0.2),
            logger=logging.getLogger("test.bridge"),
        )
        bridges.append(bridge)
        bridge.start()
        return bridge

    yield make
    for bridge in bridges:
        bridge.close()


def test_sos_light_battery_tamper_over_a_pty(
    simulator: DeviceSimulator, make_bridge: Callable[[str, Recorder], SerialBridge]
) -> None:
    rec = Recorder()
    bridge = make_bridge(simulator.port, rec)
    rec.wait_for(LinkUp())
    assert bridge.link_up

    simulator.press_sos()
    sos = ButtonEvent(ButtonKind.SOS_LONG_PRESS, 2000)
    rec.wait_for(sos)
    time.sleep(0.3)  # the device's two repeats have gone out by now
    assert rec.count(sos) == 1

    light = SetLight(LightPattern.FLASH_RED_BLUE, 2)
    seq = bridge.send(light)
    rec.wait_for(CommandAcked(seq, light))
    assert simulator.light is LightPattern.FLASH_RED_BLUE
    seq = bridge.send(StartRecording())
    rec.wait_for(CommandAcked(seq, StartRecording()))
    assert simulator.recording

    simulator.set_battery(12, True)
    simulator.open_case()
    simulator.close_case()
    simulator.press_ack()
    simulator.push_to_talk(True)
    simulator.push_to_talk(False)
    for event in (
        Battery(12, True),
        Tamper(True),
        Tamper(False),
        ButtonEvent(ButtonKind.ACK_SHORT_PRESS, 150),
        ButtonEvent(ButtonKind.PTT_DOWN),
        ButtonEvent(ButtonKind.PTT_UP),
    ):
        rec.wait_for(event)
    events = rec.events
    assert events.index(Tamper(True)) < events.index(Tamper(False))
    assert [e for e in events if isinstance(e, LinkDown)] == []


def test_pulled_cable_gives_link_down_then_up_and_events_flow_again(
    simulator: DeviceSimulator, make_bridge: Callable[[str, Recorder], SerialBridge]
) -> None:
    rec = Recorder()
    bridge = make_bridge(simulator.port, rec)
    rec.wait_for(LinkUp())
    simulator.close()  # the cable is pulled
    wait_until(lambda: any(isinstance(e, LinkDown) for e in rec.events), 5, "LinkDown")
    assert not bridge.link_up
    assert bridge.last_error is not None
    mark = len(rec.events)
    simulator.reopen()  # and put back
    wait_until(lambda: LinkUp() in rec.events[mark:], 5, "LinkUp after the reopen")
    assert bridge.opens >= 2
    simulator.press_sos()
    rec.wait_for(ButtonEvent(ButtonKind.SOS_LONG_PRESS, 2000))
    light = SetLight(LightPattern.FLASH_BLUE, 1)
    seq = bridge.send(light)
    rec.wait_for(CommandAcked(seq, light))
    assert simulator.light is LightPattern.FLASH_BLUE
    kinds = [type(e) for e in rec.events if isinstance(e, LinkUp | LinkDown)]
    assert kinds == [LinkUp, LinkDown, LinkUp]


def test_loop_url_and_bad_settings() -> None:
    with pytest.raises(BridgeConfigError):
        SerialBridge(port="", on_event=print)
    with pytest.raises(BridgeConfigError):
        SerialBridge(port="nonsense://x", on_event=print)
    with pytest.raises(BridgeConfigError):
        SerialBridge(port="loop://", on_event=print, tick_s=1.0)
    rec = Recorder()
    # loop:// echoes the host's own frames: commands come back as wrong-direction rejects,
    # and with no device nothing acks them: each fails after its retries.
    with SerialBridge(port="loop://", on_event=rec, timeout=0.05) as bridge:
        light = SetLight(LightPattern.STEADY)
        seq = bridge.send(light)
        wait_until(lambda: any(getattr(e, "seq", None) == seq for e in rec.events), 3, "fail")
        assert bridge.connection.stats["wrong_direction"] == 4  # first try + 3 retries
    assert not any(isinstance(e, Heartbeat) for e in rec.events)


def test_cli_simulate_shows_heartbeats_and_acks() -> None:
    parser = argparse.ArgumentParser()
    bridge_cli.add_arguments(parser)
    args = parser.parse_args(["--simulate", "--flash", "1", "--status", "--seconds", "1.3"])
    out = io.StringIO()
    assert bridge_cli.run(args, out=out) == 0
    text = out.getvalue()
    assert "LinkUp()" in text
    assert text.count("Heartbeat(") >= 2
    assert "CommandAcked" in text and "StatusReport(" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--baud", "9600"])  # neither --port nor --simulate
