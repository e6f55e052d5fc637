"""The whole path on PostgreSQL: a real agent, a real Mosquitto, ``Server`` with
``store_url=postgresql://…``; every fix the agent recorded is stored once, in its day's
partition, and the live map and the track read it back."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent.agent import Agent
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from tests.helpers import enrol, outbox_pending, wait_until
from tests.server.pg_support import fresh_database
from yijing.broker import LocalBroker

pytestmark = pytest.mark.e2e

FAST = ReportingPolicy(interval_moving_s=0.2, interval_still_s=0.2, min_distance_m=0.0)


def test_fixes_reach_postgresql_once(
    tmp_path: Path, broker: LocalBroker, server_factory: Callable[..., Any]
) -> None:
    with fresh_database() as conninfo:
        db_name = psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"]
        url = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
        st = server_factory(broker, store_url=url)
        server = st.server
        enrolment = enrol(server, "ft-pg-1", broker)
        agent = Agent(
            enrolment, tmp_path / "agent", source=SimulatedWalker(22.5431, 114.0579), policy=FAST
        )
        agent.start()
        try:
            wait_until(lambda: server.store.frame_count("ft-pg-1") >= 20, 30, "frames stored")
        finally:
            agent.stop()
        # Restarted, the agent drains what the stop left unacknowledged.
        again = Agent(
            enrolment, tmp_path / "agent", source=SimulatedWalker(22.5431, 114.0579), policy=FAST
        )
        again.start()
        try:
            wait_until(lambda: outbox_pending(tmp_path / "agent" / "outbox.db") == 0, 30, "drained")
        finally:
            again.stop()
        with sqlite3.connect(tmp_path / "agent" / "outbox.db") as outbox:
            (accepted,) = outbox.execute(
                "SELECT value FROM meta WHERE key='fixes_accepted'"
            ).fetchone()
        with psycopg.connect(url) as db:
            dupes = db.execute(
                "SELECT count(*) FROM (SELECT device_id, seq FROM frames "
                "GROUP BY 1, 2 HAVING count(*) > 1) d"
            ).fetchone()
            partitions = db.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'positions'::regclass"
            ).fetchone()
            stored_fixes = db.execute(
                "SELECT count(*) FROM positions WHERE device_id='ft-pg-1'"
            ).fetchone()
        assert dupes == (0,)
        assert partitions is not None and partitions[0] >= 2  # today's day + the default
        # Every fix the agent accepted is stored, once (nothing was evicted: no disk pressure).
        assert stored_fixes == (accepted,)
        track = server.store.track("ft-pg-1", limit=100_000)
        assert len(track) == stored_fixes[0]
        assert server.live.get("ft-pg-1") is not None
