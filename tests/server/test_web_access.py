"""Every route declares its roles and one middleware enforces them; bad requests say why."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from protocol import Fix, Position
from server.errors import ConfigError
from server.ingest import Accepted, IngestStats
from server.live import Hub, LiveState
from server.snapshots import SnapshotFiles
from server.sqlite_store import SqliteStore
from server.web.access import Principal, Role, Routes, TokenAuthenticator, check_declared
from server.web.app import make_app

TOKENS = {
    "officer-token": Principal("Officer Li", Role.OFFICER),
    "inspector-token": Principal("Inspector Wang", Role.INSPECTOR),
    "volunteer-token": Principal("Volunteer Chen", Role.VOLUNTEER),
}


def _run(tmp_path: Path, body: Callable[[TestClient, LiveState], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        auth = TokenAuthenticator({})
        for token, principal in TOKENS.items():
            auth.add(token, principal)
        hub = Hub()
        live = LiveState(hub)
        app = make_app(
            store=store,
            live=live,
            hub=hub,
            auth=auth,
            stats=IngestStats(),
            snapshot_files=SnapshotFiles(tmp_path / "snapshots"),
        )
        async with TestClient(TestServer(app)) as client:
            await body(client, live)
        store.close()

    asyncio.run(main())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_routes_refuse_anonymous_and_wrong_roles(tmp_path: Path) -> None:
    async def body(client: TestClient, live: LiveState) -> None:
        r = await client.get("/api/v1/terminals")
        assert r.status == 401
        assert "sign in" in (await r.json())["error"]
        r = await client.get("/api/v1/terminals", headers=bearer("volunteer-token"))
        assert r.status == 403
        assert "volunteer" in (await r.json())["error"]
        r = await client.get("/api/v1/terminals", headers=bearer("not-a-token"))
        assert r.status == 401
        for token in ("officer-token", "inspector-token"):
            r = await client.get("/api/v1/terminals", headers=bearer(token))
            assert r.status == 200
        r = await client.get("/api/v1/health")
        assert r.status == 200

    _run(tmp_path, body)


def test_login_sets_http_only_cookie_that_authenticates(tmp_path: Path) -> None:
    async def body(client: TestClient, live: LiveState) -> None:
        r = await client.get("/login?token=wrong", allow_redirects=False)
        assert r.status == 401
        r = await client.get("/login?token=officer-token", allow_redirects=False)
        assert r.status == 302
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        r = await client.get("/api/v1/me")
        assert (await r.json()) == {"name": "Officer Li", "role": "officer", "scope": None}
        # ?next= goes to a page of this server, never to another site.
        for target, expected in (
            ("/static/reports.html", "/static/reports.html"),
            ("//evil.example/x", "/"),
            ("/\\evil.example", "/"),
            ("https://evil.example/", "/"),
        ):
            r = await client.get(
                "/login",
                params={"token": "officer-token", "next": target},
                allow_redirects=False,
            )
            assert r.status == 302 and r.headers["Location"] == expected, target

    _run(tmp_path, body)


def test_bad_parameters_and_paths_get_clear_json_errors(tmp_path: Path) -> None:
    async def body(client: TestClient, live: LiveState) -> None:
        h = bearer("officer-token")
        r = await client.get("/api/v1/terminals/ft-1/track?limit=abc", headers=h)
        assert r.status == 400
        assert (await r.json())["error"] == "limit: 'abc' is not an integer"
        r = await client.get("/api/v1/terminals/ft-1/track?since_ms=-5", headers=h)
        assert r.status == 400 and "since_ms" in (await r.json())["error"]
        r = await client.get("/api/v1/nothing-here", headers=h)
        assert r.status == 404 and "/api/v1/nothing-here" in (await r.json())["error"]
        r = await client.post("/api/v1/terminals", headers=h)
        assert r.status == 405
        r = await client.get("/static/..%2fapp.py")
        assert r.status == 404

    _run(tmp_path, body)


def test_live_websocket_sends_hello_then_updates(tmp_path: Path) -> None:
    async def body(client: TestClient, live: LiveState) -> None:
        ws = await client.ws_connect("/api/v1/live", headers=bearer("officer-token"))
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello" and hello["terminals"] == []
        fix = Fix(time_ms=1_763_900_000_000, lat=22.5431, lon=114.0579, accuracy_m=5)
        live.apply([Accepted("ft-0001", 1, Position(fix=fix), 1_763_900_000_100)])
        update = await ws.receive_json(timeout=5)
        assert update["type"] == "update"
        [terminal] = update["terminals"]
        assert terminal["device"] == "ft-0001" and terminal["fix"]["lat"] == 22.5431
        await ws.close()

    _run(tmp_path, body)


def test_live_websocket_refuses_anonymous(tmp_path: Path) -> None:
    async def body(client: TestClient, live: LiveState) -> None:
        r = await client.get("/api/v1/live")
        assert r.status == 401

    _run(tmp_path, body)


def test_an_app_with_an_undeclared_route_does_not_start() -> None:
    app = web.Application()

    async def sneaky(request: web.Request) -> web.Response:
        return web.Response(text="no check")

    app.router.add_get("/sneaky", sneaky)
    with pytest.raises(ConfigError, match="/sneaky"):
        check_declared(app)

    routes = Routes()

    @routes.add("GET", "/declared", roles=frozenset({Role.ADMIN}))
    async def declared(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    ok = web.Application()
    ok.add_routes(routes.table)
    check_declared(ok)


def test_token_file_keeps_only_digests(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    auth, first = TokenAuthenticator.load_or_create(path)
    assert first is not None and first not in path.read_text()
    assert auth.check(first) == Principal("admin", Role.ADMIN)
    minted = TokenAuthenticator.issue(path, "Officer Li", Role.OFFICER)
    reloaded, again = TokenAuthenticator.load_or_create(path)
    assert again is None
    assert reloaded.check(minted) == Principal("Officer Li", Role.OFFICER)
    assert reloaded.check("guess") is None
    assert oct(path.stat().st_mode & 0o777) == "0o600"
