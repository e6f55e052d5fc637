"""The device side of the firmware protocol, sans-IO: what a shoulder light's MCU does.

Used by ``simulator`` and the tests; it is also the executable reading of the spec for a
firmware engineer. Every method takes ``now_ms`` (the device's own clock) and returns the bytes
the device writes to the UART; ``receive_data`` and ``tick`` never raise.

* Commands are acked (``Ack(seq)``) and executed once: a sequence number among the last
  ``DEDUP_DEPTH`` is a duplicate, acked again and not executed again. A command that decodes
  badly gets a ``Nak``; a frame with a bad CRC gets nothing (its sequence number is not known).
* ``RequestStatus`` is answered by Ack, then ``StatusReport``, then ``FirmwareVersion``.
* A Heartbeat goes out every ``HEARTBEAT_MS``; each ButtonEvent is sent three times with the
  same sequence number (at 0, 50 and 100 ms), which the host reports once.
* A timed light pattern returns to OFF when its duration ends.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

from .errors import MessageError, UnknownMessage
from .framing import DELIMITER, Frame, FrameReader, FrameRejected, encode_frame
from .messages import (
    Ack,
    Alert,
    Battery,
    ButtonEvent,
    ButtonKind,
    Command,
    DeviceMessage,
    FirmwareVersion,
    Heartbeat,
    LightPattern,
    Nak,
    NakReason,
    RequestStatus,
    SetLight,
    StartRecording,
    StatusReport,
    StopRecording,
    Tamper,
    TimeSync,
    decode_command,
)

HEARTBEAT_MS = 1000
DEDUP_DEPTH = 16
BUTTON_REPEATS_MS = (50, 100)


@dataclass(frozen=True, slots=True)
class LightState:
    pattern: LightPattern = LightPattern.OFF
    rate_hz: int = 0
    until_ms: int | None = None  # None: until changed


class DeviceEndpoint:
    """A simulated device's protocol state; see the module docstring."""

    def __init__(
        self,
        *,
        firmware: str = "yijing-sim 1.0.0",
        battery_percent: int = 100,
        charging: bool = False,
        boot_ms: int = 0,
    ) -> None:
        self.firmware = FirmwareVersion(firmware)
        self.battery = Battery(battery_percent, charging)
        self.case_open = False
        self.light = LightState()
        self.recording = False
        self.clock_offset_ms: int | None = None  # unix_ms - uptime, after a TimeSync
        self.executed: list[Command] = []  # every command executed, in order
        self.stats: Counter[str] = Counter()
        self._boot_ms = boot_ms
        self._seq = 0
        self._reader = FrameReader()
        self._answered: OrderedDict[int, bytes] = OrderedDict()  # seq -> the ack sent
        self._repeats: list[tuple[int, bytes]] = []  # (due_ms, frame)
        self._next_heartbeat_ms = boot_ms

    # --- output -----------------------------------------------------------------------------

    def _frame(self, message: DeviceMessage) -> bytes:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFFFF
        return encode_frame(message.MSG_ID, seq, message.encode())

    def uptime_ms(self, now_ms: int) -> int:
        return (now_ms - self._boot_ms) & 0xFFFFFFFF

    def boot(self, now_ms: int) -> bytes:
        """What the device sends when it powers up: a delimiter to flush the line noise of
        power-up, its firmware version and battery, the case if open (the first heartbeat
        follows from ``tick``)."""
        out = DELIMITER + self._frame(self.firmware) + self._frame(self.battery)
        return out + (self._frame(Tamper(True)) if self.case_open else b"")

    def resync(self) -> None:
        """Forget a partial frame (the cable was pulled)."""
        self._reader.reset()

    # --- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now_ms: int) -> bytes:
        out = bytearray()
        for item in self._reader.receive_data(data):
            if isinstance(item, FrameRejected):
                self.stats[item.reason] += 1
            else:
                out += self._command(item, now_ms)
        return bytes(out)

    def _command(self, frame: Frame, now_ms: int) -> bytes:
        answered = self._answered.get(frame.seq)
        if answered is not None:
            self.stats["duplicates"] += 1
            return answered  # ack again, do not execute again
        try:
            command = decode_command(frame.msg_id, frame.payload)
        except UnknownMessage as exc:
            self.stats[exc.reason] += 1
            reply = self._frame(Nak(frame.seq, NakReason.UNKNOWN_COMMAND))
            self._remember(frame.seq, reply)
            return reply
        except MessageError as exc:
            self.stats[exc.reason] += 1
            reply = self._frame(Nak(frame.seq, NakReason.BAD_PAYLOAD))
            self._remember(frame.seq, reply)
            return reply
        ack = self._frame(Ack(frame.seq))
        self._remember(frame.seq, ack)
        self.stats["commands"] += 1
        self.executed.append(command)
        return ack + self._execute(command, now_ms)

    def _remember(self, seq: int, reply: bytes) -> None:
        self._answered[seq] = reply
        while len(self._answered) > DEDUP_DEPTH:
            self._answered.popitem(last=False)

    def _execute(self, command: Command, now_ms: int) -> bytes:
        if isinstance(command, SetLight):
            until = now_ms + command.duration_ms if command.duration_ms else None
            self.light = LightState(command.pattern, command.rate_hz, until)
        elif isinstance(command, StartRecording):
            self.recording = True
        elif isinstance(command, StopRecording):
            self.recording = False
        elif isinstance(command, TimeSync):
            self.clock_offset_ms = command.unix_ms - self.uptime_ms(now_ms)
        elif isinstance(command, RequestStatus):
            return self._frame(self.status(now_ms)) + self._frame(self.firmware)
        elif isinstance(command, Alert):
            pass  # a buzzer or motor would run for command.duration_ms
        return b""

    def status(self, now_ms: int) -> StatusReport:
        return StatusReport(
            light=self.light.pattern,
            rate_hz=self.light.rate_hz,
            recording=self.recording,
            battery_percent=self.battery.percent,
            charging=self.battery.charging,
            case_open=self.case_open,
            uptime_ms=self.uptime_ms(now_ms),
        )

    # --- time ---------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> bytes:
        out = bytearray()
        if self.light.until_ms is not None and now_ms >= self.light.until_ms:
            self.light = LightState()
        due = [frame for when, frame in self._repeats if when <= now_ms]
        self._repeats = [(when, frame) for when, frame in self._repeats if when > now_ms]
        for frame in due:
            out += frame
        if now_ms >= self._next_heartbeat_ms:
            out += self._frame(Heartbeat(self.uptime_ms(now_ms)))
            self._next_heartbeat_ms = now_ms + HEARTBEAT_MS
        return bytes(out)

    # --- the wearer -------------------------------------------------------------------------

    def button(self, kind: ButtonKind, now_ms: int, held_ms: int = 0) -> bytes:
        frame = self._frame(ButtonEvent(kind, held_ms))
        self._repeats += [(now_ms + delay, frame) for delay in BUTTON_REPEATS_MS]
        return frame

    def press_sos(self, now_ms: int) -> bytes:
        return self.button(ButtonKind.SOS_LONG_PRESS, now_ms, held_ms=2000)

    def press_ack(self, now_ms: int) -> bytes:
        return self.button(ButtonKind.ACK_SHORT_PRESS, now_ms, held_ms=150)

    def push_to_talk(self, down: bool, now_ms: int) -> bytes:
        return self.button(ButtonKind.PTT_DOWN if down else ButtonKind.PTT_UP, now_ms)

    def set_battery(self, percent: int, charging: bool) -> bytes:
        self.battery = Battery(percent, charging)
        return self._frame(self.battery)

    def set_case_open(self, case_open: bool) -> bytes:
        self.case_open = case_open
        return self._frame(Tamper(case_open))
