"""Per-terminal keys, the server's signing key, and the one-file enrolment bundle.

A terminal has two secrets: a 32-byte MAC key (shared with the server, authenticates every
frame cheaply) and an Ed25519 private key (never shared, signs checkpoints an inspector can
check). Both belong to a key generation ``key_id`` so keys can rotate while old frames stay
verifiable. The enrolment bundle is JSON, written with mode 0600 because it holds secrets;
format 2 also carries the terminal's TLS client certificate and key for an mqtts:// broker
(``provisioning/pki.py`` issues them).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from protocol import MAC_KEY_SIZE
from protocol.errors import ProtocolError
from protocol.messages import IDENT

FORMAT_V1 = "yijing-enrolment/1"
#: Format 2 adds the TLS client certificate, its key and the station CA (``tls``), and
#: ``broker.tls``. Format 1 bundles still load (no TLS).
ENROLMENT_FORMAT = "yijing-enrolment/2"
FORMATS = (FORMAT_V1, ENROLMENT_FORMAT)


class ProvisioningError(Exception):
    """Base of this package's errors."""


class EnrolmentError(ProvisioningError):
    def __init__(self, path: str, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{path}: {field}: {reason}")


def raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    key_id: int
    mac_key: bytes
    signing_key: Ed25519PrivateKey
    units: tuple[str, ...] = ()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()


def new_device(device_id: str, *, units: tuple[str, ...] = (), key_id: int = 1) -> DeviceIdentity:
    try:
        IDENT.check(device_id, "device_id")
        for unit in units:
            IDENT.check(unit, "units")
    except ProtocolError as exc:
        raise ProvisioningError(str(exc)) from exc
    return DeviceIdentity(
        device_id, key_id, secrets.token_bytes(MAC_KEY_SIZE), Ed25519PrivateKey.generate(), units
    )


@dataclass(frozen=True)
class ServerIdentity:
    key_id: int
    signing_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()


def write_secret(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write atomically (temp file, fsync, rename), created with ``mode`` from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # a stale temp file keeps its old mode otherwise
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


_write_secret = write_secret


def load_or_create_server_identity(path: Path) -> ServerIdentity:
    """The server's Ed25519 key, made on first start and kept (0600) beside the store."""
    if path.exists():
        try:
            doc = json.loads(path.read_text())
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(doc["signing_key"]))
            return ServerIdentity(int(doc["key_id"]), key)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ProvisioningError(f"{path}: not a server key file ({exc})") from exc
    identity = ServerIdentity(1, Ed25519PrivateKey.generate())
    doc = {"key_id": 1, "signing_key": base64.b64encode(raw_private(identity.signing_key)).decode()}
    _write_secret(path, json.dumps(doc).encode())
    return identity


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    protocol: str = "5"
    tls: bool = False


def broker_from_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``, optionally ``?protocol=3.1.1``."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("mqtt", "mqtts"):
        raise ProvisioningError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parsed.hostname:
        raise ProvisioningError(f"broker URL {url!r}: no host")
    tls = parsed.scheme == "mqtts"
    try:
        port = parsed.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ProvisioningError(f"broker URL {url!r}: {exc}") from None
    protocol = urllib.parse.parse_qs(parsed.query).get("protocol", ["5"])[0]
    if protocol not in ("5", "3.1.1"):
        raise ProvisioningError(f"broker URL {url!r}: protocol must be 5 or 3.1.1")
    return BrokerAddress(parsed.hostname, port, protocol, tls)


def _pem_error(field: str, reason: str) -> EnrolmentError:
    return EnrolmentError("TLS material", field, reason)


@dataclass(frozen=True)
class TlsMaterial:
    """A terminal's TLS client certificate and key, and the station CA that signed both ends.

    Checked on construction: each PEM parses, the key is the certificate's, the certificate
    is a client certificate issued by the CA. Errors name the field (``tls.cert`` ...).
    ``key_pem`` is None when the key was generated on the terminal (``yijing provision
    keygen``) and never left it: the agent then finds it in its data folder.
    """

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes | None = None

    def __post_init__(self) -> None:
        try:
            cas = x509.load_pem_x509_certificates(self.ca_pem)
        except ValueError as exc:
            raise _pem_error("tls.ca", f"is not a PEM certificate ({exc})") from None
        try:
            cert = x509.load_pem_x509_certificate(self.cert_pem)
        except ValueError as exc:
            raise _pem_error("tls.cert", f"is not a PEM certificate ({exc})") from None
        if self.key_pem is not None:
            check_key_pair(self.key_pem, cert, "tls.key")
        if not any(_issued_by(cert, ca) for ca in cas):
            raise _pem_error("tls.cert", "was not issued by tls.ca")

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def common_name(self) -> str:
        names = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""


def check_key_pair(key_pem: bytes, cert: x509.Certificate, field: str) -> None:
    """Raise ``EnrolmentError`` naming ``field`` unless ``key_pem`` is ``cert``'s private key."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _pem_error(field, f"is not an unencrypted PEM private key ({exc})") from None
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise _pem_error(field, "does not belong to tls.cert")


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@dataclass(frozen=True)
class Enrolment:
    """Everything a terminal needs to join: who it is, its keys, whom to trust, where to go."""

    identity: DeviceIdentity
    server_key: Ed25519PublicKey
    server_key_id: int
    broker: BrokerAddress
    tls: TlsMaterial | None = None

    def __post_init__(self) -> None:
        # A TLS broker without a client certificate, or a certificate for a plain broker,
        # is a bundle made wrong; say so at the source rather than at the first connect.
        if self.broker.tls != (self.tls is not None):
            raise EnrolmentError(
                "enrolment", "tls", "broker.tls and the TLS material must come together"
            )
        if self.tls is not None and self.tls.common_name != self.identity.device_id:
            raise EnrolmentError(
                "enrolment",
                "tls.cert",
                f"is for {self.tls.common_name!r}, not {self.identity.device_id!r}",
            )


def write_enrolment(path: Path, enrolment: Enrolment) -> None:
    ident = enrolment.identity
    doc: dict[str, Any] = {
        "format": ENROLMENT_FORMAT,
        "device_id": ident.device_id,
        "key_id": ident.key_id,
        "units": list(ident.units),
        "mac_key": base64.b64encode(ident.mac_key).decode(),
        "signing_key": base64.b64encode(raw_private(ident.signing_key)).decode(),
        "server_key": base64.b64encode(raw_public(enrolment.server_key)).decode(),
        "server_key_id": enrolment.server_key_id,
        "broker": {
            "host": enrolment.broker.host,
            "port": enrolment.broker.port,
            "protocol": enrolment.broker.protocol,
            "tls": enrolment.broker.tls,
        },
    }
    if enrolment.tls is not None:
        doc["tls"] = {
            "ca": enrolment.tls.ca_pem.decode("ascii"),
            "cert": enrolment.tls.cert_pem.decode("ascii"),
        }
        if enrolment.tls.key_pem is not None:  # None: the key stays on the terminal
            doc["tls"]["key"] = enrolment.tls.key_pem.decode("ascii")
    write_secret(path, json.dumps(doc, indent=2).encode())


def _field(doc: dict[str, Any], name: str, kind: type, where: str, *, within: str = "") -> Any:
    path = f"{within}.{name}" if within else name
    if name not in doc:
        raise EnrolmentError(where, path, "is missing")
    value = doc[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EnrolmentError(where, path, f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _b64(doc: dict[str, Any], name: str, size: int, where: str) -> bytes:
    try:
        data = base64.b64decode(_field(doc, name, str, where), validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        raise EnrolmentError(where, name, f"is not base64 ({exc})") from None
    if len(data) != size:
        raise EnrolmentError(where, name, f"expected {size} bytes, got {len(data)}")
    return data


def _key_id(doc: dict[str, Any], where: str) -> int:
    key_id: int = _field(doc, "key_id", int, where)
    if not 0 <= key_id < 2**31:
        raise EnrolmentError(where, "key_id", f"{key_id} is outside [0, 2**31)")
    return key_id


def _tls(doc: dict[str, Any], where: str) -> TlsMaterial | None:
    if "tls" not in doc or doc["tls"] is None:
        return None
    tls = _field(doc, "tls", dict, where)
    def pem(name: str) -> bytes:
        text = _field(tls, name, str, where, within="tls")
        if not text.isascii():
            raise EnrolmentError(where, f"tls.{name}", "is not ASCII PEM text")
        return bytes(text.encode("ascii"))

    ca, cert = pem("ca"), pem("cert")
    key = pem("key") if "key" in tls else None  # None: generated on the terminal, kept there
    try:
        return TlsMaterial(ca, cert, key)
    except EnrolmentError as exc:
        raise EnrolmentError(where, exc.field, exc.reason) from None


#: A bundle is a few kilobytes; refuse to parse anything far larger.
MAX_BUNDLE_BYTES = 1 << 20


def load_enrolment(path: Path) -> Enrolment:
    """Read a bundle, format 1 (no TLS) or 2; every problem is an ``EnrolmentError``."""
    where = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise EnrolmentError(where, "file", f"cannot be read ({exc.strerror})") from exc
    if len(raw) > MAX_BUNDLE_BYTES:
        raise EnrolmentError(where, "file", f"is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise EnrolmentError(where, "file", f"is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise EnrolmentError(where, "file", "is not a JSON object")
    version = doc.get("format")
    if version not in FORMATS:
        raise EnrolmentError(where, "format", f"expected one of {', '.join(map(repr, FORMATS))}")
    device_id = _field(doc, "device_id", str, where)
    units = tuple(_field(doc, "units", list, where))
    try:
        IDENT.check(device_id, "device_id")
        for i, unit in enumerate(units):
            IDENT.check(unit, f"units[{i}]")
    except ProtocolError as exc:
        raise EnrolmentError(where, exc.field, exc.reason) from None
    broker = _field(doc, "broker", dict, where)
    port = _field(broker, "port", int, where, within="broker")
    if not 0 < port < 65536:
        raise EnrolmentError(where, "broker.port", f"{port} is outside 1-65535")
    protocol_version = broker.get("protocol", "5")
    if protocol_version not in ("5", "3.1.1"):
        raise EnrolmentError(where, "broker.protocol", f"{protocol_version!r} is not 5 or 3.1.1")
    tls = _tls(doc, where) if version != FORMAT_V1 else None
    broker_tls = broker.get("tls", False) if version != FORMAT_V1 else False
    if not isinstance(broker_tls, bool):
        raise EnrolmentError(where, "broker.tls", f"expected bool, got {type(broker_tls).__name__}")
    server_key_id = _field(doc, "server_key_id", int, where)
    if not 0 <= server_key_id < 2**31:
        raise EnrolmentError(where, "server_key_id", f"{server_key_id} is outside [0, 2**31)")
    identity = DeviceIdentity(
        device_id,
        _key_id(doc, where),
        _b64(doc, "mac_key", MAC_KEY_SIZE, where),
        Ed25519PrivateKey.from_private_bytes(_b64(doc, "signing_key", 32, where)),
        units,
    )
    host = _field(broker, "host", str, where, within="broker")
    if not host or len(host) > 253 or any(c.isspace() or c in "/?#@" for c in host):
        raise EnrolmentError(where, "broker.host", f"{host[:80]!r} is not a host name or address")
    try:
        return Enrolment(
            identity,
            Ed25519PublicKey.from_public_bytes(_b64(doc, "server_key", 32, where)),
            server_key_id,
            BrokerAddress(host, port, protocol_version, broker_tls),
            tls,
        )
    except EnrolmentError as exc:
        raise EnrolmentError(where, exc.field, exc.reason) from None
