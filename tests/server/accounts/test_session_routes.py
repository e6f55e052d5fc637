"""Signing in with a password over HTTP: cookies, CSRF, the WebSocket's origin, the throttle,
token links becoming sessions, and admins who keep to their subtree."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.accounts import Accounts
from server.org.store import OrgStore
from server.sqlite_store import SqliteStore
from server.web import session_routes
from server.web.access import ACCOUNTS, SECURE_COOKIES, THROTTLE, Principal, Role
from server.web.keys import ORG
from server.web.throttle import SignInThrottle

from ..org.support import build
from ..support import api_app
from .support import PASSWORD, accounts

Client = TestClient[web.Request, web.Application]
TOKENS = {"machine": Principal("Dispatch bot", Role.OFFICER)}


def _run(
    tmp_path: Path,
    body: Callable[[Client, Accounts], Awaitable[None]],
    *,
    secure: bool = False,
) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        orgs = OrgStore(tmp_path / "org.db")
        build(orgs)
        acc = accounts(tmp_path)
        acc.create("root", PASSWORD, role="admin")
        acc.create("ft-admin", PASSWORD, role="admin", scope="ft")
        acc.create("li", PASSWORD, role="officer", scope="ft-s1")
        acc.create("nan", PASSWORD, role="officer", scope="ns-s1")
        extra = {SECURE_COOKIES: True} if secure else {}
        app = api_app(
            tmp_path,
            store,
            TOKENS,
            routes=[session_routes.routes],
            services={ORG: orgs, ACCOUNTS: acc, THROTTLE: SignInThrottle(), **extra},
        )
        try:
            async with TestClient(TestServer(app)) as client:
                await body(client, acc)
        finally:
            acc.store.close()
            orgs.close()
            store.close()

    asyncio.run(main())


async def sign_in(client: Client, username: str, password: str = PASSWORD) -> str:
    """Signs in (the client keeps the cookies); returns the CSRF token."""
    r = await client.post("/api/v1/session", json={"username": username, "password": password})
    assert r.status == 200, await r.text()
    return str((await r.json())["csrf"])


def cookies_of(response: object) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):  # type: ignore[attr-defined]
        jar.load(header)
    return jar


def test_a_password_sign_in_sets_strict_cookies_and_csrf_guards_unsafe_methods(
    tmp_path: Path,
) -> None:
    async def body(client: Client, acc: Accounts) -> None:
        r = await client.post("/api/v1/session", json={"username": "root", "password": PASSWORD})
        assert r.status == 200
        jar = cookies_of(r)
        session, csrf = jar["yj_session"], jar["yj_csrf"]
        assert session["httponly"] and not csrf["httponly"]
        assert session["samesite"] == csrf["samesite"] == "Strict"
        assert session["path"] == "/" and not session["secure"]  # plain HTTP in the test
        assert csrf.value == (await r.json())["csrf"]
        me = await (await client.get("/api/v1/me")).json()
        assert me["name"] == "root" and me["role"] == "admin" and me["csrf"] == csrf.value

        new = {"username": "wu", "password": PASSWORD, "role": "officer", "scope": "ft-s1"}
        r = await client.post("/api/v1/accounts", json=new)
        assert r.status == 403 and "X-CSRF-Token" in (await r.json())["error"]
        r = await client.post("/api/v1/accounts", json=new, headers={"X-CSRF-Token": "x" * 43})
        assert r.status == 403
        # The cookie's own value is not enough: it must equal the session's token.
        other = await sign_in(client, "li")
        r = await client.post("/api/v1/accounts", json=new, headers={"X-CSRF-Token": other})
        assert r.status == 403  # li's session now (officer); root's token is not li's…
        csrf_root = await sign_in(client, "root")
        r = await client.post("/api/v1/accounts", json=new, headers={"X-CSRF-Token": other})
        assert r.status == 403  # …and li's token does not pass for root's session
        r = await client.post("/api/v1/accounts", json=new, headers={"X-CSRF-Token": csrf_root})
        assert r.status == 201 and (await r.json())["username"] == "wu"
        assert acc.store.get("wu") is not None

    _run(tmp_path, body)


def test_bearer_requests_need_no_csrf_header(tmp_path: Path) -> None:
    async def body(client: Client, acc: Accounts) -> None:
        r = await client.delete("/api/v1/session", headers={"Authorization": "Bearer machine"})
        assert r.status == 204
        r = await client.get("/api/v1/me", headers={"Authorization": "Bearer machine"})
        assert (await r.json())["name"] == "Dispatch bot"

    _run(tmp_path, body)


def test_failed_sign_ins_get_one_answer_and_are_throttled(tmp_path: Path) -> None:
    async def body(client: Client, acc: Accounts) -> None:
        errors = set()
        for i in range(10):
            user = "root" if i % 2 else "nobody"
            r = await client.post(
                "/api/v1/session", json={"username": user, "password": "wrong password"}
            )
            assert r.status == 401
            errors.add((await r.json())["error"])
        assert errors == {"unknown username or wrong password"}
        r = await client.post("/api/v1/session", json={"username": "root", "password": PASSWORD})
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1

    _run(tmp_path, body)


def test_sign_in_wants_json(tmp_path: Path) -> None:
    async def body(client: Client, acc: Accounts) -> None:
        form = {"username": "root", "password": PASSWORD}
        r = await client.post("/api/v1/session", data=form)
        assert r.status == 400 and "application/json" in (await r.json())["error"]
        r = await client.post("/api/v1/session", json={"username": "root", "pw": PASSWORD})
        assert r.status == 400 and (await r.json())["error"].startswith("pw: unknown field")
        r = await client.post("/api/v1/session", json={"username": 5, "password": PASSWORD})
        assert r.status == 400 and (await r.json())["error"] == "username: must be text"
        big = {"username": "root", "password": "x" * 10_000}
        assert (await client.post("/api/v1/session", json=big)).status == 413

    _run(tmp_path, body)


def test_sign_out_ends_the_session(tmp_path: Path) -> None:
    async def body(client: Client, acc: Accounts) -> None:
        csrf = await sign_in(client, "li")
        old = client.session.cookie_jar.filter_cookies(client.make_url("/"))["yj_session"].value
        assert (await client.delete("/api/v1/session")).status == 403  # no CSRF header
        r = await client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
        assert r.status == 204
        assert (await client.get("/api/v1/me")).status == 401
        # The old cookie, replayed, is refused and cleared.
        r = await client.get("/api/v1/terminals", cookies={"yj_session": old})
        assert r.status == 401 and cookies_of(r)["yj_session"].value == ""

    _run(tmp_path, body)


def test_a_websocket_with_the_cookie_must_come_from_this_origin(tmp_path: Path) -> None:
    async def body(client: Client, acc: Accounts) -> None:
        await sign_in(client, "li")
        host = client.make_url("/").host, client.make_url("/").port
        origin = f"http://{host[0]}:{host[1]}"
        for bad in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
            r = await client.get(
                "/api/v1/live",
                headers={"Upgrade": "websocket", "Connection": "Upgrade", **bad,
                         "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "x" * 22 + "=="},
            )  # fmt: skip
            assert r.status == 403, bad
        ws = await client.ws_connect("/api/v1/live", origin=origin)
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        await ws.close()

    _run(tmp_path, body)


def test_a_token_link_opens_a_session(tmp_path: Path) -> None:
    async def body(client: Client, acc: Accounts) -> None:
        r = await client.get("/login?token=machine", allow_redirects=False)
        assert r.status == 302
        jar = cookies_of(r)
        assert jar["yj_session"].value and jar["yj_csrf"].value and not jar["yj_token"].value
        me = await (await client.get("/api/v1/me")).json()
        assert me["name"] == "Dispatch bot" and me["account"] is None
        r = await client.get("/login")
        assert r.status == 200 and "<form" in await r.text()

    _run(tmp_path, body)


def test_secure_cookies_when_configured(tmp_path: Path) -> None:
    async def body(client: Client, acc: Accounts) -> None:
        r = await client.post("/api/v1/session", json={"username": "li", "password": PASSWORD})
        assert cookies_of(r)["yj_session"]["secure"]

    _run(tmp_path, body, secure=True)


def test_a_scoped_admin_keeps_to_the_subtree(tmp_path: Path) -> None:
    async def body(client: Client, acc: Accounts) -> None:
        csrf = await sign_in(client, "ft-admin")
        h = {"X-CSRF-Token": csrf}
        listed = await (await client.get("/api/v1/accounts")).json()
        assert [a["username"] for a in listed["accounts"]] == ["ft-admin", "li"]

        def new(**kw: object) -> dict[str, object]:
            return {"username": "wu", "password": PASSWORD, "role": "officer", **kw}

        r = await client.post("/api/v1/accounts", json=new(scope="ns-s1"), headers=h)
        assert r.status == 403 and "ns-s1" in (await r.json())["error"]
        r = await client.post("/api/v1/accounts", json=new(), headers=h)
        assert r.status == 403 and "scope" in (await r.json())["error"]
        r = await client.post("/api/v1/accounts", json=new(scope="ft-s1", password="short"),
                              headers=h)  # fmt: skip
        assert r.status == 400 and (await r.json())["error"].startswith("password: ")
        r = await client.post("/api/v1/accounts", json=new(scope="nowhere"), headers=h)
        assert r.status == 403
        r = await client.post(
            "/api/v1/accounts",
            json=new(scope="ft-s1", role="volunteer", volunteer_id="chen"),  # chen is ns-s1's
            headers=h,
        )
        assert r.status == 400 and (await r.json())["error"].startswith("volunteer_id: ")
        r = await client.post("/api/v1/accounts", json=new(scope="ft-s2"), headers=h)
        assert r.status == 201
        r = await client.post("/api/v1/accounts", json=new(scope="ft-s2"), headers=h)
        assert r.status == 409

        # Another district's account is not there; moving one out of the subtree is refused.
        r = await client.patch("/api/v1/accounts/nan", json={"disabled": True}, headers=h)
        assert r.status == 404
        r = await client.patch("/api/v1/accounts/li", json={"scope": "ns"}, headers=h)
        assert r.status == 403
        r = await client.patch("/api/v1/accounts/ft-admin", json={"role": "officer"}, headers=h)
        assert r.status == 400
        r = await client.patch(
            "/api/v1/accounts/li", json={"role": "inspector", "disabled": True}, headers=h
        )
        assert r.status == 200 and (await r.json())["disabled"] is True
        assert acc.store.get("li").role is Role.INSPECTOR  # type: ignore[union-attr]

    _run(tmp_path, body)
