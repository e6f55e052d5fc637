"""What the position sources raise, and the states they report instead of raising.

Exception tree (everything is an ``agent.errors.SourceError``)::

    SourceError                  agent.errors: a position source failed
    ├── SourceConfigError        a setting that cannot work (baud rate, timeout, port URL, host)
    └── SourceUnavailable        the device or daemon cannot be reached now (pyserial's and the
                                 socket's errors, and gpsd-py3's bare Exceptions, converted once)

Who raises what:

- ``NmeaDecoder.receive_data`` raises nothing for any bytes: malformed input becomes
  ``Rejected`` events (see ``agent.sources.nmea``). Its constructor may raise
  ``SourceConfigError``.
- ``read(now_ms)`` of every source raises nothing: the agent's loop calls it on every tick and
  does not catch ``SourceError``. A lost device makes ``read`` return None; ``state`` says why
  and ``last_error`` holds the converted ``SourceUnavailable``.
- Constructors raise ``SourceConfigError``; ``SerialNmeaSource.write`` raises
  ``SourceUnavailable`` when the port is not open.
"""

from __future__ import annotations

import enum

from agent.errors import SourceError


class SourceConfigError(SourceError):
    """A source setting that cannot work."""


class SourceUnavailable(SourceError):
    """The receiver or daemon cannot be reached right now; the source retries by itself."""


class SourceState(enum.StrEnum):
    """Where a source is, for status displays and tests (never a reason to raise)."""

    STOPPED = "stopped"  # not started, or closed
    CONNECTING = "connecting"  # opening the port / connecting to gpsd, or waiting to retry
    NO_FIX = "no_fix"  # talking to the receiver, which has no usable fix
    FIX = "fix"  # the newest epoch produced a fix
