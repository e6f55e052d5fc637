"""A person signs in with a password in a real Chromium, sees the live map (its WebSocket
carries the session cookie from the page's own origin), the page's own POSTs carry the CSRF
token while a bare POST with the cookie is refused, and signing out ends the session."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from server.org.store import OrgStore
from server.sqlite_store import SqliteStore
from server.web import session_routes
from server.web.access import ACCOUNTS
from server.web.keys import ORG
from tests.server.accounts.support import PASSWORD, accounts
from tests.server.org.support import build
from tests.server.support import api_app


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    store = SqliteStore(tmp_path / "s.db")
    orgs = OrgStore(tmp_path / "org.db")
    build(orgs)
    people = accounts(tmp_path)
    people.create("root", PASSWORD, role="admin", display_name="管理员")
    app = api_app(
        tmp_path, store, {}, routes=[session_routes.routes], services={ORG: orgs, ACCOUNTS: people}
    )
    runner = web.AppRunner(app)
    started = threading.Event()
    port: list[int] = []

    async def start() -> None:
        await runner.setup()
        tcp = web.TCPSite(runner, "127.0.0.1", 0)
        await tcp.start()
        port.append(tcp._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        people.store.close()
        orgs.close()
        store.close()


def test_sign_in_see_the_map_csrf_and_sign_out(browser: Any, site: str) -> None:
    page = browser.new_page(locale="en-US")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(site + "/login?next=/")
    assert page.locator("h1").text_content() == "Sign in"
    page.fill("#username", "root")
    page.fill("#password", "wrong password")
    page.click("#submit")
    page.wait_for_function("document.querySelector('#error').textContent.length > 0")
    assert "wrong password" in page.locator("#error").text_content()
    page.click("#lang")
    assert page.locator("h1").text_content() == "登录"
    page.click("#lang")

    page.fill("#username", "root")
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(site + "/")
    page.wait_for_selector("#conn[data-state='open']", timeout=10_000)  # WebSocket: origin ok
    page.wait_for_function("document.querySelector('#me').textContent.includes('root')")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["yj_session"]["httpOnly"] and not cookies["yj_csrf"]["httpOnly"]
    assert cookies["yj_session"]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").count("yj_session") == 0  # not readable by script

    new = {"username": "li", "password": PASSWORD, "role": "officer", "scope": "ft-s1"}
    bare = page.evaluate(
        "async (b) => (await fetch('/api/v1/accounts', {method: 'POST', body: JSON.stringify(b),"
        " headers: {'Content-Type': 'application/json'}})).status",
        new,
    )
    assert bare == 403
    made = page.evaluate("async (b) => (await YJ.post('/api/v1/accounts', b)).username", new)
    assert made == "li"

    page.click("#signout")
    page.wait_for_url(site + "/login")
    status = page.evaluate("async () => (await fetch('/api/v1/me')).status")
    assert status == 401
    assert errors == []
    page.close()
