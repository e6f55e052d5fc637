"""Frames: header + payload + CRC, COBS-stuffed, ended by 0x00. Sans-IO, both directions.

Body (before COBS), at most ``MAX_BODY`` bytes::

    offset 0  u8   version (1)
    offset 1  u8   message id
    offset 2  u16  sequence number, little-endian
    offset 4  ...  payload (0..MAX_PAYLOAD bytes)
    last 2    u16  CRC-16/CCITT-FALSE over offsets 0..end of payload, little-endian

``FrameReader.receive_data`` accepts any split of the stream and returns ``Frame`` for each
good frame and ``FrameRejected`` for each bad one; it never raises. Empty frames (two
delimiters in a row) are padding and are skipped silently.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from . import cobs
from .crc import crc16_ccitt_false
from .errors import (
    CrcMismatch,
    FrameError,
    OversizedFrame,
    RejectReason,
    TruncatedFrame,
    UnsupportedVersion,
)

VERSION = 1
DELIMITER = b"\x00"
HEADER = struct.Struct("<BBH")
CRC = struct.Struct("<H")
MAX_BODY = 128
MAX_PAYLOAD = MAX_BODY - HEADER.size - CRC.size  # 122
#: COBS adds one byte per 254 (and at least one): the longest stuffed body.
MAX_ENCODED = MAX_BODY + (MAX_BODY + 253) // 254


@dataclass(frozen=True, slots=True)
class Frame:
    msg_id: int
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class FrameRejected:
    reason: RejectReason
    detail: str = ""


def encode_frame(msg_id: int, seq: int, payload: bytes) -> bytes:
    """The bytes on the wire for one frame, delimiter included."""
    if not 0 <= msg_id <= 0xFF or not 0 <= seq <= 0xFFFF:
        raise ValueError(f"msg_id {msg_id} or seq {seq} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise OversizedFrame(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = HEADER.pack(VERSION, msg_id, seq) + payload
    body += CRC.pack(crc16_ccitt_false(body))
    return cobs.encode(body) + DELIMITER


def decode_body(stuffed: bytes) -> Frame:
    """One frame from the bytes between two delimiters; raises a ``FrameError``."""
    if len(stuffed) > MAX_ENCODED:
        raise OversizedFrame(f"{len(stuffed)} stuffed bytes exceed {MAX_ENCODED}")
    body = cobs.decode(stuffed)
    if len(body) > MAX_BODY:
        raise OversizedFrame(f"body of {len(body)} bytes exceeds {MAX_BODY}")
    if len(body) < HEADER.size + CRC.size:
        raise TruncatedFrame(f"body of {len(body)} bytes is shorter than header + CRC")
    (crc,) = CRC.unpack_from(body, len(body) - CRC.size)
    if crc16_ccitt_false(body[: -CRC.size]) != crc:
        raise CrcMismatch("CRC mismatch")
    version, msg_id, seq = HEADER.unpack_from(body)
    if version != VERSION:
        raise UnsupportedVersion(f"protocol version {version}")
    return Frame(msg_id, seq, body[HEADER.size : -CRC.size])


class FrameReader:
    """Splits a byte stream at delimiters and decodes each frame. Never raises."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overflow = False  # discarding until the next delimiter
        self.stats: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget a partial frame (the port was reopened: old bytes must not glue to new)."""
        self._buffer.clear()
        self._overflow = False

    def receive_data(self, data: bytes) -> list[Frame | FrameRejected]:
        out: list[Frame | FrameRejected] = []
        self.stats["bytes"] += len(data)
        start = 0
        while start <= len(data):
            end = data.find(0, start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._overflow:
                self._buffer += chunk
                if len(self._buffer) > MAX_ENCODED:
                    self._overflow = True
                    self._buffer.clear()
                    self._reject(out, FrameRejected(RejectReason.OVERSIZED, "no delimiter"))
            if end < 0:
                break
            if self._overflow:
                self._overflow = False
            elif self._buffer:
                stuffed = bytes(self._buffer)
                self._buffer.clear()
                try:
                    frame = decode_body(stuffed)
                except FrameError as exc:
                    self._reject(out, FrameRejected(exc.reason, str(exc)))
                else:
                    self.stats["frames"] += 1
                    out.append(frame)
            start = end + 1
        return out

    def _reject(self, out: list[Frame | FrameRejected], rejected: FrameRejected) -> None:
        self.stats[rejected.reason] += 1
        out.append(rejected)
