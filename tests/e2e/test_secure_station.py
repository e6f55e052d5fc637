"""A one-station install run the secure way, every part real and in its own process:
``yijing server --mqtt-listen`` (Mosquitto with a TLS listener, client certificates, ACL),
``yijing provision device`` with an mqtts:// bundle, ``yijing agent`` over TLS. Then a lost
terminal is revoked from the command line: its frames stop counting at once, and it cannot
come back."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import Processes
from tests.helpers import wait_until
from yijing.broker import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.close()


def count(db: Path, sql: str, *params: object) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def frames(db: Path, device: str) -> int:
    return count(db, "SELECT count(*) FROM frames WHERE device_id=?", device)


def test_terminal_over_tls_then_revoked(tmp_path: Path, processes: Processes) -> None:
    data = tmp_path / "server"
    db = data / "yijing.db"
    mqtt_port = free_port()
    server = processes.start(
        "server", "--log-level", "INFO", "server", "--data", str(data), "--port", "0",
        "--mqtt-listen", f"127.0.0.1:{mqtt_port}", "--phone-listen", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    server.wait_for_output("yijing server on", 30)
    assert f"mqtts://127.0.0.1:{mqtt_port}" in server.output()

    bundles = {}
    for device in ("ft-0042", "ft-0043"):
        bundles[device] = tmp_path / f"{device}.json"
        # ft-0043 makes its TLS key itself; only a certificate request reaches the station.
        csr = []
        if device == "ft-0043":
            processes.run(
                "provision", "keygen", device, "--agent-data", str(tmp_path / "agents" / device),
                "--out", str(tmp_path / f"{device}.csr"),
            )  # fmt: skip
            csr = ["--csr", str(tmp_path / f"{device}.csr")]
        processes.run(
            "provision", "device", device, "--units", "futian-s1",
            "--broker", f"mqtts://127.0.0.1:{mqtt_port}", "--data", str(data),
            "--out", str(bundles[device]), *csr,
        )  # fmt: skip
    agents = {}
    for device, bundle in bundles.items():
        agents[device] = processes.start(
            device, "--log-level", "INFO", "agent", "--enrolment", str(bundle),
            "--data", str(tmp_path / "agents" / device),
            "--simulate", "22.5431,114.0579", "--interval-moving", "1",
        )  # fmt: skip
    # Both terminals are enrolled after the server started: the server's watch gave them
    # their ACL lines, and their frames arrive over TLS.
    for device in agents:
        wait_until(lambda d=device: frames(db, d) >= 3, 30, f"{device}'s frames over TLS")

    processes.run("provision", "revoke", "ft-0042", "--reason", "lost", "--data", str(data))
    revoked_at = frames(db, "ft-0042")
    # The server refuses its very next frame (or the broker's reloaded ACL stops it first).
    time.sleep(6)
    after = frames(db, "ft-0042")
    assert after <= revoked_at + 1, (revoked_at, after)  # at most one batch already in flight
    time.sleep(3)
    assert frames(db, "ft-0042") == after  # nothing more, ever
    # The other terminal is untouched.
    healthy = frames(db, "ft-0043")
    wait_until(lambda: frames(db, "ft-0043") > healthy, 15, "ft-0043 to keep reporting")

    # Switched off and on again, the lost terminal cannot even connect: its certificate is
    # on the CRL the broker re-read.
    agents["ft-0042"].kill()
    again = processes.start(
        "ft-0042-again", "--log-level", "INFO", "agent", "--enrolment", str(bundles["ft-0042"]),
        "--data", str(tmp_path / "agents" / "ft-0042"),
        "--simulate", "22.5431,114.0579", "--interval-moving", "1",
    )  # fmt: skip
    wait_until(lambda: "certificate revoked" in again.errors(), 20, "the TLS refusal")
    assert frames(db, "ft-0042") == after
    assert again.alive()  # it keeps trying, with backoff, holding its data
    assert server.terminate() == 0, server.describe()


def test_owntracks_phone_over_the_phone_listener_then_revoked(
    tmp_path: Path, processes: Processes
) -> None:
    """The secure station's second listener: a phone enrolled with `yijing provision phone`
    connects over TLS with the user and password of its code (--phone-listen), publishes an
    encrypted OwnTracks location, and the server stores it; revoked, it is dropped and
    refused."""
    import json

    from protocol import owntracks
    from tests.e2e.mqtt_probe import Probe, probe_tls

    data = tmp_path / "server"
    db = data / "yijing.db"
    mqtt_port, phone_port = free_port(), free_port()
    server = processes.start(
        "server", "--log-level", "INFO", "server", "--data", str(data), "--port", "0",
        "--mqtt-listen", f"127.0.0.1:{mqtt_port}", "--phone-listen", f"127.0.0.1:{phone_port}",
    )  # fmt: skip
    server.wait_for_output("yijing server on", 30)
    otrc = tmp_path / "v9.otrc"
    processes.run(
        "provision", "phone", "v9", "--unit", "futian-s1", "--app", "owntracks",
        "--mqtt-host", "127.0.0.1", "--mqtt-port", str(phone_port), "--data", str(data),
        "--out", str(otrc),
    )  # fmt: skip
    config = json.loads(otrc.read_text())
    assert (config["host"], config["port"], config["tls"]) == ("127.0.0.1", phone_port, True)
    key = owntracks.secretbox_key(config["encryptionKey"])

    def connect() -> Probe:
        return probe_tls(
            "127.0.0.1", phone_port, ca=data / "pki" / "ca.pem",
            client_id=config["clientId"], user=config["username"], password=config["password"],
        )  # fmt: skip

    probes: list[Probe] = []

    def connected() -> bool:
        probes.append(connect())
        return probes[-1].connected

    # The server's watch writes the phone's password line and ACL within 2 s.
    wait_until(connected, 20, "the phone let in on the phone listener")
    phone = probes[-1]
    location = {"_type": "location", "lat": 22.5431, "lon": 114.0579, "tst": int(time.time()),
                "acc": 9, "tid": "v9", "t": "u"}  # fmt: skip
    report = json.dumps(location).encode()
    topic = config["pubTopicBase"]
    assert phone.accepted(topic, owntracks.encrypt(report, key))
    wait_until(lambda: frames(db, "ph-v9") == 1, 20, "the phone's report stored")
    # Another phone's topic is refused (PUBACK 0x87 not authorized).
    assert phone.publish("owntracks/ph-other/phone", b"{}") == 0x87

    processes.run("provision", "phone-revoke", "ph-v9", "--data", str(data))
    wait_until(
        lambda: phone.pumped(0.2).failure is not None,
        20,
        "the revoked phone dropped",
    )
    assert not connect().connected
    # An orderly stop: a killed server would leave its embedded Mosquitto running.
    assert server.terminate() == 0, server.describe()
