"""The one place that uses gpsd-py3 (module ``gpsd``): fixes from a gpsd daemon.

gpsd-py3 0.3 is a thin client, and this adapter supplies what it lacks:

- **State in module globals** (``gpsd.gpsd_socket``, ``gpsd.gpsd_stream``): one connection per
  process. Every call into it holds ``_LIBRARY_LOCK``, and a source that finds another one's
  connection in the globals connects again.
- **No timeouts**: its socket blocks forever, so a daemon that accepts but never answers would
  hang the agent's loop. ``_TimeoutSockets`` stands in for its ``socket`` module during
  ``gpsd.connect`` so that the socket it makes has our timeout; nothing else is changed.
- **No reconnect**: a failed poll drops the connection; the next ``read`` after a capped,
  jittered delay (``yijing.mqtt.Backoff``) connects again.
- **Lossy, raising responses**: ``GpsResponse`` fills absent fields with 0 (a course of 0° when
  gpsd reported none, an altitude of 0 m when ``alt`` is missing), drops ``eph``, raises
  ``IndexError`` when gpsd has no SKY yet, ``UserWarning`` (raised) when no device is active,
  and bare ``Exception`` on an unexpected reply. ``_LastLine`` keeps the reply line that
  ``gpsd.get_current()`` read, and the ``Fix`` is built from gpsd's own TPV (gpsd JSON,
  gpsd_json(5)): mode, time, lat, lon, speed, track, altMSL, eph or epx/epy; SKY uSat.

Errors: whatever gpsd-py3 or the socket raise is converted once to ``SourceUnavailable``
(``last_error``); ``read`` never raises. No fix (TPV mode < 2, or no time yet) is None with
``state`` NO_FIX.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import gpsd

from protocol import Fix, FixSource, InvalidField
from yijing.mqtt import Backoff

from .errors import SourceConfigError, SourceState, SourceUnavailable

_LIBRARY_LOCK = threading.Lock()  # gpsd-py3 keeps its one connection in module globals
_owner: GpsdSource | None = None  # whose connection the globals hold


class _TimeoutSockets:
    """Stands in for the ``socket`` module inside gpsd-py3 while it connects.

    gpsd-py3 calls ``socket.socket(socket.AF_INET, socket.SOCK_STREAM)`` and nothing else; the
    socket made here carries a timeout, which then bounds connect and every read and write.
    """

    AF_INET = socket.AF_INET
    SOCK_STREAM = socket.SOCK_STREAM

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    def socket(self, family: int, kind: int) -> socket.socket:
        sock = socket.socket(family, kind)
        sock.settimeout(self._timeout)
        return sock


class _LastLine:
    """gpsd-py3's stream, remembering the last line read (the raw POLL reply)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.last = stream, ""

    def readline(self) -> str:
        self.last = self.stream.readline()
        return self.last

    def write(self, text: str) -> int:
        return int(self.stream.write(text))

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _time_ms(text: object) -> int | None:
    """gpsd's TPV time, ISO 8601 UTC such as "2028-04-08T08:14:39.000Z", in Unix ms."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return round(when.timestamp() * 1000)


def _drop_library_connection() -> None:
    global _owner
    for name in ("gpsd_stream", "gpsd_socket"):
        handle = getattr(gpsd, name, None)
        setattr(gpsd, name, None)
        if handle is not None:
            with contextlib.suppress(OSError):  # a broken socket is closed all the same
                handle.close()
    _owner = None


class GpsdSource:
    """Fixes from gpsd over its JSON protocol, one ``?POLL`` per ``read``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 2947,
        timeout: float = 1.0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        if not host:
            raise SourceConfigError("gpsd host: expected a name or address")
        if not 0 < port < 65536:
            raise SourceConfigError(f"gpsd port {port} is outside 1-65535")
        if not 0 < timeout <= 30:
            raise SourceConfigError(f"gpsd timeout {timeout} s is outside (0, 30]")
        self.host, self.port, self.timeout = host, port, timeout
        self._backoff = backoff or Backoff(base=0.5, cap=10.0)
        self._clock = clock
        self._log = logger or logging.getLogger("yijing.agent.source.gpsd")
        self._retry_at = float("-inf")
        self._connected_at = 0.0
        self._last_time_ms: int | None = None  # the epoch of the last fix returned
        self._closed = False
        self._logged: set[str] = set()
        self.state = SourceState.STOPPED
        self.last_error: SourceUnavailable | None = None
        self.connects = 0

    def read(self, now_ms: int) -> Fix | None:
        """A fix for a new epoch, or None (no fix, same epoch, gpsd away). Never raises.

        Every socket operation is bounded by ``timeout`` (a connect is four of them, a poll
        two; resolving a host name is not, so give an address). ``now_ms`` is unused: the fix
        carries gpsd's GNSS time.
        """
        if self._closed:
            return None
        with _LIBRARY_LOCK:
            if _owner is not self:
                if self._clock() < self._retry_at:
                    return None
                try:
                    self._connect()
                except SourceUnavailable as exc:
                    self._failed(exc)
                    return None
            try:
                packet = self._poll()
            except SourceUnavailable as exc:
                self._disconnect()
                self._failed(exc)
                return None
        return self._fix(packet)

    def close(self) -> None:
        """Drop the connection; ``read`` returns None from now on."""
        self._closed = True
        with _LIBRARY_LOCK:
            if _owner is self:
                self._disconnect()
        self.state = SourceState.STOPPED

    # --- talking to gpsd (the caller holds _LIBRARY_LOCK) --------------------------------------

    def _connect(self) -> None:
        global _owner
        if _owner is not None:
            _drop_library_connection()  # another source's; the globals hold only one
        self.state = SourceState.CONNECTING
        real_socket_module = gpsd.socket
        gpsd.socket = _TimeoutSockets(self.timeout)
        try:
            gpsd.connect(host=self.host, port=self.port)
        except Exception as exc:  # gpsd-py3 raises bare Exception, JSON and socket errors
            _drop_library_connection()
            self._retry_at = self._clock() + self._backoff.next_delay()
            raise SourceUnavailable(f"gpsd {self.host}:{self.port}: {exc!r}") from exc
        finally:
            gpsd.socket = real_socket_module
        gpsd.gpsd_stream = _LastLine(gpsd.gpsd_stream)
        _owner = self
        self._connected_at = self._clock()
        self.connects += 1
        self._log.info("connected to gpsd %s:%s", self.host, self.port)

    def _poll(self) -> dict[str, Any]:
        stream = gpsd.gpsd_stream
        stream.last = ""
        problem: Exception | None = None
        try:
            gpsd.get_current()
        except Exception as exc:  # see the module docstring; the raw reply may still be good
            problem = exc
        try:
            packet = json.loads(stream.last)
        except ValueError:
            packet = None
        if not isinstance(packet, dict) or packet.get("class") != "POLL":
            raise SourceUnavailable(
                f"gpsd {self.host}:{self.port}: {problem!r} after {stream.last[:80]!r}"
            ) from problem
        return packet

    def _disconnect(self) -> None:
        _drop_library_connection()
        self._backoff.connected_for(self._clock() - self._connected_at)
        self._retry_at = self._clock() + self._backoff.next_delay()
        self.state = SourceState.CONNECTING

    # --- the reply ---------------------------------------------------------------------------

    def _fix(self, packet: dict[str, Any]) -> Fix | None:
        tpvs = packet.get("tpv") or [{}]
        tpv = tpvs[-1] if isinstance(tpvs[-1], dict) else {}  # one per device, as gpsd-py3
        mode = tpv.get("mode")
        time_ms = _time_ms(tpv.get("time"))
        lat, lon = _number(tpv.get("lat")), _number(tpv.get("lon"))
        # gpsd JSON TPV mode: 0 unknown, 1 no fix, 2 2D, 3 3D. Without time there is no GNSS
        # time to stamp the fix with, and the system clock is not one (no RTC at boot).
        if not isinstance(mode, int) or mode < 2 or time_ms is None or lat is None or lon is None:
            self.state = SourceState.NO_FIX
            return None
        self.state = SourceState.FIX
        if time_ms == self._last_time_ms:
            return None  # the epoch already returned
        accuracy = _number(tpv.get("eph"))
        epx, epy = _number(tpv.get("epx")), _number(tpv.get("epy"))
        if accuracy is None and epx is not None and epy is not None:
            accuracy = max(epx, epy)  # as gpsd-py3's position_precision()
        altitude = _number(tpv.get("altMSL", tpv.get("alt"))) if mode >= 3 else None
        try:
            fix = Fix(
                time_ms=time_ms,
                lat=lat,
                lon=lon,
                accuracy_m=accuracy,
                speed_mps=_number(tpv.get("speed")),
                course_deg=_number(tpv.get("track")),
                alt_m=altitude,
                satellites=self._satellites(packet),
                source=FixSource.GNSS,
            )
        except InvalidField as exc:
            self._log_once(f"invalid:{exc.field}", "gpsd fix not usable: %s", exc)
            return None
        self._last_time_ms = time_ms
        return fix

    @staticmethod
    def _satellites(packet: dict[str, Any]) -> int | None:
        skies = packet.get("sky") or [{}]
        sky = skies[-1] if isinstance(skies[-1], dict) else {}
        used = sky.get("uSat")
        if not isinstance(used, int) or isinstance(used, bool):
            satellites = sky.get("satellites")
            if not isinstance(satellites, list):
                return None
            used = sum(1 for s in satellites if isinstance(s, dict) and s.get("used") is True)
        # A fix from no satellites is no count: gpsd's SKY says uSat 0 until the cycle's GSA
        # arrives (mtk-3301: GGA says 3 used, the SKY before GSA says 0).
        return used if 0 < used <= 255 else None

    def _failed(self, error: SourceUnavailable) -> None:
        self.last_error = error
        self.state = SourceState.CONNECTING
        cause = error.__cause__
        self._log_once(f"error:{type(cause).__name__}", "%s (retrying with backoff)", error)

    def _log_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            self._log.warning(message, *args)
