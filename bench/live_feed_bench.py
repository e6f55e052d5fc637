#!/usr/bin/env python3
"""Part 3 of ``bench/dispatch_bench.py``: the live feed alone, without the broker and ingest.

A real ``Server`` (its asyncio loop in a thread, as part 2 starts it) with T terminals in one
station. A feeder thread *in the server's process* does what ingest does after storing: every
20 ms (ingest's ``batch_wait_s``) it hands ``LiveState.apply`` one batch of ``Accepted``
``Position`` frames, at most ``batch_max`` = 1,000, spread round-robin over the terminals at R
fixes/s for D seconds, each fix's ``time_ms`` and ``received_ms`` the moment its batch is
built. From there it is the server's own path: ``Hub`` → each watcher's coalescing (at most one
update every ``UPDATE_INTERVAL_S``) → the ``/api/v1/live`` handler → JSON → WebSocket. W clients
(``ws_client`` of dispatch_bench, each its own process) record now − ``fix.time_ms`` for every
terminal doc received. The feeder shares the server's GIL, as ingest's thread does (a
conservative condition: building the batches is the benchmark's own cost).

Run alone: ``.venv/bin/python bench/dispatch_bench.py --skip dispatch --skip e2e``.
"""

from __future__ import annotations

import threading
import time
from array import array
from pathlib import Path
from typing import Any

from dispatch_bench import (
    LAT0,
    LON0,
    STATION,
    ServerThread,
    floats,
    pct,
    progress,
    quantiles,
    spawn,
    station,
    ws_client,
)

from protocol import Fix, Position

BATCH_S = 0.02  # ingest's batch_wait_s
BATCH_MAX = 1000  # ingest's batch_max


def feeder(live: Any, devices: list[str], rate: int, seconds: float, t0: float, seq0: int,
           out: dict[str, Any]) -> None:
    """On its own thread: every ``BATCH_S`` what is due by then, in batches of at most
    ``BATCH_MAX``."""
    from server.ingest import Accepted

    n, t = int(rate * seconds), len(devices)
    lag = array("d")
    apply_cpu = 0.0
    k = 0
    time.sleep(max(0.0, t0 - time.time()))
    cpu0 = time.thread_time()
    while k < n:
        now = time.time()
        due = min(n, int((now - t0) * rate), k + BATCH_MAX)
        if due <= k:
            time.sleep(BATCH_S - (now - t0) % BATCH_S)
            continue
        lag.append((now - (t0 + (k + 1) / rate)) * 1000)  # the oldest fix of the batch
        now_ms = int(now * 1000)
        batch = []
        for i in range(k, due):
            d, lap = i % t, i // t
            fix = Fix(time_ms=now_ms, lat=LAT0 + (d % 100) * 5e-4 + (lap % 10) * 1e-5,
                      lon=LON0 + (d // 100 % 100) * 5e-4, accuracy_m=5.0, speed_mps=0.0)
            batch.append(Accepted(devices[d], seq0 + lap + 1, Position(fix=fix), now_ms))
        c = time.thread_time()
        live.apply(batch)
        apply_cpu += time.thread_time() - c
        k = due
        if int((time.time() - t0) * rate) < k + BATCH_MAX:  # not a full batch behind
            time.sleep(BATCH_S - (time.time() - t0) % BATCH_S)
    out.update(end=time.time(), n=n, lag=lag, apply_cpu=apply_cpu,
               cpu=time.thread_time() - cpu0)


def cpu_times(tids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of this process and of the named live threads (by native id)."""
    import psutil

    process = psutil.Process()
    times = process.cpu_times()
    out = {"process": times.user + times.system}
    by_id = {th.id: th.user_time + th.system_time for th in process.threads()}
    for name, tid in tids.items():
        out[name] = by_id.get(tid, 0.0)
    return out


def client_cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def live_run(st: ServerThread, devices: list[str], rate: int, seconds: float, watchers: int,
             seq0: int) -> dict[str, Any]:
    server = st.server
    clients = [spawn(ws_client, server.url, server.first_admin_token) for _ in range(watchers)]
    for _, pipe in clients:
        pipe.recv()  # "ready": the hello with every terminal has arrived
    t0 = time.time() + 1.0
    for _, pipe in clients:
        pipe.send(("window", t0 * 1000, (t0 + seconds + 120) * 1000))
    fed: dict[str, Any] = {}
    thread = threading.Thread(target=feeder, name="feeder", daemon=True,
                              args=(server.live, devices, rate, seconds, t0, seq0, fed))
    thread.start()
    time.sleep(max(0.0, t0 - time.time()))
    tids = {"loop": st.thread.native_id}
    c0, w0 = cpu_times(tids), time.time()
    k0 = [client_cpu(process.pid) for process, _ in clients]
    thread.join()
    c1, w1 = cpu_times(tids), time.time()
    k1 = [client_cpu(process.pid) for process, _ in clients]
    time.sleep(1.0)  # the last coalesced update
    got = []
    for process, pipe in clients:
        pipe.send(("stop",))
        got.append(pipe.recv()[1])
        process.join()
    wall = w1 - w0
    cpu = {name: (c1[name] - c0[name]) / wall * 100 for name in c0}
    cpu["apply"] = fed["apply_cpu"] / wall * 100
    cpu["feeder"] = fed["cpu"] / wall * 100
    cpu["clients"] = [(b - a) / wall * 100 for a, b in zip(k0, k1, strict=True)]
    per = []
    for g in got:
        span = (g["last"] - g["first"]) / 1000
        lat = floats(g["lat"])
        per.append({"lat": lat, "docs_rate": len(lat) / span if span > 0 else 0.0,
                    "updates_rate": g["updates"] / span if span > 0 else 0.0})
    return {"n": fed["n"], "applied_rate": fed["n"] / (fed["end"] - t0), "lag": fed["lag"],
            "cpu": cpu, "per": per, "lat": array("d", (x for p in per for x in p["lat"]))}


def setup(server: Any, devices: list[str]) -> None:
    """The terminals in one station (so they are on the map of its unit), then one fix each
    before anyone watches, so every terminal is in the live state and the hello."""
    from server.ingest import Accepted
    from server.org.model import Terminal, Unit, UnitLevel

    now_ms = int(time.time() * 1000)
    with server.org.batch("bench terminals") as tables:
        for unit in station(Unit, UnitLevel):
            tables.put_unit(unit)
        for device in devices:
            tables.put_terminal(Terminal(device, STATION), at_ms=now_ms)
    time.sleep(6)  # the live map reads the directory every 5 s (server.app.LIVE_DUTY_S)
    fix = Fix(time_ms=now_ms, lat=LAT0, lon=LON0, accuracy_m=5.0, speed_mps=0.0)
    for i in range(0, len(devices), BATCH_MAX):
        server.live.apply([Accepted(d, 1, Position(fix=fix), now_ms)
                           for d in devices[i:i + BATCH_MAX]])
    docs = server.live.snapshot([STATION])
    if len(docs) != len(devices):
        raise RuntimeError(f"{len(docs)} of {len(devices)} terminals on the station's map")


def live_feed(broker: Any, tmp: Path, terminals: int, rates: list[int], seconds: float,
              watchers: int) -> None:
    from server.live import UPDATE_INTERVAL_S

    devices = [f"t{d:05d}" for d in range(terminals)]
    st = ServerThread(tmp / "server-live", broker.url)
    results = {}
    try:
        setup(st.server, devices)
        seq0 = 1
        for rate in progress(rates, len(rates), "live feed rates"):
            results[rate] = r = live_run(st, devices, rate, seconds, watchers, seq0)
            seq0 += -(-r["n"] // terminals)
            print(f"{rate}/s: applied {r['applied_rate']:,.0f}/s, p99 "
                  f"{pct(r['lat'], 0.99):.0f} ms", flush=True)
    finally:
        st.stop()
    print(f"\n## 3. LiveState.apply → WebSocket client ({terminals:,} terminals in one unit, "
          f"{seconds:.0f} s per rate, {watchers} watcher(s) in own processes, update interval "
          f"{UPDATE_INTERVAL_S} s, batches every {BATCH_S * 1000:.0f} ms)")
    print("| offered /s | applied /s | feeder lag p99 ms | docs /s per watcher | "
          "received / applied | updates /s per watcher | p50 ms | p90 ms | p99 ms | max ms | "
          "server CPU % | loop thread % | apply % | feeder other % | client CPU % |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
          "---: | ---: | ---: |")
    for rate, r in results.items():
        per, cpu = r["per"], r["cpu"]
        docs = " / ".join(f"{p['docs_rate']:,.0f}" for p in per)
        received = min(len(p["lat"]) for p in per) / r["n"]
        updates = " / ".join(f"{p['updates_rate']:.1f}" for p in per)
        print(f"| {rate:,} | {r['applied_rate']:,.0f} | {pct(r['lag'], 0.99):.0f} | {docs} | "
              f"{received:.3f} | {updates} | {quantiles(r['lat'])} | {cpu['process']:.0f} | "
              f"{cpu['loop']:.0f} | {cpu['apply']:.0f} | {cpu['feeder'] - cpu['apply']:.0f} | "
              f"{' / '.join(f'{c:.0f}' for c in cpu['clients'])} |")
    print("(CPU: % of one CPU over the feeding; 'feeder other' is building the batches, the "
          "benchmark's own cost. received / applied: the fewest docs any watcher received.)")
