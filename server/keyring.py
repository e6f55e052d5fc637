"""Terminal keys in memory, loaded from the store: the MAC check must not touch the disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .store import DeviceKey, Store

#: How often an unknown (device, key id) may send us back to the store: a stranger flooding
#: made-up ids must not turn each frame into a query.
MISS_RETRY_S = 10.0


class StoreKeyRing:
    """``protocol.KeyRing`` over the store, with negative caching of misses."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, int], DeviceKey] = {
            (k.device_id, k.key_id): k
            for k in store.keys()  # noqa: SIM118
        }
        self._public: dict[tuple[str, int], Ed25519PublicKey] = {}
        self._misses: dict[tuple[str, int], float] = {}
        #: Revoked terminals (device → when), and the last revocation row read from the store.
        self._revoked: dict[str, int] = {}
        self._revoked_rowid = 0
        self.refresh_revocations()

    def refresh_revocations(self) -> None:
        """Pick up revocations recorded since the last call (by ``yijing provision revoke`` in
        another process, or another server): one indexed query, run by ingest before every
        batch, so a revoked terminal's next frame is refused."""
        fresh = self._store.revoked(after_rowid=self._revoked_rowid)
        if fresh:
            with self._lock:
                for device, (at_ms, rowid) in fresh.items():
                    self._revoked.setdefault(device, at_ms)
                    self._revoked_rowid = max(self._revoked_rowid, rowid)

    def revoke(self, device_id: str, at_ms: int) -> None:
        """Refuse this terminal from now on, in this process (the store records it too)."""
        with self._lock:
            self._revoked.setdefault(device_id, at_ms)

    def revoked_at(self, device_id: str) -> int | None:
        return self._revoked.get(device_id)

    def _get(self, party: str, key_id: int) -> DeviceKey | None:
        ident = (party, key_id)
        key = self._keys.get(ident)
        if key is not None:
            return key
        with self._lock:
            missed = self._misses.get(ident)
            if missed is not None and self._clock() - missed < MISS_RETRY_S:
                return None
            key = self._store.key(party, key_id)
            if key is None:
                if len(self._misses) > 100_000:
                    self._misses.clear()
                self._misses[ident] = self._clock()
                return None
            self._keys[ident] = key
            self._misses.pop(ident, None)
            return key

    def add(self, key: DeviceKey) -> None:
        with self._lock:
            self._keys[(key.device_id, key.key_id)] = key
            self._misses.pop((key.device_id, key.key_id), None)

    def mac_key(self, party: str, key_id: int) -> bytes | None:
        key = self._get(party, key_id)
        return None if key is None else key.mac_key

    def public_key(self, party: str, key_id: int) -> Ed25519PublicKey | None:
        ident = (party, key_id)
        public = self._public.get(ident)
        if public is None:
            key = self._get(party, key_id)
            if key is None:
                return None
            public = Ed25519PublicKey.from_public_bytes(key.public_key)
            self._public[ident] = public
        return public
