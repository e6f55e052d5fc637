#!/usr/bin/env python3
"""Ingest benchmark: stored fixes per second against the broker's own rate (issue #9, item 3).

One run, on one machine:

1. A real Mosquitto on a free port (``yijing.broker.start_mosquitto``, the project's config).
2. Reference ceiling: ``mosquitto_pub -l`` bursts M lines of the size of a sealed Position
   frame to ``mosquitto_sub -C M > /dev/null`` through that broker, at QoS 1 and QoS 0; the
   rate is M over the time from the publisher's start to the subscriber's exit.
3. N terminals (default 10,000) enrolled straight into a fresh server data folder (the store's
   ``add_device`` with a ``DeviceKey``: a random MAC key each), then
   ``python -m yijing.cli server --data D --broker mqtt://127.0.0.1:PORT --port 0`` as a
   subprocess (``--store URL`` too when one is given).
4. Per offered rate, for ``--seconds``: ``--publishers`` processes share the terminals; each
   paces its share of the rate with Position frames sealed by the terminal's
   ``DeviceEndpoint.seal`` (the real protocol and HMAC, seq increasing per terminal), published
   at ``--qos`` (1 by default, as the agent does). ``--generator`` says how:
   - ``raw`` (default): each publisher seals every frame of the step *before* the timed run,
     with ``sent_ms`` = the fix's ``time_ms`` = its scheduled send time t0 + i / rate, builds
     the MQTT PUBLISH packets, connects, and reports ready; then every 5 ms it writes all the
     packets due in one ``sendall`` to a plain socket and counts the PUBACKs on a thread
     (``bench/rawpub.py``, MQTT 3.1.1). Its CPU per message is next to nothing, so the CPU
     goes to the broker and the server being measured. t0 is chosen from a timed sample of
     pre-sealing so that every publisher is ready by then (if one is not, all start later and
     the frames carry stamps from before their send time; the schedule recorded is the real
     one).
   - ``paho``: seals each frame at its send time (``sent_ms`` = now) and publishes with paho,
     about 130 µs of CPU per message at QoS 1: on 2 cores, three of them take a whole core at
     10,000/s and starve the server. Kept for comparison.
   While they run:
   - ``mosquitto_sub -t 'yj/1/up/#' -q 1 -C n`` receives the same stream (the broker's delivery
     of the offered load to a C subscriber, in the same step);
   - ``GET /api/v1/stats`` (the first-start admin token) every 0.5 s: stored frames;
   - ``/proc/PID/status`` VmRSS/VmHWM and ``/proc/PID/stat`` CPU of the server and the broker.
   After the publishers stop, the step waits for the server to drain (stored = sent, or no
   progress for 15 s, or ``--drain-timeout``).
5. Latency, fix sent → durably stored: a ``mosquitto_sub -q 1 -t 'yj/1/down/+/ack' -F '%U %x'``
   started before the first step records every ``StoredAck`` the server publishes (sent only
   after the store's commit) with its arrival time; afterwards each acked (device, seq) is
   matched to the ``sent_ms`` its publisher recorded: the scheduled send time with ``raw``,
   so a generator running late counts against the server (conservative).
6. At the end, with the server stopped: the store read-only: every sent (device, seq) stored
   exactly once (frames and positions), nothing extra.

The generator's figures: "gen. lag" is how late it wrote a frame relative to its schedule
(with ``raw`` up to a 5 ms tick by design); "gen. CPU s" is the publishers' CPU from the start
to the last PUBACK (with ``raw`` pre-sealing is not in it: it is reported per frame apart).

Output: a Markdown table on stdout and ``bench/out/ingest.png`` (stored/s and p99 latency
against the offered rate, the C-subscriber ceiling as a line). ``--profile-rate R`` runs
``py-spy record`` on the server during the step at rate R (``bench/out/profile.svg``) and a
``py-spy dump`` halfway through it.

Run: ``.venv/bin/python bench/ingest_bench.py`` (defaults: 10,000 terminals, rates
2000,5000,10000,20000, 15 s each; needs mosquitto and mosquitto-clients).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_info import cpu_model

ROOT = Path(__file__).resolve().parent.parent

LAT0, LON0 = 22.54, 114.05
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROFILE_FILES = {"flamegraph": "profile.svg", "raw": "profile.txt", "speedscope": "profile.json"}


def pct(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- /proc ---------------------------------------------------------------------------------------


def family(pid: int) -> list[int]:
    """The process and its children (``yijing server --workers N`` runs N of them)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                pids += [int(c) for c in (task / "children").read_text().split()]
    return pids


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in kB, summed over the process and its children (the workers)."""
    out: dict[str, int] = {}
    for member in family(pid):
        with contextlib.suppress(OSError), open(f"/proc/{member}/status", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = out.get(key, 0) + int(rest.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children (all their threads), in seconds."""
    total = 0.0
    for member in family(pid):
        try:
            with open(f"/proc/{member}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError):
            if member == pid:
                return math.nan
    return total


THREAD_NAMES: dict[str, str] = {}


def name_threads(pid: int) -> None:
    """Python thread names by OS thread id, from ``py-spy dump`` (the kernel's are "python")."""
    spy = ROOT / ".venv/bin/py-spy"
    if not spy.exists():
        return
    dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True)
    for m in re.finditer(r'Thread (\d+) \((?:idle|active)[^)]*\): "([^"]+)"', dump.stdout):
        THREAD_NAMES[m.group(1)] = m.group(2)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process, named by ``name_threads`` where it could."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/comm", encoding="utf-8") as f:
                    name = f.read().strip()
                with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            busy = (int(fields[11]) + int(fields[12])) / CLK_TCK
            out[f"{THREAD_NAMES.get(tid, name)}[{tid}]"] = busy
            # Runnable but not running (waiting for a CPU), from schedstat's second field.
            with contextlib.suppress(OSError, IndexError, ValueError), open(
                f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii"
            ) as f:
                out[f"{THREAD_NAMES.get(tid, name)}[{tid}] waiting for a CPU"] = (
                    int(f.read().split()[1]) / 1e9
                )
    return out


EPILOG = """\
latency: from each frame's sent_ms to the arrival of the server's StoredAck for it. With
--generator raw, sent_ms is the frame's scheduled send time (t0 + i / rate), sealed in
beforehand; a generator late on its schedule ("gen. lag") therefore counts against the server,
which is conservative. With --generator paho it is the time the frame was sealed and handed
to paho.

--generator raw pre-seals every frame of a step before the step starts (a pause between the
steps of about 20 µs × frames / publishers, reported as "pre-sealed"); its CPU while
publishing is a few % of one CPU, against about 130 µs per message for paho at QoS 1.
"""


# --- the load generator (one process per publisher) ----------------------------------------------

# The raw generator writes what is due every 5 ms: a wake-up costs tens of µs of CPU on a VM,
# so 2 ms ticks would cost three publishers about 10 % of a CPU, 5 ms about 5 %.
TICK_S = 0.005
CALIBRATION_FRAMES = 2000  # pre-built and thrown away to estimate the pre-sealing time
MAX_OUTSTANDING = 60_000  # un-acked QoS 1 messages per connection (packet ids cycle 1..65535)


def endpoints_for(devices: list[tuple[str, bytes]]) -> list[Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol import DeviceEndpoint

    dummy = Ed25519PrivateKey.generate()  # a Position is MAC'd only; checkpoints are signed
    return [DeviceEndpoint(device_id=d, key_id=1, mac_key=mac, signing_key=dummy,
                           server_key=dummy.public_key()) for d, mac in devices]


def position(d: int, at_ms: int) -> Any:
    from protocol import Fix, Position

    return Position(fix=Fix(time_ms=at_ms, lat=LAT0 + (d % 100) * 5e-4,
                            lon=LON0 + (d // 100 % 100) * 5e-4, accuracy_m=5.0, speed_mps=1.2))


def publisher(host: str, port: int, first: int, devices: list[tuple[str, bytes]], rate: float,
              seconds: float, seq_base: int, qos: int, t0: float, record: str,
              conn: Connection) -> None:
    """``--generator paho``: publish ``rate × seconds`` Position frames round-robin over
    ``devices`` from wall time ``t0``, each sealed at its send time, with paho. Writes
    (device index, seq, sent_ms) triples to ``record``; sends a dict of figures on ``conn``."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    endpoints = endpoints_for(devices)
    t = len(endpoints)
    n = int(rate * seconds)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}",
                         protocol=paho.MQTTv5)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(100)
    client.connect(host, port)
    client.loop_start()
    sent = array("q")
    lag = array("d")
    seal_ns = 0
    k = 0
    info = None
    while time.time() < t0:
        time.sleep(0.001)
    cpu0 = time.process_time()
    while k < n:
        now = time.time()
        due = min(n, int((now - t0) * rate) + 1)
        if due <= k:
            time.sleep(min(0.002, max(0.0, t0 + k / rate - now)))
            continue
        lag.append((now - (t0 + k / rate)) * 1000)
        for i in range(k, due):
            d = i % t
            seq = seq_base + i // t + 1
            a = time.perf_counter_ns()
            at = int(time.time() * 1000)
            out = endpoints[d].seal(position(d, at), seq=seq, sent_ms=at)
            seal_ns += time.perf_counter_ns() - a
            info = client.publish(out.topic, out.payload, qos=qos)
            sent.extend((first + d, seq, at))
        k = due
    end_call = time.time()
    if info is not None:
        info.wait_for_publish(120)
    end = time.time()
    client.loop_stop()
    client.disconnect()
    with open(record, "wb") as f:
        sent.tofile(f)
    conn.send({"n": n, "end_call": end_call, "end": end, "lag_p99_ms": pct(lag, 0.99),
               "lag_max_ms": max(lag) if lag else 0.0, "seal_us": seal_ns / 1000 / max(1, n),
               "prebuild_s": 0.0, "cpu_s": time.process_time() - cpu0, "unacked": 0,
               "stalls": 0})


def raw_publisher(host: str, port: int, first: int, devices: list[tuple[str, bytes]],
                  rate: float, seconds: float, seq_base: int, qos: int, record: str,
                  conn: Connection) -> None:
    """``--generator raw``: the same frames as ``publisher`` (same devices, seqs, MACs), but
    sealed and built into MQTT PUBLISH packets before the timed run, then written to a plain
    socket (``rawpub.RawPublisher``) every ``TICK_S``: all the packets due by then in one
    ``sendall``.

    Handshake on ``conn`` (duplex) with ``run_step``:
    1. → ("calibrated", {n, us}): the cost of pre-building one frame, on a throwaway sample;
    2. ← t0, chosen so that everyone has pre-built by then: every frame i is sealed with
       ``sent_ms`` = its fix's ``time_ms`` = its scheduled send time t0 + i / rate;
    3. → ("ready", {...}) once built and connected (CONNACK received);
    4. ← go: the start, t0 unless someone was ready too late for it; then the schedule is
       go + i / rate, which is what ``record`` gets as sent_ms (latency is measured from it);
    5. → the dict of figures, as ``publisher`` sends.
    """
    from rawpub import RawPublisher, mqtt_string, packet_id_for, publish_packet

    endpoints = endpoints_for(devices)
    t = len(endpoints)
    n = int(rate * seconds)
    topics: dict[int, bytes] = {}

    def build(i: int, at_ms: int) -> tuple[bytes, int]:
        d = i % t
        seq = seq_base + i // t + 1
        out = endpoints[d].seal(position(d, at_ms), seq=seq, sent_ms=at_ms)
        topic = topics.get(d)
        if topic is None:
            topic = topics[d] = mqtt_string(out.topic)
        return publish_packet(topic, out.payload, qos, packet_id_for(i) if qos else 0), seq

    sample = min(n, CALIBRATION_FRAMES)
    now_ms = int(time.time() * 1000)
    a = time.perf_counter()
    for i in range(sample):
        build(i, now_ms)
    conn.send(("calibrated", {"n": n, "us": (time.perf_counter() - a) / max(1, sample) * 1e6}))
    t0: float = conn.recv()

    a = time.perf_counter()
    cpu_a = time.process_time()
    buf = bytearray()
    offsets = array("q", [0])
    sent = array("q")
    for i in range(n):
        at = int((t0 + i / rate) * 1000)
        packet, seq = build(i, at)
        buf += packet
        offsets.append(len(buf))
        sent.extend((first + i % t, seq, at))
    prebuild_s = time.perf_counter() - a
    prebuild_cpu = time.process_time() - cpu_a
    view = memoryview(buf)
    pub = RawPublisher(host, port, client_id=f"bench-raw-{os.getpid()}-{secrets.token_hex(3)}")
    conn.send(("ready", {"prebuild_s": prebuild_s, "bytes": len(buf)}))
    while not conn.poll(1.0):  # the others may still be sealing: keep the connection alive
        pub.ping_if_idle()
    go: float = conn.recv()
    if go != t0:  # started later than the frames were sealed for: record the real schedule
        shift = round((go - t0) * 1000)
        for j in range(2, len(sent), 3):
            sent[j] += shift

    lag = array("d")
    stalls = 0
    k = 0
    while time.time() < go:
        pub.ping_if_idle()
        time.sleep(0.0005)
    cpu0 = time.process_time()
    next_tick = go
    while k < n:
        now = time.time()
        due = min(n, int((now - go) * rate) + 1)
        if qos:
            pub.check()
            if due - pub.acked > MAX_OUTSTANDING:  # packet ids must not be reused un-acked
                due = pub.acked + MAX_OUTSTANDING
                stalls += 1
        if due > k:
            lag.append((now - (go + k / rate)) * 1000)
            pub.send(view[offsets[k]:offsets[due]])
            k = due
        else:  # a low rate, or held back by the cap
            pub.ping_if_idle()
        if k >= n:
            break
        next_tick += TICK_S
        pause = next_tick - time.time()
        if pause > 0:
            time.sleep(pause)
        else:
            next_tick = time.time()  # behind: send again at once, do not try to catch up ticks
    end_call = time.time()
    unacked = 0
    if qos:
        pub.wait_acked(n, 120)
        unacked = n - pub.acked
        end = pub.last_ack_at if not unacked else time.time()
    else:
        end = end_call
    cpu_s = time.process_time() - cpu0
    pub.disconnect()
    with open(record, "wb") as f:
        sent.tofile(f)
    conn.send({"n": n, "end_call": end_call, "end": end, "lag_p99_ms": pct(lag, 0.99),
               "lag_max_ms": max(lag) if lag else 0.0, "seal_us": prebuild_cpu * 1e6 / max(1, n),
               "prebuild_s": prebuild_s, "cpu_s": cpu_s,
               "unacked": unacked, "stalls": stalls, "pingresps": pub.pingresps,
               "unexpected": pub.unexpected})


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Step:
    rate: int
    seconds: float
    sent: int = 0
    published_per_s: float = 0.0  # up to the last PUBACK (QoS 1)
    written_per_s: float = 0.0  # up to the generator's last send
    lag_p99_ms: float = 0.0
    seal_us: float = 0.0  # paho: sealing at send time; raw: pre-sealing CPU (seal + packet)
    pub_cpu_s: float = 0.0  # the publishers' CPU from the start to the last PUBACK
    prebuild_s: float = 0.0  # raw: wall time of the slowest publisher's pre-sealing
    start_slip_s: float = 0.0  # raw: start later than the frames were sealed for
    unacked: int = 0  # raw: PUBACKs missing at the end
    stalls: int = 0  # raw: ticks held back by the cap on un-acked messages
    stored_window: int = 0  # stored while the publishers ran
    stored_per_s: float = 0.0
    stored_total: int = 0
    drain_s: float = math.nan
    c_delivered: int = 0
    c_per_s: float = 0.0
    p50: float = math.nan
    p95: float = math.nan
    p99: float = math.nan
    pmax: float = math.nan
    acked: int = 0
    rss_mb: float = 0.0
    hwm_mb: float = 0.0
    server_cpu: float = 0.0  # % of one CPU while publishing
    broker_cpu: float = 0.0
    threads: dict[str, float] = field(default_factory=dict)
    records: list[str] = field(default_factory=list)


class StatsClient:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def get(self) -> dict[str, Any]:
        req = urllib.request.Request(f"{self.url}/api/v1/stats",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return dict(json.loads(resp.read()))


def enrol(
    data: Path, n: int, store_url: str | None = None
) -> tuple[list[tuple[str, bytes]], float]:
    """Register ``n`` terminals in the store the server will open; (ids+keys, seconds)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from server.backends import open_store
    from server.store import Device, DeviceKey

    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    devices = [(f"bt-{k:06d}", secrets.token_bytes(32)) for k in range(n)]
    a = time.perf_counter()
    store = open_store(store_url, data)
    now = int(time.time() * 1000)
    for d, mac in devices:
        store.add_device(Device(d, "", (), now), DeviceKey(d, 1, mac, public))
    store.close()
    return devices, time.perf_counter() - a


def c_ceiling(host: str, port: int, n: int, size: int, qos: int,
              tmp: Path) -> tuple[float, int]:
    """mosquitto_pub -l of n lines of ``size`` bytes → mosquitto_sub -C n: (messages/s, how
    many arrived). The subscriber stamps each arrival; it is stopped once nothing has arrived
    for 2 s (the broker drops what does not fit a subscriber's queue)."""
    line = (b"x" * (size - 1) + b"\n") * n
    stamps = tmp / f"ceiling-{qos}.txt"
    with stamps.open("w") as f:
        sub = subprocess.Popen(["mosquitto_sub", "-h", host, "-p", str(port), "-q", str(qos),
                                "-t", "yj/1/up/ceiling/pos", "-C", str(n), "-F", "%U"],
                               stdout=f)
    time.sleep(0.5)
    start = time.time()
    pub = subprocess.Popen(["mosquitto_pub", "-h", host, "-p", str(port), "-q", str(qos),
                            "-t", "yj/1/up/ceiling/pos", "-l"], stdin=subprocess.PIPE)
    assert pub.stdin is not None
    pub.stdin.write(line)
    pub.stdin.close()
    size_seen, changed = -1, time.time()
    while sub.poll() is None and time.time() - changed < 2.0:
        time.sleep(0.2)
        now_size = stamps.stat().st_size
        if now_size != size_seen:
            size_seen, changed = now_size, time.time()
    if sub.poll() is None:
        sub.terminate()
    sub.wait(10)
    pub.wait(30)
    got = [float(x) for x in stamps.read_text().split()]
    return (len(got) / (max(got) - start) if got else 0.0), len(got)


def start_server(data: Path, broker_port: int, store: str | None,
                 log: Path, workers: int = 1) -> tuple[subprocess.Popen[str], str, str]:
    cmd = [sys.executable, "-m", "yijing.cli", "server", "--data", str(data),
           "--broker", f"mqtt://127.0.0.1:{broker_port}", "--port", "0",
           "--workers", str(workers)]
    if store:
        cmd += ["--store", store]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("w"),
                            text=True)
    assert proc.stdout is not None
    url = token = ""
    deadline = time.time() + 60
    while time.time() < deadline and not (url and token):
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.search(r"yijing server on (http://\S+)", line):
            url = m.group(1)
        if m := re.search(r"token=(\S+)", line):
            token = m.group(1)
    if not (url and token):
        proc.kill()
        raise RuntimeError(f"server did not start: {' '.join(cmd)}\n{log.read_text()[-2000:]}")
    threading.Thread(target=lambda: proc.stdout and proc.stdout.read(), daemon=True).start()
    return proc, url, token


def recv_all(conns: list[Connection], procs: list[Any], kind: str,
             timeout: float) -> list[tuple[str, dict[str, Any]]]:
    """One ``(kind, dict)`` message from each publisher, in order; a dead one is an error."""
    out = []
    deadline = time.time() + timeout
    for c, proc in zip(conns, procs, strict=True):
        while not c.poll(0.1):
            if not proc.is_alive():
                raise RuntimeError("a publisher process died; see its traceback")
            if time.time() > deadline:
                raise RuntimeError(f"no {kind!r} from a publisher in {timeout:.0f} s")
        msg = c.recv()
        if msg[0] != kind:
            raise RuntimeError(f"publisher said {msg!r}, expected {kind!r}")
        out.append(msg)
    return out


def run_step(step: Step, args: argparse.Namespace, broker: Any, devices: list[tuple[str, bytes]],
             seq_base: int, server: subprocess.Popen[str], stats: StatsClient, out: Path,
             tmp: Path) -> int:
    """One offered rate; returns the next seq base."""
    p = args.publishers
    # Contiguous slices keep the (device index) arithmetic simple.
    size = math.ceil(len(devices) / p)
    slices = [(i * size, devices[i * size:(i + 1) * size]) for i in range(p)]
    n_total = sum(int(step.rate / p * step.seconds) for _ in slices)
    ctx = mp.get_context("spawn")
    before = stats.get()["stored"]
    c_out = tmp / f"csub-{step.rate}.txt"

    def c_subscriber(start_in: float) -> subprocess.Popen[bytes]:
        """mosquitto_sub for the step's stream; it gives up ``-W`` seconds after starting."""
        with c_out.open("w") as f:
            return subprocess.Popen(
                ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t",
                 "yj/1/up/#", "-C", str(n_total), "-F", "%U", "-W",
                 str(int(start_in + step.seconds + args.drain_timeout + 30))], stdout=f)

    procs, conns = [], []
    if args.generator == "paho":
        csub = c_subscriber(0)
        t0 = time.time() + 2.0 + 0.2 * p  # spawn and import time
        for i, (first, part) in enumerate(slices):
            record = str(tmp / f"sent-{step.rate}-{i}.bin")
            step.records.append(record)
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=publisher, args=(broker.host, broker.port, first, part,
                                                       step.rate / p, step.seconds, seq_base,
                                                       args.qos, t0, record, child), daemon=True)
            proc.start()
            procs.append(proc)
            conns.append(parent)
    else:
        for i, (first, part) in enumerate(slices):
            record = str(tmp / f"sent-{step.rate}-{i}.bin")
            step.records.append(record)
            parent, child = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=raw_publisher, args=(broker.host, broker.port, first, part,
                                                           step.rate / p, step.seconds, seq_base,
                                                           args.qos, record, child), daemon=True)
            proc.start()
            procs.append(proc)
            conns.append(parent)
        # Pre-sealing: the publishers run in parallel on the machine's CPUs (the server is
        # idle by now: the previous step drained). The start leaves them twice the estimate.
        calibrated = [m for _, m in recv_all(conns, procs, "calibrated", 120)]
        share = max(1.0, p / (os.cpu_count() or 1))
        need = max(c["n"] * c["us"] for c in calibrated) / 1e6 * share * 2
        t0 = time.time() + need + 0.5
        csub = c_subscriber(t0 - time.time())
        for c in conns:
            c.send(t0)
        ready = [m for _, m in recv_all(conns, procs, "ready", need * 10 + 120)]
        step.prebuild_s = max(r["prebuild_s"] for r in ready)
        go = max(t0, time.time() + 0.2)  # a publisher ready too late: start later for all
        step.start_slip_s = go - t0
        for c in conns:
            c.send(go)
        t0 = go
    while time.time() < t0:
        time.sleep(0.01)
    s_cpu0, b_cpu0 = cpu_seconds(server.pid), cpu_seconds(args.broker_pid)
    thr0 = thread_cpu(server.pid)
    profiler = None
    if args.profile_rate == step.rate:
        profiler = subprocess.Popen(
            [str(ROOT / ".venv/bin/py-spy"), "record", "--pid", str(server.pid), "--threads",
             "--duration", str(int(step.seconds)),
             "-o", str(out / PROFILE_FILES[args.profile_format]),
             "--nonblocking", "--format", args.profile_format],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: list[tuple[float, int]] = []
    rss: list[int] = []
    dumped = False
    results: list[dict[str, Any]] = []
    pending = dict(zip(conns, procs, strict=True))
    while len(results) < p:
        time.sleep(0.5)
        samples.append((time.time(), stats.get()["stored"]))
        rss.append(proc_status(server.pid).get("VmRSS", 0))
        if profiler is not None and not dumped and time.time() > t0 + step.seconds / 2:
            dumped = True
            dump = subprocess.run([str(ROOT / ".venv/bin/py-spy"), "dump", "--pid",
                                   str(server.pid)], capture_output=True, text=True)
            (out / "py-spy-dump.txt").write_text(dump.stdout + dump.stderr)
        for c, proc in list(pending.items()):
            if c.poll():
                try:
                    results.append(c.recv())
                except EOFError:
                    raise RuntimeError("a publisher process died; see its traceback") from None
                del pending[c]
            elif not proc.is_alive() and not c.poll():
                raise RuntimeError("a publisher process died; see its traceback")
    pub_end = max(r["end"] for r in results)
    window = pub_end - t0
    s_cpu1, b_cpu1 = cpu_seconds(server.pid), cpu_seconds(args.broker_pid)
    thr1 = thread_cpu(server.pid)
    step.server_cpu = 100 * (s_cpu1 - s_cpu0) / window
    step.broker_cpu = 100 * (b_cpu1 - b_cpu0) / window
    step.threads = {k: 100 * (v - thr0.get(k, 0.0)) / window for k, v in thr1.items()}
    stored_at_end = stats.get()["stored"]
    step.sent = sum(r["n"] for r in results)
    step.published_per_s = step.sent / window
    step.written_per_s = step.sent / max(1e-9, max(r["end_call"] for r in results) - t0)
    step.lag_p99_ms = max(r["lag_p99_ms"] for r in results)
    step.seal_us = sum(r["seal_us"] * r["n"] for r in results) / max(1, step.sent)
    step.pub_cpu_s = sum(r["cpu_s"] for r in results)
    step.unacked = sum(r["unacked"] for r in results)
    step.stalls = sum(r["stalls"] for r in results)
    step.stored_window = stored_at_end - before
    step.stored_per_s = step.stored_window / window
    # Drain: until everything is stored, or no progress for 15 s, or the timeout.
    last, last_change = stored_at_end, time.time()
    deadline = pub_end + args.drain_timeout
    while time.time() < deadline:
        now_stored = stats.get()["stored"]
        rss.append(proc_status(server.pid).get("VmRSS", 0))
        if now_stored - before >= step.sent:
            step.drain_s = time.time() - pub_end
            last = now_stored
            break
        if now_stored != last:
            last, last_change = now_stored, time.time()
        elif time.time() - last_change > 15:
            break
        time.sleep(0.25)
    step.stored_total = last - before
    for proc in procs:
        proc.join(10)
    try:
        csub.wait(max(1.0, args.drain_timeout))
    except subprocess.TimeoutExpired:
        csub.terminate()
        csub.wait(5)
    stamps = [float(x) for x in c_out.read_text().split()]
    step.c_delivered = len(stamps)
    if stamps:
        step.c_per_s = len(stamps) / max(1e-9, max(stamps) - t0)
    status = proc_status(server.pid)
    step.rss_mb = max(rss) / 1024
    step.hwm_mb = status.get("VmHWM", 0) / 1024
    if profiler is not None:
        profiler.wait(60)
    return seq_base + max(math.ceil(int(step.rate / p * step.seconds) / len(part))
                          for _, part in slices)


def latencies(steps: list[Step], ack_file: Path, devices: list[tuple[str, bytes]]) -> None:
    """Match every acked (device, seq) to its sent_ms; per-step percentiles."""
    from protocol.frame import decode

    index = {d: i for i, (d, _) in enumerate(devices)}
    acked: dict[tuple[int, int], float] = {}
    with ack_file.open() as f:
        for line in f:
            parts = line.split()
            if len(parts) != 2:
                continue
            try:
                env = decode(bytes.fromhex(parts[1])).envelope
            except Exception:
                continue
            dev = index.get(env.party)
            if dev is None:
                continue
            at = float(parts[0]) * 1000
            for first, last in env.message.ranges:  # type: ignore[attr-defined]
                for seq in range(first, last + 1):
                    acked.setdefault((dev, seq), at)
    for step in steps:
        lat: list[float] = []
        for record in step.records:
            sent = array("q")
            with open(record, "rb") as f:
                sent.frombytes(f.read())
            for j in range(0, len(sent), 3):
                got = acked.get((sent[j], sent[j + 1]))
                if got is not None:
                    lat.append(got - sent[j + 2])
        step.acked = len(lat)
        if lat:
            lat.sort()
            step.p50, step.p95, step.p99 = (pct(lat, q) for q in (0.5, 0.95, 0.99))
            step.pmax = lat[-1]


def integrity(db: Path, steps: list[Step], store_url: str | None = None) -> dict[str, int]:
    """Every sent (device, seq) stored exactly once, nothing else: read-only, server stopped."""
    sent: set[tuple[str, int]] = set()
    for step in steps:
        for record in step.records:
            a = array("q")
            with open(record, "rb") as f:
                a.frombytes(f.read())
            sent.update((f"bt-{a[j]:06d}", a[j + 1]) for j in range(0, len(a), 3))
    if store_url is None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        frames = conn.execute("SELECT device_id, seq FROM frames WHERE seq > 0").fetchall()
        pos = conn.execute("SELECT device_id, seq FROM positions").fetchall()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(store_url) as pg:
            frames = pg.execute("SELECT device_id, seq FROM frames WHERE seq > 0").fetchall()
            pos = pg.execute("SELECT device_id, seq FROM positions").fetchall()
    fset = set(frames)
    pset = set(pos)
    return {
        "sent": len(sent),
        "frames_rows": len(frames),
        "frames_distinct": len(fset),
        "positions_rows": len(pos),
        "positions_distinct": len(pset),
        "missing_frames": len(sent - fset),
        "missing_positions": len(sent - pset),
        "extra_frames": len(fset - sent),
    }


def plot(steps: list[Step], ceiling: dict[int, float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    x = [s.rate for s in steps]
    ax.plot(x, x, ":", color="grey", label="offered")
    ax.plot(x, [s.published_per_s for s in steps], "x--", color="grey", label="published")
    ax.plot(x, [s.c_per_s for s in steps], "s-", color="tab:green",
            label="mosquitto_sub (C), same stream")
    ax.plot(x, [s.stored_per_s for s in steps], "o-", color="tab:blue",
            label="yijing stored/s (while publishing)")
    for qos, rate in sorted(ceiling.items()):
        ax.axhline(rate, color="tab:green", ls="--" if qos else "-.", alpha=0.6,
                   label=f"C-subscriber ceiling, QoS {qos} burst: {rate:,.0f}/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered fixes/s")
    ax.set_ylabel("messages/s")
    ax2 = ax.twinx()
    ax2.plot(x, [s.p99 / 1000 for s in steps], "^-", color="tab:red", label="p99 sent→acked (s)")
    ax2.set_yscale("log")
    ax2.set_ylabel("p99 fix sent → stored ack (s)", color="tab:red")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terminals", type=int, default=10_000)
    parser.add_argument("--rates", default="2000,5000,10000,20000",
                        help="offered fixes/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="per step (default 15)")
    parser.add_argument("--publishers", type=int, default=3, help="publisher processes")
    parser.add_argument("--workers", type=int, default=1,
                        help="the server's ingest processes (yijing server --workers)")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1,
                        help="publish QoS (default 1, as the agent does)")
    parser.add_argument("--generator", choices=("raw", "paho"), default="raw",
                        help="raw (default): frames pre-sealed before each step and written as "
                        "pre-built MQTT 3.1.1 packets to a plain socket (bench/rawpub.py), a "
                        "few %% of a CPU; paho: sealed at send time and published with paho "
                        "(about 130 µs of CPU per message at QoS 1), the earlier generator")
    parser.add_argument("--store", default="sqlite",
                        help="sqlite (default) or a postgresql:// URL passed as --store")
    parser.add_argument("--drain-timeout", type=float, default=90.0)
    parser.add_argument("--final-drain", type=float, default=120.0,
                        help="seconds to wait at the end for everything to be stored")
    parser.add_argument("--ceiling-messages", type=int, default=200_000)
    parser.add_argument("--profile-rate", type=int, default=0,
                        help="py-spy record the server during the step at this rate")
    parser.add_argument("--profile-format", choices=sorted(PROFILE_FILES), default="flamegraph",
                        help="py-spy output: flamegraph (profile.svg), raw (collapsed stacks, "
                        "profile.txt) or speedscope (profile.json)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    for exe in ("mosquitto_sub", "mosquitto_pub"):
        if shutil.which(exe) is None:
            raise SystemExit(f"{exe} is needed (apt-get install mosquitto-clients)")

    from yijing.broker import start_mosquitto

    # A PostgreSQL URL names an empty database the bench may fill (create one per run).
    store_url = None if args.store == "sqlite" else args.store

    tmp = Path(tempfile.mkdtemp(prefix="yj-ingest-"))
    broker = start_mosquitto(tmp / "broker")
    assert broker._process is not None
    args.broker_pid = broker._process.pid
    server: subprocess.Popen[str] | None = None
    acks: subprocess.Popen[bytes] | None = None
    try:
        burst = {q: c_ceiling(broker.host, broker.port, args.ceiling_messages, 68, q, tmp)
                 for q in (0,)}
        ceiling = {q: rate for q, (rate, _) in burst.items()}
        ceiling_note = ", ".join(f"QoS {q} {rate:,.0f}/s ({got:,} of {args.ceiling_messages:,} "
                                 "arrived)" for q, (rate, got) in burst.items())
        print(f"C-subscriber ceiling (68 B lines, mosquitto_pub -l → mosquitto_sub): "
              f"{ceiling_note}", flush=True)
        data = tmp / "data"
        data.mkdir()
        devices, enrol_s = enrol(data, args.terminals, store_url)
        print(f"enrolled {len(devices):,} terminals in {enrol_s:.1f} s", flush=True)
        server, url, token = start_server(data, broker.port, store_url, tmp / "server.log",
                                          args.workers)
        stats = StatsClient(url, token)
        time.sleep(1.0)
        idle = proc_status(server.pid)
        name_threads(server.pid)
        ack_file = tmp / "acks.txt"
        with ack_file.open("w") as f:
            acks = subprocess.Popen(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port),
                                     "-q", "1", "-t", "yj/1/down/+/ack", "-F", "%U %x"],
                                    stdout=f)
        time.sleep(0.5)
        steps: list[Step] = []
        seq_base = 0
        for rate in rates:
            step = Step(rate, args.seconds)
            seq_base = run_step(step, args, broker, devices, seq_base, server, stats, args.out,
                                tmp)
            steps.append(step)
            print(f"  {rate:>6,}/s offered: published {step.published_per_s:,.0f}/s, stored "
                  f"{step.stored_per_s:,.0f}/s while publishing, {step.stored_total:,}/"
                  f"{step.sent:,} in the end, drain {step.drain_s:.1f} s, server CPU "
                  f"{step.server_cpu:.0f} %, RSS {step.rss_mb:.0f} MB, generator CPU "
                  f"{step.pub_cpu_s:.1f} s", flush=True)
        # Everything sent must be stored before the exactly-once check: wait for the last drain.
        total = sum(s.sent for s in steps)
        deadline = time.time() + args.final_drain
        while stats.get()["stored"] < total and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(2.0)
        acks.terminate()
        acks.wait(10)
        final_stats = stats.get()
        server.terminate()
        server.wait(60)
        latencies(steps, ack_file, devices)
        check = integrity(data / "yijing.db", steps, store_url)
    finally:
        for proc in (acks, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
        broker.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}, Python "
          f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{args.terminals:,} terminals, {args.publishers} publisher processes "
          f"(--generator {args.generator}), QoS {args.qos}, {args.seconds:g} s per rate, store "
          f"{args.store}; latency is measured from each frame's "
          + ("scheduled send time" if args.generator == "raw" else "sealing, just before paho"))
    print(f"Reference: C-subscriber ceiling {ceiling_note}; server idle RSS "
          f"{idle.get('VmRSS', 0) / 1024:.0f} MB with "
          f"{args.terminals:,} terminals registered")
    print()
    print("| offered /s | published /s | gen. lag p99 ms | gen. CPU s | mosquitto_sub (C) /s | "
          "stored /s | ratio to C | stored in the end | drain s | acked | p50 ms | p95 ms | "
          "p99 ms | max ms | server CPU % | broker CPU % | server RSS MB |")
    print("| ---: " * 17 + "|")
    for s in steps:
        ratio = s.stored_per_s / s.c_per_s if s.c_per_s else math.nan
        print(f"| {s.rate:,} | {s.published_per_s:,.0f} | {s.lag_p99_ms:,.0f} | "
              f"{s.pub_cpu_s:.1f} | "
              f"{s.c_per_s:,.0f} ({s.c_delivered:,}/{s.sent:,}) | {s.stored_per_s:,.0f} | "
              f"{ratio:.2f} | {s.stored_total:,}/{s.sent:,} | {s.drain_s:.1f} | "
              f"{s.acked:,} | {s.p50:,.0f} | {s.p95:,.0f} | {s.p99:,.0f} | {s.pmax:,.0f} | "
              f"{s.server_cpu:.0f} | {s.broker_cpu:.0f} | {s.rss_mb:.0f} |")
    print()
    if args.generator == "paho":
        print("Sealing at send time: " + ", ".join(f"{s.rate:,}/s {s.seal_us:.1f} µs/fix"
                                                    for s in steps))
    else:
        print("Pre-sealed before each timed run (not in the generator CPU): " + ", ".join(
            f"{s.rate:,}/s {s.seal_us:.1f} µs CPU/fix (seal + packet), slowest publisher "
            f"{s.prebuild_s:.1f} s"
            + (f", start {s.start_slip_s:.1f} s later than sealed for" if s.start_slip_s
               else "") for s in steps))
        if any(s.unacked or s.stalls for s in steps):
            print("Raw generator: " + ", ".join(
                f"{s.rate:,}/s {s.unacked:,} PUBACKs missing, {s.stalls:,} ticks held back by "
                f"the {MAX_OUTSTANDING:,} un-acked cap" for s in steps))
    print("Generator CPU from the start to the last PUBACK, all publishers, % of one CPU: "
          + ", ".join(f"{s.rate:,}/s {s.pub_cpu_s:.1f} s = {s.pub_cpu_s / s.seconds * 100:.0f} %"
                      for s in steps))
    print("Published /s is up to the broker's last PUBACK; handed to the socket (raw) or to "
          "paho by the last frame: " + ", ".join(f"{s.rate:,}/s {s.written_per_s:,.0f}/s"
                                                  for s in steps))
    print("Server threads, % of one CPU while publishing:")
    for s in steps:
        busy = sorted(s.threads.items(), key=lambda kv: -kv[1])[:6]
        print(f"  {s.rate:,}/s: " + ", ".join(f"{k} {v:.0f}" for k, v in busy))
    print(f"Server stats at the end: received {final_stats['received']:,}, stored "
          f"{final_stats['stored']:,}, duplicates {final_stats['duplicates']:,}, acks "
          f"{final_stats['acks_sent']:,}, batches {final_stats['batches']:,}; peak RSS (VmHWM) "
          f"{steps[-1].hwm_mb:.0f} MB")
    print("Exactly once (store read-only after stopping the server): " +
          ", ".join(f"{k} {v:,}" for k, v in check.items()))
    png = args.out / "ingest.png"
    plot(steps, ceiling, png, f"yijing ingest, {args.terminals:,} terminals, QoS {args.qos}, "
         f"{args.generator} generator, "
         f"{cpu_model()} × {os.cpu_count()}, {time.strftime('%Y-%m-%d')}")
    print(f"Plot: {png}")


if __name__ == "__main__":
    main()
