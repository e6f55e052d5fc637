"""The MQTT will marks a terminal offline when its agent dies; it comes back on restart."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning import write_enrolment
from tests.helpers import enrol, wait_until
from yijing.broker import LocalBroker

pytestmark = pytest.mark.e2e


def _state(server, device: str) -> dict:
    for terminal in server.live.snapshot():
        if terminal["device"] == device:
            return terminal
    return {}


def test_killed_or_stopped_agent_is_shown_offline_and_online_again_after_restart(
    tmp_path: Path, broker: LocalBroker, server_factory
) -> None:
    server = server_factory(broker).server
    bundle = tmp_path / "ft-0007.json"
    write_enrolment(bundle, enrol(server, "ft-0007", broker))
    command = [
        sys.executable,
        "-m",
        "yijing.cli",
        "agent",
        "--enrolment",
        str(bundle),
        "--data",
        str(tmp_path / "agent"),
        "--simulate",
        "22.5431,114.0579",
        "--interval-moving",
        "0.2",
        "--interval-still",
        "0.2",
        "--min-distance",
        "0",
    ]
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _state(server, "ft-0007").get("online") is True, 20, "online")
        wait_until(lambda: _state(server, "ft-0007").get("fix") is not None, 20, "a fix")
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        # The broker publishes the will when the connection drops (MQTT 5 §3.1.2.5).
        wait_until(lambda: _state(server, "ft-0007").get("online") is False, 20, "offline")

        agent = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: _state(server, "ft-0007").get("online") is True, 20, "online again")
        # An orderly stop says "offline" too (DISCONNECT with the will, MQTT 5 §3.14.2.1).
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0
        wait_until(lambda: _state(server, "ft-0007").get("online") is False, 20, "offline")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        log.close()
