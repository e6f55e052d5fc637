"""Real Mosquitto 2.0.11 as ``start_secure_broker`` runs it, with the phone listener: phones
sign in with the passwords the registry issued, see only their own OwnTracks topics, lose them
when revoked (sync rewrite + SIGHUP); terminals keep signing in with certificates.

Also the record of what ``per_listener_settings false`` does with both listeners (see
``provisioning.broker_config``), and that our ``$7$`` hashes and ``mosquitto_passwd``'s agree.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning import new_device
from provisioning.identity import raw_public
from provisioning.phones import PhoneApp, PhoneRegistry, check_mosquitto_hash
from provisioning.pki import pem_cert, pem_key
from server.broker_sync import BrokerSync, Listen, start_secure_broker, station_ca
from server.sqlite_store import SqliteStore
from server.store import Device, DeviceKey
from tests.e2e.mqtt_probe import Probe, probe_tls
from tests.helpers import wait_until
from yijing.broker import LocalBroker, free_port

pytestmark = pytest.mark.e2e
NOT_AUTHORIZED = 0x87
T0 = 1_760_000_000_000


@dataclass
class Station:
    data: Path
    broker: LocalBroker
    sync: BrokerSync
    phone_port: int
    registry: PhoneRegistry  # the CLI's connection: another one than the sync's
    passwords: dict[str, str]

    def files(self, name: str) -> tuple[Path, Path]:
        if name == "server":
            pki = self.data / "pki"
            return pki / "server.pem", pki / "server-key.pem"
        return self.data / f"{name}.pem", self.data / f"{name}-key.pem"

    def enrol(self, volunteer: str, app: PhoneApp = PhoneApp.OWNTRACKS) -> str:
        phone, password = self.registry.enrol(
            volunteer_id=volunteer, unit_id="futian-s1", app=app, now_ms=T0
        )
        self.passwords[phone.phone_id] = password
        return phone.phone_id


@pytest.fixture
def station(tmp_path: Path, mosquitto_path: str) -> Iterator[Station]:
    data = tmp_path / "server"
    store = SqliteStore(data / "yijing.db")
    identity = new_device("ft-0001", units=("futian-s1",))
    store.add_device(
        Device("ft-0001", "", identity.units, T0),
        DeviceKey("ft-0001", 1, identity.mac_key, raw_public(identity.public_key)),
    )
    phone_port = free_port()
    # No phone yet: Mosquitto starts with an empty password file.
    broker, sync, _ = start_secure_broker(
        data, store, Listen("127.0.0.1", free_port()), Listen("127.0.0.1", phone_port)
    )
    assert (data / "broker-tls" / "passwd").read_text() == ""
    ca = station_ca(data)
    key, cert = ca.issue_terminal("ft-0001")
    assert key is not None
    (data / "ft-0001.pem").write_bytes(pem_cert(cert))
    (data / "ft-0001-key.pem").write_bytes(pem_key(key))
    registry = PhoneRegistry(data / "phones.db")
    st = Station(data, broker, sync, phone_port, registry, {})
    st.enrol("a")
    st.enrol("b")
    st.enrol("t", PhoneApp.TRACCAR)
    # Enrolled after the start, as `yijing provision phone` would: the server's sync picks
    # the registry's new version up and reloads the broker.
    assert sync.sync() and sync.reloads == 1
    time.sleep(0.3)
    yield st
    broker.stop()
    sync.close()
    registry.close()
    store.close()


def connect(
    st: Station,
    *,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
    cert: str | None = None,
    client_id: str | None = None,
) -> Probe:
    """On the phone listener unless ``port``; with ``cert`` (a terminal's, "server") a TLS
    client certificate."""
    certfile, keyfile = st.files(cert) if cert else (None, None)
    return probe_tls(
        st.broker.host,
        port or st.phone_port,
        ca=st.data / "pki" / "ca.pem",
        client_id=client_id or f"t-{time.monotonic_ns()}",
        certfile=certfile,
        keyfile=keyfile,
        user=user,
        password=password,
    )


def phone(st: Station, phone_id: str, **kw: object) -> Probe:
    return connect(st, user=phone_id, password=st.passwords[phone_id], **kw)  # type: ignore[arg-type]


def server(st: Station) -> Probe:
    c = connect(st, port=st.broker.port, cert="server")
    assert c.connected
    return c


def test_a_phone_publishes_its_location_and_receives_its_commands(station: Station) -> None:
    srv = server(station)
    assert srv.subscribe("owntracks/+/+") == 1
    assert srv.subscribe("owntracks/+/+/event") == 1
    a = phone(station, "ph-a")
    assert a.connected
    assert a.subscribe("owntracks/ph-a/phone/cmd") == 1
    assert a.publish("owntracks/ph-a/phone", b'{"_type":"location"}') == 0
    assert a.publish("owntracks/ph-a/phone/event", b'{"_type":"transition"}') == 0
    assert a.accepted("owntracks/ph-a/phone/info", b'{"_type":"card"}')
    assert srv.publish("owntracks/ph-a/phone/cmd", b'{"_type":"cmd"}') == 0
    wait_until(lambda: len(srv.pumped(0.1).messages) >= 2, 5, "the server's messages")
    assert sorted(srv.messages) == [
        ("owntracks/ph-a/phone", b'{"_type":"location"}'),
        ("owntracks/ph-a/phone/event", b'{"_type":"transition"}'),
    ]
    wait_until(lambda: bool(a.pumped(0.1).messages), 5, "the phone's command")
    assert a.messages == [("owntracks/ph-a/phone/cmd", b'{"_type":"cmd"}')]


def test_a_phone_cannot_touch_anyone_elses_topics(station: Station) -> None:
    srv = server(station)
    assert srv.subscribe("#") == 1
    a, b = phone(station, "ph-a"), phone(station, "ph-b")
    assert a.connected and b.connected
    for topic in (
        "owntracks/ph-b/phone",  # another phone's location
        "owntracks/ph-a/phone/cmd",  # a command to itself
        "owntracks/ph-a/phone/waypoints",
        "yj/1/up/ft-0001/pos",  # a terminal's uplink
        "yj/1/down/ft-0001/cmd",
    ):
        assert a.publish(topic, b"forged") == NOT_AUTHORIZED, topic
    # Mosquitto 2.0.11 grants these subscriptions but checks read access on delivery.
    for topic_filter in ("owntracks/ph-b/phone/cmd", "owntracks/+/+", "#"):
        assert a.subscribe(topic_filter) in (1, NOT_AUTHORIZED)
    assert b.publish("owntracks/ph-b/phone", b"b's location") == 0
    assert srv.accepted("owntracks/ph-b/phone/cmd", b"for b only")
    assert srv.accepted("yj/1/unit/futian-s1/cmd", b"for terminals")
    for c in (srv, a, b):
        c.pump(0.5)
    assert a.messages == []
    assert not any(payload == b"forged" for _, payload in srv.messages)
    assert ("owntracks/ph-b/phone", b"b's location") in srv.messages


def test_only_the_right_credentials_on_the_right_listener(station: Station) -> None:
    cert_port = station.broker.port
    assert not connect(station, user="ph-a", password="wrong").connected
    assert not connect(station, user="ph-nobody", password="x").connected
    assert not connect(station).connected  # no credentials: allow_anonymous false
    assert not connect(station, port=cert_port).connected
    # The Traccar phone has a password in the registry but no MQTT: not in the password file.
    assert not phone(station, "ph-t").connected
    # A phone's password does not replace a certificate on the terminals' listener.
    assert not phone(station, "ph-a", port=cert_port).connected
    # A terminal's certificate counts for nothing on the phones' listener ...
    assert not connect(station, cert="ft-0001").connected
    assert not connect(station, cert="ft-0001", user="ft-0001").connected
    # ... and on its own listener it is its CN, whatever user name it claims.
    claimed = connect(
        station, port=cert_port, cert="ft-0001", user="ph-a", password=station.passwords["ph-a"]
    )
    assert claimed.connected
    assert claimed.publish("owntracks/ph-a/phone", b"forged") == NOT_AUTHORIZED
    assert claimed.accepted("yj/1/up/ft-0001/pos", b"fix")


def test_a_terminal_certificate_still_works(station: Station) -> None:
    srv = server(station)
    assert srv.subscribe("$share/yijing/yj/1/up/+/+") == 1
    terminal = connect(station, port=station.broker.port, cert="ft-0001")
    assert terminal.connected
    assert terminal.publish("yj/1/up/ft-0001/pos", b"fix") == 0
    srv.pump(0.5)
    assert srv.messages == [("yj/1/up/ft-0001/pos", b"fix")]


def test_a_phone_cannot_take_over_a_terminals_session(station: Station) -> None:
    terminal = connect(station, port=station.broker.port, cert="ft-0001", client_id="ft-0001")
    assert terminal.connected
    # use_username_as_clientid: the phone's client id becomes "ph-a", not "ft-0001".
    a = phone(station, "ph-a", client_id="ft-0001")
    assert a.connected
    terminal.pump(0.5)
    assert terminal.failure is None
    assert terminal.accepted("yj/1/up/ft-0001/pos", b"still here")


def test_a_revoked_phone_is_refused_and_dropped_after_the_sync(station: Station) -> None:
    old_password = station.passwords["ph-a"]
    terminal = connect(station, port=station.broker.port, cert="ft-0001")
    b = phone(station, "ph-b")
    station.registry.revoke("ph-a", now_ms=T0 + 1)
    # Until the sync runs, the broker's files are the old ones: the phone still signs in.
    live = phone(station, "ph-a")
    assert live.connected and terminal.connected and b.connected
    assert station.sync.sync() and station.sync.reloads == 2
    assert not station.sync.sync()  # nothing changed since
    assert "ph-a" not in (station.data / "broker-tls" / "passwd").read_text()
    # Mosquitto 2.0.11 re-checks connected password users on SIGHUP (more than
    # mosquitto.conf(5) promises) and drops the one whose line is gone ...
    wait_until(lambda: live.pumped(0.1).failure is not None, 5, "ph-a dropped")
    assert not phone(station, "ph-a").connected
    # ... while certificate users, not in the password file, and the other phones stay.
    for c in (terminal, b):
        c.pump(0.5)
        assert c.failure is None
    assert terminal.accepted("yj/1/up/ft-0001/pos", b"still here")
    assert b.accepted("owntracks/ph-b/phone", b"still here")
    assert server(station).connected
    # Enrolled again: new credentials work after the next sync, the old ones never again.
    station.enrol("a")
    assert station.sync.sync()
    time.sleep(0.5)
    assert phone(station, "ph-a").connected
    assert not connect(station, user="ph-a", password=old_password).connected
    assert terminal.accepted("yj/1/up/ft-0001/pos", b"after another reload")


def test_a_connected_phone_loses_its_topics_with_its_acl_lines(station: Station) -> None:
    """Revocation reaches a connected phone by two roads: the password re-check above, and
    the ACL. The ACL alone (the password line kept) already takes its topics away."""
    live = phone(station, "ph-a")
    assert live.subscribe("owntracks/ph-a/phone/cmd") == 1
    acl = station.data / "broker-tls" / "acl"
    acl.write_text(acl.read_text().replace("user ph-a\n", "user ph-a-was-here\n"))
    station.broker.reload()
    time.sleep(0.5)
    assert live.publish("owntracks/ph-a/phone", b"after") == NOT_AUTHORIZED
    assert server(station).accepted("owntracks/ph-a/phone/cmd", b"not for you any more")
    live.pump(0.5)
    assert live.messages == [] and live.failure is None


def test_hashes_agree_with_mosquitto_passwd(tmp_path: Path, station: Station) -> None:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        pytest.fail("mosquitto_passwd is required (it comes with the mosquitto package)")
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run([tool, "-b", str(passwd), "alice", "s3cret pässword"], check=True)
    user, stored = passwd.read_text().strip().split(":", 1)
    assert user == "alice" and stored.startswith("$7$101$")
    assert check_mosquitto_hash(stored, "s3cret pässword")
    assert not check_mosquitto_hash(stored, "s3cret passwor")
    # The other way round: the broker read the hashes we wrote (the phones connect above);
    # here one more, of a password from the registry, through the generated file.
    line = (station.data / "broker-tls" / "passwd").read_text().splitlines()[0]
    assert line.startswith("ph-a:$7$101$")
    assert phone(station, "ph-a").connected
