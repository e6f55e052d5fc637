"""`yijing server --workers 2`: two ingest processes share the uplink through an MQTT 5 shared
subscription. Every fix is stored exactly once, the one live map shows every terminal, the
counters add up — and a worker killed with -9 is started again while the terminals resend
what it had not acknowledged."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.agent import Agent
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from tests.helpers import enrol, outbox_pending, wait_until
from yijing.broker import LocalBroker

pytestmark = pytest.mark.e2e

FAST = ReportingPolicy(interval_moving_s=0.2, interval_still_s=0.2, min_distance_m=0.0)
DEVICES = ("ft-w-1", "ft-w-2", "ft-w-3")


def accepted_fixes(outbox: Path) -> int:
    with sqlite3.connect(outbox) as db:
        (n,) = db.execute("SELECT value FROM meta WHERE key='fixes_accepted'").fetchone()
    return int(n)


# Workers on both MQTT engines: Mosquitto's C client (the default where installed) and paho.
@pytest.mark.parametrize("engine", ["mosquitto", "paho"])
def test_two_workers_store_everything_once(
    tmp_path: Path, broker: LocalBroker, server_factory: Callable[..., Any], engine: str
) -> None:
    st = server_factory(broker, workers=2, mqtt_engine=engine)
    server = st.server
    assert server.workers is not None and len(server.workers.pids()) == 2
    assert {c.mqtt_engine for c in server.workers._configs} == {engine}
    enrolments = {d: enrol(server, d, broker) for d in DEVICES}

    def run_agents() -> list[Agent]:
        agents = [
            Agent(
                enrolments[d],
                tmp_path / d,
                source=SimulatedWalker(22.5431 + i * 1e-3, 114.0579, seed=i),
                policy=FAST,
            )
            for i, d in enumerate(DEVICES)
        ]
        for a in agents:
            a.start()
        return agents

    agents = run_agents()
    try:
        for d in DEVICES:
            wait_until(lambda d=d: server.store.frame_count(d) >= 15, 30, f"{d}'s frames")
        # One live map, fed by both workers.
        wait_until(lambda: all(server.live.get(d) for d in DEVICES), 10, "every terminal live")
        # Kill one worker as the OOM killer would; it comes back, and nothing is lost.
        victim = server.workers.pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: server.workers.restarts >= 1, 20, "the worker started again")
        before = {d: server.store.frame_count(d) for d in DEVICES}
        for d in DEVICES:
            wait_until(lambda d=d: server.store.frame_count(d) > before[d], 30, f"{d} again")
    finally:
        for a in agents:
            a.stop()
    drain = run_agents()
    try:
        for d in DEVICES:
            wait_until(lambda d=d: outbox_pending(tmp_path / d / "outbox.db") == 0, 30, "drained")
    finally:
        for a in drain:
            a.stop()

    store_db = server.config.data_dir / "yijing.db"
    with sqlite3.connect(f"file:{store_db}?mode=ro", uri=True) as db:
        for d in DEVICES:
            query = "SELECT count(*) FROM positions WHERE device_id=?"
            (fixes,) = db.execute(query, (d,)).fetchone()
            # Every fix the agent accepted, once: (device, seq) is the key, so none twice.
            assert fixes == accepted_fixes(tmp_path / d / "outbox.db"), d
    # One live map from two workers: each terminal on it once, and its marker at its newest
    # stored fix (no update lost to the other worker's older batch arriving later).
    with sqlite3.connect(f"file:{store_db}?mode=ro", uri=True) as db:
        newest = dict(
            db.execute("SELECT device_id, max(time_ms) FROM positions GROUP BY device_id")
        )
    on_map = [t["device"] for t in server.live.snapshot() if t["device"] in DEVICES]
    assert sorted(on_map) == sorted(DEVICES)
    for d in DEVICES:
        wait_until(
            lambda d=d: ((server.live.get(d) or {}).get("fix") or {}).get("time_ms") == newest[d],
            5,
            f"{d}'s marker at its newest fix",
        )
    wait_until(lambda: server.ingest.stats.stored > 0, 5, "the workers' counters")
    stats = server.ingest.stats
    assert stats.stored + stats.duplicates <= stats.received
