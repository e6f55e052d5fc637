#!/usr/bin/env python3
"""Benchmark of yijing's edge agent: durable appends, a day's backlog, reconnect, footprint.

Four measurements, each with a reference measured in the same run where one applies:

1. **Durable appends/s** into the outbox on this disk: ``Outbox.record_fix`` (a fix into the
   backlog, one SQLite transaction, WAL, ``synchronous=FULL``) and ``Outbox.put`` of a sealed
   ``Position``; reference: raw SQLite single-row INSERT + COMMIT transactions with the same
   settings on the same disk (and, for scale, with ``synchronous=NORMAL``, which is not
   durable). They are interleaved in rounds, so a change in the disk's speed during the run
   touches all of them alike.
2. **Draining a day offline**: 24 h of fixes (one per 5 s, ``SimulatedWalker``) and snapshots
   (one a minute, a *synthetic* ~20 KB JPEG-like body: FF D8, random bytes, FF D9, with a
   matching sha256; the real camera comes later) are recorded into an agent's outbox while it
   is offline; then the agent connects to a real Mosquitto with a real in-process server behind
   it. Measured: connect to outbox empty (every frame acknowledged), and the fixes stored at
   the server. Reference: Mosquitto moving the same number and sizes of messages from
   ``mosquitto_pub -l`` to ``mosquitto_sub -C N`` (C clients, QoS 1, same broker).
3. **Reconnect to newest position stored**: the same day of backlog (a copy of the outbox file,
   a freshly enrolled terminal each time), connect, and wait until the server has stored the
   newest fix. Median and max over the repeats and the drain run.
4. **Footprint at 1 fix/s**: ``yijing agent --simulate`` as a subprocess against the same
   broker and server; VmRSS and utime+stime from /proc. Then where the memory goes: the
   largest mappings of the running agent, the modules it imports (``PYTHONPROFILEIMPORTTIME``;
   none may come from aiohttp, amqtt or the server), and the RSS and Python heap each
   top-level package and each import line of yijing's own code adds. Last, the same agent
   with its broker unreachable (4G down), for its CPU while it only records.

The position source of the in-process agents (2, 3) gives no fix (GNSS searching), so what the
server stores is exactly the backlog. The agent and the server share one Python process (and
its GIL) in 2 and 3; on a terminal the agent has its CPU to itself.

Run: ``.venv/bin/python bench/agent_bench.py`` (1.5 to 2.5 minutes, depending on the disk);
results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from machine_info import cpu_model

from agent.agent import Agent
from agent.outbox import Outbox
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from protocol import DeviceEndpoint, Fix, Position, Snapshot, SnapshotTrigger
from provisioning import BrokerAddress, Enrolment, new_device
from provisioning.identity import write_enrolment
from server.app import Server, ServerConfig
from yijing.broker import LocalBroker, find_mosquitto, free_port, start_mosquitto

POST = (22.5431, 114.0579)  # Futian, Shenzhen
FIX_EVERY_S = 5
SNAPSHOT_EVERY_S = 60
SNAPSHOT_BYTES = 20 * 1024
#: Targets: (figure, comparison, value, unit).
TARGET_APPENDS = 5_000  # durable appends/s, at least
TARGET_DRAIN_S = 60.0  # a day's backlog drained, at most
TARGET_NEWEST_S = 2.0  # reconnect to newest position stored, at most
TARGET_RSS_MB = 40.0  # steady-state RSS at 1 fix/s, at most
TARGET_CPU_PCT = 2.0  # CPU % of one core at 1 fix/s, at most
#: What the agent process must never import.
FORBIDDEN = ("aiohttp", "amqtt", "server")
MB = 1024 * 1024


# --- machine -----------------------------------------------------------------------------------


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _filesystem(path: Path) -> str:
    """Device and type of the filesystem holding ``path`` (longest mount-point prefix)."""
    best = ("", "?", "?")
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                device, point, fstype = line.split()[:3]
                resolved = str(path.resolve())
                inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best[0]):
                    best = (point, device, fstype)
    except OSError:
        pass
    return f"{best[1]} ({best[2]}, mounted on {best[0]})"


def machine(work: Path) -> list[str]:
    cpu = cpu_model()
    mosquitto = find_mosquitto()
    mosq_version = "not installed"
    if mosquitto is not None:
        out = subprocess.run([mosquitto, "-h"], capture_output=True, text=True, check=False)
        found = re.search(r"version (\S+)", out.stdout + out.stderr)
        mosq_version = found.group(1) if found else "unknown version"
    libs = ", ".join(
        f"{name} {_version(name)}"
        for name in ("paho-mqtt", "msgpack", "cryptography", "sqlite-utils", "aiohttp")
    )
    repo = Path(__file__).resolve().parents[1]
    git = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h %cd", "--date=short"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    changed = [line[3:] for line in dirty.stdout.splitlines()]
    code = git.stdout.strip() or "not a git checkout"
    if changed:
        code += f", with uncommitted changes to {', '.join(changed)}"
    return [
        f"code       {code}",
        f"platform   {platform.platform()}",
        f"cpu        {cpu}; {os.cpu_count()} logical CPUs",
        f"python     {sys.version.split()[0]} ({platform.python_implementation()})",
        f"libraries  {libs}; SQLite {sqlite3.sqlite_version}; Mosquitto {mosq_version}",
        f"disk       {work} on {_filesystem(work)}",
    ]


# --- the pieces: server, enrolment, a day of data ----------------------------------------------


class ServerThread:
    """A ``Server`` on its own event loop thread, driven from this synchronous benchmark."""

    def __init__(self, config: ServerConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="server", daemon=True)
        self.thread.start()
        self.server: Server = self.run(self._make(config))
        self.run(self.server.start())

    @staticmethod
    async def _make(config: ServerConfig) -> Server:
        return Server(config)  # created on the loop, as in tests/conftest.py

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stop(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def enrol(server: Server, device_id: str, broker: LocalBroker) -> Enrolment:
    identity = new_device(device_id)
    server.register_device(identity)
    return Enrolment(
        identity,
        server.identity.public_key,
        server.identity.key_id,
        BrokerAddress(broker.host, broker.port, broker.protocol),
    )


class NoFix:
    """A position source that has no fix (GNSS still searching): the agent only drains."""

    def read(self, now_ms: int) -> Fix | None:
        return None


def synthetic_snapshot(rng: random.Random, captured_ms: int) -> Snapshot:
    """A JPEG-like body: SOI, APP0 marker, random (incompressible) bytes, EOI; ~20 KB."""
    jpeg = b"\xff\xd8\xff\xe0" + rng.randbytes(SNAPSHOT_BYTES - 6) + b"\xff\xd9"
    return Snapshot(
        captured_ms=captured_ms,
        trigger=SnapshotTrigger.PERIODIC,
        width=640,
        height=480,
        sha256=hashlib.sha256(jpeg).digest(),
        jpeg=jpeg,
        # No fix attached: the server stores a snapshot's fix as a position row of its own,
        # which would count the backlog's fixes twice at those minutes.
    )


def day_of_backlog(hours: float, end_ms: int, seed: int) -> Iterator[Fix | Snapshot]:
    """Fixes every 5 s and a snapshot every minute, in time order, ending at ``end_ms``."""
    walker = SimulatedWalker(*POST, seed=seed)
    rng = random.Random(seed)
    fixes = round(hours * 3600 / FIX_EVERY_S)
    start_ms = end_ms - fixes * FIX_EVERY_S * 1000
    per_snapshot = SNAPSHOT_EVERY_S // FIX_EVERY_S
    for k in range(1, fixes + 1):
        fix = walker.read(start_ms + k * FIX_EVERY_S * 1000)
        yield fix
        if k % per_snapshot == 0:
            yield synthetic_snapshot(rng, fix.time_ms)


def test_endpoint(device_id: str) -> DeviceEndpoint:
    identity = new_device(device_id)
    return DeviceEndpoint(
        device_id=identity.device_id,
        key_id=identity.key_id,
        mac_key=identity.mac_key,
        signing_key=identity.signing_key,
        server_key=Ed25519PrivateKey.generate().public_key(),
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def wait_for(predicate: Callable[[], bool], timeout: float, every: float, what: str) -> float:
    """Poll until ``predicate``; return the perf_counter time it first held."""
    deadline = time.perf_counter() + timeout
    while True:
        if predicate():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# --- 1. durable appends ---------------------------------------------------------------------


@dataclass
class AppendResult:
    rates: dict[str, list[float]] = field(default_factory=dict)  # per round, ops/s
    totals: dict[str, float] = field(default_factory=dict)  # all rounds: ops / seconds

    def add(self, name: str, ops: int, seconds: float) -> None:
        self.rates.setdefault(name, []).append(ops / seconds)
        self.totals[name] = self.totals.get(name, 0.0) + seconds

    def rate(self, name: str, ops: int) -> float:
        return ops / self.totals[name]


RAW_FULL = "raw SQLite INSERT+COMMIT, WAL, synchronous=FULL"
RAW_NORMAL = "raw SQLite INSERT+COMMIT, WAL, synchronous=NORMAL (not durable)"
RECORD_FIX = "Outbox.record_fix (backlog row)"
PUT = "Outbox.put(Position) (sealed frame)"


def bench_appends(work: Path, total: int, rounds: int) -> AppendResult:
    folder = work / "appends"
    folder.mkdir()
    walker = SimulatedWalker(*POST, seed=7)
    start = now_ms() - total * 3 * 1000
    fixes = [walker.read(start + k * 1000) for k in range(total * 2)]
    # A raw row as large as a backlog fix: the outbox's own body encoding of one.
    body = msgpack.packb(fixes[0].to_wire(), use_bin_type=True)
    raw: dict[str, sqlite3.Connection] = {}
    for name, sync in ((RAW_FULL, "FULL"), (RAW_NORMAL, "NORMAL")):
        conn = sqlite3.connect(folder / f"raw-{sync.lower()}.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync}")
        # The outbox backlog's shape: rowid key, an index on (kind, time_ms), a msgpack body.
        conn.execute("CREATE TABLE backlog(id INTEGER PRIMARY KEY, kind INT, time_ms INT, body)")
        conn.execute("CREATE INDEX backlog_kind_time ON backlog(kind, time_ms)")
        raw[name] = conn
    budget = int(ReportingPolicy().disk_budget_mb * MB)  # as the agent opens it
    backlog = Outbox(
        folder / "record.db", test_endpoint("bench-append"), clock_ms=now_ms, budget_bytes=budget
    )
    sealed = Outbox(
        folder / "put.db", test_endpoint("bench-put"), clock_ms=now_ms, budget_bytes=budget
    )
    result = AppendResult()
    per_round = total // rounds
    cursor = 0

    def raw_job(conn: sqlite3.Connection) -> Callable[[int], None]:
        def job(k: int) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO backlog(kind, time_ms, body) VALUES (?,?,?)", (1, k, body))
            conn.execute("COMMIT")

        return job

    jobs: list[tuple[str, Callable[[int], object]]] = [
        (RAW_FULL, raw_job(raw[RAW_FULL])),
        (RECORD_FIX, lambda k: backlog.record_fix(fixes[k])),
        (PUT, lambda k: sealed.put(Position(fix=fixes[k]))),
        (RAW_NORMAL, raw_job(raw[RAW_NORMAL])),
    ]
    for r in range(rounds):
        # Rotate the order each round: no figure always runs first (or after the fast one).
        order = jobs[r % len(jobs) :] + jobs[: r % len(jobs)]
        for name, job in order:
            begin = time.perf_counter()
            for k in range(cursor, cursor + per_round):
                job(k)
            result.add(name, per_round, time.perf_counter() - begin)
        cursor += per_round
    assert backlog.counters()["backlog_fixes"] == per_round * rounds
    backlog.close()
    sealed.close()
    for conn in raw.values():
        conn.close()
    return result


# --- 2. drain a day; 3. reconnect -------------------------------------------------------------


@dataclass
class DrainResult:
    fixes: int
    snapshots: int
    record_s: float
    backlog_mb: float
    connect_s: float  # agent.start() to connected
    newest_s: float  # connected to newest fix stored at the server
    drain_s: float  # connected to outbox empty
    stored_fixes: int
    frames: int
    frame_bytes: int
    frame_sizes: list[int]
    published: int
    resent: int
    duplicates: int
    server_batches: int
    acks: int
    template: Path
    newest_ms: int
    busy: dict[str, Busy]  # time spent in each timed step during the drain


@dataclass
class Busy:
    seconds: float = 0.0
    calls: int = 0


def timed(fn: Callable[..., Any], busy: dict[str, Busy], label: str) -> Callable[..., Any]:
    """``fn``, adding each call's seconds to ``busy[label]`` (set as an instance override).

    ``{0}`` in the label is replaced by the call's first argument's name (a lane). Calls that
    return None (nothing to do) add their time but are not counted.
    """

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        begin = time.perf_counter()
        result = None
        try:
            result = fn(*args, **kwargs)
            return result
        finally:
            key = label.format(getattr(args[0], "name", "").lower() if args else "")
            busy[key].seconds += time.perf_counter() - begin
            busy[key].calls += result is not None

    return wrapper


def outbox_pending(path: Path) -> Callable[[], int]:
    """Committed rows left in an outbox, read on a connection of our own.

    The agent's connection belongs to the agent thread; reading through it could see the middle
    of one of its transactions (a backlog row deleted, its frame not yet inserted).
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def pending() -> int:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM backlog)"
        ).fetchone()
        return int(row[0])

    return pending


def stored(server: Server, device_id: str, time_ms: int) -> Callable[[], bool]:
    def check() -> bool:
        return bool(server.store.track(device_id, since_ms=time_ms, until_ms=time_ms, limit=1))

    return check


def bench_drain(work: Path, st: ServerThread, broker: LocalBroker, hours: float) -> DrainResult:
    server = st.server
    device = "bench-day"
    data = work / device
    agent = Agent(enrol(server, device, broker), data, source=NoFix(), policy=ReportingPolicy())
    outbox_path = data / "outbox.db"
    end_ms = now_ms() - 1000
    fixes = snapshots = 0
    newest_ms = 0
    begin = time.perf_counter()
    for item in day_of_backlog(hours, end_ms, seed=42):
        if isinstance(item, Fix):
            agent.outbox.record_fix(item)
            fixes += 1
            newest_ms = item.time_ms
        else:
            agent.outbox.record_snapshot(item)
            snapshots += 1
    record_s = time.perf_counter() - begin
    backlog_mb = agent.outbox.bytes_used() / MB
    # A copy of the day for the reconnect repeats (the backup API copies a consistent state).
    template = work / "day-template.db"
    with closing(sqlite3.connect(outbox_path)) as src, closing(sqlite3.connect(template)) as dst:
        src.backup(dst)
    pending = outbox_pending(outbox_path)
    busy: defaultdict[str, Busy] = defaultdict(Busy)
    timers = [
        (obj, method, label)
        for obj, method, label in (
            (agent.outbox, "_seal_from_backlog", "agent: seal {0} frames from the backlog"),
            (agent.outbox, "acknowledge", "agent: apply acks"),
            (server.ingest, "process", "server: verify, store, ack"),
            (server.store, "store_frames", "server: of which the store transaction"),
        )
        if hasattr(obj, method)  # private names may change; then that figure is left out
    ]
    for obj, method, label in timers:
        setattr(obj, method, timed(getattr(obj, method), busy, label))
    started = time.perf_counter()
    agent.start()
    try:
        if not agent.link.wait_connected(30):
            raise TimeoutError("the agent did not connect to the broker")
        connected = time.perf_counter()
        newest = wait_for(stored(server, device, newest_ms), 60, 0.005, "the newest fix")
        drained = wait_for(lambda: pending() == 0, 600, 0.01, "the outbox to empty")
    finally:
        agent.stop()
        for obj, method, _ in timers:
            delattr(obj, method)  # the class's own method again
    with closing(sqlite3.connect(server.store.path)) as db:
        sizes = [
            int(n)
            for (n,) in db.execute(
                "SELECT length(payload) FROM frames WHERE device_id=? ORDER BY seq", (device,)
            )
        ]
    stats = server.ingest.stats
    return DrainResult(
        fixes=fixes,
        snapshots=snapshots,
        record_s=record_s,
        backlog_mb=backlog_mb,
        connect_s=connected - started,
        newest_s=newest - connected,
        drain_s=drained - connected,
        stored_fixes=server.store.fix_count(device),
        frames=len(sizes),
        frame_bytes=sum(sizes),
        frame_sizes=sizes,
        published=agent.stats.published,
        resent=agent.stats.resent,
        duplicates=stats.duplicates,
        server_batches=stats.batches,
        acks=stats.acks_sent,
        template=template,
        newest_ms=newest_ms,
        busy=dict(busy),
    )


def server_idle(server: Server, quiet_s: float = 0.3, timeout: float = 30) -> None:
    """Wait until ingest has received nothing new for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last, since = server.ingest.stats.received, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = server.ingest.stats.received
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def bench_reconnect(
    work: Path, st: ServerThread, broker: LocalBroker, template: Path, newest_ms: int, repeats: int
) -> list[float]:
    server = st.server
    samples = []
    for i in range(repeats):
        server_idle(server)
        device = f"bench-rc{i}"
        data = work / device
        data.mkdir()
        shutil.copyfile(template, data / "outbox.db")
        agent = Agent(enrol(server, device, broker), data, source=NoFix(), policy=ReportingPolicy())
        agent.start()
        try:
            if not agent.link.wait_connected(30):
                raise TimeoutError("the agent did not connect to the broker")
            connected = time.perf_counter()
            newest = wait_for(stored(server, device, newest_ms), 60, 0.005, "the newest fix")
        finally:
            agent.stop()
        samples.append(newest - connected)
    server_idle(server)
    return samples


# --- the broker's own rate ------------------------------------------------------------------


@dataclass
class BrokerReference:
    messages: int
    megabytes: float
    seconds: float | None  # mosquitto_pub start to mosquitto_sub exit, all messages
    fixed_seconds: float | None  # the same for one message: process start, connect, teardown
    note: str = ""

    @property
    def net_seconds(self) -> float | None:
        if self.seconds is None or self.fixed_seconds is None:
            return None
        return max(1e-6, self.seconds - self.fixed_seconds)


def _pub_to_sub(work: Path, broker: LocalBroker, sizes: Sequence[int]) -> float:
    """Seconds from starting mosquitto_pub until mosquitto_sub has received every message."""
    lines = work / "reference.lines"
    # Line mode: one message per line, so the body must not contain a newline.
    with lines.open("wb") as out:
        for size in sizes:
            out.write(b"x" * size + b"\n")
    common = ["-h", broker.host, "-p", str(broker.port), "-t", "bench/reference", "-q", "1"]
    common += ["-V", "mqttv5"]
    receiver = subprocess.Popen(
        ["mosquitto_sub", *common, "-C", str(len(sizes)), "-W", "120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # connected and subscribed (loopback takes milliseconds)
    begin = time.perf_counter()
    with lines.open("rb") as feed:
        subprocess.run(["mosquitto_pub", *common, "-l"], stdin=feed, check=True)
    _, err = receiver.communicate(timeout=150)
    end = time.perf_counter()
    if receiver.returncode != 0:
        raise RuntimeError(f"mosquitto_sub failed: {err.decode().strip()}")
    return end - begin


def broker_reference(work: Path, broker: LocalBroker, sizes: Sequence[int]) -> BrokerReference:
    """mosquitto_pub -l → Mosquitto → mosquitto_sub -C N, QoS 1, messages of ``sizes`` bytes."""
    total = sum(sizes) / MB
    if shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None:
        return BrokerReference(len(sizes), total, None, None, "mosquitto-clients not installed")
    try:
        fixed = _pub_to_sub(work, broker, [int(median(sizes))])
        seconds = _pub_to_sub(work, broker, sizes)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        return BrokerReference(len(sizes), total, None, None, str(exc))
    return BrokerReference(len(sizes), total, seconds, fixed)


# --- 4. footprint -------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    rss_kb: int
    anon_kb: int
    file_kb: int
    cpu_ticks: int
    threads: int


def read_proc(pid: int) -> Sample:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    # stat(5): after "(comm)", field 3 (state) is index 0, so utime (14) and stime (15) are 11, 12.

    def kb(key: str) -> int:
        return int(status.get(key, "0 kB").split()[0])

    return Sample(
        at=time.perf_counter(),
        rss_kb=kb("VmRSS"),
        anon_kb=kb("RssAnon"),
        file_kb=kb("RssFile"),
        cpu_ticks=int(stat[11]) + int(stat[12]),
        threads=int(status["Threads"]),
    )


def largest_mappings(pid: int, top: int) -> list[tuple[str, int]]:
    """Resident kB per mapped file (or [heap], [anon]) of a running process, largest first."""
    sizes: Counter[str] = Counter()
    current = "?"
    try:
        with open(f"/proc/{pid}/smaps", encoding="utf-8") as smaps:
            for line in smaps:
                head = line.split()
                if not head:
                    continue
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                    path = head[5] if len(head) > 5 else "[anon]"
                    current = re.sub(r".*/site-packages/", "site-packages/", path)
                    current = re.sub(r".*/lib/python3\.\d+/", "stdlib/", current)
                elif head[0] == "Rss:":
                    sizes[current] += int(head[1])
    except OSError:
        return []
    return sizes.most_common(top)


@dataclass
class FootprintResult:
    seconds: float
    warmup_s: float
    rss_mb: float  # median in the steady window
    rss_max_mb: float
    hwm_mb: float
    anon_mb: float
    file_mb: float
    cpu_pct: float
    threads: int
    fixes: int
    mappings: list[tuple[str, int]]
    command: list[str]


def agent_command(enrolment: Path, data: Path) -> list[str]:
    script = Path(sys.executable).with_name("yijing")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "yijing.cli"]
    return [
        *head,
        "agent",
        "--enrolment",
        str(enrolment),
        "--data",
        str(data),
        "--simulate",
        f"{POST[0]},{POST[1]}",
        "--interval-moving",
        "1",
        "--interval-still",
        "1",
        "--min-distance",
        "0",
    ]


def start_agent_process(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # its start line says it is running
        if b": source " in log.read_bytes() or process.poll() is not None:
            break
        time.sleep(0.05)
    if process.poll() is not None:
        raise RuntimeError(f"agent exited ({process.returncode}): {log.read_text()[-2000:]}")
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def bench_footprint(
    work: Path, st: ServerThread, broker: LocalBroker, seconds: float
) -> FootprintResult:
    server = st.server
    device = "bench-live"
    enrolment = work / f"{device}.json"
    write_enrolment(enrolment, enrol(server, device, broker))
    command = agent_command(enrolment, work / device)
    process = start_agent_process(command, work / f"{device}.log")
    warmup = min(10.0, seconds / 4)
    samples: list[Sample] = []
    mappings: list[tuple[str, int]] = []
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            samples.append(read_proc(process.pid))
            time.sleep(1.0)
        samples.append(read_proc(process.pid))
        mappings = largest_mappings(process.pid, 10)
        with open(f"/proc/{process.pid}/status", encoding="utf-8") as f:
            hwm_kb = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]
    finally:
        stop_process(process)
    steady = [s for s in samples if s.at - started >= warmup]
    first, last = steady[0], steady[-1]
    cpu_s = (last.cpu_ticks - first.cpu_ticks) / os.sysconf("SC_CLK_TCK")
    return FootprintResult(
        seconds=last.at - started,
        warmup_s=warmup,
        rss_mb=median([s.rss_kb for s in steady]) / 1024,
        rss_max_mb=max(s.rss_kb for s in steady) / 1024,
        hwm_mb=hwm_kb / 1024,
        anon_mb=median([s.anon_kb for s in steady]) / 1024,
        file_mb=median([s.file_kb for s in steady]) / 1024,
        cpu_pct=100 * cpu_s / (last.at - first.at),
        threads=last.threads,
        fixes=server.store.fix_count(device),
        mappings=mappings,
        command=command,
    )


@dataclass
class OfflineResult:
    seconds: float
    cpu_pct: float
    rss_mb: float
    backlog_fixes: int


def bench_offline(work: Path, seconds: float) -> OfflineResult:
    """The same agent with its broker unreachable (4G down): CPU while it only records."""
    device = "bench-offline"
    enrolment = work / f"{device}.json"
    nowhere = BrokerAddress("127.0.0.1", free_port(), "5")  # nothing listens there
    server_key = Ed25519PrivateKey.generate().public_key()
    write_enrolment(enrolment, Enrolment(new_device(device), server_key, 1, nowhere))
    process = start_agent_process(agent_command(enrolment, work / device), work / f"{device}.log")
    try:
        time.sleep(2.0)
        first = read_proc(process.pid)
        time.sleep(seconds)
        last = read_proc(process.pid)
    finally:
        stop_process(process)
    with closing(sqlite3.connect(work / device / "outbox.db")) as db:
        (fixes,) = db.execute("SELECT count(*) FROM backlog WHERE kind=1").fetchone()
    cpu_s = (last.cpu_ticks - first.cpu_ticks) / os.sysconf("SC_CLK_TCK")
    return OfflineResult(
        seconds=last.at - first.at,
        cpu_pct=100 * cpu_s / (last.at - first.at),
        rss_mb=last.rss_kb / 1024,
        backlog_fixes=int(fixes),
    )


_IMPORT_PROBE = """
import importlib, json, re, sys, tracemalloc
if sys.argv[2] == "heap":
    tracemalloc.start()
def rss():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\\s+(\\d+)", f.read()).group(1))
def heap():
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
out = [["", rss(), heap()]]
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception:
        pass
    out.append([name, rss(), heap()])
print(json.dumps(out))
"""


@dataclass
class PackageCost:
    package: str
    rss_kb: int  # RSS growth while importing its modules (dependencies already imported)
    heap: int  # tracemalloc bytes, the same way (a separate run)
    modules: int
    import_us: int  # self import time, summed, in the agent process


@dataclass
class ImportDiagnosis:
    interpreter_kb: int  # a bare interpreter's RSS (the probe's start)
    imported_kb: int  # RSS once every module the agent imports is imported
    imported_heap: int
    packages: list[PackageCost]  # largest RSS first
    modules: int
    forbidden: list[str]
    edges: list[tuple[str, str, int, int]]  # importer, imported, RSS kB with its subtree, modules


def diagnose_imports(work: Path, command: list[str]) -> ImportDiagnosis:
    """What the real ``yijing agent`` imports, and what each top-level package costs.

    The agent runs for a few seconds with ``PYTHONPROFILEIMPORTTIME``; its log lists every
    module in the order the imports completed (a module's dependencies before it). A fresh
    interpreter then imports the same modules in that order, reading RSS after each one, so
    each module's growth is its own (its dependencies are already in); the growth is summed by
    top-level package. A second run does the same with tracemalloc for the Python heap.
    """
    log = work / "importtime.log"
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    process = start_agent_process(command, log, env)
    time.sleep(3)  # running: every import of the steady state has happened
    stop_process(process)
    names: list[str] = []
    depths: list[int] = []
    self_us: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$", line)
        if m:
            names.append(m.group(4))
            depths.append(len(m.group(3)) // 2)
            self_us[m.group(4).split(".")[0]] += int(m.group(1))
    repo = Path(__file__).resolve().parents[1]
    runs = {}
    for mode in ("rss", "heap"):
        probe = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE, json.dumps(names), mode],
            capture_output=True,
            text=True,
            check=True,
            cwd=repo,
        )
        runs[mode] = json.loads(probe.stdout)
    costs: dict[str, PackageCost] = {}
    rss_run, heap_run = runs["rss"], runs["heap"]
    for i in range(1, len(rss_run)):
        package = rss_run[i][0].split(".")[0]
        cost = costs.setdefault(package, PackageCost(package, 0, 0, 0, self_us[package]))
        cost.rss_kb += rss_run[i][1] - rss_run[i - 1][1]
        cost.heap += heap_run[i][2] - heap_run[i - 1][2]
        cost.modules += 1
    # Edges from yijing's own modules to others: what each import line of ours costs, with
    # everything it brought in first (its subtree in the log: the lines just before it that
    # are nested deeper).
    own = {"agent", "yijing", "protocol", "provisioning", "server", "firmware_bridge"}
    grown = [rss_run[i + 1][1] - rss_run[i][1] for i in range(len(names))]
    edges: list[tuple[str, str, int, int]] = []
    for i, name in enumerate(names):
        if name.split(".")[0] in own:
            continue
        parent = next(
            (names[j] for j in range(i + 1, len(names)) if depths[j] == depths[i] - 1),
            "(a function, at run time)",
        )
        if depths[i] and parent.split(".")[0] not in own:
            continue
        first = i
        while first > 0 and depths[first - 1] > depths[i]:
            first -= 1
        edges.append((parent, name, sum(grown[first : i + 1]), i + 1 - first))
    edges.sort(key=lambda e: -e[2])
    return ImportDiagnosis(
        interpreter_kb=rss_run[0][1],
        imported_kb=rss_run[-1][1],
        imported_heap=heap_run[-1][2],
        packages=sorted(costs.values(), key=lambda c: -c.rss_kb),
        modules=len(names),
        forbidden=sorted({n for n in names if n.split(".")[0] in FORBIDDEN}),
        edges=edges,
    )


# --- the benchmark -----------------------------------------------------------------------------


def short(arg: str) -> str:
    """A path relative to the current folder when it lies inside it, for printing."""
    relative = os.path.relpath(arg) if arg.startswith("/") else arg
    return arg if relative.startswith("..") else relative


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Targets: >= 5,000 durable appends/s; a day's backlog drained in <= 60 s; newest "
        "position stored <= 2 s after reconnect; at 1 fix/s RSS <= 40 MB and CPU <= 2 % of a "
        "core.\nNeeds Mosquitto (and mosquitto-clients for the broker reference).",
    )
    parser.add_argument(
        "--appends",
        type=int,
        default=3000,
        metavar="N",
        help="durable appends timed per figure in part 1 (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        metavar="R",
        help="part 1 interleaves its figures in R rounds of N/R appends (default: %(default)s)",
    )
    parser.add_argument(
        "--hours",
        type=float,
        default=24.0,
        help="hours of backlog: a fix per 5 s, a snapshot per minute (default: %(default)s)",
    )
    parser.add_argument(
        "--reconnects",
        type=int,
        default=4,
        metavar="K",
        help="reconnects with the day's backlog, besides the drain run (default: %(default)s)",
    )
    parser.add_argument(
        "--footprint-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="run the agent subprocess this long at 1 fix/s; 0 skips part 4 (default: %(default)s)",
    )
    parser.add_argument(
        "--offline-seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="then run it this long with its broker unreachable, for its CPU while offline; "
        "0 skips (default: %(default)s)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="work folder, on the disk to measure (default: a new folder under the system "
        "temporary directory, removed afterwards)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if args.appends < 10 or not 1 <= args.rounds <= args.appends:
        parser.error("--appends must be >= 10 and 1 <= --rounds <= --appends")
    if args.hours <= 0 or min(args.reconnects, args.footprint_seconds, args.offline_seconds) < 0:
        parser.error("--hours must be positive; --reconnects and the seconds options >= 0")
    if args.footprint_seconds and args.footprint_seconds < 8:
        parser.error("--footprint-seconds must be 0 (skip) or at least 8")
    if find_mosquitto() is None:
        parser.error("mosquitto is required (apt-get install mosquitto mosquitto-clients)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="agent-bench-", dir=args.dir))
    else:
        work = Path(tempfile.mkdtemp(prefix="yijing-agent-bench-"))
    started = time.perf_counter()
    print("yijing edge agent benchmark")
    print("\n".join(machine(work)))
    python = os.path.relpath(sys.executable)
    python = sys.executable if python.startswith("..") else python
    print(f"command    {' '.join([python, *sys.argv])}")
    sys.stdout.flush()

    broker: LocalBroker | None = None
    st: ServerThread | None = None
    try:
        # 1 ----------------------------------------------------------------------------------
        appends = bench_appends(work, args.appends, args.rounds)
        n = args.appends // args.rounds * args.rounds
        print(f"\n1. durable appends: {n} per figure, interleaved in {args.rounds} rounds")
        print("| operation | appends/s | per round (min–max) | vs raw FULL |")
        print("|---|---:|---:|---:|")
        raw_rate = appends.rate(RAW_FULL, n)
        for name in (RAW_FULL, RECORD_FIX, PUT, RAW_NORMAL):
            rate = appends.rate(name, n)
            lo, hi = min(appends.rates[name]), max(appends.rates[name])
            print(f"| {name} | {rate:,.0f} | {lo:,.0f}–{hi:,.0f} | {rate / raw_rate:.0%} |")
        sys.stdout.flush()

        # 2 ----------------------------------------------------------------------------------
        broker = start_mosquitto(work / "broker")
        st = ServerThread(
            ServerConfig(data_dir=work / "server", http_port=0, broker_url=broker.url)
        )
        drain = bench_drain(work, st, broker, args.hours)
        reference = broker_reference(work, broker, drain.frame_sizes)
        print(
            f"\n2. a {args.hours:g} h backlog: {drain.fixes:,} fixes + {drain.snapshots:,} "
            f"synthetic {SNAPSHOT_BYTES // 1024} KB snapshots"
        )
        print(
            f"recorded offline in {drain.record_s:.1f} s "
            f"({(drain.fixes + drain.snapshots) / drain.record_s:,.0f} appends/s), "
            f"backlog {drain.backlog_mb:.1f} MB"
        )
        print(
            f"connect (agent.start to CONNACK) {drain.connect_s * 1000:.0f} ms; newest fix "
            f"stored {drain.newest_s:.2f} s after connect"
        )
        print(
            f"drained (outbox empty) {drain.drain_s:.1f} s after connect: {drain.frames:,} "
            f"frames, {drain.frame_bytes / MB:.1f} MB "
            f"({drain.frames / drain.drain_s:,.0f} frames/s, "
            f"{drain.frame_bytes / MB / drain.drain_s:.2f} MB/s)"
        )
        print(
            f"fixes stored at the server {drain.stored_fixes:,} (expected {drain.fixes:,}); "
            f"agent published {drain.published:,} (resent {drain.resent}); server duplicates "
            f"{drain.duplicates}, ingest batches {drain.server_batches:,}, acks {drain.acks:,}"
        )
        print("busy during the drain (threads overlap, one process):")
        for label, b in sorted(drain.busy.items()):
            if b.calls:
                print(
                    f"  {label}: {b.seconds:.1f} s, {b.calls:,} calls, "
                    f"{b.seconds / b.calls * 1000:.1f} ms each"
                )
        if reference.seconds is None:
            print(f"broker reference: {reference.note}")
        else:
            net = reference.net_seconds or 1e-6
            print(
                f"broker reference (mosquitto_pub -l -q 1 -> mosquitto_sub -q 1 -C "
                f"{reference.messages}, same sizes): {reference.seconds:.2f} s, of which "
                f"{reference.fixed_seconds:.2f} s is what one message takes (start, connect, "
                f"close); the rest: {reference.messages / net:,.0f} msg/s, "
                f"{reference.megabytes / net:.0f} MB/s"
            )
        sys.stdout.flush()

        # 3 ----------------------------------------------------------------------------------
        rc = bench_reconnect(work, st, broker, drain.template, drain.newest_ms, args.reconnects)
        newest = [drain.newest_s, *rc]
        print(
            f"\n3. reconnect with the day's backlog -> newest fix stored, {len(newest)} runs: "
            + ", ".join(f"{s:.2f}" for s in newest)
            + " s"
        )
        sys.stdout.flush()

        # 4 ----------------------------------------------------------------------------------
        footprint: FootprintResult | None = None
        diagnosis: ImportDiagnosis | None = None
        if args.footprint_seconds:
            footprint = bench_footprint(work, st, broker, args.footprint_seconds)
            enrolment = work / "bench-import.json"
            write_enrolment(enrolment, enrol(st.server, "bench-import", broker))
            diagnosis = diagnose_imports(work, agent_command(enrolment, work / "bench-import"))
            f = footprint
            print(f"\n4. footprint: {' '.join(short(c) for c in f.command)}")
            print(
                f"{f.seconds:.0f} s, steady state after {f.warmup_s:.0f} s: RSS median "
                f"{f.rss_mb:.1f} MB (max {f.rss_max_mb:.1f}, peak VmHWM {f.hwm_mb:.1f}; "
                f"anonymous {f.anon_mb:.1f} + file-backed {f.file_mb:.1f}), CPU {f.cpu_pct:.2f} "
                f"% of one core, {f.threads} threads; {f.fixes} fixes stored "
                f"({f.fixes / f.seconds:.2f}/s)"
            )
            print(
                "largest resident mappings (kB): "
                + ", ".join(f"{name} {kb:,}" for name, kb in f.mappings)
            )
            d = diagnosis
            print(
                f"where the memory goes: a bare interpreter {d.interpreter_kb / 1024:.1f} MB; "
                f"importing what the agent imports ({d.modules} modules, in its order) "
                f"{d.imported_kb / 1024:.1f} MB; running adds "
                f"{f.rss_mb - d.imported_kb / 1024:.1f} MB"
            )
            print("| package | + RSS MB | + Python heap MB | modules | import ms |")
            print("|---|---:|---:|---:|---:|")
            shown = [c for c in d.packages if c.rss_kb >= 256]
            rest = [c for c in d.packages if c.rss_kb < 256]
            for c in shown:
                kind = " (stdlib)" if c.package in sys.stdlib_module_names else ""
                print(
                    f"| {c.package}{kind} | {c.rss_kb / 1024:+.1f} | {c.heap / MB:+.1f} "
                    f"| {c.modules} | {c.import_us / 1000:.0f} |"
                )
            print(
                f"| {len(rest)} others, under 0.25 MB each | "
                f"{sum(c.rss_kb for c in rest) / 1024:+.1f} "
                f"| {sum(c.heap for c in rest) / MB:+.1f} | {sum(c.modules for c in rest)} "
                f"| {sum(c.import_us for c in rest) / 1000:.0f} |"
            )
            print(
                "the same growth by import line of yijing's own code (the module with "
                "everything it brought in that was not loaded yet):"
            )
            print("| importer | imports | + RSS MB | modules |")
            print("|---|---|---:|---:|")
            for importer, imported, kb, count in d.edges[:10]:
                print(f"| {importer} | {imported} | {kb / 1024:+.1f} | {count} |")
            print(
                f"`yijing agent` imports from {', '.join(FORBIDDEN)}: "
                + (", ".join(d.forbidden) or "none")
            )
        offline: OfflineResult | None = None
        if args.offline_seconds:
            offline = bench_offline(work, args.offline_seconds)
            o = offline
            print(
                f"\n4b. the same agent, broker unreachable, {o.seconds:.0f} s: CPU "
                f"{o.cpu_pct:.2f} % of one core, RSS {o.rss_mb:.1f} MB, {o.backlog_fixes} fixes "
                "waiting in its backlog"
            )

        # summary ----------------------------------------------------------------------------
        record_rate = appends.rate(RECORD_FIX, n)
        put_rate = appends.rate(PUT, n)
        print("\nsummary")
        print("| measure | figure | target | verdict | same-run reference |")
        print("|---|---:|---:|---|---|")
        print(
            f"| durable appends/s, record_fix | {record_rate:,.0f} | >= {TARGET_APPENDS:,} "
            f"| {verdict(record_rate >= TARGET_APPENDS)} | raw SQLite FULL {raw_rate:,.0f}/s "
            f"(record_fix {record_rate / raw_rate:.0%} of it) |"
        )
        print(
            f"| durable appends/s, put(Position) | {put_rate:,.0f} | >= {TARGET_APPENDS:,} "
            f"| {verdict(put_rate >= TARGET_APPENDS)} | {put_rate / raw_rate:.0%} of raw |"
        )
        ref_text = (
            f"mosquitto_pub→sub, same {reference.messages:,} messages and sizes: "
            f"{reference.seconds:.2f} s ({reference.fixed_seconds:.2f} s of it for one message)"
            if reference.seconds is not None
            else reference.note
        )
        ok = drain.drain_s <= TARGET_DRAIN_S and drain.stored_fixes == drain.fixes
        print(
            f"| {args.hours:g} h backlog drained (s) | {drain.drain_s:.1f} | <= "
            f"{TARGET_DRAIN_S:.0f} | {verdict(ok)} | {ref_text} |"
        )
        print(
            f"| fixes stored at the server | {drain.stored_fixes:,} | = {drain.fixes:,} "
            f"| {verdict(drain.stored_fixes == drain.fixes)} | |"
        )
        print(
            f"| reconnect → newest stored, median / max (s) | {median(newest):.2f} / "
            f"{max(newest):.2f} | <= {TARGET_NEWEST_S:.0f} | "
            f"{verdict(max(newest) <= TARGET_NEWEST_S)} | |"
        )
        if footprint is not None:
            assert diagnosis is not None
            print(
                f"| agent RSS at 1 fix/s (MB) | {footprint.rss_mb:.1f} | <= {TARGET_RSS_MB:.0f} "
                f"| {verdict(footprint.rss_mb <= TARGET_RSS_MB)} | bare interpreter "
                f"{diagnosis.interpreter_kb / 1024:.1f} MB; the agent's imports alone "
                f"{diagnosis.imported_kb / 1024:.1f} MB |"
            )
            print(
                f"| agent CPU at 1 fix/s (% of a core) | {footprint.cpu_pct:.2f} | <= "
                f"{TARGET_CPU_PCT:.0f} | {verdict(footprint.cpu_pct <= TARGET_CPU_PCT)} | |"
            )
        if offline is not None:
            print(
                f"| agent CPU offline at 1 fix/s (% of a core) | {offline.cpu_pct:.2f} | <= "
                f"{TARGET_CPU_PCT:.0f} | {verdict(offline.cpu_pct <= TARGET_CPU_PCT)} | |"
            )
    finally:
        if st is not None:
            st.stop()
        if broker is not None:
            broker.stop()
        if args.keep:
            print(f"\nwork folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nfinished in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
