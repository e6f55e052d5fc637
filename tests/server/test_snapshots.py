"""Snapshots on the server: verified, stored once by content, served with auth, kept for a
time that depends on why they were taken."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from protocol import Fix, ServerEndpoint, Snapshot, SnapshotTrigger, decode
from protocol.auth import mac, seal_mac
from protocol.frame import Envelope
from server.ingest import Ingest, IngestStats
from server.keyring import StoreKeyRing
from server.live import Hub, LiveState
from server.snapshots import SnapshotFiles
from server.sqlite_store import SqliteStore
from server.web.access import Principal, Role, TokenAuthenticator
from server.web.app import make_app

from .support import SERVER_KEY, T0, Terminal, device_key, device_record

DAY_MS = 86_400_000


def jpeg(k: int) -> bytes:
    return b"\xff\xd8\xff\xe0" + bytes([k % 251]) * (500 + k) + b"\xff\xd9"


def snap(k: int, trigger: SnapshotTrigger = SnapshotTrigger.PERIODIC, *, at: int = T0) -> Snapshot:
    body = jpeg(k)
    return Snapshot(
        captured_ms=at, trigger=trigger, width=640, height=360,
        sha256=hashlib.sha256(body).digest(), jpeg=body,
        fix=Fix(time_ms=at, lat=22.5431, lon=114.0579),
    )  # fmt: skip


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.store = SqliteStore(tmp_path / "y.db")
        self.files = SnapshotFiles(tmp_path / "snapshots")
        self.alice = Terminal("alice")
        self.store.add_device(device_record(self.alice.identity), device_key(self.alice.identity))
        self.live = LiveState(Hub())
        self.ingest = Ingest(
            self.store, StoreKeyRing(self.store), ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
            publish=lambda out: None, on_accepted=self.live.apply, snapshot_files=self.files,
        )  # fmt: skip

    def send(self, *frames: tuple[str, bytes]) -> None:
        self.ingest.process([(t, p, T0 + 100) for t, p in frames])


@pytest.fixture
def rig(tmp_path: Path):
    r = Rig(tmp_path)
    yield r
    r.store.close()


def test_a_snapshot_is_stored_once_by_content_and_shown_live(rig: Rig) -> None:
    s = snap(1)
    rig.send(rig.alice.frame(s, 1))
    rig.send(rig.alice.frame(s, 1))  # a resend
    rig.send(rig.alice.frame(s, 2))  # the same picture again, another frame
    sha = s.sha256.hex()
    assert rig.files.path(sha).read_bytes() == s.jpeg
    assert rig.files.names() == {sha}
    metas = rig.store.snapshots("alice")
    size = len(s.jpeg)
    assert [(m.seq, m.sha256, m.size) for m in metas] == [(2, sha, size), (1, sha, size)]
    [state] = rig.live.snapshot()
    assert state["snapshot"]["sha256"] == sha and state["snapshot"]["url"].endswith(".jpg")
    # The frame itself is kept as sealed: the proof of origin needs its exact bytes.
    assert decode(rig.store.frame("alice", 1)).envelope.message == s


def test_a_corrupted_jpeg_is_rejected_with_a_clear_reason(rig: Rig) -> None:
    good = snap(3)
    damaged = bytearray(good.jpeg)
    damaged[100] ^= 0xFF
    # Sealed with the terminal's real key: the MAC is fine, the content hash is not. The body
    # is built by hand because the Snapshot class itself refuses a mismatched hash.
    envelope_bytes = seal_mac(Envelope("alice", 1, 1, T0, good), rig.alice.identity.mac_key)
    forged = envelope_bytes.replace(good.jpeg, bytes(damaged))
    forged = forged[:-16] + mac(rig.alice.identity.mac_key, forged[:-16])
    rig.send(("yj/1/up/alice/snap", forged))
    assert rig.store.snapshots("alice") == [] and rig.files.names() == set()
    assert rig.ingest.stats.rejected == {("alice", "InvalidField: Snapshot.sha256"): 1}


def test_retention_depends_on_why_the_picture_was_taken(rig: Rig) -> None:
    old = T0 - 30 * DAY_MS
    routine = snap(4, SnapshotTrigger.PERIODIC, at=old)
    evidence = snap(5, SnapshotTrigger.EVENT, at=old)
    shared = snap(6, SnapshotTrigger.PERIODIC, at=old)
    shared_later = snap(6, SnapshotTrigger.REQUEST, at=T0)  # same bytes, kept for its request
    rig.send(
        rig.alice.frame(routine, 1), rig.alice.frame(evidence, 2),
        rig.alice.frame(shared, 3), rig.alice.frame(shared_later, 4),
    )  # fmt: skip
    gone = rig.store.expire_snapshots("periodic", T0 - 7 * DAY_MS)
    assert gone == [routine.sha256.hex()]  # the shared picture is still referenced
    # The expired frames no longer hold the pictures either; the others still do.
    assert rig.store.frame("alice", 1) == b"" and rig.store.frame("alice", 3) == b""
    assert decode(rig.store.frame("alice", 2)).envelope.message == evidence
    assert {m.trigger for m in rig.store.snapshots("alice")} == {"event", "request"}


def test_snapshot_files_are_served_to_officers_only(rig: Rig, tmp_path: Path) -> None:
    s = snap(7)
    rig.send(rig.alice.frame(s, 1))
    auth = TokenAuthenticator({})
    auth.add("officer", Principal("Li", Role.OFFICER))
    auth.add("volunteer", Principal("Chen", Role.VOLUNTEER))
    app = make_app(
        store=rig.store, live=rig.live, hub=Hub(), auth=auth, stats=IngestStats(),
        snapshot_files=rig.files,
    )  # fmt: skip
    sha = s.sha256.hex()

    async def body() -> None:
        async with TestClient(TestServer(app)) as client:
            officer = {"Authorization": "Bearer officer"}
            r = await client.get(f"/api/v1/snapshots/{sha}.jpg", headers=officer)
            assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
            assert await r.read() == s.jpeg
            r = await client.get(f"/api/v1/snapshots/{sha}.jpg")
            assert r.status == 401
            r = await client.get(
                f"/api/v1/snapshots/{sha}.jpg", headers={"Authorization": "Bearer volunteer"}
            )
            assert r.status == 403
            r = await client.get("/api/v1/snapshots/../../etc.jpg", headers=officer)
            assert r.status in (400, 404)
            r = await client.get("/api/v1/snapshots/ABC.jpg", headers=officer)
            assert r.status == 400 and "sha256" in (await r.json())["error"]
            r = await client.get(f"/api/v1/snapshots/{'0' * 64}.jpg", headers=officer)
            assert r.status == 404
            r = await client.get("/api/v1/terminals/alice/snapshots", headers=officer)
            [meta] = (await r.json())["snapshots"]
            assert meta["sha256"] == sha and meta["trigger"] == "periodic"

    asyncio.run(body())


def test_orphan_files_from_a_crash_are_removed_once_old(rig: Rig) -> None:
    import os
    import time

    kept = snap(8)
    rig.send(rig.alice.frame(kept, 1))
    orphan = rig.files.put("ab" * 32, b"\xff\xd8orphan")  # written, then the server died
    assert rig.files.remove_orphans(rig.store.snapshot_hashes(), older_than_s=3600) == 0
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    assert rig.files.remove_orphans(rig.store.snapshot_hashes(), older_than_s=3600) == 1
    assert rig.files.names() == {kept.sha256.hex()}
