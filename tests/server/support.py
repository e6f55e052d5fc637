"""Builders shared by the server's unit tests: terminals, sealed frames, stored frames."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import (
    DeviceEndpoint,
    Fix,
    Message,
    Position,
    PositionBatch,
    Snapshot,
    decode,
    digest,
)
from provisioning import DeviceIdentity, new_device
from provisioning.identity import raw_public
from server.ingest import IngestStats
from server.live import Hub, LiveState
from server.snapshots import SnapshotFiles
from server.store import Device, DeviceKey, IncomingFrame, SnapshotMeta, Store
from server.web.access import Principal, Routes, TokenAuthenticator
from server.web.app import make_app

T0 = 1_763_900_000_000
SERVER_KEY = Ed25519PrivateKey.generate()


def fix(t_ms: int, lat: float = 22.5431, lon: float = 114.0579) -> Fix:
    return Fix(time_ms=t_ms, lat=lat, lon=lon, accuracy_m=5.0, speed_mps=1.3)


def device_key(identity: DeviceIdentity) -> DeviceKey:
    return DeviceKey(
        identity.device_id, identity.key_id, identity.mac_key, raw_public(identity.public_key)
    )


def device_record(identity: DeviceIdentity, label: str = "", created_ms: int = T0) -> Device:
    return Device(identity.device_id, label, identity.units, created_ms)


class Terminal:
    """A terminal's keys and its sans-IO endpoint."""

    def __init__(self, device_id: str, *, key_id: int = 1) -> None:
        self.identity = new_device(device_id, key_id=key_id)
        self.endpoint = DeviceEndpoint(
            device_id=device_id,
            key_id=key_id,
            mac_key=self.identity.mac_key,
            signing_key=self.identity.signing_key,
            server_key=SERVER_KEY.public_key(),
        )

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    def frame(self, message: Message, seq: int, *, sent_ms: int = T0) -> tuple[str, bytes]:
        out = self.endpoint.seal(message, seq=seq, sent_ms=sent_ms)
        return out.topic, out.payload

    def incoming(
        self, message: Message, seq: int, *, sent_ms: int = T0, received_ms: int = T0 + 500
    ) -> IncomingFrame:
        """What ingest hands the store for this message."""
        _, payload = self.frame(message, seq, sent_ms=sent_ms)
        fixes: tuple[Fix, ...] = ()
        if isinstance(message, Position):
            fixes = (message.fix,)
        elif isinstance(message, PositionBatch):
            fixes = message.fixes
        env = decode(payload).envelope
        snapshot = None
        if isinstance(message, Snapshot):
            snapshot = SnapshotMeta(
                env.party, env.seq, message.sha256.hex(), message.captured_ms,
                message.trigger.value, message.width, message.height, len(message.jpeg),
                received_ms, message.request_id, None, None,
            )  # fmt: skip
        return IncomingFrame(
            device_id=env.party,
            seq=env.seq,
            key_id=env.key_id,
            type_code=message.TYPE,
            sent_ms=env.sent_ms,
            received_ms=received_ms,
            payload=payload,
            digest=digest(payload),
            fixes=fixes,
            snapshot=snapshot,
        )


def api_app(
    tmp_path: Path,
    store: Store,
    tokens: Mapping[str, Principal],
    *,
    routes: Sequence[Routes],
    services: Mapping[web.AppKey[Any], object],
    clock: Callable[[], float] | None = None,
) -> web.Application:
    """The server's web app with these route tables and services, the people of ``tokens``
    signed in by bearer token, and an empty live feed (the route modules' tests)."""
    auth = TokenAuthenticator({})
    for token, principal in tokens.items():
        auth.add(token, principal)
    hub = Hub()
    return make_app(
        store=store,
        live=LiveState(hub),
        hub=hub,
        auth=auth,
        stats=IngestStats(),
        snapshot_files=SnapshotFiles(tmp_path / "snapshots"),
        extra_routes=routes,
        services=services,
        **({} if clock is None else {"clock": clock}),
    )
