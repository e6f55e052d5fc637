"""`yijing provision`: ca, device (TLS bundle), bulk, revoke, rotate, broker-config."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from provisioning import StationCA, load_enrolment
from server.sqlite_store import SqliteStore
from yijing.cli import main

SUBCOMMANDS = ["ca", "device", "bulk", "revoke", "rotate", "broker-config", "token"]


@pytest.mark.parametrize("what", SUBCOMMANDS)
def test_help_has_an_example(what: str, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        main(["provision", what, "--help"])
    assert info.value.code == 0
    assert "example" in capsys.readouterr().out


def test_the_whole_life_of_a_terminal(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    data = str(tmp_path / "server")
    assert main(["provision", "ca", "--data", data, "--broker-host", "127.0.0.1"]) == 0
    assert main(["provision", "ca", "--data", data, "--broker-host", "x"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["provision", "broker-config", "--data", data, "--port", "8883"]) == 0
    bundle = tmp_path / "ft-1.json"
    argv = ["provision", "device", "ft-1", "--units", "s1", "--data", data]
    assert main([*argv, "--broker", "mqtts://127.0.0.1", "--out", str(bundle)]) == 0
    enrolment = load_enrolment(bundle)
    assert enrolment.broker.tls and enrolment.broker.port == 8883
    assert enrolment.tls is not None and enrolment.tls.common_name == "ft-1"
    acl = (tmp_path / "server" / "broker" / "acl").read_text()
    assert "user ft-1\n" in acl
    # Enrolling the same id again is refused: it would replace a live terminal's keys.
    assert main([*argv, "--broker", "mqtts://127.0.0.1", "--out", str(tmp_path / "x.json")]) == 1

    rotated = tmp_path / "ft-1-k2.json"
    assert (
        main(
            [
                "provision",
                "rotate",
                "ft-1",
                "--data",
                data,
                "--broker",
                "mqtts://127.0.0.1",
                "--out",
                str(rotated),
            ]
        )
        == 0
    )
    assert load_enrolment(rotated).identity.key_id == 2
    store = SqliteStore(tmp_path / "server" / "yijing.db")
    assert [k.key_id for k in store.device_keys("ft-1")] == [1, 2]
    store.close()

    assert main(["provision", "revoke", "ft-1", "--reason", "lost", "--data", data]) == 0
    ca = StationCA.load(tmp_path / "server" / "pki")
    assert ca.revoked_names() == {"ft-1"}
    assert "user ft-1\n" not in (tmp_path / "server" / "broker" / "acl").read_text()
    crl = (tmp_path / "server" / "broker" / "crl.pem").read_bytes()
    assert crl == ca.path("crl.pem").read_bytes()
    store = SqliteStore(tmp_path / "server" / "yijing.db")
    assert "ft-1" in store.revoked()
    store.close()
    assert main(["provision", "revoke", "ft-9", "--reason", "x", "--data", data]) == 1


def test_bulk_1200_through_the_cli(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    data = str(tmp_path / "server")
    assert main(["provision", "ca", "--data", data, "--broker-host", "127.0.0.1"]) == 0
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(
        "device_id,label,units\n" + "".join(f"ft-{i:04d},P{i},s{i % 5}\n" for i in range(1200))
    )
    began = time.monotonic()
    assert (
        main(
            [
                "provision",
                "bulk",
                str(csv_path),
                "--out-dir",
                str(tmp_path / "b"),
                "--data",
                data,
                "--broker",
                "mqtts://127.0.0.1",
            ]
        )
        == 0
    )
    seconds = time.monotonic() - began
    out = capsys.readouterr()
    print(f"CLI bulk of 1200 (store, CA, bundles): {seconds:.1f} s")
    assert "enrolled 1200 terminals" in out.out and "1200/1200" in out.err
    store = SqliteStore(tmp_path / "server" / "yijing.db")
    assert len(store.devices()) == 1200
    store.close()


def test_bad_broker_url_is_named(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert (
        main(["provision", "device", "ft-1", "--broker", "http://x", "--data", str(tmp_path)]) == 1
    )
    assert "scheme must be mqtt:// or mqtts://" in capsys.readouterr().err
