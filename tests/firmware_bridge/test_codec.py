"""CRC, COBS, framing and every message: known values and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge import cobs
from firmware_bridge.crc import CHECK, crc16_ccitt_false
from firmware_bridge.errors import (
    CobsError,
    CrcMismatch,
    InvalidField,
    OversizedFrame,
    TruncatedFrame,
    UnknownMessage,
    UnsupportedVersion,
)
from firmware_bridge.framing import (
    MAX_BODY,
    MAX_PAYLOAD,
    Frame,
    decode_body,
    encode_frame,
)
from firmware_bridge.messages import (
    COMMANDS,
    DEVICE_MESSAGES,
    Ack,
    Alert,
    AlertKind,
    Battery,
    ButtonEvent,
    ButtonKind,
    FirmwareVersion,
    Heartbeat,
    LightPattern,
    Message,
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
    decode_device_message,
)


def test_crc_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == CHECK == 0x29B1
    assert crc16_ccitt_false(b"") == 0xFFFF
    assert crc16_ccitt_false(b"6789", crc16_ccitt_false(b"12345")) == 0x29B1


@pytest.mark.parametrize(
    ("raw", "stuffed"),
    [  # the examples of the COBS paper / Wikipedia
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
        (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255)) + b"\x01"),
    ],
)
def test_cobs_known_vectors(raw: bytes, stuffed: bytes) -> None:
    assert cobs.encode(raw) == stuffed
    assert cobs.decode(stuffed) == raw


@given(st.binary(max_size=600))
def test_cobs_round_trip(data: bytes) -> None:
    stuffed = cobs.encode(data)
    assert 0 not in stuffed
    assert len(stuffed) <= len(data) + 1 + len(data) // 254
    assert cobs.decode(stuffed) == data


@pytest.mark.parametrize("bad", [b"", b"\x05\x11", b"\x02\x00", b"\x03\x11\x00"])
def test_cobs_rejects(bad: bytes) -> None:
    with pytest.raises(CobsError):
        cobs.decode(bad)


MESSAGES: list[Message] = [
    SetLight(LightPattern.OFF),
    SetLight(LightPattern.STEADY, 0, 60_000),
    SetLight(LightPattern.FLASH_RED_BLUE, 2, 5000),
    SetLight(LightPattern.FLASH_RED, 10),
    SetLight(LightPattern.FLASH_BLUE, 1, 86_400_000),
    Alert(AlertKind.BEEP, 200),
    Alert(AlertKind.VIBRATE, 10_000),
    Alert(AlertKind.BOTH, 1),
    RequestStatus(),
    StartRecording(),
    StopRecording(),
    TimeSync(1_763_900_000_000),
    Ack(0),
    Ack(0xFFFF),
    Nak(17, NakReason.BAD_PAYLOAD),
    ButtonEvent(ButtonKind.SOS_LONG_PRESS, 2000),
    ButtonEvent(ButtonKind.ACK_SHORT_PRESS, 150),
    ButtonEvent(ButtonKind.PTT_DOWN),
    ButtonEvent(ButtonKind.PTT_UP),
    Battery(0, False),
    Battery(100, True),
    Tamper(True),
    Tamper(False),
    FirmwareVersion("shoulder-light 2.3.1"),
    FirmwareVersion("x" * 32),
    Heartbeat(0),
    Heartbeat(2**32 - 1),
    StatusReport(LightPattern.FLASH_RED, 3, True, 57, False, True, 123_456),
]


@pytest.mark.parametrize("message", MESSAGES, ids=repr)
def test_message_round_trip(message: Message) -> None:
    payload = message.encode()
    assert len(payload) <= MAX_PAYLOAD
    assert type(message).decode(payload) == message
    decode = decode_command if message.MSG_ID < 0x80 else decode_device_message
    assert decode(message.MSG_ID, payload) == message
    frame = decode_body(encode_frame(message.MSG_ID, 0x1234, payload)[:-1])
    assert frame == Frame(message.MSG_ID, 0x1234, payload)


def test_every_type_has_a_round_trip() -> None:
    assert {type(m) for m in MESSAGES} == set(COMMANDS.values()) | set(DEVICE_MESSAGES.values())


@pytest.mark.parametrize(
    "build",
    [
        lambda: SetLight(LightPattern.FLASH_RED, 0),  # flashing needs a rate
        lambda: SetLight(LightPattern.STEADY, 2),  # steady has none
        lambda: SetLight(LightPattern.FLASH_RED, 11),
        lambda: SetLight(LightPattern.OFF, 0, -1),
        lambda: SetLight(2, 2),  # type: ignore[arg-type]  # a bare int is not a pattern
        lambda: Alert(AlertKind.BEEP, 0),
        lambda: Alert(AlertKind.BEEP, 10_001),
        lambda: TimeSync(0),
        lambda: Ack(65_536),
        lambda: Battery(101, False),
        lambda: Battery(50, 1),  # type: ignore[arg-type]
        lambda: Heartbeat(2**32),
        lambda: FirmwareVersion(""),
        lambda: FirmwareVersion("x" * 33),
        lambda: FirmwareVersion("版本1"),
        lambda: ButtonEvent(ButtonKind.PTT_UP, -1),
    ],
)
def test_invalid_values_are_refused(build: object) -> None:
    with pytest.raises(InvalidField):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("msg_id", "payload"),
    [
        (ButtonEvent.MSG_ID, b"\x01\x00\xd0\x07"),  # SOS without its complement
        (ButtonEvent.MSG_ID, b"\x09\xf6\x00\x00"),  # no such button
        (ButtonEvent.MSG_ID, b"\x01\xfe\xd0"),  # short
        (Battery.MSG_ID, b"\x32\x02"),  # charging is 0 or 1
        (Tamper.MSG_ID, b""),
        (FirmwareVersion.MSG_ID, b"\x05abc"),
        (FirmwareVersion.MSG_ID, b"\x02\xff\xfe"),
        (Heartbeat.MSG_ID, b"\x00\x00\x00\x00\x00"),
    ],
)
def test_bad_payloads_are_refused(msg_id: int, payload: bytes) -> None:
    with pytest.raises(InvalidField):
        decode_device_message(msg_id, payload)


def test_unknown_and_wrong_direction() -> None:
    with pytest.raises(UnknownMessage) as unknown:
        decode_device_message(0x7F, b"")
    assert unknown.value.reason == "unknown_message"
    with pytest.raises(UnknownMessage) as wrong:
        decode_device_message(SetLight.MSG_ID, SetLight(LightPattern.OFF).encode())
    assert wrong.value.reason == "wrong_direction"
    with pytest.raises(UnknownMessage):
        decode_command(Heartbeat.MSG_ID, b"\x00\x00\x00\x00")


def test_worked_examples_of_the_spec() -> None:
    """The bytes printed in docs/firmware-protocol.md."""
    light = SetLight(LightPattern.FLASH_RED_BLUE, 2, 5000)
    assert encode_frame(light.MSG_ID, 0x0102, light.encode()) == bytes.fromhex(
        "09 01 01 02 01 02 02 88 13 01 03 93 df 00"
    )
    sos = ButtonEvent(ButtonKind.SOS_LONG_PRESS, 2000)
    assert encode_frame(sos.MSG_ID, 7, sos.encode()) == bytes.fromhex(
        "04 01 90 07 07 01 fe d0 07 09 c9 00"
    )
    ack = Ack(0x0102)
    assert encode_frame(ack.MSG_ID, 8, ack.encode()) == bytes.fromhex(
        "04 01 80 08 05 02 01 e0 9a 00"
    )
    beat = Heartbeat(1000)
    assert encode_frame(beat.MSG_ID, 0, beat.encode()) == bytes.fromhex(
        "03 01 94 01 03 e8 03 01 03 d0 73 00"
    )


def test_frame_errors() -> None:
    good = encode_frame(Heartbeat.MSG_ID, 1, Heartbeat(5).encode())[:-1]
    body = cobs.decode(good)
    with pytest.raises(CrcMismatch):
        decode_body(cobs.encode(body[:-1] + bytes([body[-1] ^ 1])))
    with pytest.raises(TruncatedFrame):
        decode_body(cobs.encode(body[:5]))
    with pytest.raises(UnsupportedVersion):
        wrong = b"\x02" + body[1:-2]
        decode_body(cobs.encode(wrong + crc16_ccitt_false(wrong).to_bytes(2, "little")))
    with pytest.raises(OversizedFrame):
        decode_body(cobs.encode(bytes(MAX_BODY + 1)))
    with pytest.raises(OversizedFrame):
        encode_frame(1, 1, bytes(MAX_PAYLOAD + 1))
    assert len(encode_frame(1, 1, bytes(MAX_PAYLOAD))) <= MAX_BODY + 2 + 1
