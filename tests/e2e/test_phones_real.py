"""Phones end to end with real parts: OwnTracks over a real Mosquitto (paho plays the app,
publishing the booklet's JSON, encrypted with libsodium's secretbox as the app does), Traccar
Client's OsmAnd requests over real HTTP, the server's live map, duty and spot checks.

And nothing lost, nothing counted twice: a phone keeps publishing at QoS 1 while the server
is killed with SIGKILL and started again; every report is stored exactly once, because the
server's phone session stays with the broker and each delivery is acknowledged only after
the store's commit.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from protocol import owntracks
from provisioning.phones import Phone, PhoneApp, PhoneRegistry
from server.duty.geo import Circle
from server.org.model import Post, PostKind, Unit, UnitLevel, Volunteer
from tests.e2e.processes import Processes
from tests.helpers import call, wait_until
from yijing.broker import LocalBroker, free_port

pytestmark = pytest.mark.e2e

LAT, LON = 22.5431, 114.0579


def location(tst: float, lat: float = LAT, lon: float = LON, **extra: Any) -> bytes:
    """The booklet's location message (owntracks.org/booklet/tech/json/)."""
    doc = {"_type": "location", "acc": 8, "batt": 77, "bs": 1, "conn": "m", "lat": lat,
           "lon": lon, "t": "u", "tid": "v1", "tst": int(tst), "vel": 3, **extra}  # fmt: skip
    return json.dumps(doc).encode()


class OwnTracksPhone:
    """paho doing what the OwnTracks app does: QoS 1 publishes to owntracks/<user>/<device>,
    a subscription to its cmd topic, payloads sealed with the phone's key."""

    def __init__(self, broker: LocalBroker, phone: Phone) -> None:
        self.phone = phone
        self.cmds: list[dict[str, Any]] = []
        self.got_cmd = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ot-{phone.phone_id}")
        self.client.on_message = self._message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(owntracks.cmd_topic(phone.mqtt_user, phone.owntracks_device), 1)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        key = self.phone.secret_key
        assert key is not None
        report = owntracks_open(bytes(message.payload), key)
        self.cmds.append(report)
        self.got_cmd.set()

    def publish(self, payload: bytes) -> None:
        assert self.phone.secret_key is not None
        sealed = owntracks.encrypt(payload, self.phone.secret_key)
        self.client.publish(self.phone.topic, sealed, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def owntracks_open(payload: bytes, key: bytes) -> dict[str, Any]:
    import base64

    import nacl.secret

    data = base64.b64decode(json.loads(payload)["data"])
    opened: dict[str, Any] = json.loads(nacl.secret.SecretBox(key).decrypt(data[24:], data[:24]))
    return opened


def organise(server: Any) -> None:
    """A station; v1 (phone only) on a running shift at a post around (LAT, LON)."""
    org = server.org
    org.put_unit(Unit("sz", "深圳市", UnitLevel.CITY))
    org.put_unit(Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"))
    org.put_unit(Unit("ftpcs", "福田派出所", UnitLevel.STATION, "ft"))
    org.put_volunteer(Volunteer("v1", "李明", "ftpcs"))
    org.put_volunteer(Volunteer("v2", "王芳", "ftpcs"))
    org.put_post(Post("p1", "岗位1", PostKind.DUTY_POINT, "ftpcs", Circle(LAT, LON, 300)))


def test_owntracks_and_traccar_phones_on_the_map_on_duty_and_answering_roll_calls(
    broker: LocalBroker, server_factory: Any
) -> None:
    st = server_factory(broker)
    server = st.server
    organise(server)
    # Enrolled on the admin page (the REST call behind it): the answer is the app's code.
    status, enrolled = call(server, "POST", "/api/v1/phones", {"volunteer_id": "v1"})
    assert status == 200, enrolled
    assert enrolled["qr"].startswith("owntracks:///config?inline=")
    phone = server.phones.get("ph-v1")
    assert phone is not None and phone.secret_key is not None
    status, traccar = call(
        server, "POST", "/api/v1/phones", {"volunteer_id": "v2", "app": "traccar"}
    )
    assert status == 200, traccar
    traccar_id = traccar["config"]["device_id"]
    # Enrolment made each phone a terminal of its volunteer; then a shift on the post.
    terminal = server.org.terminal("ph-v1")
    assert terminal is not None and terminal.kind.value == "phone" and terminal.holder == "v1"
    start_ms = (int(time.time()) - 60) * 1000
    server.org.put_shift(server.org.make_shift("s1", "v1", "p1", start_ms, start_ms + 3_600_000))
    server.duty.refresh()

    ot = OwnTracksPhone(broker, phone)
    try:
        ot.publish(location(time.time() - 1))

        def on_map(device: str, status: str) -> dict[str, Any] | None:
            docs = call(server, "GET", "/api/v1/terminals")[1]["terminals"]
            found = [d for d in docs if d["device"] == device]
            return found[0] if found and found[0]["status"] == status else None

        wait_until(lambda: server.phones.ingress.stats.stored == 1, 20, "the OwnTracks fix stored")
        server._refresh_live_duty()
        wait_until(
            lambda: on_map("ph-v1", "on_post") is not None, 20, "the phone on post on the live map"
        )
        doc = on_map("ph-v1", "on_post")
        assert doc is not None
        assert doc["kind"] == "phone" and doc["signed"] is False
        assert doc["volunteer"]["name"] == "李明" and doc["battery_pct"] == 77
        (now,) = call(server, "GET", "/api/v1/duty/now")[1]["shifts"]
        assert now["shift_id"] == "s1" and now["phone"] is True

        # A phone is proposed for a dispatch (to be called), but cannot take one: the send
        # fails at once and the dispatch's steps say why.
        status, incident = call(
            server, "POST", "/api/v1/incidents",
            {"kind": "dispute", "priority": 2, "lat": LAT, "lon": LON, "note": "phone"},
        )  # fmt: skip
        assert status == 201, incident
        iid = incident["incident_id"]
        proposals = call(server, "GET", f"/api/v1/incidents/{iid}/proposals")[1]
        found = [c for circle in proposals["circles"] for c in circle["candidates"]]
        assert [(c["device_id"], c["kind"]) for c in found] == [("ph-v1", "phone")]
        status, sent = call(
            server, "POST", f"/api/v1/incidents/{iid}/dispatches", {"device_ids": ["ph-v1"]}
        )
        assert status in (200, 201), sent
        wait_until(
            lambda: "is a phone" in json.dumps(call(server, "GET", f"/api/v1/incidents/{iid}")[1]),
            10,
            "the failed send recorded with its reason",
        )

        # Traccar Client: an OsmAnd GET, answered only once stored.
        query = urllib.parse.urlencode(
            {
                "id": traccar_id,
                "timestamp": int(time.time()),
                "lat": LAT + 0.001,
                "lon": LON,
                "speed": "1.0",
                "batt": "55",
            }
        )
        with urllib.request.urlopen(f"{server.url}/pub/osmand?{query}", timeout=10) as reply:
            assert reply.status == 200 and reply.read() == b""
        assert server.store.fix_count("ph-v2") == 1
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(
                f"{server.url}/pub/osmand?id={traccar_id}&timestamp=1765000000&lat=x&lon=1",
                timeout=10,
            )
        assert refused.value.code == 400
        assert "lat" in json.loads(refused.value.read())["error"]

        # A roll call: the phone is sent reportLocation and answers with a fresh fix.
        status, created = call(
            server, "POST", "/api/v1/spotchecks",
            {"unit": "ftpcs", "devices": ["ph-v1"], "deadline_s": 120},
        )  # fmt: skip
        assert status == 201, created
        check = created["check"]
        assert check["targets"][0]["error"] is None, check
        assert ot.got_cmd.wait(10), "no reportLocation reached the phone"
        assert ot.cmds[0] == {"_type": "cmd", "action": "reportLocation"}
        ot.publish(location(time.time(), t="r"))

        def answered() -> bool:
            doc = call(server, "GET", f"/api/v1/spotchecks/{check['check_id']}")[1]["check"]
            return bool(doc["answered"] == 1)

        wait_until(answered, 20, "the roll call answered by the phone")
    finally:
        ot.close()


def test_phone_reports_survive_a_killed_server_stored_exactly_once(
    tmp_path: Path, broker: LocalBroker
) -> None:
    data = tmp_path / "server"
    data.mkdir()
    registry = PhoneRegistry(data / "phones.db")
    phone, _ = registry.enrol(
        volunteer_id="v1", unit_id="ftpcs", app=PhoneApp.OWNTRACKS, now_ms=int(time.time() * 1000)
    )
    registry.close()
    procs = Processes(tmp_path)
    port = free_port()
    args = ["server", "--data", str(data), "--port", str(port), "--broker", broker.url]
    try:
        server = procs.start("server", *args)
        server.wait_for_output("yijing server on", 60)
        ot = OwnTracksPhone(broker, phone)
        sent = 0
        t0 = int(time.time()) - 3000
        try:
            for round_ in range(3):
                for _ in range(100):  # one report a second of the phone's time
                    ot.publish(location(t0 + sent))
                    sent += 1
                if round_ == 0:
                    server.kill()  # mid-stream: what the broker holds must not be lost
                elif round_ == 1:
                    server = procs.start("server", *args)
                    server.wait_for_output("yijing server on", 60)
        finally:
            ot.close()

        def stored() -> int:
            with sqlite3.connect(f"file:{data / 'yijing.db'}?mode=ro", uri=True) as db:
                return int(
                    db.execute(
                        "SELECT count(*) FROM frames WHERE device_id=?", ("ph-v1",)
                    ).fetchone()[0]
                )

        wait_until(lambda: stored() == sent, 60, f"all {sent} phone reports stored")
        with sqlite3.connect(f"file:{data / 'yijing.db'}?mode=ro", uri=True) as db:
            fixes = db.execute(
                "SELECT count(*), count(DISTINCT time_ms) FROM positions WHERE device_id=?",
                ("ph-v1",),
            ).fetchone()
        assert tuple(fixes) == (sent, sent)  # each once
    finally:
        procs.close()
