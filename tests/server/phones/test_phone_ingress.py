"""Phone ingest against the real SQLite store and phone registry: what is stored, once, and
what the live feed, duty and spot checks are told.

Payloads are the apps' documented ones (OwnTracks booklet "JSON" page; Traccar's
OsmAndProtocolDecoderTest and Traccar Client 9's JSON template), with this test's times.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from protocol import (
    Event,
    EventKind,
    Position,
    Presence,
    PresenceKind,
    RollCall,
    RollCallAnswer,
    owntracks,
)
from provisioning.phones import Phone, PhoneApp, PhoneRegistry
from server.ingest import Accepted
from server.phones.frames import OSMAND_TYPE, OWNTRACKS_TYPE, seq_of
from server.phones.ingress import PhoneIngress, PhoneRefused
from server.sqlite_store import SqliteStore
from server.store import FixFlag, IncomingFrame

NOW_S = 1_765_000_000  # 2025-12-06
NOW_MS = NOW_S * 1000


def location(tst: int, **extra: Any) -> bytes:
    """The booklet's location example (owntracks.org/booklet/tech/json/), at ``tst``."""
    doc = {
        "_type": "location",
        "acc": 13,
        "alt": 28,
        "batt": 82,
        "bs": 1,
        "conn": "m",
        "lat": 22.5431,
        "lon": 114.0579,
        "t": "u",
        "tid": "v1",
        "tst": tst,
        "vac": 3,
        "vel": 4,
        **extra,
    }
    return json.dumps(doc).encode()


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.store = SqliteStore(tmp_path / "yijing.db")
        self.registry_path = tmp_path / "phones.db"
        self.registry = PhoneRegistry(self.registry_path)
        self.stored: list[IncomingFrame] = []
        self.accepted: list[Accepted] = []
        self.cmds: list[tuple[str, bytes, int]] = []
        self.now = float(NOW_S)
        self.ingress = PhoneIngress(
            self.store,
            self.registry_path,
            on_stored=self.stored.extend,
            on_accepted=self.accepted.extend,
            publish_cmd=lambda topic, payload, expiry: self.cmds.append((topic, payload, expiry)),
            clock=lambda: self.now,
        )

    def enrol(self, volunteer: str, app: PhoneApp, *, encrypt: bool = False) -> tuple[Phone, str]:
        return self.registry.enrol(
            volunteer_id=volunteer, unit_id="ftpcs", app=app, now_ms=NOW_MS, encrypt=encrypt
        )

    def mqtt(self, phone: Phone, payload: bytes, acks: list[int] | None = None) -> None:
        def ack() -> None:
            if acks is not None:
                acks.append(1)

        self.ingress.owntracks_mqtt(phone.topic, payload, ack)
        self.drain()

    def drain(self) -> None:
        batch = []
        while True:
            item = self.ingress._queue.get_nowait() if self.ingress.queue_depth() else None
            if item is None:
                break
            batch.append(item)
        if batch:
            self.ingress.process(batch)

    def http(self, future: Future[bytes]) -> bytes:
        self.drain()
        return future.result(0)

    def close(self) -> None:
        self.ingress.close_registry()
        self.registry.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    r = Rig(tmp_path)
    yield r
    r.close()


def test_owntracks_location_is_stored_once_as_the_phone_sent_it(rig: Rig) -> None:
    phone, _ = rig.enrol("v1", PhoneApp.OWNTRACKS)
    payload = location(NOW_S - 10)
    acks: list[int] = []
    rig.mqtt(phone, payload, acks)
    rig.mqtt(phone, payload, acks)  # QoS 1 redelivery, or the app's resend
    assert acks == [1, 1]  # both PUBACKed: the first stored, the second a duplicate
    assert rig.store.frame_count(phone.phone_id) == 1
    assert rig.store.frame(phone.phone_id, (NOW_MS - 10_000) * 4) == payload
    points = rig.store.track(phone.phone_id)
    assert len(points) == 1
    fix = points[0].fix
    assert (fix.lat, fix.lon, fix.time_ms) == (22.5431, 114.0579, NOW_MS - 10_000)
    assert fix.accuracy_m == 13 and fix.alt_m == 28
    assert fix.speed_mps == pytest.approx(4 / 3.6, abs=0.01)  # vel is km/h
    assert rig.ingress.stats.stored == 1 and rig.ingress.stats.duplicates == 1
    assert [f.type_code for f in rig.stored] == [OWNTRACKS_TYPE]  # duty told once
    kinds = [type(a.message) for a in rig.accepted]
    assert kinds == [Presence, Position]  # battery, then the marker
    battery = rig.accepted[0].message
    assert isinstance(battery, Presence) and battery.battery_pct == 82


def test_encrypted_owntracks_is_decrypted_and_stored_in_clear(rig: Rig) -> None:
    phone, _ = rig.enrol("v1", PhoneApp.OWNTRACKS, encrypt=True)
    assert phone.secret_key is not None
    clear = location(NOW_S - 5)
    rig.mqtt(phone, owntracks.encrypt(clear, phone.secret_key))
    assert rig.store.frame(phone.phone_id, seq_of_location(NOW_S - 5)) == clear


def seq_of_location(tst: int) -> int:
    return tst * 1000 * 4


def test_wrong_key_unknown_user_revoked_and_foreign_device_are_refused_and_counted(
    rig: Rig,
) -> None:
    phone, _ = rig.enrol("v1", PhoneApp.OWNTRACKS, encrypt=True)
    other, _ = rig.enrol("v2", PhoneApp.OWNTRACKS, encrypt=True)
    assert other.secret_key is not None
    acks: list[int] = []
    # Sealed with another phone's key.
    rig.mqtt(phone, owntracks.encrypt(location(NOW_S), other.secret_key), acks)
    rig.ingress.owntracks_mqtt("owntracks/nobody/phone", location(NOW_S), lambda: acks.append(1))
    rig.ingress.owntracks_mqtt(f"owntracks/{phone.mqtt_user}/tablet", location(NOW_S))
    rig.drain()
    rig.registry.revoke(phone.phone_id, now_ms=NOW_MS)
    rig.mqtt(phone, location(NOW_S - 1), acks)
    assert rig.store.frame_count() == 0
    assert acks == [1, 1, 1]  # refused for good: the broker need not keep them
    reasons = {reason for (_who, reason) in rig.ingress.stats.rejected}
    assert any("encrypted" in r or "key" in r for r in reasons), reasons
    assert any("no enrolled phone" in r for r in reasons)
    assert any("tablet" in r for r in reasons)
    day_rows = rig.store.rejections()
    assert sum(row[3] for row in day_rows) == 4


def test_owntracks_http_checks_the_password_and_answers_a_json_array(rig: Rig) -> None:
    phone, password = rig.enrol("v1", PhoneApp.OWNTRACKS)
    with pytest.raises(PhoneRefused) as refused:
        rig.http(rig.ingress.owntracks_http(phone.mqtt_user, "wrong", location(NOW_S)))
    assert refused.value.status == 401
    reply = rig.http(rig.ingress.owntracks_http(phone.mqtt_user, password, location(NOW_S)))
    assert json.loads(reply) == []
    assert rig.store.frame_count(phone.phone_id) == 1


def test_malformed_owntracks_http_is_a_400_naming_the_field(rig: Rig) -> None:
    phone, password = rig.enrol("v1", PhoneApp.OWNTRACKS)
    with pytest.raises(PhoneRefused) as refused:
        rig.http(rig.ingress.owntracks_http(phone.mqtt_user, password, location(NOW_S, lat=95)))
    assert refused.value.status == 400 and "lat" in str(refused.value)
    with pytest.raises(PhoneRefused) as refused:
        rig.http(rig.ingress.owntracks_http(phone.mqtt_user, password, b'{"_type":"location"'))
    assert refused.value.status == 400
    assert rig.store.frame_count() == 0


def test_traccar_query_and_json_are_stored_and_answered_empty(rig: Rig) -> None:
    phone, _ = rig.enrol("v2", PhoneApp.TRACCAR)
    # Traccar Client (Android, OsmAnd protocol): speed in knots.
    params = {
        "id": phone.traccar_id,
        "timestamp": str(NOW_S - 30),
        "lat": "22.5431",
        "lon": "114.0579",
        "speed": "2.0",
        "bearing": "90.0",
        "altitude": "12.0",
        "accuracy": "8.0",
        "batt": "64.0",
    }
    assert rig.http(rig.ingress.osmand(params=params)) == b""
    body = {
        "location": {
            "timestamp": "2025-12-06T05:46:20.000Z",  # NOW_S - 20
            "coords": {
                "latitude": 22.5432,
                "longitude": 114.058,
                "accuracy": 5,
                "speed": 1.5,
                "heading": 180,
                "altitude": 10,
            },
            "is_moving": True,
            "odometer": 0,
            "event": "motionchange",
            "battery": {"level": 0.64, "is_charging": False},
            "activity": {"type": "walking"},
        },
        "device_id": phone.traccar_id,
    }
    assert rig.http(rig.ingress.osmand(body=json.dumps(body).encode())) == b""
    points = rig.store.track(phone.phone_id)
    assert [p.fix.time_ms for p in points] == [NOW_MS - 30_000, NOW_MS - 20_000]
    assert points[0].fix.speed_mps == pytest.approx(2.0 * 0.514444, abs=0.01)
    assert {f.type_code for f in rig.stored} == {OSMAND_TYPE}


def test_traccar_unknown_id_malformed_and_stale_reports(rig: Rig) -> None:
    phone, _ = rig.enrol("v2", PhoneApp.TRACCAR)
    base = {"id": phone.traccar_id, "timestamp": str(NOW_S), "lat": "22.5", "lon": "114.0"}
    with pytest.raises(PhoneRefused) as refused:
        rig.http(rig.ingress.osmand(params={**base, "id": "yjguessedguessedguessedgu"}))
    assert refused.value.status == 403
    with pytest.raises(PhoneRefused) as refused:
        rig.http(rig.ingress.osmand(params={**base, "lat": "north"}))
    assert refused.value.status == 400 and "lat" in str(refused.value)
    # Older than the replay window: answered 200 (the app would retry a refusal for ever),
    # not stored, counted.
    stale = {**base, "timestamp": str(NOW_S - 31 * 86_400)}
    assert rig.http(rig.ingress.osmand(params=stale)) == b""
    assert rig.store.frame_count() == 0
    assert ("traccar?", "stale") in rig.ingress.stats.rejected or any(
        reason == "stale" for (_w, reason) in rig.ingress.stats.rejected
    )


def test_a_fix_from_the_future_is_kept_flagged(rig: Rig) -> None:
    phone, _ = rig.enrol("v1", PhoneApp.OWNTRACKS)
    rig.mqtt(phone, location(NOW_S + 3600))
    (frame,) = rig.stored
    assert frame.fix_flags == (int(FixFlag.FUTURE_TIME),)
    assert rig.store.latest_fixes() == {}  # flagged fixes never move the marker


def test_out_of_order_reports_are_all_kept(rig: Rig) -> None:
    phone, _ = rig.enrol("v1", PhoneApp.OWNTRACKS)
    for tst in (NOW_S - 10, NOW_S - 30, NOW_S - 20):
        rig.mqtt(phone, location(tst))
    assert [p.fix.time_ms // 1000 for p in rig.store.track(phone.phone_id)] == [
        NOW_S - 30,
        NOW_S - 20,
        NOW_S - 10,
    ]


def test_lwt_marks_the_phone_offline_without_storing(rig: Rig) -> None:
    phone, _ = rig.enrol("v1", PhoneApp.OWNTRACKS)
    rig.mqtt(phone, json.dumps({"_type": "lwt", "tst": NOW_S - 3600}).encode())
    assert rig.store.frame_count() == 0
    (offline,) = rig.accepted
    assert isinstance(offline.message, Presence)
    assert offline.message.kind is PresenceKind.OFFLINE


def test_transition_is_stored_as_evidence_without_a_fix(rig: Rig) -> None:
    phone, _ = rig.enrol("v1", PhoneApp.OWNTRACKS)
    transition = {
        "_type": "transition",
        "wtst": NOW_S - 86_400,
        "lat": 22.5431,
        "lon": 114.0579,
        "tst": NOW_S - 2,
        "acc": 10,
        "tid": "v1",
        "event": "enter",
        "desc": "Post 12",
        "t": "c",
    }
    rig.mqtt(phone, json.dumps(transition).encode())
    assert rig.store.frame_count(phone.phone_id) == 1
    assert rig.store.fix_count(phone.phone_id) == 0
    assert seq_of(_report(transition)) % 4 == 1  # a transition has its own seq slot


def _report(doc: dict[str, Any]) -> Any:
    return owntracks.decode(json.dumps(doc).encode(), key=None)


def test_roll_call_reaches_owntracks_and_the_next_fresh_fix_answers_it(rig: Rig) -> None:
    phone, password = rig.enrol("v1", PhoneApp.OWNTRACKS, encrypt=True)
    assert phone.secret_key is not None
    call = RollCall(rollcall_id="rc1", sent_ms=NOW_MS, deadline_ms=NOW_MS + 120_000)
    rig.ingress.roll_call(phone.phone_id, call)
    ((topic, payload, expiry_s),) = rig.cmds
    assert topic == f"owntracks/{phone.mqtt_user}/phone/cmd" and expiry_s == 120
    cmd = json.loads(owntracks_decrypt(payload, phone.secret_key))
    assert cmd == {"_type": "cmd", "action": "reportLocation"}
    # In HTTP mode the command rides on the reply to the phone's next post.
    reply = rig.http(
        rig.ingress.owntracks_http(
            phone.mqtt_user, password, owntracks.encrypt(location(NOW_S - 60), phone.secret_key)
        )
    )
    (sent,) = json.loads(reply)
    assert sent["_type"] == "encrypted"
    # That fix was made before the call: not an answer. The next one, made after, is.
    assert not [a for a in rig.accepted if isinstance(a.message, RollCallAnswer)]
    rig.mqtt(phone, owntracks.encrypt(location(NOW_S + 3, t="r"), phone.secret_key))
    (answer,) = [a for a in rig.accepted if isinstance(a.message, RollCallAnswer)]
    assert answer.device_id == phone.phone_id
    assert answer.message.rollcall_id == "rc1" and answer.message.fix is not None
    rig.mqtt(phone, owntracks.encrypt(location(NOW_S + 9), phone.secret_key))
    assert len([a for a in rig.accepted if isinstance(a.message, RollCallAnswer)]) == 1


def owntracks_decrypt(payload: bytes, key: bytes) -> bytes:
    import base64

    import nacl.secret

    data = base64.b64decode(json.loads(payload)["data"])
    return nacl.secret.SecretBox(key).decrypt(data[24:], data[:24])


def test_traccar_sos_raises_an_sos_event(rig: Rig) -> None:
    phone, _ = rig.enrol("v2", PhoneApp.TRACCAR)
    params = {
        "id": phone.traccar_id,
        "timestamp": str(NOW_S),
        "lat": "22.5431",
        "lon": "114.0579",
        "alarm": "sos",
    }
    rig.http(rig.ingress.osmand(params=params))
    events = [a.message for a in rig.accepted if isinstance(a.message, Event)]
    assert [e.kind for e in events] == [EventKind.SOS]
    assert events[0].fix is not None


def test_audit_prove_says_a_phone_fix_is_the_phones_word_only(
    rig: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from yijing.cli import main

    phone, _ = rig.enrol("v1", PhoneApp.OWNTRACKS)
    rig.mqtt(phone, location(NOW_S - 10))
    args = ["audit", "prove", "--data", str(tmp_path), "--device", phone.phone_id]
    assert main([*args, "--at", str(NOW_MS - 10_000)]) == 1
    err = capsys.readouterr().err
    assert "NOT PROVEN" in err and "phone report (OwnTracks)" in err
    assert '"_type": "location"' in err  # the report as the app sent it


def test_mqtt_reports_of_a_failed_batch_are_stored_once_the_store_is_back(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker holds an MQTT report until the PUBACK and sends it again only on a new
    connection: a batch the store refuses is taken again, not left waiting for that."""
    from server.errors import StoreError
    from server.phones import ingress as module
    from tests.helpers import wait_until

    monkeypatch.setattr(module, "RETRY_PAUSE_S", 0.01)
    phone, _ = rig.enrol("v1", PhoneApp.OWNTRACKS)
    real = rig.store.store_frames
    failures = iter([StoreError("disk full")])

    def flaky(frames: Any) -> Any:
        for exc in failures:
            raise exc
        return real(frames)

    monkeypatch.setattr(rig.store, "store_frames", flaky)
    acks: list[int] = []
    rig.ingress.start()
    try:
        rig.ingress.owntracks_mqtt(phone.topic, location(NOW_S - 5), lambda: acks.append(1))
        wait_until(lambda: acks == [1], 5, "the report stored and acknowledged after a retry")
        assert rig.store.frame_count(phone.phone_id) == 1
    finally:
        rig.ingress.stop()


def test_a_cancelled_http_request_does_not_spoil_its_batch(rig: Rig) -> None:
    phone, _ = rig.enrol("v2", PhoneApp.TRACCAR)
    futures = [
        rig.ingress.osmand(
            params={"id": phone.traccar_id, "timestamp": str(NOW_S - k), "lat": "22.5", "lon": "1"}
        )
        for k in range(3)
    ]
    futures[0].cancel()  # the phone hung up (or the server is stopping)
    rig.drain()
    assert [f.result(0) for f in futures[1:]] == [b"", b""]
    assert rig.store.frame_count(phone.phone_id) == 3
    assert len(rig.stored) == 3  # duty told of all three
