"""The one place that owns a pyserial port: an NMEA receiver as a ``PositionSource``.

A reader thread opens the port, feeds what it reads to an ``NmeaDecoder`` and keeps the newest
fix; ``read(now_ms)`` hands each fix out at most once. When the cable is pulled (the read fails,
or nothing arrives for ``silence_s``) the thread closes the port and opens it again after a
capped, jittered delay (``yijing.mqtt.Backoff``), with a fresh decoder: bytes from before the
break must not be glued to bytes after it.

``port`` is anything ``serial.serial_for_url`` opens: a device path (``/dev/ttyUSB0``, a udev
link such as ``/dev/serial/by-id/...``, a pty's ``/dev/pts/N``) or a URL (``loop://``,
``socket://host:port``, ``rfc2217://...``).

Errors: pyserial's ``SerialException``, ``OSError`` and ``ValueError`` are converted here, once,
to ``SourceUnavailable`` (kept in ``last_error``, logged once per kind) and never leave the
thread; ``read`` never raises. A setting that cannot work raises ``SourceConfigError`` from the
constructor. Malformed input is counted per reason in ``stats`` and logged once per reason.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import serial

from protocol import Fix
from yijing.mqtt import Backoff

from .errors import SourceConfigError, SourceState, SourceUnavailable
from .nmea import Event, FixDecoded, NmeaDecoder, NoFix, NoFixReason, Rejected, RejectReason

_SERIAL_ERRORS = (serial.SerialException, OSError, ValueError)


@dataclass
class SerialStats:
    opens: int = 0  # successful opens of the port
    bytes: int = 0
    fixes: int = 0  # decoded (read() returns only the newest of those not yet returned)
    rejected: Counter[RejectReason] = field(default_factory=Counter)
    no_fix: Counter[NoFixReason] = field(default_factory=Counter)


class SerialNmeaSource:
    """Fixes from an NMEA 0183 receiver on a serial port; see the module docstring.

    The thread starts with ``start()`` or on the first ``read()``; ``close()`` ends it.
    """

    def __init__(
        self,
        *,
        port: str,
        baudrate: int = 9600,
        timeout: float = 0.2,
        silence_s: float | None = 10.0,
        backoff: Backoff | None = None,
        decoder_factory: Callable[[], NmeaDecoder] = NmeaDecoder,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        if not port:
            raise SourceConfigError("serial port: expected a device path or pyserial URL")
        if not 0 < timeout <= 10:
            raise SourceConfigError(f"serial timeout {timeout} s is outside (0, 10]")
        if silence_s is not None and silence_s <= timeout:
            raise SourceConfigError(f"silence_s {silence_s} must exceed the timeout {timeout}")
        try:
            # Checks the URL scheme and the baud rate without touching the device, which may
            # well be unplugged at boot.
            serial.serial_for_url(port, baudrate=baudrate, timeout=timeout, do_not_open=True)
        except _SERIAL_ERRORS as exc:
            raise SourceConfigError(f"serial port {port!r} at {baudrate} baud: {exc}") from exc
        self.port, self.baudrate, self.timeout, self.silence_s = port, baudrate, timeout, silence_s
        self._backoff = backoff or Backoff(base=0.5, cap=10.0)
        self._decoder_factory = decoder_factory
        self._clock = clock
        self._log = logger or logging.getLogger("yijing.agent.source.serial")
        self._lock = threading.Lock()  # guards the fields below, shared with the thread
        self._serial: Any = None  # the open port, for write() and close()
        self._newest: tuple[int, Fix] | None = None  # (sequence number, fix)
        self._returned = 0  # sequence number of the last fix read() handed out
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged: set[str] = set()
        self.state = SourceState.STOPPED
        self.last_error: SourceUnavailable | None = None
        self.stats = SerialStats()

    # --- the PositionSource side ---------------------------------------------------------------

    def read(self, now_ms: int) -> Fix | None:
        """The newest fix decoded since the last call, or None. Never raises.

        "Newest" is arrival order, not GNSS time: a receiver whose clock jumps back (a reset, a
        week-rollover fix) keeps reporting. ``now_ms`` is unused: the fix carries GNSS time.
        """
        if self._thread is None and not self._stop.is_set():
            self.start()  # the first read starts the thread; after close() none does
        with self._lock:
            if self._newest is None or self._newest[0] <= self._returned:
                return None
            self._returned, fix = self._newest
            return fix

    def write(self, data: bytes) -> None:
        """Send bytes to the receiver (configuration sentences such as ``$PMTK220,1000*1F``)."""
        with self._lock:
            port = self._serial
        if port is None:
            raise SourceUnavailable(f"{self.port}: not open")
        try:
            port.write(data)  # not under the lock: a full buffer waits for the reader
        except _SERIAL_ERRORS as exc:  # closed meanwhile by the reader: PortNotOpenError
            raise SourceUnavailable(f"{self.port}: write failed: {exc}") from exc

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.state = SourceState.CONNECTING
        self._thread = threading.Thread(target=self._run, name=f"nmea-{self.port}", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the port; ``read`` returns None until ``start()``."""
        self._stop.set()
        with self._lock, contextlib.suppress(*_SERIAL_ERRORS, AttributeError):
            if self._serial is not None:
                self._serial.cancel_read()  # wake a read blocked in the driver
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.state = SourceState.STOPPED

    def __enter__(self) -> SerialNmeaSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self.state = SourceState.CONNECTING
            try:
                port = serial.serial_for_url(
                    self.port, baudrate=self.baudrate, timeout=self.timeout
                )
            except _SERIAL_ERRORS as exc:
                self._failed(SourceUnavailable(f"{self.port}: open failed: {exc}"), exc)
                self._stop.wait(self._backoff.next_delay())
                continue
            opened_at = self._clock()
            with self._lock:
                self._serial = port
            self.stats.opens += 1
            self.state = SourceState.NO_FIX
            self._log.info("%s open at %d baud", self.port, self.baudrate)
            decoder = self._decoder_factory()
            try:
                self._pump(port, decoder)
            except SourceUnavailable as exc:
                self._failed(exc, exc.__cause__)
            except Exception as exc:  # a bug must not end the thread and leave read() silent
                self._log.exception("%s: reader failed; reopening", self.port)
                self._failed(SourceUnavailable(f"{self.port}: reader failed: {exc!r}"), exc)
            finally:
                with self._lock:
                    self._serial = None
                with contextlib.suppress(*_SERIAL_ERRORS):
                    port.close()
                # No decoder.end_of_stream(): an unterminated line is a cut one, and the open
                # epoch lacks its end. Both are dropped with the decoder.
                self._backoff.connected_for(self._clock() - opened_at)
            if not self._stop.is_set():
                self.state = SourceState.CONNECTING
                self._stop.wait(self._backoff.next_delay())

    def _pump(self, port: Any, decoder: NmeaDecoder) -> None:
        heard = self._clock()
        while not self._stop.is_set():
            try:
                chunk = port.read(port.in_waiting or 1)
            except _SERIAL_ERRORS as exc:
                # A pulled USB adapter or a closed pty: EIO, or "device reports readiness to
                # read but returned no data".
                raise SourceUnavailable(f"{self.port}: read failed: {exc}") from exc
            now = self._clock()
            if chunk:
                heard = now
                self.stats.bytes += len(chunk)
                self._handle(decoder.receive_data(chunk))
            elif self.silence_s is not None and now - heard > self.silence_s:
                # RS-232 has no hang-up: a cut cable is silence. Reopening also revives USB
                # adapters that lost the receiver behind them.
                raise SourceUnavailable(f"{self.port}: no data for {self.silence_s:g} s")

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, FixDecoded):
                with self._lock:
                    self.stats.fixes += 1
                    self._newest = (self.stats.fixes, event.fix)
                self.state = SourceState.FIX
            elif isinstance(event, NoFix):
                self.stats.no_fix[event.reason] += 1
                self.state = SourceState.NO_FIX
                self._log_once(
                    f"nofix:{event.reason}",
                    logging.INFO,
                    "%s: no fix (%s) %s",
                    self.port,
                    event.reason.value,
                    event.detail,
                )
            elif isinstance(event, Rejected):
                self.stats.rejected[event.reason] += 1
                self._log_once(
                    f"rejected:{event.reason}",
                    logging.WARNING,
                    "%s: rejected NMEA input (%s, logged once per reason) %s: %r",
                    self.port,
                    event.reason.value,
                    event.detail,
                    event.line,
                )

    def _failed(self, error: SourceUnavailable, cause: BaseException | None) -> None:
        self.last_error = error
        kind = type(cause).__name__ + str(getattr(cause, "errno", "") or "")
        self._log_once(f"error:{kind}", logging.WARNING, "%s (retrying with backoff)", error)
        self._log.debug("%s", error)

    def _log_once(self, key: str, level: int, message: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            self._log.log(level, message, *args)
