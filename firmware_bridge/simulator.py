"""A shoulder light / body cam on a pty, so that tests and the demo run without hardware.

``DeviceSimulator`` opens a pty pair (``os.openpty``), runs ``device.DeviceEndpoint`` on the
master side in a background thread and offers the slave side as ``port`` for a
``SerialBridge`` (or any serial terminal). With ``link`` set, ``port`` is a symlink to the
slave that survives ``close()`` + ``reopen()`` under the same name, as udev's
/dev/serial/by-id names survive a replugged cable.

``close()`` is the cable pulled (the host's reads fail with EIO); ``reopen()`` plugs it back
in on a fresh pty. The device keeps its state (light, recording, battery) throughout.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from .device import DeviceEndpoint, LightState
from .messages import LightPattern

_POLL_S = 0.02


class DeviceSimulator:
    def __init__(
        self,
        *,
        link: Path | None = None,
        firmware: str = "yijing-sim 1.0.0",
        battery_percent: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # guards the device and the fds
        self.device = DeviceEndpoint(
            firmware=firmware, battery_percent=battery_percent, boot_ms=self._now_ms()
        )
        self.link = link
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_name = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reopen(boot=True)

    # --- the cable -------------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """What the host opens: the stable link if one was given, else the pty's slave."""
        return str(self.link) if self.link is not None else self._slave_name

    @property
    def is_open(self) -> bool:
        return self._master is not None

    def reopen(self, *, boot: bool = False) -> None:
        """Plug the cable (back) in: a fresh pty, the link pointed at it, the thread started."""
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation before the host opens it
        os.set_blocking(master, False)
        self._slave_name = os.ttyname(slave)
        if self.link is not None:
            fresh = self.link.with_suffix(".new")
            fresh.unlink(missing_ok=True)
            fresh.symlink_to(self._slave_name)
            fresh.replace(self.link)
        with self._lock:
            # The simulator holds the slave open too, so the pty does not hang up between
            # the host's opens; written bytes wait in the pty until the host reads them.
            self._master, self._slave = master, slave
            self.device.resync()
            if boot:
                self._write(self.device.boot(self._now_ms()))
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="device-sim", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Pull the cable: stop the thread, close the pty (the host sees EIO), drop the link."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self.link is not None:
            self.link.unlink(missing_ok=True)  # the name goes first, as with udev
        with self._lock:
            for fd in (self._master, self._slave):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = None

    def __enter__(self) -> DeviceSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the wearer ------------------------------------------------------------------------------

    def press_sos(self) -> None:
        self._act(lambda now: self.device.press_sos(now))

    def press_ack(self) -> None:
        self._act(lambda now: self.device.press_ack(now))

    def push_to_talk(self, down: bool = True) -> None:
        self._act(lambda now: self.device.push_to_talk(down, now))

    def set_battery(self, percent: int, charging: bool = False) -> None:
        self._act(lambda now: self.device.set_battery(percent, charging))

    def open_case(self) -> None:
        self._act(lambda now: self.device.set_case_open(True))

    def close_case(self) -> None:
        self._act(lambda now: self.device.set_case_open(False))

    @property
    def light(self) -> LightPattern:
        return self.device.light.pattern

    @property
    def light_state(self) -> LightState:
        return self.device.light

    @property
    def recording(self) -> bool:
        return self.device.recording

    # --- inside ----------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _act(self, action: Callable[[int], bytes]) -> None:
        with self._lock:
            self._write(action(self._now_ms()))

    def _write(self, data: bytes) -> None:
        """Write to the pty, dropping what does not fit (a UART with nobody listening)."""
        if self._master is None or not data:
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                self.device.stats["dropped_bytes"] += len(view)
                return
            except OSError:
                return
            view = view[written:]

    def _run(self) -> None:
        master = self._master
        assert master is not None
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([master], [], [], _POLL_S)
            except (OSError, ValueError):
                return
            data = b""
            if ready:
                try:
                    data = os.read(master, 4096)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        return
                    time.sleep(_POLL_S)  # EIO: nobody has the slave open (cannot happen here)
            with self._lock:
                if self._master is None:
                    return
                now = self._now_ms()
                out = self.device.receive_data(data, now) if data else b""
                self._write(out + self.device.tick(now))
