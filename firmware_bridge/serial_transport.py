"""The one place that owns the device's serial port: ``SerialBridge``.

A reader thread opens the port, feeds what it reads to a ``BridgeConnection``, calls
``tick`` every ``tick_s`` (retransmissions, link timeout), writes what those return and hands
every event to ``on_event`` (on the reader thread: keep it short). When the cable is pulled
(a read or write fails) the thread tells the connection (``LinkDown``), closes the port and
opens it again after a capped, jittered delay (``yijing.mqtt.Backoff``). Pending commands
survive a reopen and are retried as usual.

``port`` is anything ``serial.serial_for_url`` opens: a device path (``/dev/ttyUSB0``, a
udev link, a pty's ``/dev/pts/N``) or a URL (``loop://``, ``socket://host:port``).

Errors: pyserial's ``SerialException``, ``OSError`` and ``ValueError`` are converted here, once,
to ``LinkError`` (kept in ``last_error``, logged once per kind) and never leave the thread. A
setting that cannot work raises ``BridgeConfigError`` from the constructor. ``send`` never
fails for a pulled cable: the command waits for its retries like any unacked one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from yijing.mqtt import Backoff

from .connection import BridgeConnection, Event, LinkState
from .errors import BridgeConfigError, LinkError
from .messages import Command

_SERIAL_ERRORS = (serial.SerialException, OSError, ValueError)

EventHandler = Callable[[Event], None]


class SerialBridge:
    """A device on a serial port; see the module docstring. ``close()`` ends the thread."""

    def __init__(
        self,
        *,
        port: str,
        on_event: EventHandler,
        baudrate: int = 115200,
        timeout: float = 0.05,
        tick_s: float = 0.05,
        backoff: Backoff | None = None,
        connection_factory: Callable[[], BridgeConnection] = BridgeConnection,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        if not port:
            raise BridgeConfigError("serial port: expected a device path or pyserial URL")
        if not 0 < timeout <= 1:
            raise BridgeConfigError(f"serial timeout {timeout} s is outside (0, 1]")
        if not 0 < tick_s <= 0.1:
            raise BridgeConfigError(f"tick_s {tick_s} is outside (0, 0.1]: retries need 200 ms")
        try:
            serial.serial_for_url(port, baudrate=baudrate, timeout=timeout, do_not_open=True)
        except _SERIAL_ERRORS as exc:
            raise BridgeConfigError(f"serial port {port!r} at {baudrate} baud: {exc}") from exc
        self.port, self.baudrate, self.timeout, self.tick_s = port, baudrate, timeout, tick_s
        self._on_event = on_event
        self._backoff = backoff or Backoff(base=0.2, cap=5.0)
        self._clock = clock
        self._log = logger or logging.getLogger("yijing.firmware_bridge")
        self._lock = threading.Lock()  # guards the connection and _serial
        self._write_lock = threading.Lock()
        self.connection = connection_factory()
        self._serial: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged: set[str] = set()
        self.opens = 0
        self.last_error: LinkError | None = None

    # --- public -----------------------------------------------------------------------------------

    def send(self, command: Command) -> int:
        """Send ``command``; returns its sequence number (see ``CommandAcked``)."""
        with self._lock:
            wire = self.connection.send(command, self._now_ms())
            seq = self.connection.last_seq
            port = self._serial
        assert seq is not None
        if port is not None:
            self._write(port, wire)  # a failure shows up on the reader, which reopens
        return seq

    @property
    def link_up(self) -> bool:
        return self.connection.state is LinkState.UP

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"bridge-{self.port}", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock, contextlib.suppress(*_SERIAL_ERRORS, AttributeError):
            if self._serial is not None:
                self._serial.cancel_read()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> SerialBridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the thread -------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(
                    self.port, baudrate=self.baudrate, timeout=self.timeout
                )
            except _SERIAL_ERRORS as exc:
                self._failed(LinkError(f"{self.port}: open failed: {exc}"), exc)
                self._wait_ticking(self._backoff.next_delay())
                continue
            opened_at = self._clock()
            with self._lock:
                self._serial = port
            self.opens += 1
            self._log.info("%s open at %d baud", self.port, self.baudrate)
            try:
                self._pump(port)
            except LinkError as exc:
                self._failed(exc, exc.__cause__)
            except Exception as exc:  # a bug must not end the thread silently
                self._log.exception("%s: reader failed; reopening", self.port)
                self._failed(LinkError(f"{self.port}: reader failed: {exc!r}"), exc)
            finally:
                with self._lock:
                    self._serial = None
                    events = self.connection.port_lost()
                with contextlib.suppress(*_SERIAL_ERRORS):
                    port.close()
                self._deliver(events)
                self._backoff.connected_for(self._clock() - opened_at)
            if not self._stop.is_set():
                self._wait_ticking(self._backoff.next_delay())

    def _wait_ticking(self, delay: float) -> None:
        """Wait for the backoff while still ticking: commands fail on time with no port."""
        deadline = self._clock() + delay
        while not self._stop.is_set():
            left = deadline - self._clock()
            if left <= 0:
                return
            self._stop.wait(min(left, self.tick_s))
            with self._lock:
                events, _ = self.connection.tick(self._now_ms())  # nowhere to write
            self._deliver(events)

    def _pump(self, port: Any) -> None:
        next_tick = self._clock()
        while not self._stop.is_set():
            try:
                chunk = port.read(port.in_waiting or 1)
            except _SERIAL_ERRORS as exc:
                # A pulled USB adapter or a closed pty: EIO, or "device reports readiness to
                # read but returned no data".
                raise LinkError(f"{self.port}: read failed: {exc}") from exc
            events: list[Event] = []
            wire = b""
            with self._lock:
                now_ms = self._now_ms()
                if chunk:
                    events += self.connection.receive_data(chunk, now_ms)
                if self._clock() >= next_tick:
                    next_tick = self._clock() + self.tick_s
                    tick_events, wire = self.connection.tick(now_ms)
                    events += tick_events
            if wire and not self._write(port, wire):
                raise LinkError(f"{self.port}: write failed")
            self._deliver(events)

    def _write(self, port: Any, data: bytes) -> bool:
        with self._write_lock:
            try:
                port.write(data)
            except _SERIAL_ERRORS as exc:
                self._log.debug("%s: write failed: %s", self.port, exc)
                return False
        return True

    def _deliver(self, events: list[Event]) -> None:
        for event in events:
            try:
                self._on_event(event)
            except Exception:
                self._log.exception("%s: on_event failed for %r", self.port, event)

    def _failed(self, error: LinkError, cause: BaseException | None) -> None:
        self.last_error = error
        kind = type(cause).__name__ + str(getattr(cause, "errno", "") or "")
        if kind not in self._logged:
            self._logged.add(kind)
            self._log.warning("%s (retrying with backoff)", error)
        self._log.debug("%s", error)
