"""The audit trail: append-only, hash-chained, written for audited routes before they run, and
checked by ``yijing audit verify``, which names the first entry anyone edited."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from protocol import Position
from server.audit import GENESIS, AuditLog, Entry, entry_hash
from server.errors import StoreError
from server.sqlite_store import SqliteStore
from server.web.access import Principal, Role
from server.web.keys import AUDIT
from yijing.cli import main

from .support import Terminal, api_app, device_key, device_record, fix

T0 = 1_763_900_000_000


def filled(path: Path, n: int = 5) -> AuditLog:
    trail = AuditLog(path)
    for i in range(n):
        trail.append(
            at_ms=T0 + i, actor="officer:李", action="view_track", subject=f"device=t-{i}"
        )
    return trail


def tamper(path: Path, sql: str) -> None:
    """What someone with the file and the sqlite3 tool could do: drop the guards, edit."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS entries_no_update")
    conn.execute("DROP TRIGGER IF EXISTS entries_no_delete")
    conn.execute(sql)
    conn.commit()
    conn.close()


def test_entries_chain_and_verify(tmp_path: Path) -> None:
    trail = filled(tmp_path / "audit.db")
    try:
        entries = trail.entries()
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
        assert entries[0].prev == GENESIS
        assert all(b.prev == a.hash for a, b in itertools.pairwise(entries))
        e = entries[2]
        assert e.hash == entry_hash(e.prev, 3, e.at_ms, e.actor, e.action, e.subject, e.detail)
        result = trail.verify()
        assert result.ok and result.entries == 5 and result.head == entries[-1].hash
        assert AuditLog(tmp_path / "empty.db").verify().head == GENESIS
    finally:
        trail.close()


def test_the_database_refuses_edits_and_deletions(tmp_path: Path) -> None:
    filled(tmp_path / "audit.db").close()
    conn = sqlite3.connect(tmp_path / "audit.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE entries SET actor='nobody' WHERE seq=2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM entries WHERE seq=2")
    conn.close()


@pytest.mark.parametrize(
    ("sql", "broken_at", "reason"),
    [
        ("UPDATE entries SET actor='inspector:someone else' WHERE seq=3", 3, "do not match"),
        ("DELETE FROM entries WHERE seq=2", 2, "is missing"),
        ("UPDATE entries SET prev=hash WHERE seq=4", 4, "does not link"),
    ],
)
def test_an_edit_around_the_guards_is_found(
    tmp_path: Path, sql: str, broken_at: int, reason: str
) -> None:
    path = tmp_path / "audit.db"
    filled(path).close()
    tamper(path, sql)
    trail = AuditLog(path)
    try:
        result = trail.verify()
    finally:
        trail.close()
    assert not result.ok and result.broken_at == broken_at and reason in result.reason
    assert result.entries == broken_at - 1


def test_audited_routes_write_an_entry_before_they_run(tmp_path: Path) -> None:
    tokens = {
        "officer": Principal("Officer Li", Role.OFFICER),
        "volunteer": Principal("Volunteer Chen", Role.VOLUNTEER),
    }

    async def scenario() -> list[dict[str, object]]:
        store = SqliteStore(tmp_path / "s.db")
        trail = AuditLog(tmp_path / "audit.db")
        app = api_app(tmp_path, store, tokens, routes=[], services={AUDIT: trail})
        try:
            async with TestClient(TestServer(app)) as client:
                auth = {"Authorization": "Bearer officer"}
                assert (await client.get("/api/v1/terminals/t-1/track", headers=auth)).status
                await client.get("/api/v1/terminals", headers=auth)  # not an audited route
                await client.get("/api/v1/terminals/t-1/track")  # anonymous: refused, not written
                await client.get(
                    "/api/v1/terminals/t-1/track", headers={"Authorization": "Bearer volunteer"}
                )
                ws = await client.ws_connect("/api/v1/live", headers=auth)
                await ws.receive_json(timeout=5)
                await ws.close()
            return [e.to_json() for e in trail.entries()]
        finally:
            trail.close()
            store.close()

    entries = asyncio.run(scenario())
    assert [(e["action"], e["actor"], e["subject"]) for e in entries] == [
        ("view_track", "officer:Officer Li", "device=t-1"),
        ("watch_live", "officer:Officer Li", ""),
    ]
    assert entries[0]["detail"] == "GET /api/v1/terminals/t-1/track"


class FullDisk(AuditLog):
    def append(self, **entry: object) -> Entry:  # type: ignore[override]
        raise StoreError("audit trail: database or disk is full")


def test_an_unwritable_trail_refuses_the_request(tmp_path: Path) -> None:
    async def scenario() -> int:
        store = SqliteStore(tmp_path / "s.db")
        trail = FullDisk(tmp_path / "audit.db")
        app: web.Application = api_app(
            tmp_path, store, {"officer": Principal("Li", Role.OFFICER)}, routes=[],
            services={AUDIT: trail},
        )  # fmt: skip
        try:
            async with TestClient(TestServer(app)) as client:
                r = await client.get(
                    "/api/v1/terminals/t-1/track", headers={"Authorization": "Bearer officer"}
                )
                assert "audit trail unavailable" in (await r.json())["error"]
                return r.status
        finally:
            trail.close()
            store.close()

    assert asyncio.run(scenario()) == 503


def test_yijing_audit_verify_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    filled(tmp_path / "audit.db").close()
    assert main(["audit", "verify", "--data", str(tmp_path)]) == 0
    assert "intact: 5 entries" in capsys.readouterr().out
    assert main(["audit", "list", "--data", str(tmp_path), "--since", "3", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["seq"] for x in lines] == [4, 5] and lines[0]["actor"] == "officer:李"
    tamper(tmp_path / "audit.db", "UPDATE entries SET subject='device=t-9' WHERE seq=2")
    assert main(["audit", "verify", "--data", str(tmp_path)]) == 1
    assert "BROKEN at entry 2" in capsys.readouterr().err


# --- yijing audit prove ------------------------------------------------------------------------


def _stored(tmp_path: Path, *, checkpoint: bool) -> tuple[list[bytes], int]:
    """Four fixes of one terminal in a store, and (if asked) the checkpoint it signed."""
    store = SqliteStore(tmp_path / "yijing.db")
    t = Terminal("ft-0042")
    store.add_device(device_record(t.identity), device_key(t.identity))
    frames = [t.incoming(Position(fix=fix(T0 + k * 1000)), k) for k in range(1, 5)]
    incoming = list(frames)
    if checkpoint:
        ckpt = t.endpoint.checkpoint(first_seq=1, digests=b"".join(f.digest for f in frames))
        incoming.append(dataclasses.replace(t.incoming(ckpt, 5), checkpoint_range=(1, 4)))
    store.store_frames(incoming)
    store.close()
    return [f.payload for f in frames], T0 + 3000


def test_prove_shows_the_terminal_signed_evidence_for_a_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payloads, at = _stored(tmp_path, checkpoint=True)
    args = ["audit", "prove", "--data", str(tmp_path), "--device", "ft-0042"]
    assert main([*args, "--at", str(at), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["seq"] == 3 and doc["verdict"] == "proven" and doc["message"] == "Position"
    assert bytes.fromhex(doc["frame"]) == payloads[2]
    assert doc["checkpoint_range"] == [1, 4]
    # What a third party does with the printed bytes alone: the signature holds over the
    # checkpoint, and the frame's digest is listed in it.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from protocol import decode
    from protocol.auth import prove

    checkpoint = decode(bytes.fromhex(doc["checkpoint_frame"])).envelope.message
    frame_bytes = bytes.fromhex(doc["frame"])
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(doc["public_key"]))
    assert prove(frame_bytes, decode(frame_bytes), checkpoint, key).seq == 3  # type: ignore[arg-type]
    assert main([*args, "--seq", "1"]) == 0
    assert "PROVEN: ft-0042 #1" in capsys.readouterr().out


def test_prove_says_what_is_missing_or_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _stored(tmp_path, checkpoint=False)
    args = ["audit", "prove", "--data", str(tmp_path), "--device", "ft-0042"]
    assert main([*args, "--seq", "2"]) == 1
    assert "no checkpoint covers ft-0042 #2 yet" in capsys.readouterr().err
    assert main([*args, "--at", "5"]) == 1
    assert "no stored fix" in capsys.readouterr().err
    assert main([*args, "--seq", "99"]) == 1
    assert "no stored frame" in capsys.readouterr().err


def test_prove_refuses_a_frame_altered_after_it_was_signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payloads, _ = _stored(tmp_path, checkpoint=True)
    args = ["audit", "prove", "--data", str(tmp_path), "--device", "ft-0042", "--seq", "2"]
    # Someone with the database swaps frame 2 for frame 3's bytes (a fix moved in time) ...
    conn = sqlite3.connect(tmp_path / "yijing.db")
    conn.execute("UPDATE frames SET payload=? WHERE device_id='ft-0042' AND seq=2", (payloads[2],))
    conn.commit()
    assert main(args) == 1
    assert "stored as ft-0042 #2 says it is ft-0042 #3" in capsys.readouterr().err
    # ... or changes the bytes of the fix itself (its MAC is the server's to recompute, the
    # checkpoint's signature is not).
    forged = bytearray(payloads[1])
    forged[-20] ^= 0x01
    conn.execute(
        "UPDATE frames SET payload=? WHERE device_id='ft-0042' AND seq=2", (bytes(forged),)
    )
    conn.commit()
    conn.close()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "NOT PROVEN" in err and "differs from what the terminal signed" in err, err
