#!/usr/bin/env python3
"""Benchmark of dispatch and the live feed with real parts: Mosquitto, the server, agents.

1. Officer's request → terminal: a real ``Server`` (its own asyncio loop in a thread), a
   station with volunteers on running shifts at their posts, real ``Agent`` s with a fixed
   position near their post. Each round opens an incident, times ``POST
   /api/v1/incidents/{id}/dispatches`` until the HTTP answer (server side done) and until the
   agent's ``dispatch_listeners`` callback fires (same process, ``perf_counter``), then closes
   the incident. Keep-alive HTTP, so TCP setup is not measured. Reference in the same run: the
   broker's own one-way latency for a 300-byte QoS 1 message between two paho clients.
2. Fix published → visible in a WebSocket client: T registered terminals; a load generator in
   another process pre-seals ``Position`` frames with each terminal's ``DeviceEndpoint`` and
   publishes them with paho (QoS 0) at R fixes/s for D seconds, each fix's ``time_ms`` its
   scheduled publish time. A WebSocket client (also its own process) on ``/api/v1/live``
   measures now − fix.time_ms for every terminal doc in every update. References in the same
   run (before the server subscribes): the same load to a C subscriber (``mosquitto_sub -C``)
   and to a bare paho subscriber (rate and latency).
3. The live feed alone, ``LiveState.apply`` → WebSocket client, fed by a thread in the server
   process as ingest feeds it (``bench/live_feed_bench.py``).

Run: ``.venv/bin/python bench/dispatch_bench.py`` (a few minutes; ``--rounds 50 --terminals
2000 --rates 2000`` for a quick look; ``--skip dispatch --skip e2e`` for part 3 alone).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from array import array
from collections.abc import Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_info import cpu_model

from protocol import Fix, FixSource

LAT0, LON0 = 22.5431, 114.0579
STATION = "ftpcs"


def pct(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def quantiles(values: Iterable[float]) -> str:
    """`p50 | p90 | p99 | max` cells."""
    v = list(values)
    return " | ".join(f"{pct(v, q):.1f}" for q in (0.5, 0.9, 0.99, 1.0))


def progress(items: Iterable[Any], total: int, what: str) -> Iterable[Any]:
    try:
        from tqdm import tqdm
    except ImportError:
        print(f"{what}: {total} …", flush=True)
        return items
    return tqdm(items, total=total, desc=what, mininterval=1.0)


class FixedSource:
    """A receiver that never moves: the fix of a volunteer standing at their post."""

    def __init__(self, lat: float, lon: float) -> None:
        self.lat, self.lon = lat, lon

    def read(self, now_ms: int) -> Fix:
        return Fix(time_ms=now_ms, lat=self.lat, lon=self.lon, accuracy_m=5.0, speed_mps=0.0,
                   source=FixSource.GNSS)


class ServerThread:
    """A ``Server`` on its own event loop thread (as tests/conftest.py runs one)."""

    def __init__(self, data_dir: Path, broker_url: str) -> None:
        from server.app import Server, ServerConfig

        async def make() -> Server:
            return Server(ServerConfig(data_dir=data_dir, http_port=0, broker_url=broker_url))

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="server", daemon=True)
        self.thread.start()
        self.server = self.run(make())
        self.run(self.server.start())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def stop(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Api:
    """The officer's REST client on one keep-alive connection (TCP_NODELAY: http.client)."""

    def __init__(self, url: str, token: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                               timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def ok(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers=self.headers)
        response = self.conn.getresponse()
        doc = json.loads(response.read())
        if response.status not in (200, 201):
            raise RuntimeError(f"{method} {path}: {response.status} {doc}")
        return doc


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# --- 1. dispatch ---------------------------------------------------------------------------------


def broker_one_way(host: str, port: int, n: int) -> list[float]:
    """ms from publish to on_message of a 300-byte QoS 1 message between two paho clients,
    one message at a time."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got = threading.Event()
    arrived: list[float] = []

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        arrived.append(time.perf_counter())
        got.set()

    clients = []
    for name in ("rtt-sub", "rtt-pub"):
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv5)
        c.connect(host, port)
        c.loop_start()
        clients.append(c)
    sub, pub = clients
    sub.on_message = on_message
    sub.subscribe("bench/rtt", qos=1)
    time.sleep(0.5)
    out = []
    payload = os.urandom(300)
    for _ in range(n):
        got.clear()
        a = time.perf_counter()
        pub.publish("bench/rtt", payload, qos=1)
        if not got.wait(5):
            raise RuntimeError("the broker reference message never arrived")
        out.append((arrived[-1] - a) * 1000)
        time.sleep(0.005)
    for c in clients:
        c.loop_stop()
        c.disconnect()
    return out


def station(unit: Any, level: Any) -> list[Any]:
    return [unit("sz", "深圳市", level.CITY), unit("ft", "福田区", level.DISTRICT, "sz"),
            unit(STATION, "福田派出所", level.STATION, "ft")]


def organise(server: Any, places: list[tuple[str, str, tuple[float, float]]]) -> None:
    """A station, and each volunteer on a running shift at a post of their own (as
    tests/e2e/test_dispatch_real.py)."""
    from server.duty.geo import Circle
    from server.org.model import Post, PostKind, Terminal, Unit, UnitLevel, Volunteer

    org = server.org
    now_ms = int(time.time() * 1000)
    for unit in station(Unit, UnitLevel):
        org.put_unit(unit)
    start_ms = (now_ms // 1000 - 30) * 1000
    for i, (vid, device, (lat, lon)) in enumerate(places):
        org.put_volunteer(Volunteer(vid, f"志愿者{i + 1}", STATION))
        org.put_terminal(Terminal(device, STATION, holder=vid), at_ms=now_ms)
        org.put_post(Post(f"p{i}", f"岗位{i}", PostKind.DUTY_POINT, STATION, Circle(lat, lon, 300)))
        org.put_shift(org.make_shift(f"s{i}", vid, f"p{i}", start_ms, start_ms + 3_600_000))
    server.duty.refresh()


def dispatch_run(tmp: Path, broker: Any, rounds: int, agents: int) -> dict[str, list[float]]:
    from agent.agent import Agent
    from agent.policy import ReportingPolicy
    from provisioning import BrokerAddress, Enrolment, new_device

    st = ServerThread(tmp / "server-dispatch", broker.url)
    server = st.server
    places = [(f"v{i}", f"dev-{i:02d}", (LAT0 + 0.0002 * i, LON0)) for i in range(agents)]
    organise(server, places)
    policy = ReportingPolicy(interval_moving_s=1, interval_still_s=2, heartbeat_s=5,
                             min_distance_m=0)
    rang: dict[str, float] = {}
    reached: dict[str, float] = {}
    cond = threading.Condition()

    def ring(command: Any) -> None:
        at = time.perf_counter()
        with cond:
            rang[command.dispatch_id] = at
            cond.notify_all()

    running = []
    for _, device, (lat, lon) in places:
        identity = new_device(device)
        server.register_device(identity)
        enrolment = Enrolment(identity, server.identity.public_key, server.identity.key_id,
                              BrokerAddress(broker.host, broker.port, broker.protocol))
        agent = Agent(enrolment, tmp / "agents" / device, source=FixedSource(lat, lon),
                      policy=policy)
        agent.dispatch_listeners.append(ring)

        def handled(command: Any, inner: Any = agent._dispatched) -> None:
            # When the verified command reaches the agent's handler, which first queues the
            # "delivered" answer durably (outbox, synchronous=FULL) and then rings.
            reached[command.dispatch_id] = time.perf_counter()
            inner(command)

        agent._dispatched = handled  # type: ignore[method-assign]
        agent.start()
        running.append(agent)
    api = Api(server.url, server.first_admin_token)

    def docs() -> dict[str, Any]:
        return {d["device"]: d for d in api.ok("GET", "/api/v1/terminals")["terminals"]}

    out: dict[str, list[float]] = {"http": [], "ring": [], "after_http": [], "reach": [],
                                   "handler": []}
    try:
        wait_for(lambda: sum(d["status"] == "on_post" for d in docs().values()) == agents, 60,
                 "every terminal on post on the live map")
        for r in progress(range(rounds), rounds, "dispatch rounds"):
            device = places[r % agents][1]
            wait_for(lambda d=device: docs()[d]["dispatch_id"] is None, 10, f"{device} free")
            incident = api.ok("POST", "/api/v1/incidents", {
                "kind": "fight", "priority": 1, "lat": LAT0, "lon": LON0, "auto_escalate": False})
            iid = incident["incident_id"]
            a = time.perf_counter()
            doc = api.ok("POST", f"/api/v1/incidents/{iid}/dispatches", {"device_ids": [device]})
            b = time.perf_counter()
            dispatch_id = doc["dispatches"][0]["dispatch_id"]
            with cond:
                if not cond.wait_for(lambda i=dispatch_id: i in rang, 10):
                    raise RuntimeError(f"{device} never rang for {dispatch_id}")
                c = rang[dispatch_id]
            out["http"].append((b - a) * 1000)
            out["ring"].append((c - a) * 1000)
            out["after_http"].append(max(0.0, c - b) * 1000)
            out["reach"].append((reached[dispatch_id] - a) * 1000)
            out["handler"].append((c - reached[dispatch_id]) * 1000)
            api.ok("POST", f"/api/v1/incidents/{iid}/close", {"note": "bench"})
    finally:
        for agent in running:
            agent.stop()
        st.stop()
    out["broker"] = broker_one_way(broker.host, broker.port, rounds)
    return out


# --- 2. the live feed: processes -----------------------------------------------------------------


def generator(host: str, port: int, devices: list[tuple[str, bytes]], rate: int,
              seconds: float, seq_base: int, conn: Connection) -> None:
    """Pre-seal ``rate × seconds`` Position frames round-robin over the devices, then publish
    each at its time (QoS 0). Sends ("t0", t0) as soon as the schedule is fixed, then
    ("done", stats)."""
    import paho.mqtt.client as paho
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol import DeviceEndpoint, Position

    # Sealing a Position uses only the MAC key; the agent's signing key signs checkpoints.
    dummy = Ed25519PrivateKey.generate()
    endpoints = [DeviceEndpoint(device_id=d, key_id=1, mac_key=mac, signing_key=dummy,
                                server_key=dummy.public_key()) for d, mac in devices]
    n, t = int(rate * seconds), len(endpoints)

    def seal(i: int, t0_ms: float) -> tuple[str, bytes]:
        at = int(t0_ms + i * 1000 / rate)
        d = i % t
        fix = Fix(time_ms=at, lat=LAT0 + (d % 100) * 5e-4, lon=LON0 + (d // 100 % 100) * 5e-4,
                  accuracy_m=5.0, speed_mps=0.0)
        out = endpoints[d].seal(Position(fix=fix), seq=seq_base + i // t + 1, sent_ms=at)
        return out.topic, out.payload

    a = time.perf_counter()
    for i in range(min(n, 2000)):
        seal(i, time.time() * 1000)
    per = (time.perf_counter() - a) / min(n, 2000)
    t0 = time.time() + 1.5 + per * n * 1.3
    conn.send(("t0", t0))
    frames = [seal(i, t0 * 1000) for i in range(n)]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"gen-{os.getpid()}",
                         protocol=paho.MQTTv5)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    late = time.time() - t0  # > 0: sealing overran the schedule
    lag = array("d")
    k = 0
    while k < n:
        now = time.time()
        due = min(n, int((now - t0) * rate) + 1)
        if due <= k:
            time.sleep(min(0.002, (k / rate + t0) - now))
            continue
        lag.append((now - (t0 + k / rate)) * 1000)  # the oldest due frame of this burst
        for topic, payload in frames[k:due]:
            info = client.publish(topic, payload, qos=0)
        k = due
    info.wait_for_publish(30)
    end = time.time()
    client.loop_stop()
    client.disconnect()
    conn.send(("done", {"n": n, "rate": n / (end - t0), "late_s": late, "end": end,
                        "lag_p99": pct(lag, 0.99), "lag_max": max(lag)}))


def paho_subscriber(host: str, port: int, conn: Connection) -> None:
    """The bare reference: a paho QoS 0 subscriber that only reads the frame's sent_ms."""
    import msgpack
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    lat = array("d")
    times = array("d")

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        now = time.time() * 1000
        sent = msgpack.unpackb(message.payload[2:-16])[4]  # [type, party, key, seq, sent_ms, ..]
        lat.append(now - sent)
        times.append(now)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ref-{os.getpid()}",
                         protocol=paho.MQTTv5)
    client.on_message = on_message
    client.connect(host, port)
    client.subscribe("yj/1/up/#", qos=0)
    client.loop_start()
    conn.send(("ready", 0))
    conn.recv()  # stop
    client.loop_stop()
    conn.send(("done", {"lat": lat.tobytes(), "times": times.tobytes()}))


def ws_client(url: str, token: str, conn: Connection) -> None:
    asyncio.run(_ws_client(url, token, conn))


async def _ws_client(url: str, token: str, conn: Connection) -> None:
    """Latency of every terminal doc whose fix time is inside the window the parent sets."""
    import aiohttp

    lat = array("d")
    window: tuple[float, float] | None = None
    updates, first, last = 0, 0.0, 0.0
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session, session.ws_connect(
        url + "/api/v1/live", headers=headers, max_msg_size=0, heartbeat=None
    ) as ws:
        hello = json.loads((await ws.receive()).data)
        conn.send(("ready", len(hello["terminals"])))
        while True:
            if conn.poll():
                command = conn.recv()
                if command[0] == "stop":
                    break
                window = command[1], command[2]
            try:
                msg = await ws.receive(timeout=0.05)
            except TimeoutError:
                continue
            now = time.time() * 1000  # before parsing: the doc arrived now
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            doc = json.loads(msg.data)
            if doc["type"] != "update" or window is None:
                continue
            seen = 0
            for terminal in doc["terminals"]:
                fix = terminal["fix"]
                if fix is not None and window[0] <= fix["time_ms"] <= window[1]:
                    lat.append(now - fix["time_ms"])
                    seen += 1
            if seen:
                updates += 1
                first = first or now
                last = now
    conn.send(("done", {"lat": lat.tobytes(), "updates": updates, "first": first,
                        "last": last}))


def spawn(target: Any, *args: Any) -> tuple[Any, Connection]:
    parent, child = mp.get_context("spawn").Pipe()
    process = mp.get_context("spawn").Process(target=target, args=(*args, child), daemon=True)
    process.start()
    return process, parent


def floats(data: bytes) -> array[float]:
    out = array("d")
    out.frombytes(data)
    return out


# --- 2. the live feed: runs ----------------------------------------------------------------------


def reference_run(broker: Any, devices: list[tuple[str, bytes]], rate: int,
                  seconds: float) -> dict[str, Any]:
    """The same load, before the server subscribes, to mosquitto_sub and a bare paho
    subscriber at once (each its own process)."""
    n = int(rate * seconds)
    exe = shutil.which("mosquitto_sub") or "mosquitto_sub"
    sub = subprocess.Popen([exe, "-h", broker.host, "-p", str(broker.port), "-t", "yj/1/up/#",
                            "-C", str(n), "-W", str(int(seconds * 3 + 30))],
                           stdout=subprocess.DEVNULL)
    exited: list[float] = []
    waiter = threading.Thread(target=lambda: (sub.wait(), exited.append(time.time())))
    waiter.start()
    ref, ref_pipe = spawn(paho_subscriber, broker.host, broker.port)
    ref_pipe.recv()
    gen, pipe = spawn(generator, broker.host, broker.port, devices, rate, seconds, 0)
    t0 = pipe.recv()[1]
    out: dict[str, Any] = {"gen": pipe.recv()[1]}
    gen.join()
    waiter.join()
    out["c_s"] = exited[0] - t0 if sub.returncode == 0 else None
    time.sleep(2.0)  # the paho subscriber may still be reading
    ref_pipe.send("stop")
    got = ref_pipe.recv()[1]
    ref.join()
    lat, times = floats(got["lat"]), floats(got["times"])
    out["paho_n"], out["paho_lat"] = len(lat), lat
    out["paho_s"] = times[-1] / 1000 - t0 if times else float("nan")
    return out


def feed_run(server: Any, devices: list[tuple[str, bytes]], rate: int, seconds: float,
             seq_base: int, api: Api) -> dict[str, Any]:
    broker = server.broker_address
    ws, ws_pipe = spawn(ws_client, server.url, server.first_admin_token)
    ws_pipe.recv()
    gen, pipe = spawn(generator, broker.host, broker.port, devices, rate, seconds, seq_base)
    t0 = pipe.recv()[1]
    ws_pipe.send(("window", t0 * 1000, (t0 + seconds) * 1000))
    n = int(rate * seconds)
    time.sleep(max(0.0, t0 - time.time()))
    s0 = api.ok("GET", "/api/v1/stats")["stored"]
    time.sleep(max(0.0, t0 + seconds - time.time()))
    s1 = api.ok("GET", "/api/v1/stats")["stored"]
    t1 = time.time()
    gen_stats = pipe.recv()[1]
    gen.join()
    stats = api.ok("GET", "/api/v1/stats")
    still = 0.0
    while stats["stored"] < s0 + n and still < 5.0 and time.time() - t1 < 180:
        time.sleep(0.5)
        now = api.ok("GET", "/api/v1/stats")
        still = still + 0.5 if now["stored"] == stats["stored"] else 0.0
        stats = now
    drained = time.time() - t1 - still
    time.sleep(0.5)  # the last coalesced update
    ws_pipe.send(("stop",))
    got = ws_pipe.recv()[1]
    ws.join()
    lat = floats(got["lat"])
    span = (got["last"] - got["first"]) / 1000
    return {"n": n, "gen": gen_stats, "stored_rate": (s1 - s0) / seconds,
            "stored": stats["stored"] - s0, "drained_s": drained, "lat": lat,
            "docs_rate": len(lat) / span if span > 0 else 0.0, "received": stats["received"]}


def setup_feed(server: Any, identities: list[Any]) -> None:
    from server.org.model import Terminal, Unit, UnitLevel

    for identity in progress(identities, len(identities), "registering terminals"):
        server.register_device(identity)
    now_ms = int(time.time() * 1000)
    with server.org.batch("bench terminals") as tables:
        for unit in station(Unit, UnitLevel):
            tables.put_unit(unit)
        for identity in identities:
            tables.put_terminal(Terminal(identity.device_id, STATION), at_ms=now_ms)
    time.sleep(6)  # the live map reads the directory every 5 s (server.app.LIVE_DUTY_S)


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="dispatches timed")
    parser.add_argument("--agents", type=int, default=4, help="agents dispatched in turn")
    parser.add_argument("--terminals", type=int, default=10_000)
    parser.add_argument("--rates", default="10000",
                        help="offered fixes/s end to end (part 2), comma-separated")
    parser.add_argument("--feed-rates", default="2000,5000,10000,20000",
                        help="fixes/s applied to the live feed (part 3), comma-separated")
    parser.add_argument("--watchers", type=int, default=1, help="WebSocket clients in part 3")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each rate")
    parser.add_argument("--skip", action="append", default=[],
                        choices=("dispatch", "e2e", "feed"), help="leave a part out (repeatable)")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]

    import logging

    import aiohttp
    import paho.mqtt

    from provisioning import new_device
    from yijing.broker import start_local_broker

    logging.basicConfig(level=logging.WARNING)
    print(f"# dispatch bench — {cpu_model()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
          f"paho-mqtt {paho.mqtt.__version__}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = start_local_broker(tmp / "broker")
        version = subprocess.run([shutil.which("mosquitto") or "mosquitto", "-h"],
                                 capture_output=True, text=True).stdout.split("\n")[0]
        print(f"broker: {broker.kind} ({version.strip()})")
        try:
            if "dispatch" not in args.skip:
                d = dispatch_run(tmp, broker, args.rounds, args.agents)
                print(f"\n## 1. officer's request → terminal ({args.rounds} dispatches, "
                      f"{args.agents} agents in turn), ms")
                print("| measured | p50 | p90 | p99 | max |")
                print("| --- | ---: | ---: | ---: | ---: |")
                print(f"| POST …/dispatches → HTTP 201 received | {quantiles(d['http'])} |")
                print(f"| **POST …/dispatches → agent's dispatch listener** | "
                      f"{quantiles(d['ring'])} |")
                print(f"| of which after the HTTP answer | {quantiles(d['after_http'])} |")
                print(f"| POST → command in the agent's handler (verified) | "
                      f"{quantiles(d['reach'])} |")
                print(f"| agent's handler → listener (durable 'delivered' first) | "
                      f"{quantiles(d['handler'])} |")
                print(f"| reference: broker one-way, paho → paho, 300 B QoS 1 | "
                      f"{quantiles(d['broker'])} |")
            if "e2e" not in args.skip:
                feed(broker, tmp, args.terminals, rates, args.seconds, new_device)
            if "feed" not in args.skip:
                from live_feed_bench import live_feed

                live_feed(broker, tmp, args.terminals,
                          [int(r) for r in args.feed_rates.split(",")], args.seconds,
                          args.watchers)
        finally:
            broker.stop()


def feed(broker: Any, tmp: Path, terminals: int, rates: list[int], seconds: float,
         new_device: Any) -> None:
    identities = [new_device(f"t{d:05d}") for d in progress(range(terminals), terminals,
                                                            "identities")]
    devices = [(i.device_id, i.mac_key) for i in identities]
    refs = {rate: reference_run(broker, devices, rate, seconds) for rate in rates}
    st = ServerThread(tmp / "server-feed", broker.url)
    server = st.server
    results = {}
    try:
        setup_feed(server, identities)
        api = Api(server.url, server.first_admin_token)
        seq_base = 0
        warm = feed_run(server, devices, min(rates), terminals / min(rates), seq_base, api)
        seq_base += -(-warm["n"] // terminals)
        print(f"\nwarm-up: {warm['stored']} of {warm['n']} fixes stored (every terminal once)")
        for rate in rates:
            results[rate] = r = feed_run(server, devices, rate, seconds, seq_base, api)
            seq_base += -(-r["n"] // terminals)
            print(f"{rate}/s: stored {r['stored']}/{r['n']}, p99 {pct(r['lat'], 0.99):.0f} ms",
                  flush=True)
    finally:
        st.stop()
    print(f"\n## 2. fix published → WebSocket client ({terminals:,} terminals, {seconds:.0f} s "
          "per rate, QoS 0 generator in its own process)")
    print("| offered /s | published /s | generator lag p99 ms | stored /s | stored / offered | "
          "drain after s | WS docs /s | p50 ms | p90 ms | p99 ms | max ms | kept up |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for rate, r in results.items():
        kept = r["stored_rate"] >= 0.95 * rate and pct(r["lat"], 0.99) < 250
        print(f"| {rate:,} | {r['gen']['rate']:,.0f} | {r['gen']['lag_p99']:.0f} | "
              f"{r['stored_rate']:,.0f} | {r['stored']:,}/{r['n']:,} | {r['drained_s']:.1f} | "
              f"{r['docs_rate']:,.0f} | {quantiles(r['lat'])} | {'yes' if kept else 'no'} |")
    print(f"\nreference, same run, same load, no server subscribed (the last of the {seconds:.0f} s"
          " of fixes is published at t0 + that):")
    print("| offered /s | published /s | mosquitto_sub (C): all delivered at t0 + s | "
          "paho sub: received | last at t0 + s | p50 ms | p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rate, ref in refs.items():
        c = f"{ref['c_s']:.2f}" if ref["c_s"] is not None else "never (some lost)"
        print(f"| {rate:,} | {ref['gen']['rate']:,.0f} | {c} | {ref['paho_n']:,}/"
              f"{int(rate * seconds):,} | {ref['paho_s']:.2f} | {pct(ref['paho_lat'], 0.5):.1f} | "
              f"{pct(ref['paho_lat'], 0.99):.1f} |")


if __name__ == "__main__":
    main()
