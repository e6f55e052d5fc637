"""Registered terminals as an administrator manages them: key generations and revocation.

Revoking here does at once what ``yijing provision revoke`` does from another process: the
store records it (append-only), the key ring refuses the terminal's next frame without
waiting for ingest to re-read the store, and the station CA (if this server has one) puts the
terminal's certificates on the CRL, which the embedded secure broker re-reads within
``BROKER_SYNC_S`` (``server.broker_sync``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioning.pki import PkiError, StationCA

from .errors import ServerError
from .keyring import StoreKeyRing
from .store import Store


class UnknownDevice(ServerError):
    """No terminal of that id is registered."""


@dataclass(frozen=True, slots=True)
class DeviceView:
    device_id: str
    label: str
    units: tuple[str, ...]
    created_ms: int
    key_ids: tuple[int, ...]
    revoked_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "label": self.label,
            "units": list(self.units),
            "created_ms": self.created_ms,
            "key_ids": list(self.key_ids),
            "revoked_ms": self.revoked_ms,
        }


class DeviceRegistry:
    def __init__(
        self,
        store: Store,
        keyring: StoreKeyRing,
        pki_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._pki_dir = pki_dir
        self._clock = clock
        self._lock = threading.Lock()  # one revocation at a time: the CA index is one file

    def list(self) -> list[DeviceView]:
        revoked = self._store.revoked()
        key_ids: dict[str, list[int]] = {}
        for key in self._store.keys():  # noqa: SIM118 (a Store method, not a dict)
            key_ids.setdefault(key.device_id, []).append(key.key_id)
        return [
            DeviceView(
                d.device_id,
                d.label,
                d.units,
                d.created_ms,
                tuple(sorted(key_ids.get(d.device_id, ()))),
                revoked[d.device_id][0] if d.device_id in revoked else None,
            )
            for d in self._store.devices()
        ]

    def get(self, device_id: str) -> DeviceView | None:
        return next((d for d in self.list() if d.device_id == device_id), None)

    def revoke(self, device_id: str, reason: str) -> DeviceView:
        """Idempotent: revoking a revoked terminal changes nothing and says when it was."""
        with self._lock:
            if self.get(device_id) is None:
                raise UnknownDevice(f"no terminal {device_id!r} is registered")
            at_ms = int(self._clock() * 1000)
            self._store.revoke_device(device_id, at_ms=at_ms, reason=reason)
            self._keyring.revoke(device_id, at_ms)
            if StationCA.exists(self._pki_dir):
                ca = StationCA.load(self._pki_dir)
                # PkiError: enrolled without a certificate (a plain mqtt:// bundle).
                with contextlib.suppress(PkiError):
                    ca.revoke(device_id, reason, at_ms=at_ms)
            view = self.get(device_id)
            assert view is not None
            return view
