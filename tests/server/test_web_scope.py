"""Every guarded route refuses the anonymous and the wrong role, and the terminal routes keep
to the caller's scope: another station's track, pictures and refusal counts are "not there"."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from protocol import Position, Snapshot, SnapshotTrigger
from server.ingest import Accepted
from server.live import LiveState
from server.org.store import OrgStore
from server.sqlite_store import SqliteStore
from server.web import (
    config_routes,
    device_routes,
    dispatch_routes,
    duty_routes,
    field_routes,
    metrics_routes,
    org_routes,
    report_routes,
    session_routes,
    spotcheck_routes,
)
from server.web.access import ACCOUNTS, PUBLIC, Principal, Role, roles_of
from server.web.keys import FILES, LIVE, ORG, STATS

from .accounts.support import PASSWORD, accounts
from .org.support import build
from .support import T0, Terminal, api_app, device_key, device_record, fix

TOKENS = {
    "officer-all": Principal("Officer Zhou", Role.OFFICER),
    "officer-ft": Principal("Officer Li", Role.OFFICER, "ft"),
    "volunteer": Principal("Volunteer Chen", Role.VOLUNTEER),
}
ALL_ROUTES = [
    org_routes.routes,
    duty_routes.routes,
    spotcheck_routes.routes,
    report_routes.routes,
    dispatch_routes.routes,
    field_routes.routes,
    config_routes.routes,
    session_routes.routes,
    device_routes.routes,
    metrics_routes.routes,
]
JPEG = b"\xff\xd8\xff\xe0" + bytes(64) + b"\xff\xd9"

Client = TestClient[web.Request, web.Application]


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def picture(jpeg: bytes) -> Snapshot:
    return Snapshot(
        captured_ms=T0,
        trigger=SnapshotTrigger.PERIODIC,
        width=4,
        height=4,
        sha256=hashlib.sha256(jpeg).digest(),
        jpeg=jpeg,
    )


def _run(tmp_path: Path, body: Callable[[Client, web.Application], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        orgs = OrgStore(tmp_path / "org.db")
        build(orgs)
        people = accounts(tmp_path)
        people.create("chen", PASSWORD, role="volunteer", volunteer_id="chen")
        app = api_app(
            tmp_path, store, TOKENS, routes=ALL_ROUTES, services={ORG: orgs, ACCOUNTS: people}
        )
        live: LiveState = app[LIVE]
        live.set_directory({"t-1": "ft-s1", "t-2": "ns-s1"}, {})
        for i, device in enumerate(("t-1", "t-2")):
            t = Terminal(device)
            store.add_device(device_record(t.identity), device_key(t.identity))
            jpeg = JPEG + bytes([i])
            shot = picture(jpeg)
            app[FILES].put(shot.sha256.hex(), jpeg)
            frames = [(Position(fix=fix(T0)), 1), (shot, 2)]
            store.store_frames([t.incoming(m, seq) for m, seq in frames])
            live.apply([Accepted(device, seq, m, T0) for m, seq in frames])
        stats = app[STATS]
        stats.rejected.update(Counter({("t-1", "mac"): 2, ("t-2", "mac"): 3}))  # type: ignore[attr-defined]
        stats.future_fixes.update(Counter({"t-2": 1}))  # type: ignore[attr-defined]
        try:
            async with TestClient(TestServer(app)) as client:
                await body(client, app)
        finally:
            people.store.close()
            orgs.close()
            store.close()

    asyncio.run(main())


def _example_path(info: dict[str, object]) -> str:
    """A path the route matches: each plain ``{name}`` as "x", each ``{name:a|b}`` as its
    first choice."""
    if "path" in info:
        return str(info["path"])
    pattern = info["pattern"].pattern  # type: ignore[attr-defined]
    groups = re.findall(r"\(\?P<(\w+)>([^)]*)\)", pattern)
    values = {name: "x" if rx == "[^{}/]+" else rx.split("|")[0] for name, rx in groups}
    path = str(info["formatter"]).format(**values)
    assert re.fullmatch(pattern, path), path
    return path


def test_every_guarded_route_refuses_the_anonymous_and_the_wrong_role(tmp_path: Path) -> None:
    """The whole server's route table, enumerated: nothing that declares roles answers
    without them. A volunteer has no officer's, inspector's or admin's route."""

    async def body(client: Client, app: web.Application) -> None:
        checked = 0
        for route in app.router.routes():
            roles = roles_of(route.handler)
            assert roles is not None
            if roles == PUBLIC or route.method == "HEAD":
                continue
            assert Role.VOLUNTEER not in roles, route
            path = _example_path(route.resource.get_info())  # type: ignore[union-attr]
            anonymous = await client.request(route.method, path)
            assert anonymous.status == 401, (route.method, path, anonymous.status)
            volunteer = await client.request(route.method, path, headers=h("volunteer"))
            assert volunteer.status == 403, (route.method, path, volunteer.status)
            checked += 1
        assert checked >= 40  # the table really was walked
        assert {r.resource.canonical for r in app.router.routes()} >= {  # type: ignore[union-attr]
            "/api/v1/accounts",
            "/api/v1/accounts/{name}",
            "/api/v1/session",
        }

    _run(tmp_path, body)


def test_every_guarded_route_refuses_a_volunteer_signed_in_with_a_password(
    tmp_path: Path,
) -> None:
    """The same walk with a browser session: a volunteer's cookie opens nothing, with or
    without the CSRF header, and an unsafe request without it is refused before its role is
    even looked at."""

    async def body(client: Client, app: web.Application) -> None:
        r = await client.post("/api/v1/session", json={"username": "chen", "password": PASSWORD})
        assert r.status == 200
        csrf = (await r.json())["csrf"]
        checked = 0
        for route in app.router.routes():
            roles = roles_of(route.handler)
            if roles == PUBLIC or route.method == "HEAD":
                continue
            path = _example_path(route.resource.get_info())  # type: ignore[union-attr]
            r = await client.request(route.method, path, headers={"X-CSRF-Token": csrf})
            assert r.status == 403, (route.method, path, r.status)
            if route.method in ("POST", "PUT", "PATCH", "DELETE"):
                r = await client.request(route.method, path)
                assert r.status == 403 and "X-CSRF-Token" in (await r.json())["error"], path
            checked += 1
        assert checked >= 40

    _run(tmp_path, body)


def test_terminal_routes_keep_to_the_scope(tmp_path: Path) -> None:
    async def body(client: Client, app: web.Application) -> None:
        for kind in ("track", "snapshots"):
            mine = await client.get(f"/api/v1/terminals/t-1/{kind}", headers=h("officer-ft"))
            assert mine.status == 200
            other = await client.get(f"/api/v1/terminals/t-2/{kind}", headers=h("officer-ft"))
            assert other.status == 404 and "no terminal 't-2'" in (await other.json())["error"]
            everyone = await client.get(f"/api/v1/terminals/t-2/{kind}", headers=h("officer-all"))
            assert everyone.status == 200
        mine_jpeg = hashlib.sha256(JPEG + b"\x00").hexdigest()
        other_jpeg = hashlib.sha256(JPEG + b"\x01").hexdigest()
        r = await client.get(f"/api/v1/snapshots/{mine_jpeg}.jpg", headers=h("officer-ft"))
        assert r.status == 200 and await r.read() == JPEG + b"\x00"
        r = await client.get(f"/api/v1/snapshots/{other_jpeg}.jpg", headers=h("officer-ft"))
        assert r.status == 404
        r = await client.get(f"/api/v1/snapshots/{other_jpeg}.jpg", headers=h("officer-all"))
        assert r.status == 200

        scoped = await (await client.get("/api/v1/stats", headers=h("officer-ft"))).json()
        assert scoped["rejected"] == {"t-1": {"mac": 2}} and scoped["future_fixes"] == {}
        full = await (await client.get("/api/v1/stats", headers=h("officer-all"))).json()
        assert set(full["rejected"]) == {"t-1", "t-2"} and full["future_fixes"] == {"t-2": 1}

    _run(tmp_path, body)
