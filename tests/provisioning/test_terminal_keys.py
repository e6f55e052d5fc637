"""A TLS key made on the terminal: `provision keygen` there, `provision device --csr` at the
station; the bundle carries no key and the agent uses the one in its data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import KeyArchiveError
from agent.tls import tls_files
from provisioning import load_enrolment
from yijing.cli import main


def run(*argv: str) -> int:
    return main(list(argv))


def test_key_made_on_the_terminal_never_travels(tmp_path: Path) -> None:
    station, terminal = tmp_path / "station", tmp_path / "terminal"
    assert run("provision", "ca", "--data", str(station), "--broker-host", "127.0.0.1") == 0
    csr = tmp_path / "ft-0042.csr"
    made = run("provision", "keygen", "ft-0042", "--agent-data", str(terminal), "--out", str(csr))
    assert made == 0
    key = terminal / "tls" / "key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    bundle = tmp_path / "ft-0042.json"
    assert run(
        "provision", "device", "ft-0042", "--csr", str(csr), "--broker", "mqtts://127.0.0.1:8883",
        "--data", str(station), "--out", str(bundle),
    ) == 0  # fmt: skip
    assert b"PRIVATE KEY" not in bundle.read_bytes()  # the TLS key is not in the bundle
    enrolment = load_enrolment(bundle)
    assert enrolment.tls is not None and enrolment.tls.key_pem is None
    files = tls_files(enrolment, terminal)
    assert files is not None and files.key_file == key
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY")  # untouched

    # Another folder (no key, or another terminal's key) is refused by name.
    with pytest.raises(KeyArchiveError, match="is not there"):
        tls_files(enrolment, tmp_path / "elsewhere")
    other = tmp_path / "other"
    assert run("provision", "keygen", "ft-0042", "--agent-data", str(other),
               "--out", str(tmp_path / "x.csr")) == 0  # fmt: skip
    with pytest.raises(KeyArchiveError, match="does not belong"):
        tls_files(enrolment, other)


def test_a_request_for_another_terminal_is_refused_before_signing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    station = tmp_path / "station"
    assert run("provision", "ca", "--data", str(station), "--broker-host", "127.0.0.1") == 0
    csr = tmp_path / "ft-0043.csr"
    assert run("provision", "keygen", "ft-0043", "--agent-data", str(tmp_path / "t"),
               "--out", str(csr)) == 0  # fmt: skip
    assert run(
        "provision", "device", "ft-0042", "--csr", str(csr), "--broker", "mqtts://127.0.0.1:8883",
        "--data", str(station), "--out", str(tmp_path / "b.json"),
    ) == 1  # fmt: skip
    assert "is for 'ft-0043', not 'ft-0042'" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
    from provisioning.pki import StationCA

    assert [e.cn for e in StationCA.load(station / "pki").index if e.kind == "terminal"] == []


def test_a_broken_request_names_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    station = tmp_path / "station"
    assert run("provision", "ca", "--data", str(station), "--broker-host", "127.0.0.1") == 0
    csr = tmp_path / "bad.csr"
    csr.write_text("-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n")
    assert run(
        "provision", "device", "ft-0042", "--csr", str(csr), "--broker", "mqtts://127.0.0.1:8883",
        "--data", str(station), "--out", str(tmp_path / "b.json"),
    ) == 1  # fmt: skip
    assert "csr: not a PEM certificate signing request" in capsys.readouterr().err
