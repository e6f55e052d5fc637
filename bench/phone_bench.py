#!/usr/bin/env python3
"""Phone ingest benchmark (issue #10): stored phone reports per second, against references
measured in the same run.

A real ``server.app.Server`` (SQLite store in a temporary folder, on its own asyncio loop
thread in this process, as tests/conftest.py runs one) with its own Mosquitto
(``yijing.broker.start_mosquitto``); P volunteers of one station with a Traccar phone each and
P with an OwnTracks phone, enrolled in the phone registry and synced into the organisation.

1. Traccar Client (OsmAnd over HTTP). A load client in another process (aiohttp,
   ``TCPConnector(limit=C)``, keep-alive) sends ``GET /pub/osmand?id=…&timestamp=…&lat=…&lon=…
   &speed=…&batt=…`` for D seconds, a new request as soon as one is answered (closed loop: C
   always in flight), round-robin over the phones, each phone's timestamps one second apart
   (from a day ago), so no report repeats. Figures: answers 200 per second; latency of the
   answer (client side) p50/p95/p99. Then the store is read: the set of stored (device, seq)
   must equal the set answered 200, and the ingress must count no duplicate or conflict.
   Reference, same run, same client, same C: ``GET /api/v1/health``, the server's trivial
   route (what aiohttp, with this client, does here). Printed: the ratio.
2. OwnTracks over MQTT. A paho publisher in another process publishes M location messages
   (the booklet's JSON; ``--encrypted``: sealed with each phone's key, as the app does) at
   QoS 1, 1000 in flight, round-robin over P phones' ``owntracks/<user>/phone``. Figure: M
   over the time from the first publish until the phone ingress has stored all M (its
   ``stats.stored``, polled every 5 ms; checked against the store). Reference, same run,
   same publisher and payloads: the stream on topics the server does not subscribe to, into
   ``mosquitto_sub -q 1 -C M`` on the same broker (the broker's QoS 1 delivery). The ratio.

Also printed: CPU of the server's threads (by Python thread name), the load process and
Mosquitto; the phone ingest thread's batches (size; time in ``PhoneIngress.process``, of
which in ``Store.store_frames``: both wrapped in this process).

Run: ``.venv/bin/python bench/phone_bench.py`` (about 1.5 minutes; defaults ``--phones 200
--seconds 10 --connections 32,256,1024 --messages 20000``; ``--skip http|mqtt``, ``--encrypted``).
Needs mosquitto and mosquitto-clients.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch_bench import ServerThread, pct
from machine_info import cpu_model

LAT0, LON0 = 22.5431, 114.0579
STATION = "ftpcs"
OSMAND_TYPE, OWNTRACKS_TYPE = 0x81, 0x80  # server.phones.frames
CLK_TCK = os.sysconf("SC_CLK_TCK")
Phones = list[tuple[str, bytes | None]]  # OwnTracks (user, key)


def proc_cpu(pid: int | str, task: str = "") -> float:
    """utime + stime in seconds of a process (or of one of its threads)."""
    try:
        with open(f"/proc/{pid}/{task}stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process, by Python thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        name = names.get(int(tid), f"native-{tid}")
        out[name] = out.get(name, 0.0) + proc_cpu("self", f"task/{tid}/")
    return out


def cpu_table(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    busy = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
    return ", ".join(f"{k} {v / seconds:.0%}" for v, k in busy if v / seconds >= 0.02)


class BatchTimer:
    """Wraps ``PhoneIngress.process`` and ``Store.store_frames`` (as instance attributes)."""

    def __init__(self, server: Any) -> None:
        self.batches: list[tuple[int, float, float]] = []  # (size, process s, store s)
        self._store_s = 0.0
        ingress, store = server.phone_ingress, server.store
        process, store_frames = ingress.process, store.store_frames

        def timed_process(batch: list[Any]) -> Any:
            self._store_s, a = 0.0, time.perf_counter()
            try:
                return process(batch)
            finally:
                self.batches.append((len(batch), time.perf_counter() - a, self._store_s))

        def timed_store(frames: Any) -> Any:
            a = time.perf_counter()
            try:
                return store_frames(frames)
            finally:
                self._store_s += time.perf_counter() - a

        ingress.process, store.store_frames = timed_process, timed_store

    def summary(self, since: int) -> str:
        b = self.batches[since:]
        if not b:
            return "no batches"
        n = sum(x[0] for x in b)
        return (
            f"{len(b)} batches, mean {n / len(b):.0f} reports (max {max(x[0] for x in b)}); "
            f"process {sum(x[1] for x in b) / n * 1e6:.0f} µs/report, of which store_frames "
            f"{sum(x[2] for x in b) / n * 1e6:.0f} ({sum(x[2] for x in b) / len(b) * 1e3:.1f}"
            " ms/batch)"
        )


def read_store(server: Any, sql: str, *params: object) -> list[Any]:
    """A query on the server's SQLite store, read-only."""
    db = sqlite3.connect(f"file:{server.config.data_dir / 'yijing.db'}?mode=ro", uri=True)
    with contextlib.closing(db):
        return db.execute(sql, params).fetchall()


def http_client(
    base: str,
    ids: list[str] | None,
    base_s: int,
    k0: int,
    seconds: float,
    connections: int,
    conn: Connection,
) -> None:
    """GET /pub/osmand (``ids`` given) or /api/v1/health for ``seconds``, ``connections`` in
    flight; report ``k`` is phone ``k % P``'s, timestamped ``base_s + k // P``. Sends
    "started", then a dict of figures."""
    import aiohttp
    from yarl import URL

    async def run() -> dict[str, Any]:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections)
        ) as session:
            health = URL(f"{base}/api/v1/health", encoded=True)

            async def get(url: URL) -> int:
                async with session.get(url) as response:
                    await response.read()
                    return response.status

            await asyncio.gather(*(get(health) for _ in range(connections)))  # open them all
            counter, ok, lat, ends = k0, [], [], []
            status: Counter[str] = Counter()
            cpu0, t0 = time.process_time(), time.perf_counter()
            conn.send("started")

            async def worker() -> None:
                nonlocal counter
                while time.perf_counter() < t0 + seconds:
                    k, counter = counter, counter + 1
                    url = health
                    if ids is not None:
                        p = k % len(ids)
                        url = URL(
                            f"{base}/pub/osmand?id={ids[p]}&timestamp="
                            f"{base_s + k // len(ids)}&lat={LAT0 + p % 97 * 1e-4:.6f}"
                            f"&lon={LON0 + p % 89 * 1e-4:.6f}&speed=1.5&batt={50 + p % 50}",
                            encoded=True,
                        )
                    a = time.perf_counter()
                    try:
                        code = await get(url)
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        status[type(exc).__name__] += 1
                        continue
                    lat.append((time.perf_counter() - a) * 1000)
                    status[str(code)] += 1
                    if code == 200:
                        ok.append(k)
                ends.append(time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(connections)))
            return {
                "ok": ok,
                "lat": lat,
                "status": dict(status),
                "sent": counter - k0,
                "elapsed": max(ends) - t0,
                "cpu": time.process_time() - cpu0,
            }

    conn.send(asyncio.run(run()))


def http_part(
    server: Any,
    broker_pid: int,
    ids: list[str],
    phone_ids: list[str],
    timer: BatchTimer,
    seconds: float,
    connections: list[int],
) -> None:
    ctx, stats = mp.get_context("spawn"), server.phone_ingress.stats
    base_s, k0, p = int(time.time()) - 86_400, 0, len(ids)
    print(
        f"\n## 1. Traccar Client (OsmAnd over HTTP): {p} phones, {seconds:.0f} s per figure, "
        "closed loop (C requests always in flight), aiohttp client in its own process"
    )
    rows = []
    for c in connections:
        figures = {}
        for kind in ("health", "osmand"):
            b0, dup0, stored0 = len(timer.batches), stats.duplicates + stats.conflicts, stats.stored
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=http_client, daemon=True, args=(
                server.url.rstrip("/"), ids if kind == "osmand" else None, base_s, k0, seconds,
                c, child))  # fmt: skip
            proc.start()
            if parent.recv() != "started":
                raise RuntimeError("the load process did not start")
            cpu0, broker0 = thread_cpu(), proc_cpu(broker_pid)
            r = figures[kind] = parent.recv()
            proc.join(10)
            r["threads"] = cpu_table(cpu0, thread_cpu(), r["elapsed"])
            r["mosquitto"] = (proc_cpu(broker_pid) - broker0) / r["elapsed"]
            r["rate"] = len(r["ok"]) / r["elapsed"]
            if kind == "osmand":
                r["batches"], r["stored"] = timer.summary(b0), stats.stored - stored0
                stored = set(read_store(
                    server, "SELECT device_id, seq FROM frames WHERE type = ? AND seq >= ? AND "
                    "seq < ?", OSMAND_TYPE, (base_s + k0 // p) * 4000,
                    (base_s + (k0 + r["sent"]) // p + 1) * 4000))  # fmt: skip
                answered = {(phone_ids[k % p], (base_s + k // p) * 4000) for k in r["ok"]}
                lost, extra = len(answered - stored), len(stored - answered)
                twice = stats.duplicates + stats.conflicts - dup0
                r["check"] = f"in the store {len(stored):,}: " + (
                    "each report answered 200 stored, once, and nothing else"
                    if not (lost or extra or twice)
                    else f"**{lost} answered but not stored, "
                    f"{extra} stored but not answered 200, {twice} duplicates or conflicts**"
                )
                k0 += -(-r["sent"] // p) * p
            print(
                f"C={c} {kind}: {r['rate']:,.0f} answered 200/s, answers {r['status']}, "
                f"client CPU {r['cpu'] / r['elapsed']:.0%}",
                flush=True,
            )
        rows.append((c, figures))
    print("\n| C | route | 200s/s | p50 ms | p95 ms | p99 ms | other answers | vs health |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |")
    for c, f in rows:
        for kind, r in f.items():
            other = {k: v for k, v in r["status"].items() if k != "200"} or "none"
            route = "`GET /pub/osmand`" if kind == "osmand" else "reference: `GET /api/v1/health`"
            cells = " | ".join(f"{pct(r['lat'], q):.1f}" for q in (0.5, 0.95, 0.99))
            print(
                f"| {c} | {route} | {r['rate']:,.0f} | {cells} | {other} | "
                f"{r['rate'] / f['health']['rate']:.0%} |"
            )
    for c, f in rows:
        o = f["osmand"]
        print(
            f"\nC={c}: answered 200 {len(o['ok']):,}, stored {o['stored']:,} (ingress stats), "
            f"{o['check']}\n  phone ingest: {o['batches']}"
        )
        for kind, r in f.items():
            print(
                f"  CPU during {kind} (share of one CPU): server threads: {r['threads']}; "
                f"load client {r['cpu'] / r['elapsed']:.0%}; mosquitto {r['mosquitto']:.0%}"
            )


def mqtt_publisher(
    host: str,
    port: int,
    phones: Phones,
    root: str,
    messages: int,
    base_s: int,
    go: Any,
    conn: Connection,
) -> None:
    """Publish ``messages`` OwnTracks locations (built beforehand), QoS 1, round-robin over
    ``phones`` on ``<root>/<user>/phone``, once ``go`` is set. Sends "started", then a dict
    of figures (times from the first publish)."""
    import json

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol import owntracks

    out = []
    for k in range(messages):
        user, key = phones[k % len(phones)]
        doc = {
            "_type": "location",
            "acc": 8,
            "alt": 20,
            "batt": 77,
            "bs": 1,
            "conn": "m",
            "lat": round(LAT0 + k % 97 * 1e-4, 6),
            "lon": round(LON0 + k % 89 * 1e-4, 6),
            "t": "u",
            "tid": "v1",
            "tst": base_s + k // len(phones),
            "vel": 3,
        }
        payload = json.dumps(doc, separators=(",", ":")).encode()
        out.append((f"{root}/{user}/phone", owntracks.encrypt(payload, key) if key else payload))
    acked, count = threading.Event(), [0]

    def on_publish(*_: Any) -> None:
        count[0] += 1
        if count[0] == messages:
            acked.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"phone-bench-{os.getpid()}", protocol=paho.MQTTv311
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    go.wait()
    cpu0, t0 = time.process_time(), time.time()
    conn.send("started")
    for topic, payload in out:
        client.publish(topic, payload, qos=1)
    acked.wait(300)
    conn.send(
        {
            "t0": t0,
            "acked": time.time() - t0,
            "cpu": time.process_time() - cpu0,
            "bytes": sum(len(x[1]) for x in out) / messages,
        }
    )
    client.loop_stop()
    client.disconnect()


def publish_run(
    broker: Any,
    broker_pid: int,
    phones: Phones,
    root: str,
    messages: int,
    base_s: int,
    wait: Callable[[], float],
) -> dict[str, Any]:
    """One publisher run; ``wait`` returns the wall time at which all had arrived."""
    ctx = mp.get_context("spawn")
    go, (parent, child) = ctx.Event(), ctx.Pipe()
    proc = ctx.Process(
        target=mqtt_publisher,
        daemon=True,
        args=(broker.host, broker.port, phones, root, messages, base_s, go, child),
    )
    proc.start()
    time.sleep(1.5)  # the payloads built, the reference subscriber subscribed
    cpu0, broker0 = thread_cpu(), proc_cpu(broker_pid)
    go.set()
    if parent.recv() != "started":
        raise RuntimeError("the publisher did not start")
    done = wait()
    pub: dict[str, Any] = parent.recv()
    proc.join(10)
    took = pub["took"] = done - pub["t0"]
    pub["threads"] = cpu_table(cpu0, thread_cpu(), took)
    pub["broker"] = (proc_cpu(broker_pid) - broker0) / took
    return pub


def mqtt_part(
    server: Any,
    broker: Any,
    broker_pid: int,
    tmp: Path,
    phones: Phones,
    timer: BatchTimer,
    messages: int,
    encrypted: bool,
) -> None:
    base_s = int(time.time()) - 86_400
    # Reference: the C client, on topics the server does not subscribe to.
    out = tmp / "mosquitto_sub.out"
    with out.open("wb") as sink:
        sub = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                broker.host,
                "-p",
                str(broker.port),
                "-q",
                "1",
                "-C",
                str(messages),
                "-t",
                "phonebench/+/+",
                "-i",
                "phone-bench-ref",
            ],
            stdout=sink,
        )

    def sub_done() -> float:
        try:
            sub.wait(120)
        except subprocess.TimeoutExpired:
            sub.kill()
        return time.time()

    ref = publish_run(broker, broker_pid, phones, "phonebench", messages, base_s, sub_done)
    ref["n"] = out.read_bytes().count(b"\n")
    # Measured: the same publisher and payloads into the server's phone link.
    stats = server.phone_ingress.stats
    stored0, rejected0, b0 = stats.stored, sum(stats.rejected.values()), len(timer.batches)
    dup0 = stats.duplicates + stats.conflicts

    def all_stored() -> float:
        last, changed = stats.stored, time.time()
        while stats.stored - stored0 < messages and time.time() - changed < 15:
            time.sleep(0.005)
            if stats.stored != last:
                last, changed = stats.stored, time.time()
        return changed

    run = publish_run(broker, broker_pid, phones, "owntracks", messages, base_s, all_stored)
    run["n"] = stats.stored - stored0
    in_store = read_store(
        server,
        "SELECT COUNT(*) FROM frames WHERE type = ? AND seq >= ?",
        OWNTRACKS_TYPE,
        base_s * 4000,
    )[0][0]
    print(
        f"\n## 2. OwnTracks over MQTT: {messages:,} location messages of {run['bytes']:.0f} B "
        f"({'encrypted' if encrypted else 'plain JSON'}), QoS 1, {len(phones)} phones, one "
        "paho publisher (1000 in flight) in its own process"
    )
    print(
        "| path | arrived | first publish → all arrived, s | per s | vs reference | "
        "all PUBACKed to the publisher, s | publisher CPU | broker CPU |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in (("reference: → `mosquitto_sub -q 1`", ref), ("→ phone link → stored", run)):
        print(
            f"| {name} | {r['n']:,} | {r['took']:.2f} | {r['n'] / r['took']:,.0f} | "
            f"{r['n'] / r['took'] / (ref['n'] / ref['took']):.0%} | {r['acked']:.2f} | "
            f"{r['cpu'] / r['took']:.0%} | {r['broker']:.0%} |"
        )
    print(
        f"\nin the store: {in_store:,} OwnTracks frames of this run; refused "
        f"{sum(stats.rejected.values()) - rejected0}; duplicates and conflicts "
        f"{stats.duplicates + stats.conflicts - dup0}"
    )
    print(f"phone ingest: {timer.summary(b0)}")
    print(f"server threads' CPU (share of one CPU): {run['threads']}")


def enrol(server: Any, phones: int, encrypted: bool) -> tuple[list[Any], list[Any]]:
    """A station with 2P volunteers: P Traccar phones, P OwnTracks phones."""
    from provisioning.phones import PhoneApp
    from server.org.model import Unit, UnitLevel, Volunteer

    org = server.org
    org.put_unit(Unit("sz", "深圳市", UnitLevel.CITY))
    org.put_unit(Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"))
    org.put_unit(Unit(STATION, "福田派出所", UnitLevel.STATION, "ft"))
    registry, now_ms = server.phone_ingress.registry, int(time.time() * 1000)
    enrolled: dict[PhoneApp, list[Any]] = {PhoneApp.TRACCAR: [], PhoneApp.OWNTRACKS: []}
    for i in range(phones):
        for app, out in enrolled.items():
            vid = f"{app.value[0]}{i:05d}"
            org.put_volunteer(Volunteer(vid, f"志愿者{vid}", STATION))
            out.append(
                registry.enrol(
                    volunteer_id=vid, unit_id=STATION, app=app, now_ms=now_ms, encrypt=encrypted
                )[0]
            )
    server.phones.sync()
    server.phone_ingress.close_registry()  # this thread's connection
    return enrolled[PhoneApp.TRACCAR], enrolled[PhoneApp.OWNTRACKS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phones", type=int, default=200, help="phones per app")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each HTTP run")
    parser.add_argument(
        "--connections",
        default="32,256,1024",
        help="HTTP connections in flight, comma-separated (one run each)",
    )
    parser.add_argument("--messages", type=int, default=20_000, help="OwnTracks MQTT messages")
    parser.add_argument(
        "--encrypted", action="store_true", help="OwnTracks payloads sealed with each phone's key"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("http", "mqtt"),
        help="leave a part out (repeatable)",
    )
    args = parser.parse_args()

    import logging

    import aiohttp
    import paho.mqtt

    from yijing.broker import find_mosquitto, start_mosquitto

    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the broker on the way out
    version = (
        subprocess.run([find_mosquitto() or "mosquitto", "-h"], capture_output=True, text=True)
        .stdout.split("\n")[0]
        .strip()
    )
    print(
        f"# phone bench — {cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, paho-mqtt "
        f"{paho.mqtt.__version__}, SQLite {sqlite3.sqlite_version}, {version}"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = start_mosquitto(tmp / "broker")
        assert broker._process is not None
        st = None
        try:
            st = ServerThread(tmp / "server", broker.url)
            traccar, owntracks = enrol(st.server, args.phones, args.encrypted)
            timer = BatchTimer(st.server)
            if "http" not in args.skip:
                http_part(
                    st.server,
                    broker._process.pid,
                    [p.traccar_id for p in traccar],
                    [p.phone_id for p in traccar],
                    timer,
                    args.seconds,
                    [int(c) for c in args.connections.split(",")],
                )
            if "mqtt" not in args.skip:
                mqtt_part(
                    st.server,
                    broker,
                    broker._process.pid,
                    tmp,
                    [(p.mqtt_user, p.secret_key) for p in owntracks],
                    timer,
                    args.messages,
                    args.encrypted,
                )
        finally:
            if st is not None:
                st.stop()
            broker.stop()


if __name__ == "__main__":
    main()
