"""Per-terminal keys, the server's signing key, and the one-file enrolment bundle.

A terminal has two secrets: a 32-byte MAC key (shared with the server, authenticates every
frame cheaply) and an Ed25519 private key (never shared, signs checkpoints an inspector can
check). Both belong to a key generation ``key_id`` so keys can rotate while old frames stay
verifiable. The enrolment bundle is JSON, written with mode 0600 because it holds secrets.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import MAC_KEY_SIZE
from protocol.errors import ProtocolError
from protocol.messages import IDENT

ENROLMENT_FORMAT = "yijing-enrolment/1"


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


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


@dataclass(frozen=True)
class Enrolment:
    """Everything a terminal needs to join: who it is, its keys, whom to trust, where to go."""

    identity: DeviceIdentity
    server_key: Ed25519PublicKey
    server_key_id: int
    broker: BrokerAddress


def write_enrolment(path: Path, enrolment: Enrolment) -> None:
    ident = enrolment.identity
    doc = {
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
        },
    }
    _write_secret(path, json.dumps(doc, indent=2).encode())


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
    except binascii.Error as exc:
        raise EnrolmentError(where, name, f"is not base64 ({exc})") from None
    if len(data) != size:
        raise EnrolmentError(where, name, f"expected {size} bytes, got {len(data)}")
    return data


def _key_id(doc: dict[str, Any], where: str) -> int:
    key_id: int = _field(doc, "key_id", int, where)
    if not 0 <= key_id < 2**31:
        raise EnrolmentError(where, "key_id", f"{key_id} is outside [0, 2**31)")
    return key_id


def load_enrolment(path: Path) -> Enrolment:
    where = str(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise EnrolmentError(where, "file", f"cannot be read ({exc.strerror})") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnrolmentError(where, "file", f"is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise EnrolmentError(where, "file", "is not a JSON object")
    if doc.get("format") != ENROLMENT_FORMAT:
        raise EnrolmentError(where, "format", f"expected {ENROLMENT_FORMAT!r}")
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
    identity = DeviceIdentity(
        device_id,
        _key_id(doc, where),
        _b64(doc, "mac_key", MAC_KEY_SIZE, where),
        Ed25519PrivateKey.from_private_bytes(_b64(doc, "signing_key", 32, where)),
        units,
    )
    return Enrolment(
        identity,
        Ed25519PublicKey.from_public_bytes(_b64(doc, "server_key", 32, where)),
        _field(doc, "server_key_id", int, where),
        BrokerAddress(_field(broker, "host", str, where, within="broker"), port, protocol_version),
    )
