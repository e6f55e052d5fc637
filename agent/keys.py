"""The terminal's key generations, kept beside its outbox so a key rotation loses nothing.

A rotated enrolment bundle (``yijing provision rotate``) carries key generation N+1. The outbox
may still hold frames sealed under generation N: they are resent byte for byte, the server
still verifies them under N and acknowledges each under the key that sealed it. So the agent
keeps every generation it has run with (``keys.json``, mode 0600, in the data folder) to check
those acknowledgements, and when it starts under a new generation it first signs a checkpoint
over the frames sealed under the old one with the old signing key: a checkpoint binds one key
generation, and an inspector's proof of an old frame must verify under the key that sealed it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioning import DeviceIdentity
from provisioning.identity import raw_private

from .errors import KeyArchiveError

ARCHIVE = "keys.json"


@dataclass(frozen=True, eq=False)
class KeyArchive:
    """The generations this data folder has run with, and which one sealed last."""

    device_id: str
    #: key id → (MAC key, Ed25519 signing key)
    keys: dict[int, tuple[bytes, Ed25519PrivateKey]]
    #: the generation the outbox was last opened with (None: a new data folder)
    last_key_id: int | None

    def previous(self, current: int) -> dict[int, bytes]:
        """MAC keys of the other generations, to verify acknowledgements of older frames."""
        return {k: mac for k, (mac, _) in self.keys.items() if k != current}


def _load(path: Path) -> KeyArchive | None:
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        keys = {
            int(entry["key_id"]): (
                base64.b64decode(entry["mac_key"], validate=True),
                Ed25519PrivateKey.from_private_bytes(
                    base64.b64decode(entry["signing_key"], validate=True)
                ),
            )
            for entry in doc["keys"]
        }
        last = doc.get("last_key_id")
        return KeyArchive(str(doc["device_id"]), keys, None if last is None else int(last))
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise KeyArchiveError(f"{path}: not a key archive ({exc})") from exc


def _save(path: Path, archive: KeyArchive) -> None:
    doc = {
        "device_id": archive.device_id,
        "last_key_id": archive.last_key_id,
        "keys": [
            {
                "key_id": key_id,
                "mac_key": base64.b64encode(mac).decode(),
                "signing_key": base64.b64encode(raw_private(signing)).decode(),
            }
            for key_id, (mac, signing) in sorted(archive.keys.items())
        ],
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(doc, indent=2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def open_archive(data_dir: Path, identity: DeviceIdentity) -> KeyArchive:
    """The archive with ``identity``'s generation added (written before the outbox is used).

    Refuses a data folder that belongs to another terminal: its outbox holds that terminal's
    sealed frames and sequence numbers, and running on would mix two identities' histories.
    """
    path = data_dir / ARCHIVE
    archive = _load(path)
    if archive is None:
        archive = KeyArchive(identity.device_id, {}, None)
    if archive.device_id != identity.device_id:
        raise KeyArchiveError(
            f"{data_dir} belongs to terminal {archive.device_id!r}, not {identity.device_id!r}"
        )
    known = archive.keys.get(identity.key_id)
    if known is not None and known[0] != identity.mac_key:
        raise KeyArchiveError(
            f"key {identity.key_id} of {identity.device_id} in {path} differs from the bundle's:"
            " a re-issued bundle must carry a new key id (use `yijing provision rotate`)"
        )
    keys = {**archive.keys, identity.key_id: (identity.mac_key, identity.signing_key)}
    updated = KeyArchive(identity.device_id, keys, archive.last_key_id)
    if known is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        _save(path, updated)
    return updated


def mark_used(data_dir: Path, archive: KeyArchive, key_id: int) -> KeyArchive:
    """Record that the outbox now seals under ``key_id``."""
    if archive.last_key_id == key_id:
        return archive
    updated = KeyArchive(archive.device_id, archive.keys, key_id)
    _save(data_dir / ARCHIVE, updated)
    return updated
