"""Real Mosquitto with the generated TLS config and ACL: who may connect, publish, receive.

Also the record of what Mosquitto 2.0.11 does on SIGHUP (``LocalBroker.reload``): it re-reads
the ACL (a connected terminal dropped from it is refused its next publish and gets no more
messages) and the CRL (a new connection with a revoked certificate fails the handshake).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning.broker_config import acl_text, mosquitto_tls_conf
from provisioning.pki import StationCA, pem_cert, pem_key
from tests.e2e.mqtt_probe import Probe, probe_tls
from yijing.broker import LocalBroker, free_port, start_mosquitto_with

pytestmark = pytest.mark.e2e
NOT_AUTHORIZED = 0x87
TERMINALS = [("ft-0001", ["futian-s1"]), ("ft-0002", ["futian-s1"])]


@dataclass
class Station:
    dir: Path
    ca: StationCA
    broker: LocalBroker
    acl: Path

    def files(self, name: str) -> tuple[Path, Path]:
        if name == "server":
            return self.ca.path("server.pem"), self.ca.path("server-key.pem")
        return self.dir / f"{name}.pem", self.dir / f"{name}-key.pem"

    def write_acl(self) -> None:
        self.acl.write_text(acl_text(TERMINALS, self.ca.revoked_names()))


def _terminal_files(ca: StationCA, folder: Path, name: str) -> None:
    key, cert = ca.issue_terminal(name)
    assert key is not None
    (folder / f"{name}.pem").write_bytes(pem_cert(cert))
    (folder / f"{name}-key.pem").write_bytes(pem_key(key))


@pytest.fixture
def station(tmp_path: Path, mosquitto_path: str) -> Iterator[Station]:
    ca = StationCA.create(tmp_path / "pki")
    ca.issue_broker(["127.0.0.1", "localhost"])
    ca.issue_server()
    for name, _ in TERMINALS:
        _terminal_files(ca, tmp_path, name)
    acl = tmp_path / "acl"
    acl.write_text(acl_text(TERMINALS, set()))
    (tmp_path / "persist").mkdir()
    port = free_port()
    conf = mosquitto_tls_conf(
        port=port,
        host="127.0.0.1",
        cafile=ca.path("ca.pem"),
        certfile=ca.path("broker.pem"),
        keyfile=ca.path("broker-key.pem"),
        crlfile=ca.path("crl.pem"),
        acl_file=acl,
        persistence_dir=tmp_path / "persist",
        # As root (CI containers), Mosquitto would drop to "mosquitto", who cannot read pki/.
        run_as="root" if os.geteuid() == 0 else None,
    )
    broker = start_mosquitto_with(conf, tmp_path / "broker", port=port, executable=mosquitto_path)
    yield Station(tmp_path, ca, broker, acl)
    broker.stop()


def connect(
    station: Station, name: str, *, files: tuple[Path, Path] | None = None, ca: Path | None = None
) -> Probe:
    cert, key = files or station.files(name)
    return probe_tls(
        station.broker.host,
        station.broker.port,
        ca=ca or station.ca.path("ca.pem"),
        client_id=f"{name}-{time.monotonic_ns()}",
        certfile=cert,
        keyfile=key,
    )


def connected(c: Probe) -> bool:
    return c.connected


def test_terminal_publishes_to_its_own_uplink_and_the_server_receives_it(station: Station) -> None:
    server = connect(station, "server")
    assert connected(server)
    # The server's shared subscription is checked against its filter: granted by yj/1/#.
    assert server.subscribe("$share/yijing/yj/1/up/+/+") == 1
    terminal = connect(station, "ft-0001")
    assert connected(terminal)
    assert terminal.publish("yj/1/up/ft-0001/pos", b"fix") == 0
    server.pump(0.5)
    assert server.messages == [("yj/1/up/ft-0001/pos", b"fix")]


def test_another_terminals_topics_are_refused(station: Station) -> None:
    server = connect(station, "server")
    ft1, ft2 = connect(station, "ft-0001"), connect(station, "ft-0002")
    assert server.subscribe("yj/1/up/+/+") == 1
    assert ft2.subscribe("yj/1/down/ft-0002/+") == 1
    # Publishing on another's uplink: PUBACK 0x87 Not authorized, and nobody gets it.
    assert ft1.publish("yj/1/up/ft-0002/pos", b"forged") == NOT_AUTHORIZED
    # Subscribing to another's downlink: Mosquitto 2.0.11's acl_file does not check
    # subscriptions (SUBACK grants; a later version may answer 0x87), but it checks read
    # access on every message delivered, so nothing arrives.
    assert ft1.subscribe("yj/1/down/ft-0002/+") in (1, NOT_AUTHORIZED)
    assert ft1.subscribe("yj/1/#") in (1, NOT_AUTHORIZED)
    assert server.publish("yj/1/down/ft-0002/cmd", b"for ft-0002 only") == 0
    assert server.publish("yj/1/unit/futian-s1/cmd", b"to the unit") == 0
    for c in (server, ft1, ft2):
        c.pump(0.3)
    assert ("yj/1/up/ft-0002/pos", b"forged") not in server.messages
    # Through yj/1/# only what it may read arrives: its unit's broadcast, not ft-0002's command.
    assert ft1.messages == [("yj/1/unit/futian-s1/cmd", b"to the unit")]
    assert ft2.messages == [("yj/1/down/ft-0002/cmd", b"for ft-0002 only")]
    ft1.paho.unsubscribe("yj/1/#")
    ft1.messages.clear()
    assert ft1.subscribe("yj/1/unit/futian-s1/+") == 1
    assert ft1.subscribe("yj/1/unit/other-unit/+") in (1, NOT_AUTHORIZED)
    assert server.publish("yj/1/unit/futian-s1/cfg", b"u") == 0
    assert server.publish("yj/1/unit/other-unit/cfg", b"o") == 0
    ft1.pump(0.5)
    assert ft1.messages == [("yj/1/unit/futian-s1/cfg", b"u")]


def test_a_client_without_a_certificate_cannot_connect(station: Station, tmp_path: Path) -> None:
    client = connect(station, "anonymous", files=(None, None))  # type: ignore[arg-type]
    assert not connected(client)


def test_a_certificate_from_another_ca_is_refused(station: Station, tmp_path: Path) -> None:
    other = StationCA.create(tmp_path / "other-pki")
    _terminal_files(other, tmp_path, "ft-0009")
    # Same CN as an enrolled terminal, signed by a CA the broker does not trust.
    key, cert = other.issue_terminal("ft-0001")
    assert key is not None
    (tmp_path / "fake.pem").write_bytes(pem_cert(cert))
    (tmp_path / "fake-key.pem").write_bytes(pem_key(key))
    assert not connected(connect(station, "ft-0009"))
    assert not connected(
        connect(station, "ft-0001", files=(tmp_path / "fake.pem", tmp_path / "fake-key.pem"))
    )


def test_revocation_takes_effect_on_sighup(station: Station) -> None:
    server = connect(station, "server")
    assert server.subscribe("yj/1/up/+/+") == 1
    live = connect(station, "ft-0001")
    assert live.subscribe("yj/1/down/ft-0001/+") == 1
    station.ca.revoke("ft-0001", "reported lost")
    station.write_acl()
    # Before the broker is told, the old CRL and ACL still hold.
    assert connected(connect(station, "ft-0001"))
    station.broker.reload()
    time.sleep(0.5)
    # A new connection with the revoked certificate fails the TLS handshake.
    assert not connected(connect(station, "ft-0001"))
    # The connection made before stays open but has lost its topics.
    assert live.publish("yj/1/up/ft-0001/pos", b"after") == NOT_AUTHORIZED
    assert server.publish("yj/1/down/ft-0001/cmd", b"not for you any more") == 0
    live.pump(0.5)
    assert live.messages == []
    # The other terminal is untouched; a restart keeps the revocation.
    assert connected(connect(station, "ft-0002"))
    station.broker.restart()
    assert not connected(connect(station, "ft-0001"))
    assert connected(connect(station, "ft-0002"))
