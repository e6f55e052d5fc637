"""Every message of the firmware protocol, as frozen, validating dataclasses.

A message is a frame *payload*: ``encode()`` gives its bytes and ``decode(payload)`` parses
them, running the same checks as the constructor, so a value that could not have been built
can never be decoded either. All multi-byte fields are little-endian. Each type has a one-byte
``MSG_ID``: 0x01-0x7F are host→device commands, 0x80-0xFF device→host messages.
``docs/firmware-protocol.md`` is the specification; this module is its reference.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import astuple, dataclass
from typing import Any, ClassVar, Self, TypeVar, cast

from .errors import InvalidField, UnknownMessage

#: protocol.fields' window for timestamps (2000-01-01 .. 2100-01-01, Unix ms).
MIN_TIME_MS = 946_684_800_000
MAX_TIME_MS = 4_102_444_800_000
MAX_LIGHT_DURATION_MS = 86_400_000
MAX_ALERT_MS = 10_000
MAX_RATE_HZ = 10
MAX_VERSION_LEN = 32
U32 = 2**32 - 1

E = TypeVar("E", bound=enum.IntEnum)


class LightPattern(enum.IntEnum):
    OFF = 0
    STEADY = 1  # steady red/blue pair lit
    FLASH_RED_BLUE = 2  # alternating
    FLASH_RED = 3
    FLASH_BLUE = 4


FLASHING = frozenset({LightPattern.FLASH_RED_BLUE, LightPattern.FLASH_RED, LightPattern.FLASH_BLUE})


class AlertKind(enum.IntEnum):
    BEEP = 1
    VIBRATE = 2
    BOTH = 3


class ButtonKind(enum.IntEnum):
    SOS_LONG_PRESS = 1
    ACK_SHORT_PRESS = 2
    PTT_DOWN = 3
    PTT_UP = 4


class NakReason(enum.IntEnum):
    UNKNOWN_COMMAND = 1
    BAD_PAYLOAD = 2
    BUSY = 3
    UNSUPPORTED = 4


class Direction(enum.Enum):
    HOST_TO_DEVICE = "h2d"
    DEVICE_TO_HOST = "d2h"


def _int(value: object, name: str, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidField(f"{name}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidField(f"{name}: {value} is outside [{lo}, {hi}]")


def _bool(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise InvalidField(f"{name}: expected a bool, got {type(value).__name__}")


def _enum(value: object, name: str, kind: type[enum.IntEnum]) -> None:
    if not isinstance(value, kind):
        raise InvalidField(f"{name}: expected a {kind.__name__}, got {value!r}")


def _to_enum(kind: type[E], raw: int, name: str) -> E:
    try:
        return kind(raw)
    except ValueError:
        raise InvalidField(f"{name}: {raw} is not a {kind.__name__}") from None


def _to_bool(raw: int, name: str) -> bool:
    if raw not in (0, 1):
        raise InvalidField(f"{name}: {raw} is not 0 or 1")
    return raw == 1


class Message:
    """Base of every message type. Subclasses with a fixed layout set ``LAYOUT``."""

    MSG_ID: ClassVar[int]
    DIRECTION: ClassVar[Direction]
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<")

    def encode(self) -> bytes:
        values = astuple(cast(Any, self))  # every concrete message is a dataclass
        return self.LAYOUT.pack(*(_raw(v) for v in values))

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        if len(payload) != cls.LAYOUT.size:
            raise InvalidField(
                f"{cls.__name__}: payload is {len(payload)} bytes, expected {cls.LAYOUT.size}"
            )
        return cls._from_raw(cls.LAYOUT.unpack(payload))

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        return cls()


def _raw(value: object) -> int:
    if isinstance(value, int):  # bool and IntEnum included
        return int(value)
    raise InvalidField(f"expected an integer field, got {type(value).__name__}")


# --- host → device -------------------------------------------------------------------------


class Command(Message):
    DIRECTION = Direction.HOST_TO_DEVICE


@dataclass(frozen=True, slots=True)
class SetLight(Command):
    """Shoulder light pattern. ``rate_hz`` 1-10 for flashing patterns, 0 otherwise;
    ``duration_ms`` 0 = until changed, else the light returns to OFF after it."""

    MSG_ID = 0x01
    LAYOUT = struct.Struct("<BBI")
    pattern: LightPattern
    rate_hz: int = 0
    duration_ms: int = 0

    def __post_init__(self) -> None:
        _enum(self.pattern, "pattern", LightPattern)
        if self.pattern in FLASHING:
            _int(self.rate_hz, "rate_hz", 1, MAX_RATE_HZ)
        else:
            _int(self.rate_hz, "rate_hz", 0, 0)
        _int(self.duration_ms, "duration_ms", 0, MAX_LIGHT_DURATION_MS)

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        return cls(_to_enum(LightPattern, raw[0], "pattern"), raw[1], raw[2])


@dataclass(frozen=True, slots=True)
class Alert(Command):
    """Beep and/or vibrate for ``duration_ms`` (1-10000)."""

    MSG_ID = 0x02
    LAYOUT = struct.Struct("<BH")
    kind: AlertKind
    duration_ms: int

    def __post_init__(self) -> None:
        _enum(self.kind, "kind", AlertKind)
        _int(self.duration_ms, "duration_ms", 1, MAX_ALERT_MS)

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        return cls(_to_enum(AlertKind, raw[0], "kind"), raw[1])


@dataclass(frozen=True, slots=True)
class RequestStatus(Command):
    MSG_ID = 0x03


@dataclass(frozen=True, slots=True)
class StartRecording(Command):
    MSG_ID = 0x04


@dataclass(frozen=True, slots=True)
class StopRecording(Command):
    MSG_ID = 0x05


@dataclass(frozen=True, slots=True)
class TimeSync(Command):
    """The host's wall clock, Unix milliseconds (UTC)."""

    MSG_ID = 0x06
    LAYOUT = struct.Struct("<Q")
    unix_ms: int

    def __post_init__(self) -> None:
        _int(self.unix_ms, "unix_ms", MIN_TIME_MS, MAX_TIME_MS)

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        return cls(raw[0])


# --- device → host -------------------------------------------------------------------------


class DeviceMessage(Message):
    DIRECTION = Direction.DEVICE_TO_HOST


@dataclass(frozen=True, slots=True)
class Ack(DeviceMessage):
    """The command with sequence number ``seq`` was accepted (or was a duplicate)."""

    MSG_ID = 0x80
    LAYOUT = struct.Struct("<H")
    seq: int

    def __post_init__(self) -> None:
        _int(self.seq, "seq", 0, 0xFFFF)

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        return cls(raw[0])


@dataclass(frozen=True, slots=True)
class Nak(DeviceMessage):
    """The command with sequence number ``seq`` was refused; retrying will not help."""

    MSG_ID = 0x81
    LAYOUT = struct.Struct("<HB")
    seq: int
    reason: NakReason

    def __post_init__(self) -> None:
        _int(self.seq, "seq", 0, 0xFFFF)
        _enum(self.reason, "reason", NakReason)

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        return cls(raw[0], _to_enum(NakReason, raw[1], "reason"))


@dataclass(frozen=True, slots=True)
class ButtonEvent(DeviceMessage):
    """A button gesture. On the wire the kind is followed by its complement (kind ^ 0xFF):
    one more check that a damaged frame never reads as an SOS."""

    MSG_ID = 0x90
    LAYOUT = struct.Struct("<BBH")
    kind: ButtonKind
    held_ms: int = 0

    def __post_init__(self) -> None:
        _enum(self.kind, "kind", ButtonKind)
        _int(self.held_ms, "held_ms", 0, 0xFFFF)

    def encode(self) -> bytes:
        return self.LAYOUT.pack(self.kind, self.kind ^ 0xFF, self.held_ms)

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        if raw[0] ^ raw[1] != 0xFF:
            raise InvalidField(f"kind: {raw[0]} and its complement {raw[1]} disagree")
        return cls(_to_enum(ButtonKind, raw[0], "kind"), raw[2])


@dataclass(frozen=True, slots=True)
class Battery(DeviceMessage):
    MSG_ID = 0x91
    LAYOUT = struct.Struct("<BB")
    percent: int
    charging: bool

    def __post_init__(self) -> None:
        _int(self.percent, "percent", 0, 100)
        _bool(self.charging, "charging")

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        return cls(raw[0], _to_bool(raw[1], "charging"))


@dataclass(frozen=True, slots=True)
class Tamper(DeviceMessage):
    """The body cam's case was opened (``case_open``) or closed again."""

    MSG_ID = 0x92
    LAYOUT = struct.Struct("<B")
    case_open: bool

    def __post_init__(self) -> None:
        _bool(self.case_open, "case_open")

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        return cls(_to_bool(raw[0], "case_open"))


@dataclass(frozen=True, slots=True)
class FirmwareVersion(DeviceMessage):
    """Printable ASCII, 1-32 characters; on the wire a u8 length then the characters."""

    MSG_ID = 0x93
    version: str

    def __post_init__(self) -> None:
        if not isinstance(self.version, str):
            raise InvalidField("version: expected a str")
        if not 1 <= len(self.version) <= MAX_VERSION_LEN:
            raise InvalidField(f"version: length {len(self.version)} outside [1, 32]")
        if not all(" " <= c <= "~" for c in self.version):
            raise InvalidField("version: only printable ASCII is allowed")

    def encode(self) -> bytes:
        data = self.version.encode("ascii")
        return bytes([len(data)]) + data

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        if not payload or payload[0] != len(payload) - 1:
            raise InvalidField("FirmwareVersion: length byte does not match the payload")
        try:
            text = payload[1:].decode("ascii")
        except UnicodeDecodeError:
            raise InvalidField("version: not ASCII") from None
        return cls(text)


@dataclass(frozen=True, slots=True)
class Heartbeat(DeviceMessage):
    """Sent every second; ``uptime_ms`` wraps at 2**32 (49.7 days)."""

    MSG_ID = 0x94
    LAYOUT = struct.Struct("<I")
    uptime_ms: int

    def __post_init__(self) -> None:
        _int(self.uptime_ms, "uptime_ms", 0, U32)

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        return cls(raw[0])


@dataclass(frozen=True, slots=True)
class StatusReport(DeviceMessage):
    """The answer to ``RequestStatus`` (sent after the Ack)."""

    MSG_ID = 0x95
    LAYOUT = struct.Struct("<BBBBBBI")
    light: LightPattern
    rate_hz: int
    recording: bool
    battery_percent: int
    charging: bool
    case_open: bool
    uptime_ms: int

    def __post_init__(self) -> None:
        _enum(self.light, "light", LightPattern)
        _int(self.rate_hz, "rate_hz", 0, MAX_RATE_HZ)
        _bool(self.recording, "recording")
        _int(self.battery_percent, "battery_percent", 0, 100)
        _bool(self.charging, "charging")
        _bool(self.case_open, "case_open")
        _int(self.uptime_ms, "uptime_ms", 0, U32)

    @classmethod
    def _from_raw(cls, raw: tuple[int, ...]) -> Self:
        return cls(
            _to_enum(LightPattern, raw[0], "light"),
            raw[1],
            _to_bool(raw[2], "recording"),
            raw[3],
            _to_bool(raw[4], "charging"),
            _to_bool(raw[5], "case_open"),
            raw[6],
        )


COMMANDS: dict[int, type[Command]] = {
    c.MSG_ID: c for c in (SetLight, Alert, RequestStatus, StartRecording, StopRecording, TimeSync)
}
DEVICE_MESSAGES: dict[int, type[DeviceMessage]] = {
    c.MSG_ID: c
    for c in (Ack, Nak, ButtonEvent, Battery, Tamper, FirmwareVersion, Heartbeat, StatusReport)
}


def decode_command(msg_id: int, payload: bytes) -> Command:
    """A host→device message; raises ``UnknownMessage`` or ``InvalidField``."""
    kind = COMMANDS.get(msg_id)
    if kind is None:
        raise UnknownMessage(
            f"no command 0x{msg_id:02x}", wrong_direction=msg_id in DEVICE_MESSAGES
        )
    return kind.decode(payload)


def decode_device_message(msg_id: int, payload: bytes) -> DeviceMessage:
    """A device→host message; raises ``UnknownMessage`` or ``InvalidField``."""
    kind = DEVICE_MESSAGES.get(msg_id)
    if kind is None:
        raise UnknownMessage(
            f"no device message 0x{msg_id:02x}", wrong_direction=msg_id in COMMANDS
        )
    return kind.decode(payload)
