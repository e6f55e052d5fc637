"""The host's state machine with an injected clock, against the sans-IO device."""

from __future__ import annotations

import pytest

from firmware_bridge.connection import (
    BridgeConnection,
    CommandAcked,
    CommandFailed,
    Event,
    LinkDown,
    LinkState,
    LinkUp,
    Rejected,
)
from firmware_bridge.device import DeviceEndpoint
from firmware_bridge.framing import encode_frame
from firmware_bridge.messages import (
    Ack,
    Battery,
    ButtonEvent,
    ButtonKind,
    FirmwareVersion,
    Heartbeat,
    LightPattern,
    Nak,
    NakReason,
    RequestStatus,
    SetLight,
    StartRecording,
    StatusReport,
    Tamper,
    TimeSync,
)


def frame(message: Ack | Nak | Heartbeat | ButtonEvent | Battery, seq: int) -> bytes:
    return encode_frame(message.MSG_ID, seq, message.encode())


def test_retries_every_200_ms_three_times_then_fails() -> None:
    conn = BridgeConnection(first_seq=10)
    command = SetLight(LightPattern.FLASH_RED, 4)
    wire = conn.send(command, now_ms=1000)
    assert conn.last_seq == 10
    assert conn.tick(1199) == ([], b"")
    for at in (1200, 1400, 1600):
        assert conn.tick(at) == ([], wire)  # the same frame, the same sequence number
        assert conn.tick(at + 100) == ([], b"")
    events, out = conn.tick(1800)
    assert events == [CommandFailed(10, command)] and out == b""
    assert conn.pending == {}
    assert conn.stats["retransmissions"] == 3 and conn.stats["commands_failed"] == 1
    # A late ack of a failed command is only counted.
    assert conn.receive_data(frame(Ack(10), 0), 1900) == []
    assert conn.stats["late_acks"] == 1


def test_ack_settles_and_nak_fails_at_once() -> None:
    conn = BridgeConnection(first_seq=0xFFFF)
    conn.send(StartRecording(), 0)
    conn.send(RequestStatus(), 0)
    assert sorted(conn.pending) == [0, 0xFFFF]  # the counter wraps
    events = conn.receive_data(frame(Ack(0xFFFF), 1) + frame(Nak(0, NakReason.BUSY), 2), 50)
    assert events == [
        CommandAcked(0xFFFF, StartRecording()),
        CommandFailed(0, RequestStatus(), "nak: BUSY"),
    ]
    assert conn.tick(1000) == ([], b"")


def test_link_up_on_heartbeat_down_after_3_s_of_silence_and_up_again() -> None:
    conn = BridgeConnection()
    assert conn.state is LinkState.DOWN
    assert conn.tick(5000) == ([], b"")  # down stays down
    assert conn.receive_data(frame(Heartbeat(10), 1), 5000) == [LinkUp(), Heartbeat(10)]
    assert conn.receive_data(frame(Heartbeat(1010), 2), 6000) == [Heartbeat(1010)]
    assert conn.tick(8999)[0] == []
    assert conn.tick(9000)[0] == [LinkDown("heartbeat timeout")]
    assert conn.tick(20000)[0] == []
    assert conn.receive_data(frame(Heartbeat(9), 3), 21000) == [LinkUp(), Heartbeat(9)]
    assert conn.port_lost() == [LinkDown("port lost")]
    assert conn.port_lost() == []
    assert conn.state is LinkState.DOWN


def test_other_messages_do_not_keep_the_link_up() -> None:
    conn = BridgeConnection()
    assert conn.receive_data(frame(Battery(50, False), 1), 0) == [Battery(50, False)]
    assert conn.state is LinkState.DOWN


def test_repeated_device_frames_are_reported_once() -> None:
    conn = BridgeConnection()
    sos = frame(ButtonEvent(ButtonKind.SOS_LONG_PRESS, 2000), 42)
    events: list[Event] = []
    for at in (0, 50, 100):
        events += conn.receive_data(sos, at)
    assert events == [ButtonEvent(ButtonKind.SOS_LONG_PRESS, 2000)]
    assert conn.stats["duplicates"] == 2
    # The same sequence number later is a new event (a rebooted device counts from 0 again).
    assert conn.receive_data(sos, 5000) == [ButtonEvent(ButtonKind.SOS_LONG_PRESS, 2000)]


def test_bad_input_is_counted_not_raised() -> None:
    conn = BridgeConnection()
    wrong_direction = encode_frame(SetLight.MSG_ID, 1, SetLight(LightPattern.OFF).encode())
    unknown = encode_frame(0xEE, 2, b"")
    bad_payload = encode_frame(ButtonEvent.MSG_ID, 3, b"\x01\x00\x00\x00")
    good = frame(Battery(10, True), 4)
    events = conn.receive_data(
        b"\x13\x37"
        + b"\x00"
        + wrong_direction
        + unknown
        + bad_payload
        + good[:-4]
        + b"\x00"
        + b"\x01" * 300
        + b"\x00"
        + good,
        0,
    )
    reasons = [e.reason for e in events if isinstance(e, Rejected)]
    assert reasons == [
        "garbage", "wrong_direction", "unknown_message", "bad_payload", "garbage", "oversized",
    ]  # fmt: skip
    assert events[-1] == Battery(10, True)
    for reason in set(reasons):
        assert conn.stats[reason] == reasons.count(reason)


def test_send_refuses_device_messages() -> None:
    with pytest.raises(TypeError):
        BridgeConnection().send(Heartbeat(1), 0)  # type: ignore[arg-type]


# --- host and device together, sans IO -------------------------------------------------------


class Bench:
    """Host and device connected by a lossy wire the test controls."""

    def __init__(self) -> None:
        self.host = BridgeConnection(first_seq=100)
        self.device = DeviceEndpoint(boot_ms=0)
        self.events: list[Event] = []
        self.now = 0

    def to_device(self, data: bytes) -> None:
        self.to_host(self.device.receive_data(data, self.now))

    def to_host(self, data: bytes) -> None:
        self.events += self.host.receive_data(data, self.now)

    def step(self, ms: int, *, deliver: bool = True) -> None:
        for _ in range(ms // 10):
            self.now += 10
            out = self.device.tick(self.now)
            if deliver:
                self.to_host(out)
            events, wire = self.host.tick(self.now)
            self.events += events
            if deliver and wire:
                self.to_device(wire)


def test_a_lost_ack_is_retried_and_the_command_runs_once() -> None:
    bench = Bench()
    bench.to_host(bench.device.boot(0))
    bench.step(20)
    assert LinkUp() in bench.events
    light = SetLight(LightPattern.FLASH_RED_BLUE, 2)
    ack = bench.device.receive_data(bench.host.send(light, bench.now), bench.now)  # ack lost
    assert ack  # and lost
    bench.step(300)  # the host resends at +200 ms; the device acks again, runs nothing
    assert bench.device.executed == [light]
    assert bench.device.stats["duplicates"] == 1
    assert [e for e in bench.events if isinstance(e, CommandAcked)] == [CommandAcked(100, light)]
    assert bench.device.light.pattern is LightPattern.FLASH_RED_BLUE


def test_status_and_timed_light() -> None:
    bench = Bench()
    bench.step(20)
    bench.to_device(bench.host.send(SetLight(LightPattern.STEADY, 0, 500), bench.now))
    bench.to_device(bench.host.send(TimeSync(1_763_900_000_000), bench.now))
    bench.to_device(bench.host.send(RequestStatus(), bench.now))
    reports = [e for e in bench.events if isinstance(e, StatusReport)]
    assert reports[0].light is LightPattern.STEADY
    assert FirmwareVersion("yijing-sim 1.0.0") in bench.events
    assert bench.device.clock_offset_ms == 1_763_900_000_000 - 20
    bench.step(600)
    assert bench.device.light.pattern is LightPattern.OFF  # the 500 ms ran out


def test_device_buttons_battery_tamper_and_lost_heartbeats() -> None:
    bench = Bench()
    bench.step(20)
    bench.to_host(bench.device.press_sos(bench.now))
    bench.to_host(bench.device.set_battery(15, True))
    bench.to_host(bench.device.set_case_open(True))
    bench.step(200)  # the button's two repeats
    assert bench.events.count(ButtonEvent(ButtonKind.SOS_LONG_PRESS, 2000)) == 1
    assert Battery(15, True) in bench.events and Tamper(True) in bench.events
    bench.step(3500, deliver=False)  # the cable is cut
    assert LinkDown() in bench.events
    bench.events.clear()
    bench.step(1000)
    assert bench.events[0] == LinkUp()


def test_device_naks_what_it_cannot_run() -> None:
    device = DeviceEndpoint()
    host = BridgeConnection(first_seq=5)
    host.send(RequestStatus(), 0)
    reply = device.receive_data(encode_frame(0x55, 5, b""), 0)
    assert host.receive_data(reply, 0) == [
        CommandFailed(5, RequestStatus(), "nak: UNKNOWN_COMMAND")
    ]
    host.send(StartRecording(), 0)
    reply = device.receive_data(encode_frame(StartRecording.MSG_ID, 6, b"\x01"), 0)
    assert host.receive_data(reply, 0) == [CommandFailed(6, StartRecording(), "nak: BAD_PAYLOAD")]
    assert device.executed == [] and not device.recording
