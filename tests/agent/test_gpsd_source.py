"""GpsdSource against a real gpsd 3.22, fed the real receiver logs by gpsfake.

gpsfake replays a log into a private gpsd on a free port, in a loop (no ``-1``: a one-shot
replay ends before a slow client has polled). Live gpsd stamps logs older than its build with
a GPS week-rollover correction (+1024 weeks: bu353s4's 2014 reads 2034, mtk-3301's 2008 reads
2028), so positions are compared with the .chk TPVs exactly, and times up to that correction.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.sources.errors import SourceState, SourceUnavailable
from agent.sources.gpsd_source import GpsdSource
from protocol import Fix, FixSource
from tests.agent.nmea_logs import REAL_LOGS, gpsd_tpvs, iso, nmea_dir, same_place
from yijing.mqtt import Backoff

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WEEK_ROLLOVER_MS = 1024 * 7 * 86_400_000
# gpsfake's pause between sentences: about 4 s per pass over each log
CYCLE_S = {
    "bu353s4.log": 0.04,
    "mtk-3301.log": 0.05,
    "quectel-eg25-g.log": 0.005,
    "telit-pls83-w.log": 0.02,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeGpsd:
    """One gpsfake (and the gpsd it spawns) in its own process group."""

    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable, self.workdir = executable, workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, log: str) -> None:
        assert self.process is None
        command = [self.executable, "-c", str(CYCLE_S[log]), "-P", str(self.port), "-q"]
        self.process = subprocess.Popen(
            [*command, str(nmea_dir() / log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a group of its own: gpsd goes with it
            env={**os.environ, "TMPDIR": str(self.workdir)},  # gpsd's control socket here
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gpsfake exited with {self.process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.1)
        pytest.fail("gpsd did not listen within 15 s")

    def stop(self, *, crash: bool = False) -> None:
        """SIGINT lets gpsfake stop its gpsd; ``crash`` kills both at once (SIGKILL)."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if crash:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                os.kill(process.pid, signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a gpsd that outlived gpsfake
        # gpsd exports its state in a SysV shared memory segment keyed by its port, and
        # leaves it behind; this one is ours.
        subprocess.run(
            ["ipcrm", "-M", f"0x4770{self.port:04X}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )


@pytest.fixture
def fake_gpsd(tmp_path: Path) -> Iterator[FakeGpsd]:
    executable = shutil.which("gpsfake") or shutil.which("gpsfake", path="/usr/bin")
    if executable is None:
        pytest.fail("gpsfake is required (apt-get install gpsd gpsd-clients; .ci/run does)")
    fake = FakeGpsd(executable, tmp_path)
    yield fake
    fake.stop()


@pytest.fixture
def make_source() -> Iterator[Callable[[int], GpsdSource]]:
    sources: list[GpsdSource] = []

    def make(port: int) -> GpsdSource:
        source = GpsdSource(port=port, timeout=1.0, backoff=Backoff(base=0.05, cap=0.5))
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def read_fixes(source: GpsdSource, count: int, timeout: float = 30.0) -> list[Fix]:
    fixes: list[Fix] = []
    deadline = time.monotonic() + timeout
    while len(fixes) < count and time.monotonic() < deadline:
        fix = source.read(int(time.time() * 1000))  # never raises, whatever gpsd does
        if fix is not None:
            fixes.append(fix)
        time.sleep(0.02)
    assert len(fixes) >= count, f"{len(fixes)} fixes in {timeout} s; {source.last_error!r}"
    return fixes


@pytest.mark.parametrize("log", REAL_LOGS)
def test_fixes_through_gpsd_are_the_logs_positions(
    log: str, fake_gpsd: FakeGpsd, make_source: Callable[[int], GpsdSource]
) -> None:
    fake_gpsd.start(log)
    source = make_source(fake_gpsd.port)
    tpvs = gpsd_tpvs(log)
    fixes = read_fixes(source, count=3)
    assert source.state is SourceState.FIX
    for fix in fixes:
        assert fix.source is FixSource.GNSS
        matches = [tpv for tpv in tpvs if same_place(fix, tpv)]
        assert matches, f"{iso(fix.time_ms)} {fix.lat} {fix.lon} is no TPV of {log}"
        times = {tpv["time_ms"] for tpv in matches if "time_ms" in tpv}
        if times:  # some positions gpsd's regression run reported only untimed (mtk-3301)
            offsets = {fix.time_ms - t for t in times}
            assert offsets & {0, WEEK_ROLLOVER_MS}, (iso(fix.time_ms), sorted(times))
    assert len({f.time_ms for f in fixes}) == len(fixes)  # each epoch once
    if log == "mtk-3301.log":
        assert any(iso(f.time_ms).startswith("2028-") for f in fixes)  # rollover survives


def test_gpsd_killed_no_fix_no_exception_then_reconnects(
    fake_gpsd: FakeGpsd, make_source: Callable[[int], GpsdSource]
) -> None:
    fake_gpsd.start("telit-pls83-w.log")
    source = make_source(fake_gpsd.port)
    read_fixes(source, count=2)
    assert source.connects >= 1

    fake_gpsd.stop(crash=True)  # gpsd and gpsfake die at once
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # polls, fails, backs off, connects in vain
        assert source.read(0) is None
        time.sleep(0.02)
    assert source.state is SourceState.CONNECTING
    assert isinstance(source.last_error, SourceUnavailable)
    connects = source.connects

    fake_gpsd.start("bu353s4.log")  # back, on the same port
    again = read_fixes(source, count=2)
    assert source.connects > connects
    assert all(any(same_place(f, t) for t in gpsd_tpvs("bu353s4.log")) for f in again)


def test_nobody_listening_is_no_fix(make_source: Callable[[int], GpsdSource]) -> None:
    source = make_source(free_port())
    for _ in range(5):
        assert source.read(0) is None
    assert source.state is SourceState.CONNECTING
    assert "ConnectionRefused" in repr(source.last_error)
    source.close()
    assert source.read(0) is None and source.state is SourceState.STOPPED
