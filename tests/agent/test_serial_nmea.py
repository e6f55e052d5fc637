"""SerialNmeaSource through a real pty pair (the kernel's serial line) and pyserial's loop://."""

from __future__ import annotations

import logging
import os
import random
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.sources.errors import SourceConfigError, SourceState, SourceUnavailable
from agent.sources.nmea import FixDecoded, NmeaDecoder
from agent.sources.serial_nmea import SerialNmeaSource
from protocol import Fix
from tests.agent.nmea_logs import receiver_bytes
from tests.helpers import wait_until
from yijing.mqtt import Backoff


def expected_fixes(name: str) -> list[Fix]:
    decoder = NmeaDecoder()
    events = decoder.receive_data(receiver_bytes(name))  # what a live stream completes
    return [e.fix for e in events if isinstance(e, FixDecoded)]


class Receiver:
    """The far end of a serial cable: the master side of a pty, behind a stable link name.

    The source opens ``path``, a symlink like udev's /dev/serial/by-id names: a replugged
    receiver comes back under the same name though the kernel gives it a new device.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master: int | None = None

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or CR translation before pyserial opens it
        fresh = self.path.with_suffix(".new")
        fresh.unlink(missing_ok=True)
        fresh.symlink_to(os.ttyname(slave))
        fresh.replace(self.path)
        os.close(slave)  # the source opens its own; the pty lives while the master is open
        self.master = master

    def pull(self) -> None:
        if self.master is not None:
            # As udev does, the name goes first: the kernel reuses pty numbers at once (other
            # tests, other processes), and a stale link would lead to someone else's pty.
            self.path.unlink(missing_ok=True)
            os.close(self.master)  # the reader sees EIO
            self.master = None

    def send(self, data: bytes, rng: random.Random) -> None:
        """Write in random pieces, as a UART delivers them: lines split anywhere."""
        assert self.master is not None
        view = memoryview(data)
        while view:
            piece = view[: rng.randint(1, 200)]
            written = os.write(self.master, piece)
            view = view[written:]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    rx = Receiver(tmp_path / "gps0")
    yield rx
    rx.pull()


@pytest.fixture
def make_source() -> Iterator[Callable[..., SerialNmeaSource]]:
    sources: list[SerialNmeaSource] = []

    def make(port: str, **kwargs: object) -> SerialNmeaSource:
        source = SerialNmeaSource(
            port=port,
            timeout=0.05,
            backoff=Backoff(base=0.05, cap=0.2),
            **kwargs,  # type: ignore[arg-type]
        )
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def read_all(source: SerialNmeaSource, until: Fix, timeout: float = 10.0) -> list[Fix]:
    """Everything read() hands out until ``until`` comes (read keeps only the newest)."""
    seen: list[Fix] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fix = source.read(0)
        if fix is not None:
            seen.append(fix)
            if fix == until:
                return seen
        else:
            time.sleep(0.005)
    raise AssertionError(f"timed out; read {len(seen)} fixes, the last {seen[-1:]}")


def test_pty_log_yields_its_fixes_then_recovers_after_the_cable_is_pulled(
    receiver: Receiver,
    make_source: Callable[..., SerialNmeaSource],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="yijing.agent.source.serial")
    rng = random.Random(3)
    receiver.plug()
    source = make_source(str(receiver.path))
    assert source.read(0) is None  # starts the thread
    wait_until(lambda: source.stats.opens == 1, 5, "the port open")

    first = expected_fixes("bu353s4.log")
    receiver.send(receiver_bytes("bu353s4.log"), rng)
    seen = read_all(source, first[-1])
    assert all(fix in first for fix in seen)
    assert [first.index(f) for f in seen] == sorted({first.index(f) for f in seen})  # in order
    wait_until(lambda: source.stats.fixes == len(first), 5, "every epoch decoded")
    assert source.read(0) is None  # each fix once
    assert source.state is SourceState.FIX

    receiver.pull()  # the cable: out
    wait_until(lambda: source.state is SourceState.CONNECTING, 5, "the loss noticed")
    assert source.read(0) is None
    assert isinstance(source.last_error, SourceUnavailable)
    time.sleep(0.5)  # several failed reopens, with backoff; none raises, each logged once
    assert source.stats.opens == 1

    receiver.plug()  # in again, a new pty under the same name
    wait_until(lambda: source.stats.opens == 2, 5, "the port reopened")
    second = expected_fixes("telit-pls83-w.log")
    receiver.send(receiver_bytes("telit-pls83-w.log"), rng)
    seen = read_all(source, second[-1])
    assert all(fix in second for fix in seen)
    assert source.stats.fixes == len(first) + len(second)
    assert sum(source.stats.rejected.values()) == 0

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("read failed" in m for m in warnings)
    assert len(warnings) == len(set(warnings)) <= 3  # once per kind, not once per retry


def test_noise_on_the_line_is_counted_and_logged_once_per_reason(
    receiver: Receiver,
    make_source: Callable[..., SerialNmeaSource],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.plug()
    source = make_source(str(receiver.path))
    source.start()
    wait_until(lambda: source.stats.opens == 1, 5, "the port open")
    noise = b"\xff\x00garbage\r\n$GPRMC,1*00\r\n" * 5
    receiver.send(noise + receiver_bytes("mtk-3301.log"), random.Random(5))
    wait_until(lambda: source.stats.fixes == 4, 5, "mtk-3301's four fixes")
    rejected = {reason.value: count for reason, count in source.stats.rejected.items()}
    assert rejected == {"garbage": 5, "bad_checksum": 5, "no_checksum": 3}  # 3 $POLYN lines
    logged = [r.getMessage() for r in caplog.records if "rejected NMEA input" in r.getMessage()]
    assert len(logged) == 3


def test_loop_url(make_source: Callable[..., SerialNmeaSource]) -> None:
    source = make_source("loop://")
    with source:
        wait_until(lambda: source.stats.opens == 1, 5, "the loop open")
        expected = expected_fixes("quectel-eg25-g.log")
        source.write(receiver_bytes("quectel-eg25-g.log"))  # loops back to the reader
        seen = read_all(source, expected[-1])
        assert all(fix in expected for fix in seen)
    assert source.state is SourceState.STOPPED
    assert source.read(0) is None  # closed stays closed


def test_missing_device_never_raises(make_source: Callable[..., SerialNmeaSource]) -> None:
    source = make_source("/dev/does-not-exist-yijing")
    assert source.read(0) is None
    wait_until(lambda: source.last_error is not None, 5, "the open to fail")
    assert source.state is SourceState.CONNECTING
    assert isinstance(source.last_error, SourceUnavailable)
    with pytest.raises(SourceUnavailable):
        source.write(b"$PMTK220,1000*1F\r\n")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": ""},
        {"port": "nosuchscheme://x"},
        {"port": "loop://", "baudrate": -1},
        {"port": "loop://", "timeout": 0},
        {"port": "loop://", "timeout": 1.0, "silence_s": 0.5},
    ],
)
def test_settings_that_cannot_work(kwargs: dict[str, object]) -> None:
    with pytest.raises(SourceConfigError):
        SerialNmeaSource(**kwargs)  # type: ignore[arg-type]


def test_silence_reopens_the_port(make_source: Callable[..., SerialNmeaSource]) -> None:
    source = make_source("loop://", silence_s=0.2)
    source.start()
    wait_until(lambda: source.stats.opens >= 2, 5, "a reopen after silence")
    assert "no data" in str(source.last_error)
