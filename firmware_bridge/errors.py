"""The firmware bridge's exceptions: the only ones its decoders and transport ever raise.

Exception tree::

    BridgeError                   base of everything below
    ├── BridgeConfigError         a setting that cannot work (constructor arguments)
    ├── FrameError                the bytes between two delimiters are not a good frame
    │   ├── CobsError             not valid COBS (a zero inside, a code byte past the end)
    │   ├── TruncatedFrame        shorter than header + CRC
    │   ├── OversizedFrame        longer than MAX_BODY (or no delimiter within the limit)
    │   ├── CrcMismatch           the CRC-16/CCITT-FALSE does not match
    │   └── UnsupportedVersion    a protocol version this code does not speak
    ├── MessageError              a good frame whose body is not a valid message
    │   ├── UnknownMessage        a message id nobody defined (or the wrong direction)
    │   └── InvalidField          a field of the wrong length or out of range
    └── LinkError                 the serial port: cannot open, read or write
        └── NotConnected          no port is open right now

Sans-IO code (``framing``, ``connection``, ``device``) catches ``FrameError`` and
``MessageError`` itself and turns them into ``Rejected`` events counted per ``reason``: feeding
bytes never raises. ``serial_transport`` converts pyserial's errors once, to ``LinkError``.
"""

from __future__ import annotations

import enum


class RejectReason(enum.StrEnum):
    """Why an input was dropped: the keys of the ``stats`` counters."""

    GARBAGE = "garbage"  # not COBS
    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    BAD_CRC = "bad_crc"
    BAD_VERSION = "bad_version"
    UNKNOWN_MESSAGE = "unknown_message"
    WRONG_DIRECTION = "wrong_direction"
    BAD_PAYLOAD = "bad_payload"


class BridgeError(Exception):
    """Base of the tree."""


class BridgeConfigError(BridgeError, ValueError):
    """A constructor argument that cannot work."""


class FrameError(BridgeError):
    reason: RejectReason = RejectReason.GARBAGE


class CobsError(FrameError):
    reason = RejectReason.GARBAGE


class TruncatedFrame(FrameError):
    reason = RejectReason.TRUNCATED


class OversizedFrame(FrameError):
    reason = RejectReason.OVERSIZED


class CrcMismatch(FrameError):
    reason = RejectReason.BAD_CRC


class UnsupportedVersion(FrameError):
    reason = RejectReason.BAD_VERSION


class MessageError(BridgeError):
    reason: RejectReason = RejectReason.BAD_PAYLOAD


class UnknownMessage(MessageError):
    reason = RejectReason.UNKNOWN_MESSAGE

    def __init__(self, message: str, *, wrong_direction: bool = False) -> None:
        super().__init__(message)
        if wrong_direction:
            self.reason = RejectReason.WRONG_DIRECTION


class InvalidField(MessageError):
    reason = RejectReason.BAD_PAYLOAD


class LinkError(BridgeError):
    """The serial port failed; ``__cause__`` holds pyserial's or the OS's exception."""


class NotConnected(LinkError):
    """No port is open."""
