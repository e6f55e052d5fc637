"""Snapshots end to end: OpenCV reads a real video file, the agent snaps and sends, the server
verifies and stores the picture by content, and an SOS brings a picture of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.agent import Agent
from agent.camera.capture import Camera
from agent.camera.policy import SnapPolicy
from agent.camera.worker import CameraWorker
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from protocol import EventKind
from tests.agent.camera.video import write_video
from tests.helpers import enrol, wait_until
from yijing.broker import LocalBroker

pytestmark = pytest.mark.e2e


def test_pictures_reach_the_station_and_an_sos_brings_one(
    tmp_path: Path, broker: LocalBroker, server_factory
) -> None:
    server = server_factory(broker).server
    video = write_video(tmp_path / "patrol.avi", frames=300, width=320, height=180)
    agent = Agent(
        enrol(server, "ft-cam-1", broker),
        tmp_path / "agent",
        source=SimulatedWalker(22.5431, 114.0579, seed=9),
        policy=ReportingPolicy(interval_moving_s=1, interval_still_s=1, min_distance_m=0),
    )
    worker = CameraWorker(
        agent,
        Camera(source=video, loop=True),
        policy=SnapPolicy(periodic_s=1, min_interval_s=0.5, forced_min_interval_s=0.2),
        frame_interval_s=0.1,
    )
    agent.start()
    worker.start()
    try:
        wait_until(lambda: len(server.store.snapshots("ft-cam-1")) >= 2, 30, "two snapshots")
        agent.submit(lambda: agent.raise_event(EventKind.SOS))
        wait_until(
            lambda: any(m.trigger == "event" for m in server.store.snapshots("ft-cam-1")),
            30,
            "the SOS snapshot",
        )
    finally:
        worker.close()
        agent.stop()
    for meta in server.store.snapshots("ft-cam-1"):
        jpeg = server.snapshot_files.path(meta.sha256).read_bytes()
        assert jpeg[:2] == b"\xff\xd8" and len(jpeg) == meta.size
        assert (meta.width, meta.height) == (320, 180)
        assert meta.lat is not None  # each picture carries where it was taken
    assert not server.ingest.stats.rejected
    live = {t["device"]: t for t in server.live.snapshot()}["ft-cam-1"]
    assert live["snapshot"]["url"].startswith("/api/v1/snapshots/")
