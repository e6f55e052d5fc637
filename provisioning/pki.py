"""The station's certificate authority: one folder, one CA, every certificate on record.

The CA signs three kinds of certificate:

- **terminal**: CN = the device id, clientAuth only. With Mosquitto's
  ``use_identity_as_username`` the CN becomes the MQTT username, which the ACL confines to the
  terminal's own topics.
- **server**: CN = ``SERVER_IDENTITY``, clientAuth only: the sync server's MQTT identity. The
  ':' in it cannot occur in a device id (protocol IDENT), so no terminal can be issued a
  certificate that the broker would take for the server.
- **broker**: serverAuth, with a SAN for every host name and IP address terminals dial.

Keys are ECDSA P-256: every TLS stack we meet (OpenSSL in Mosquitto, 4G terminals' Android
and embedded stacks) supports it, and signing is fast enough to issue 1,200 certificates in
seconds. Secrets are written 0600, atomically. ``index.json`` lists every certificate issued
(serial, cn, kind, not_after, revoked_ms, reason); ``crl.pem`` is rewritten on every
revocation. The CA key is not encrypted: the folder is the secret (0700), as the server's own
keys are; keep it on the station's server or offline.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol.errors import ProtocolError
from protocol.messages import IDENT

from .identity import ProvisioningError, write_secret

#: The sync server's certificate CN and broker username; ':' keeps it out of every device id.
SERVER_IDENTITY = "yijing:server"
INDEX_FORMAT = "yijing-pki/1"

CA_FILE, CA_KEY_FILE, CRL_FILE, INDEX_FILE = "ca.pem", "ca-key.pem", "crl.pem", "index.json"
SERVER_CERT_FILE, SERVER_KEY_FILE = "server.pem", "server-key.pem"
BROKER_CERT_FILE, BROKER_KEY_FILE = "broker.pem", "broker-key.pem"

CA_DAYS = 20 * 365
#: A terminal's certificate outlives its expected service; rotation replaces it sooner.
TERMINAL_DAYS = 5 * 365
SERVICE_DAYS = 5 * 365
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")


class PkiError(ProvisioningError):
    """The CA folder or a request to it cannot be used (names the file or field)."""


class CsrError(PkiError):
    """A certificate signing request that must not be signed."""


Kind = str  # "terminal" | "server" | "broker"


@dataclass(frozen=True)
class IssuedCert:
    """One line of ``index.json``."""

    serial: int
    cn: str
    kind: Kind
    not_after: str  # ISO 8601, UTC
    revoked_ms: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        # Hex: a 159-bit serial is not exact as a JSON number in most readers.
        return {
            "serial": f"{self.serial:x}",
            "cn": self.cn,
            "kind": self.kind,
            "not_after": self.not_after,
            "revoked_ms": self.revoked_ms,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, doc: Any, where: str) -> IssuedCert:
        try:
            revoked = doc["revoked_ms"]
            return cls(
                int(doc["serial"], 16),
                str(doc["cn"]),
                str(doc["kind"]),
                str(doc["not_after"]),
                None if revoked is None else int(revoked),
                None if doc["reason"] is None else str(doc["reason"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PkiError(f"{where}: a certificate entry is malformed ({exc!r})") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return _pem_key(key)


def check_device_id(device_id: str, field: str = "device_id") -> str:
    try:
        return IDENT.check(device_id, field)
    except ProtocolError as exc:
        raise PkiError(f"{field}: {exc}") from None


def terminal_request(device_id: str) -> tuple[bytes, bytes]:
    """A TLS key made here — on the terminal — and a request to certify it:
    (key PEM, CSR PEM). The key never leaves; ``StationCA.sign_csr`` certifies the request."""
    check_device_id(device_id)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    return _pem_key(key), csr.public_bytes(serialization.Encoding.PEM)


def request_name(csr_pem: bytes) -> str | None:
    """The common name a certificate request asks for (None: none, or not a request)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        return None
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if len(names) == 1 else None


class StationCA:
    """A CA folder: create it once, load it for every later issue or revocation."""

    def __init__(
        self,
        directory: Path,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        entries: list[IssuedCert],
        crl_number: int,
    ) -> None:
        self.directory = directory
        self.cert = cert
        self._key = key
        self._entries = entries
        self._crl_number = crl_number
        self._deferred = False

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, *, name: str = "yijing station CA") -> StationCA:
        """A new CA in ``directory``; refuses to replace one that exists."""
        directory = Path(directory)
        if (directory / CA_FILE).exists() or (directory / CA_KEY_FILE).exists():
            raise PkiError(f"{directory / CA_FILE}: a CA exists already; refusing to replace it")
        if not name or len(name) > 64:
            raise PkiError(f"name: {name!r} must be 1-64 characters")
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            # path_length 0: this CA signs end entities only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        write_secret(directory / CA_KEY_FILE, _pem_key(key))
        ca = cls(directory, cert, key, [], 0)
        ca._save()  # index.json and an empty CRL: Mosquitto's crlfile must exist to start
        (directory / CA_FILE).write_bytes(pem_cert(cert))
        return ca

    @classmethod
    def load(cls, directory: Path) -> StationCA:
        directory = Path(directory)
        cert_path, key_path = directory / CA_FILE, directory / CA_KEY_FILE
        cert = _read_cert(cert_path)
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except OSError as exc:
            raise PkiError(f"{key_path}: cannot be read ({exc.strerror})") from None
        except (ValueError, TypeError) as exc:
            raise PkiError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or _spki(key.public_key()) != _spki(
            cert.public_key()
        ):
            raise PkiError(f"{key_path}: does not match {cert_path}")
        entries, crl_number = _read_index(directory / INDEX_FILE)
        return cls(directory, cert, key, entries, crl_number)

    @staticmethod
    def exists(directory: Path) -> bool:
        return (Path(directory) / CA_FILE).exists()

    # --- what it holds -------------------------------------------------------------------------

    @property
    def index(self) -> list[IssuedCert]:
        return list(self._entries)

    @property
    def cert_pem(self) -> bytes:
        return pem_cert(self.cert)

    def revoked_names(self) -> set[str]:
        """Terminal CNs that hold no unrevoked certificate: the ACL leaves them out."""
        valid = {e.cn for e in self._entries if e.revoked_ms is None}
        return {e.cn for e in self._entries if e.revoked_ms is not None} - valid

    def path(self, name: str) -> Path:
        return self.directory / name

    # --- issuing -------------------------------------------------------------------------------

    def issue_terminal(
        self, device_id: str, public_key: ec.EllipticCurvePublicKey | None = None
    ) -> tuple[ec.EllipticCurvePrivateKey | None, x509.Certificate]:
        """A client certificate with CN = ``device_id``; makes the key unless one is given."""
        check_device_id(device_id)
        key = None
        if public_key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            public_key = key.public_key()
        cert = self._issue(device_id, "terminal", public_key, ExtendedKeyUsageOID.CLIENT_AUTH)
        return key, cert

    def sign_csr(self, csr_pem: bytes) -> x509.Certificate:
        """Certify a key made on the terminal; the CSR's CN must be a valid device id."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CsrError(f"csr: not a PEM certificate signing request ({exc})") from None
        if not csr.is_signature_valid:
            raise CsrError("csr: its signature does not verify (altered, or not its own key)")
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(names) != 1 or not isinstance(names[0].value, str):
            raise CsrError(f"csr: subject must hold exactly one CN, found {len(names)}")
        try:
            IDENT.check(names[0].value, "csr.subject.CN")
        except ProtocolError as exc:
            raise CsrError(str(exc)) from None
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise CsrError("csr: key must be ECDSA P-256")
        _, cert = self.issue_terminal(names[0].value, public_key)
        return cert

    def issue_server(self) -> x509.Certificate:
        """The sync server's client certificate; writes server.pem and server-key.pem."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._issue(
            SERVER_IDENTITY, "server", key.public_key(), ExtendedKeyUsageOID.CLIENT_AUTH
        )
        write_secret(self.path(SERVER_KEY_FILE), _pem_key(key))
        self.path(SERVER_CERT_FILE).write_bytes(pem_cert(cert))
        return cert

    def issue_broker(self, hostnames: Sequence[str]) -> x509.Certificate:
        """The broker's TLS server certificate; a SAN per host name or IP address."""
        if not hostnames:
            raise PkiError("broker hosts: give at least one host name or IP address")
        sans: list[x509.GeneralName] = []
        for name in hostnames:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                if not _DNS.fullmatch(name):
                    raise PkiError(f"broker hosts: {name!r} is not a host name or IP") from None
                sans.append(x509.DNSName(name.rstrip(".")))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._issue(
            hostnames[0],
            "broker",
            key.public_key(),
            ExtendedKeyUsageOID.SERVER_AUTH,
            sans=x509.SubjectAlternativeName(sans),
        )
        write_secret(self.path(BROKER_KEY_FILE), _pem_key(key))
        self.path(BROKER_CERT_FILE).write_bytes(pem_cert(cert))
        return cert

    def _issue(
        self,
        cn: str,
        kind: Kind,
        public_key: ec.EllipticCurvePublicKey,
        usage: x509.ObjectIdentifier,
        *,
        sans: x509.SubjectAlternativeName | None = None,
    ) -> x509.Certificate:
        now = _now()
        days = TERMINAL_DAYS if kind == "terminal" else SERVICE_DAYS
        not_after = min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))  # terminals' clocks drift
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=kind == "broker",
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            # One purpose each: a stolen terminal certificate cannot serve as a broker's.
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if sans is not None:
            builder = builder.add_extension(sans, critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        self._entries.append(
            IssuedCert(
                cert.serial_number,
                cn,
                kind,
                not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        )
        if not self._deferred:
            self._save()
        return cert

    @contextlib.contextmanager
    def deferred_index(self) -> Iterator[None]:
        """Issue many, write ``index.json`` once at the end (bulk enrolment).

        Callers must not hand out a certificate before the block ends (or ``flush`` is
        called): a certificate missing from the index could not be revoked.
        """
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False
            self._save()

    def flush(self) -> None:
        self._save()

    # --- revoking ------------------------------------------------------------------------------

    def revoke(self, device_id: str, reason: str, *, at_ms: int | None = None) -> list[int]:
        """Revoke every unrevoked certificate with CN = ``device_id``; returns their serials."""
        check_device_id(device_id)
        at = int(time.time() * 1000) if at_ms is None else at_ms
        serials = []
        for i, entry in enumerate(self._entries):
            if entry.cn == device_id and entry.kind == "terminal" and entry.revoked_ms is None:
                self._entries[i] = replace(entry, revoked_ms=at, reason=reason)
                serials.append(entry.serial)
        if not serials:
            known = any(e.cn == device_id for e in self._entries)
            raise PkiError(
                f"{self.path(INDEX_FILE)}: {device_id!r} "
                + ("has no unrevoked certificate" if known else "was never issued a certificate")
            )
        self._save()
        return serials

    def crl_pem(self) -> bytes:
        return self._build_crl().public_bytes(serialization.Encoding.PEM)

    def _build_crl(self) -> x509.CertificateRevocationList:
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            # OpenSSL refuses EVERY client once a CRL's nextUpdate has passed ("CRL has
            # expired"), and the broker is this CRL's only reader: it lives as long as the CA.
            .next_update(self.cert.not_valid_after_utc)
            .add_extension(x509.CRLNumber(self._crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        for entry in self._entries:
            if entry.revoked_ms is not None:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(entry.serial)
                    .revocation_date(dt.datetime.fromtimestamp(entry.revoked_ms / 1000, dt.UTC))
                    .build()
                )
        return builder.sign(self._key, hashes.SHA256())

    # --- the folder ----------------------------------------------------------------------------

    def _save(self) -> None:
        """Merge with what is on disk (another process may have issued), then write.

        An flock serialises writers; entries are merged by serial and a revocation is never
        undone, so two tools run at once lose nothing.
        """
        lock_path = self.path(".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index_path = self.path(INDEX_FILE)
            on_disk, number = _read_index(index_path) if index_path.exists() else ([], 0)
            merged = {e.serial: e for e in on_disk}
            for entry in self._entries:
                old = merged.get(entry.serial)
                if old is None or old.revoked_ms is None:
                    merged[entry.serial] = entry
            self._entries = list(merged.values())
            self._crl_number = max(number, self._crl_number) + 1
            doc = {
                "format": INDEX_FORMAT,
                "crl_number": self._crl_number,
                "certs": [e.to_json() for e in self._entries],
            }
            write_secret(self.path(CRL_FILE), self.crl_pem(), mode=0o644)
            write_secret(index_path, json.dumps(doc, indent=1).encode(), mode=0o644)


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise PkiError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise PkiError(f"{path}: not a PEM certificate ({exc})") from None


def _read_index(path: Path) -> tuple[list[IssuedCert], int]:
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise PkiError(f"{path}: cannot be read ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise PkiError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise PkiError(f"{path}: format: expected {INDEX_FORMAT!r}")
    certs, number = doc.get("certs"), doc.get("crl_number")
    if not isinstance(certs, list) or not isinstance(number, int):
        raise PkiError(f"{path}: certs or crl_number: missing or of the wrong type")
    return [IssuedCert.from_json(c, str(path)) for c in certs], number


def verify_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
