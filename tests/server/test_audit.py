"""The audit trail: append-only, hash-chained, written for audited routes before they run, and
checked by ``yijing audit verify``, which names the first entry anyone edited."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.audit import GENESIS, AuditLog, Entry, entry_hash
from server.errors import StoreError
from server.sqlite_store import SqliteStore
from server.web.access import Principal, Role
from server.web.keys import AUDIT
from yijing.cli import main

from .support import api_app

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
