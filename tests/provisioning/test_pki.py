"""The station CA: what it issues, what it refuses, revocation and the CRL."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.pki import SERVER_IDENTITY, CsrError, PkiError, StationCA, verify_issued_by


@pytest.fixture
def ca(tmp_path: Path) -> StationCA:
    return StationCA.create(tmp_path / "pki")


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _csr(cn: str, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def test_terminal_certificate_is_client_only_with_the_device_id(ca: StationCA) -> None:
    key, cert = ca.issue_terminal("ft-0042")
    assert key is not None
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ft-0042"
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert verify_issued_by(cert, ca.cert)
    assert [e.cn for e in ca.index] == ["ft-0042"]


@pytest.mark.parametrize("bad", ["yijing:server", "", "a/b", "ft 1", "x" * 65, "#", "-lead"])
def test_refuses_names_that_are_not_device_ids(ca: StationCA, bad: str) -> None:
    with pytest.raises(PkiError, match="device_id"):
        ca.issue_terminal(bad)


def test_server_and_broker_certificates(ca: StationCA) -> None:
    server = ca.issue_server()
    assert server.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERVER_IDENTITY
    assert _eku(server) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    broker = ca.issue_broker(["mqtt.station.lan", "10.0.0.5"])
    assert _eku(broker) == [ExtendedKeyUsageOID.SERVER_AUTH]
    sans = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["mqtt.station.lan"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    for name in ("ca-key.pem", "server-key.pem", "broker-key.pem"):
        assert stat.S_IMODE(os.stat(ca.path(name)).st_mode) == 0o600
    with pytest.raises(PkiError, match="broker hosts"):
        ca.issue_broker(["not a host"])


def test_create_refuses_to_replace_and_load_round_trips(ca: StationCA) -> None:
    ca.issue_terminal("ft-1")
    with pytest.raises(PkiError, match="exists already"):
        StationCA.create(ca.directory)
    again = StationCA.load(ca.directory)
    assert again.cert == ca.cert and [e.cn for e in again.index] == ["ft-1"]


def test_load_names_the_broken_file(ca: StationCA) -> None:
    ca.path("index.json").write_text("{")
    with pytest.raises(PkiError, match=r"index\.json"):
        StationCA.load(ca.directory)
    ca.path("ca-key.pem").write_bytes(b"garbage")
    with pytest.raises(PkiError, match=r"ca-key\.pem"):
        StationCA.load(ca.directory)


def test_sign_csr(ca: StationCA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.sign_csr(_csr("ft-0007", key))
    assert cert.public_key() == key.public_key()
    with pytest.raises(CsrError, match="CN"):
        ca.sign_csr(_csr("yijing:server"))
    with pytest.raises(CsrError, match="not a PEM"):
        ca.sign_csr(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        )
    pem = _csr("ft-0008").decode()
    lines = pem.splitlines()
    body = "".join(lines[1:-1])
    # flip one character of the signature (near the end of the DER): the signature fails
    i = len(body) - 10
    tampered = body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1 :]
    wrapped = "\n".join(tampered[j : j + 64] for j in range(0, len(tampered), 64))
    with pytest.raises(CsrError):
        ca.sign_csr(f"{lines[0]}\n{wrapped}\n{lines[-1]}\n".encode())


def test_revoke_marks_every_certificate_and_writes_the_crl(ca: StationCA) -> None:
    _, first = ca.issue_terminal("ft-1")
    _, second = ca.issue_terminal("ft-1")  # a rotation: two valid certificates
    _, other = ca.issue_terminal("ft-2")
    assert sorted(ca.revoke("ft-1", "lost", at_ms=1_800_000_000_000)) == sorted(
        [first.serial_number, second.serial_number]
    )
    crl = x509.load_pem_x509_crl(ca.path("crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]
    assert {r.serial_number for r in crl} == {first.serial_number, second.serial_number}
    assert crl.get_revoked_certificate_by_serial_number(other.serial_number) is None
    doc = json.loads(ca.path("index.json").read_text())
    assert {c["cn"]: c["reason"] for c in doc["certs"]} == {"ft-1": "lost", "ft-2": None}
    assert ca.revoked_names() == {"ft-1"}
    with pytest.raises(PkiError, match="no unrevoked"):
        ca.revoke("ft-1", "again")
    with pytest.raises(PkiError, match="never issued"):
        ca.revoke("ft-9", "unknown")
    # A second tool that loaded the CA before the revocation does not undo it.
    assert StationCA.load(ca.directory).revoked_names() == {"ft-1"}


def test_two_writers_lose_nothing(ca: StationCA) -> None:
    other = StationCA.load(ca.directory)
    ca.issue_terminal("ft-1")
    other.issue_terminal("ft-2")
    assert {e.cn for e in StationCA.load(ca.directory).index} == {"ft-1", "ft-2"}
