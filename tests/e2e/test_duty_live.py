"""Duty end to end: a real agent walks its post through real Mosquitto; the server's live
figures show it on post, and once the agent stops they equal the recomputation from the
store, to the second."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.agent import Agent
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from server.duty.geo import Circle
from server.duty.rules import Segment, State, clip
from server.org.model import Post, PostKind, Terminal, Unit, UnitLevel, Volunteer
from tests.helpers import enrol, wait_until
from yijing.broker import LocalBroker

pytestmark = pytest.mark.e2e

LAT, LON = 22.5431, 114.0579


def get(server: Any, path: str) -> Any:
    request = urllib.request.Request(
        server.url + path, headers={"Authorization": f"Bearer {server.first_admin_token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_live_on_post_then_equal_to_recomputation(
    tmp_path: Path, broker: LocalBroker, server_factory: Any
) -> None:
    server = server_factory(broker).server
    org = server.org
    now_ms = int(time.time() * 1000)
    org.put_unit(Unit("sz", "深圳市", UnitLevel.CITY))
    org.put_unit(Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"))
    org.put_unit(Unit("ftpcs", "福田派出所", UnitLevel.STATION, "ft"))
    org.put_volunteer(Volunteer("v1", "李明", "ftpcs"))
    org.put_terminal(Terminal("ft-0001", "ftpcs", holder="v1"), at_ms=now_ms)
    org.put_post(
        Post("p1", "正义街1号", PostKind.DUTY_POINT, "ftpcs", Circle(LAT, LON, 500.0))
    )
    start_ms = (now_ms // 1000 - 30) * 1000
    shift = org.make_shift("s1", "v1", "p1", start_ms, start_ms + 3_600_000)
    assert shift.device_id == "ft-0001"
    org.put_shift(shift)
    server.duty.refresh()

    enrolment = enrol(server, "ft-0001", broker)
    agent = Agent(
        enrolment,
        tmp_path / "agent",
        source=SimulatedWalker(LAT, LON, seed=3),
        policy=ReportingPolicy(interval_moving_s=1, interval_still_s=2, heartbeat_s=2),
    )
    agent.start()
    try:
        def on_post() -> bool:
            now = get(server, "/api/v1/duty/now")
            return bool(now["shifts"]) and now["shifts"][0]["state"] == "on_post"

        wait_until(on_post, 30, "the shift on post in /api/v1/duty/now")
        now = get(server, "/api/v1/duty/now")
        assert now["on_post"] == 1
        assert now["shifts"][0]["volunteer_id"] == "v1"
    finally:
        agent.stop()
    # Frames in flight when the agent stopped still land; wait until nothing more does.
    counts = [-1]

    def settled() -> bool:
        counts.append(server.store.frame_count("ft-0001"))
        time.sleep(0.5)
        return counts[-1] == counts[-2]

    wait_until(settled, 30, "ingest to settle")

    live = get(server, "/api/v1/duty/shifts/s1")
    assert live["source"] == "live"
    recomputed = server.duty.recompute(org.shift("s1"))
    # Both count the running shift up to "now", read a moment apart: compare up to the earlier.
    end_s = min(live["end_s"], recomputed.end_s)
    live_segments = [
        Segment(s["start_s"], s["end_s"], State[s["state"].upper()]) for s in live["segments"]
    ]
    assert clip(live_segments, end_s) == clip(list(recomputed.segments), end_s)
    assert recomputed.tally.on_post_s > 0
