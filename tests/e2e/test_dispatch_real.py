"""Dispatch end to end with real parts: agents on real Mosquitto, the server, the REST API.

A fight breaks out near two volunteers on duty. The officer creates the incident, sees them
in the 1/3/5-minute circles, sends the nearest; the terminal rings, the volunteer accepts and
walks there, the server sees them arrive, the officer closes it — every step audited. A
dispatch to a terminal that has lost its link expires, and when the terminal comes back it
never rings, whether the broker dropped the expired command or (a broker that ignores MQTT 5
expiry) delivered it late.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.agent import Agent
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker, offset
from protocol import DispatchCommand, EventKind, IncidentKind, ResponseStatus
from server.duty.geo import Circle
from server.org.model import Post, PostKind, Terminal, Unit, UnitLevel, Volunteer
from tests.helpers import call, enrol, wait_until
from yijing.broker import LocalBroker
from yijing.mqtt import MqttLink

pytestmark = pytest.mark.e2e

LAT, LON = 22.5431, 114.0579
FAST = ReportingPolicy(interval_moving_s=1, interval_still_s=1, heartbeat_s=2, min_distance_m=0)


def get(server: Any, path: str) -> Any:
    status, doc = call(server, "GET", path)
    assert status == 200, doc
    return doc


def organise(server: Any, volunteers: list[tuple[str, str, tuple[float, float]]]) -> None:
    """A station, and each volunteer on a running shift at a post of their own."""
    org = server.org
    now_ms = int(time.time() * 1000)
    org.put_unit(Unit("sz", "深圳市", UnitLevel.CITY))
    org.put_unit(Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"))
    org.put_unit(Unit("ftpcs", "福田派出所", UnitLevel.STATION, "ft"))
    start_ms = (now_ms // 1000 - 30) * 1000
    for i, (vid, device, (lat, lon)) in enumerate(volunteers):
        org.put_volunteer(Volunteer(vid, f"志愿者{i + 1}", "ftpcs"))
        org.put_terminal(Terminal(device, "ftpcs", holder=vid), at_ms=now_ms)
        org.put_post(Post(f"p{i}", f"岗位{i}", PostKind.DUTY_POINT, "ftpcs", Circle(lat, lon, 300)))
        org.put_shift(org.make_shift(f"s{i}", vid, f"p{i}", start_ms, start_ms + 3_600_000))
    server.duty.refresh()


class Ringer:
    """Records what rang on a terminal (the dispatch listener runs on the agent's thread)."""

    def __init__(self, agent: Agent) -> None:
        self.rang: list[DispatchCommand] = []
        self.event = threading.Event()
        agent.dispatch_listeners.append(self._ring)

    def _ring(self, command: DispatchCommand) -> None:
        self.rang.append(command)
        self.event.set()


def start_agent(
    server: Any, broker: LocalBroker, tmp_path: Path, device: str, walker: SimulatedWalker
) -> Agent:
    agent = Agent(enrol(server, device, broker), tmp_path / device, source=walker, policy=FAST)
    agent.start()
    return agent


def candidates(server: Any, incident_id: str) -> dict[str, dict[str, Any]]:
    proposal = get(server, f"/api/v1/incidents/{incident_id}/proposals")
    return {
        c["device_id"]: {**c, "minutes": circle["minutes"]}
        for circle in proposal["circles"]
        for c in circle["candidates"]
    }


def test_dispatch_accept_arrive_close(
    tmp_path: Path, broker: LocalBroker, server_factory: Any
) -> None:
    server = server_factory(broker).server
    near = offset(LAT, LON, 40, 0)  # within a minute's walk of the scene
    far = offset(LAT, LON, 0, 120)  # within three minutes' walk
    organise(server, [("v1", "ft-0001", near), ("v2", "ft-0002", far)])
    walker = SimulatedWalker(*near, radius_m=5, speed_mps=15, seed=1)
    a = start_agent(server, broker, tmp_path, "ft-0001", walker)
    b = start_agent(server, broker, tmp_path, "ft-0002", SimulatedWalker(*far, radius_m=5, seed=2))
    ringer = Ringer(a)
    try:

        def both_on_post() -> bool:
            docs = get(server, "/api/v1/terminals")["terminals"]
            return sum(d["status"] == "on_post" for d in docs) == 2

        wait_until(both_on_post, 30, "both terminals on post on the live map")
        status, incident = call(
            server,
            "POST",
            "/api/v1/incidents",
            {"kind": "fight", "priority": 1, "lat": LAT, "lon": LON, "note": "酒吧街斗殴"},
        )
        assert status == 201, incident
        iid = incident["incident_id"]
        found = candidates(server, iid)
        assert set(found) == {"ft-0001", "ft-0002"}
        assert found["ft-0001"]["minutes"] == 1 and found["ft-0002"]["minutes"] == 3
        assert found["ft-0001"]["name"] == "志愿者1"

        sent_at = time.monotonic()
        status, doc = call(
            server, "POST", f"/api/v1/incidents/{iid}/dispatches", {"device_ids": ["ft-0001"]}
        )
        assert status == 201, doc
        (dispatch,) = doc["dispatches"]
        assert ringer.event.wait(10), "the terminal never rang"
        ring_s = time.monotonic() - sent_at
        assert ringer.rang[0].dispatch_id == dispatch["dispatch_id"]
        assert ringer.rang[0].kind is IncidentKind.FIGHT and ringer.rang[0].note == "酒吧街斗殴"

        def state() -> str:
            doc = get(server, f"/api/v1/incidents/{iid}")
            return str(doc["dispatches"][0]["state"])

        wait_until(lambda: state() == "delivered", 10, "delivered")
        # Engaged terminals are not proposed again.
        assert "ft-0001" not in candidates(server, iid)
        a.submit(lambda: a.answer_dispatch(ResponseStatus.ACCEPTED))
        # Within a minute's walk is nearly on scene already: accepted may turn to on scene
        # with the next fix.
        wait_until(lambda: state() in ("accepted", "on_scene"), 10, "accepted")
        cmd = ringer.rang[0]
        a.submit(lambda: walker.go_to(cmd.lat, cmd.lon))
        wait_until(lambda: state() == "on_scene", 30, "on scene, seen by position")

        status, closed = call(server, "POST", f"/api/v1/incidents/{iid}/close", {"note": "已处置"})
        assert status == 200, closed
        full = get(server, f"/api/v1/incidents/{iid}")
        assert full["state"] == "closed" and full["dispatches"][0]["state"] == "closed"
        steps = [s["step"] for s in full["steps"]]
        for step in ("opened", "dispatched", "delivered", "accepted", "on_scene", "closed"):
            assert step in steps, (step, steps)
        assert steps.index("dispatched") < steps.index("delivered") < steps.index("accepted")
        assert steps.index("accepted") < steps.index("on_scene") < steps.index("closed")
        d = full["dispatches"][0]
        assert d["sent_ms"] <= d["delivered_ms"] <= d["accepted_ms"] <= d["on_scene_ms"]
        assert ring_s < 5
    finally:
        a.stop()
        b.stop()


def test_sos_shows_until_acknowledged(
    tmp_path: Path, broker: LocalBroker, server_factory: Any
) -> None:
    server = server_factory(broker).server
    organise(server, [("v1", "ft-0001", (LAT, LON))])
    a = start_agent(server, broker, tmp_path, "ft-0001", SimulatedWalker(LAT, LON, seed=4))
    try:
        wait_until(lambda: bool(get(server, "/api/v1/terminals")["terminals"]), 20, "online")
        before = server.ingest.stats.stored
        a.submit(lambda: a.raise_event(EventKind.SOS))

        def open_alerts() -> list[dict[str, Any]]:
            return list(get(server, "/api/v1/alerts?state=open")["alerts"])

        wait_until(lambda: server.ingest.stats.stored > before and bool(open_alerts()), 10, "SOS")
        (alert,) = open_alerts()
        assert alert["device_id"] == "ft-0001" and alert["name"] == "志愿者1"
        doc = next(t for t in get(server, "/api/v1/terminals")["terminals"])
        assert doc["status"] == "sos"
        status, acked = call(
            server, "POST", f"/api/v1/alerts/{alert['alert_id']}/ack", {"note": "已联系"}
        )
        assert status == 200, acked
        assert open_alerts() == []
        wait_until(
            lambda: get(server, "/api/v1/terminals")["terminals"][0]["status"] != "sos",
            5,
            "the SOS cleared from the map",
        )
    finally:
        a.stop()


def test_a_stale_dispatch_never_rings(
    tmp_path: Path, broker: LocalBroker, server_factory: Any
) -> None:
    """The terminal loses its link right after being chosen; the dispatch expires on the
    server; when the terminal comes back nothing rings — whether the broker dropped the
    command at its MQTT 5 expiry or, like a broker that ignores expiry, handed it over late."""
    server = server_factory(broker).server
    organise(server, [("v1", "ft-0001", (LAT, LON))])
    enrolment = enrol(server, "ft-0001", broker)
    policy = FAST
    a = Agent(enrolment, tmp_path / "a", source=SimulatedWalker(LAT, LON, seed=5), policy=policy)
    a.start()
    try:
        wait_until(
            lambda: any(
                d["status"] == "on_post" for d in get(server, "/api/v1/terminals")["terminals"]
            ),
            30,
            "on post",
        )
        # The 4G link drops without a will (the broker has not noticed yet): still proposed.
        a.link.stop(with_will=False)
        status, incident = call(
            server,
            "POST",
            "/api/v1/incidents",
            {"kind": "medical", "priority": 1, "lat": LAT, "lon": LON, "auto_escalate": False},
        )
        assert status == 201, incident
        iid = incident["incident_id"]
        status, doc = call(
            server,
            "POST",
            f"/api/v1/incidents/{iid}/dispatches",
            {"device_ids": ["ft-0001"], "ttl_s": 30},  # the shortest a dispatch stands,
        )
        assert status == 201, doc
        dispatch_id = doc["dispatches"][0]["dispatch_id"]
        wait_until(
            lambda: get(server, f"/api/v1/incidents/{iid}")["dispatches"][0]["state"] == "expired",
            40,
            "the dispatch expired on the server",
        )
        # A broker that ignores expiry: the same signed command, queued with no expiry.
        stale = server.endpoint.command(
            "ft-0001",
            DispatchCommand(
                dispatch_id="d-stale",
                incident_id=iid,
                kind=IncidentKind.MEDICAL,
                priority=1,
                lat=LAT,
                lon=LON,
                sent_ms=int(time.time() * 1000) - 5000,
                expires_ms=int(time.time() * 1000) - 1000,
            ),
            sent_ms=int(time.time() * 1000) - 5000,
        )
        raw = MqttLink(client_id="old-broker", host=broker.host, port=broker.port)
        raw.start()
        raw.wait_connected(10)
        raw.publish(stale.topic, stale.payload, qos=1)
        time.sleep(0.5)
        raw.stop()
    finally:
        a.stop()
    # Back online: the same client id resumes its broker session.
    back = Agent(enrolment, tmp_path / "a", source=SimulatedWalker(LAT, LON, seed=5), policy=policy)
    ringer = Ringer(back)
    back.start()
    try:
        wait_until(lambda: back.stats.expired_dispatches >= 1, 15, "the late command refused")
        time.sleep(1.0)
        assert ringer.rang == [] and back.active_dispatch is None
        full = get(server, f"/api/v1/incidents/{iid}")
        assert full["dispatches"][0]["dispatch_id"] == dispatch_id
        assert full["dispatches"][0]["state"] == "expired"
        assert "expired" in [s["step"] for s in full["steps"]]
    finally:
        back.stop()
