"""Run ``yijing`` as real subprocesses for fault tests, and read both ends' SQLite files.

Every process writes stdout and stderr to files under the test's folder (so a failure can show
what it said), and the ``Processes`` group that started it kills and reaps it at teardown: no
process outlives its test and no ``Popen`` is left for the garbage collector.

The commands run as ``python -m yijing.cli`` with the interpreter running the tests, so they
work in whatever virtual environment the tests run in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protocol import Event, EventKind, decode

REPO = Path(__file__).resolve().parents[2]

#: Message type codes (``protocol.messages``): what the server's ``frames.type`` holds.
POSITION, POSITION_BATCH, EVENT, SNAPSHOT = 1, 2, 4, 5


class Process:
    """One ``yijing`` subprocess with its output in ``<log_dir>/<name>.out`` / ``.err``."""

    def __init__(self, args: list[str], *, log_dir: Path, name: str, cwd: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.args = args
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "yijing.cli", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                env=env,
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float) -> float:
        """Wait until ``text`` appears on stdout; return how long it took since the start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return time.monotonic() - self.started
            if not self.alive():
                raise AssertionError(f"{self.describe()} exited before printing {text!r}")
            time.sleep(0.01)
        raise AssertionError(f"{self.describe()} did not print {text!r} within {timeout}s")

    def kill(self) -> int:
        """SIGKILL (a power cut, an OOM kill) and reap; return the exit status."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        return self.popen.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM (an orderly stop) and reap; SIGKILL if it does not end within ``timeout``."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
                raise AssertionError(f"{self.describe()} ignored SIGTERM for {timeout}s") from None
        return self.popen.wait(10)

    def describe(self) -> str:
        tail = "\n".join(self.errors().splitlines()[-20:])
        return (
            f"yijing {' '.join(self.args[:1])} ({self.name}, pid {self.pid}, "
            f"status {self.popen.poll()}); stderr tail:\n{tail}"
        )


class Processes:
    """Starts ``yijing`` subprocesses and guarantees they are all killed and reaped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log_dir = root / "logs"
        self._all: list[Process] = []
        self._counts: dict[str, int] = {}

    def start(self, name: str, *args: str) -> Process:
        n = self._counts.get(name, 0) + 1
        self._counts[name] = n
        proc = Process(list(args), log_dir=self.log_dir, name=f"{name}-{n:03d}", cwd=self.root)
        self._all.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 60.0) -> str:
        """Run a command to completion (e.g. ``provision``); return its stdout."""
        proc = self.start(args[0], *args)
        try:
            status = proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"{proc.describe()} did not finish in {timeout}s") from None
        assert status == 0, proc.describe()
        return proc.output()

    def close(self) -> None:
        for proc in self._all:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


# --- reading both ends' databases ------------------------------------------------------------


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection (WAL: never blocks the writer, sees its last commit)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class AgentState:
    """The agent's durable counters and what its outbox still holds."""

    meta: dict[str, int]
    items: int
    backlog: int
    backlog_snapshots: int
    bytes_held: int  # payloads of sealed frames plus backlog bodies, counted now

    def __getitem__(self, key: str) -> int:
        return self.meta[key]

    @property
    def drained(self) -> bool:
        return self.items == 0 and self.backlog == 0


def agent_state(outbox_db: Path) -> AgentState:
    with read_only(outbox_db) as db:
        meta = {str(k): int(v) for k, v in db.execute("SELECT key, value FROM meta")}
        items = int(db.execute("SELECT count(*) FROM items").fetchone()[0])
        backlog = int(db.execute("SELECT count(*) FROM backlog").fetchone()[0])
        snaps = int(db.execute("SELECT count(*) FROM backlog WHERE kind=2").fetchone()[0])
        held = int(
            db.execute(
                "SELECT (SELECT coalesce(sum(length(payload)), 0) FROM items)"
                " + (SELECT coalesce(sum(length(body)), 0) FROM backlog)"
            ).fetchone()[0]
        )
    return AgentState(meta, items, backlog, snaps, held)


@dataclass(frozen=True)
class ServerView:
    """What the server stored for one device."""

    seqs: list[int]
    fixes: int  # fixes from Position and PositionBatch frames
    distinct_fix_times: int
    snapshots: int
    fixes_thinned_reported: int  # sum of the FIXES_THINNED events' values
    snapshots_evicted_reported: int  # sum of the SNAPSHOTS_EVICTED events' values


def server_view(server_db: Path, device: str) -> ServerView:
    with read_only(server_db) as db:
        seqs = [
            int(r[0])
            for r in db.execute("SELECT seq FROM frames WHERE device_id=? ORDER BY seq", (device,))
        ]
        fixes, distinct = db.execute(
            "SELECT count(*), count(DISTINCT p.time_ms) FROM positions p JOIN frames f "
            "ON f.device_id=p.device_id AND f.seq=p.seq WHERE p.device_id=? AND f.type IN (?,?)",
            (device, POSITION, POSITION_BATCH),
        ).fetchone()
        snapshots = db.execute(
            "SELECT count(*) FROM frames WHERE device_id=? AND type=?", (device, SNAPSHOT)
        ).fetchone()[0]
        events = [
            decode(bytes(r[0])).envelope.message
            for r in db.execute(
                "SELECT payload FROM frames WHERE device_id=? AND type=?", (device, EVENT)
            )
        ]
    sums = {EventKind.FIXES_THINNED: 0, EventKind.SNAPSHOTS_EVICTED: 0}
    for event in events:
        assert isinstance(event, Event)
        if event.kind in sums:
            assert event.value is not None
            sums[event.kind] += event.value
    return ServerView(
        seqs,
        int(fixes),
        int(distinct),
        int(snapshots),
        sums[EventKind.FIXES_THINNED],
        sums[EventKind.SNAPSHOTS_EVICTED],
    )


def assert_invariant(
    outbox_db: Path, server_db: Path, device: str
) -> tuple[AgentState, ServerView]:
    """Everything the agent accepted and kept is stored exactly once, under gapless seqs.

    Call only after a drain: the agent's outbox holds no sealed frame and no backlog row.
    """
    agent = agent_state(outbox_db)
    assert agent.drained, f"{device}: not drained: {agent.items} frames, {agent.backlog} backlog"
    view = server_view(server_db, device)
    expected_fixes = agent["fixes_accepted"] - agent["fixes_thinned"]
    assert view.fixes == expected_fixes, (
        f"{device}: server stored {view.fixes} fixes, agent accepted {agent['fixes_accepted']} "
        f"and thinned {agent['fixes_thinned']}"
    )
    assert view.distinct_fix_times == view.fixes, (
        f"{device}: {view.fixes - view.distinct_fix_times} fixes stored more than once"
    )
    last = agent["next_seq"] - 1
    assert view.seqs == list(range(1, last + 1)), (
        f"{device}: server seqs are not exactly 1..{last}: "
        f"missing {sorted(set(range(1, last + 1)) - set(view.seqs))[:20]}, "
        f"extra {sorted(set(view.seqs) - set(range(1, last + 1)))[:20]}"
    )
    assert view.snapshots == agent["snapshots_accepted"] - agent["snapshots_evicted"], device
    if "bytes_used" in agent.meta:  # the budget's running byte count agrees with the rows
        assert agent["bytes_used"] == agent.bytes_held, (device, agent.meta, agent.bytes_held)
    reported = (
        f"{device}: events stored report {view.fixes_thinned_reported} fixes thinned and "
        f"{view.snapshots_evicted_reported} snapshots evicted; agent counters {agent.meta}"
    )
    assert view.fixes_thinned_reported == agent["fixes_thinned"], reported
    assert agent["fixes_thinned_reported"] == agent["fixes_thinned"], reported
    assert view.snapshots_evicted_reported == agent["snapshots_evicted"], reported
    assert agent["snapshots_evicted_reported"] == agent["snapshots_evicted"], reported
    return agent, view
