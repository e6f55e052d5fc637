"""A spot check end to end: real Mosquitto, a real server, two real agents.

The server does not wire spot checks yet (server/app.py will), so this test assembles what
that wiring will do: ``send`` signs the roll call with the server's endpoint and publishes it
on the server's link, and the ingest thread's ``on_accepted`` also feeds the service.

The service's clock is the real one plus an offset the test can move: the agents judge the
roll call's deadline on their own (real) clock, and the test steps past the deadline without
sleeping through it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.agent import Agent
from agent.camera.capture import Camera
from agent.camera.policy import SnapPolicy
from agent.camera.worker import CameraWorker
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from protocol import RollCall
from server.app import Server
from server.ingest import Accepted
from server.org.model import Shift, Terminal, UnitLevel
from server.spotcheck.model import FRESH_FIX_S, TargetResult
from server.spotcheck.service import SpotChecks
from tests.agent.camera.video import write_video
from tests.conftest import ServerThread
from tests.helpers import enrol, wait_until
from yijing.broker import LocalBroker

from .support import FakeOrg

pytestmark = pytest.mark.e2e


class OffsetClock:
    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


def _online(server: Server, device: str, online: bool) -> bool:
    terminals = {t["device"]: t for t in server.live.snapshot()}
    return device in terminals and terminals[device]["online"] is online


def test_an_agent_answers_in_time_and_a_stopped_one_is_missed(
    tmp_path: Path, broker: LocalBroker, server_factory: Callable[..., ServerThread]
) -> None:
    server = server_factory(broker).server
    now_ms = int(time.time()) * 1000
    org = FakeOrg()
    org.add_unit("sz", UnitLevel.CITY)
    org.add_unit("futian", UnitLevel.DISTRICT, "sz")
    org.add_unit("s1", UnitLevel.STATION, "futian")
    org.post_units["p-1"] = "s1"
    for n in ("a", "b"):
        org.terminals[f"ft-{n}"] = Terminal(f"ft-{n}", "s1", holder=f"v-{n}")
        org.all_shifts.append(
            Shift(f"sh-{n}", f"v-{n}", "p-1", now_ms - 3_600_000, now_ms + 3_600_000, f"ft-{n}")
        )

    def send(device: str, call: RollCall) -> None:
        assert server.link is not None
        out = server.endpoint.command(device, call, sent_ms=call.sent_ms)
        server.link.publish(out.topic, out.payload, qos=1)

    clock = OffsetClock()
    checks = SpotChecks(path=tmp_path / "spotchecks.db", org=org, send=send, clock=clock)
    feed_live = server.ingest._on_accepted

    def fan_out(batch: list[Accepted]) -> None:
        feed_live(batch)
        checks.on_accepted(batch)

    server.ingest._on_accepted = fan_out

    policy = ReportingPolicy(interval_moving_s=1, interval_still_s=1, min_distance_m=0)
    agents = {
        n: Agent(
            enrol(server, f"ft-{n}", broker),
            tmp_path / f"agent-{n}",
            source=SimulatedWalker(22.5431, 114.0579, seed=i),
            policy=policy,
        )
        for i, n in enumerate("ab")
    }
    video = write_video(tmp_path / "patrol.avi", frames=120, width=320, height=180)
    # Only pictures on request: no periodic ones to confuse which picture answered.
    camera = CameraWorker(
        agents["a"],
        Camera(source=video, loop=True),
        policy=SnapPolicy(periodic_s=3600, min_interval_s=3600, scene_threshold=1.0),
        frame_interval_s=0.1,
    )
    for agent in agents.values():
        agent.start()
    camera.start()
    b_stopped = False
    try:
        for device in ("ft-a", "ft-b"):
            wait_until(functools.partial(_online, server, device, True), 30, f"{device} online")
        agents["b"].stop()
        b_stopped = True
        wait_until(lambda: _online(server, "ft-b", False), 30, "ft-b offline")

        check = checks.create(
            by="Inspector Wang",
            unit_id="s1",
            devices=["ft-a", "ft-b"],
            deadline_s=60,
            want_snapshot=True,
        )
        assert [t.result for t in check.targets] == [TargetResult.PENDING] * 2

        def a_answered() -> bool:
            got = checks.check(check.check_id)
            return got is not None and got.targets[0].result is TargetResult.ANSWERED

        wait_until(a_answered, 30, "ft-a's answer and picture")
        got = checks.check(check.check_id)
        assert got is not None
        a, b = got.targets
        assert b.result is TargetResult.PENDING  # the deadline has not passed yet

        clock.offset_s = 61.0  # past the deadline, on the service's clock
        got = checks.check(check.check_id)
        assert got is not None
        a, b = got.targets
        assert (a.device_id, a.result, a.volunteer_id, a.shift_id) == (
            "ft-a",
            TargetResult.ANSWERED,
            "v-a",
            "sh-a",
        )
        assert a.answered_ms is not None and a.answered_ms <= got.deadline_ms
        assert a.fix is not None and a.fix.time_ms >= a.sent_ms - FRESH_FIX_S * 1000
        assert a.snapshot_sha256 is not None
        assert server.snapshot_files.path(a.snapshot_sha256).is_file()
        assert (b.device_id, b.result, b.reason) == ("ft-b", TargetResult.MISSED, "no answer")
        assert (got.answered, got.answer_rate) == (1, 0.5)
        assert checks.answer_stats() == {"v-a": (1, 1), "v-b": (1, 0)}
        assert checks.requests("ft-b", None, None) == [(b.sent_ms, got.deadline_ms, None)]
    finally:
        camera.close()
        agents["a"].stop()
        if not b_stopped:
            agents["b"].stop()
        server.ingest._on_accepted = feed_live
        checks.close()
    assert not server.ingest.stats.rejected
