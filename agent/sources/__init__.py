"""Position sources for the agent: each is a ``PositionSource`` (``read(now_ms) -> Fix | None``).

- ``nmea``: a sans-IO NMEA 0183 decoder (bytes in, events out); no I/O at all.
- ``serial_nmea``: ``SerialNmeaSource``, the decoder behind a pyserial port and its thread.
- ``gpsd_source``: ``GpsdSource``, fixes from a gpsd daemon through gpsd-py3.
- ``errors``: ``SourceConfigError``, ``SourceUnavailable`` (both ``agent.errors.SourceError``)
  and ``SourceState``.

``read`` never raises: a source that lost its receiver returns None and says why in ``state``
and ``last_error``.
"""

from .errors import SourceConfigError, SourceState, SourceUnavailable
from .gpsd_source import GpsdSource
from .nmea import (
    DecoderStats,
    Event,
    FixDecoded,
    NmeaDecoder,
    NoFix,
    NoFixReason,
    Rejected,
    RejectReason,
)
from .serial_nmea import SerialNmeaSource, SerialStats

__all__ = [
    "DecoderStats",
    "Event",
    "FixDecoded",
    "GpsdSource",
    "NmeaDecoder",
    "NoFix",
    "NoFixReason",
    "RejectReason",
    "Rejected",
    "SerialNmeaSource",
    "SerialStats",
    "SourceConfigError",
    "SourceState",
    "SourceUnavailable",
]
