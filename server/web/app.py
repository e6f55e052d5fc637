"""The HTTP side: pages, REST and the live WebSocket. Every route declares its roles."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from ..accounts import Accounts, Session
from ..audit import AuditLog
from ..ingest import IngestStats
from ..live import Hub, LiveState, TerminalDoc
from ..snapshots import SnapshotFiles
from ..store import Store
from .access import (
    ACCOUNTS,
    COOKIE,
    PRINCIPAL,
    PUBLIC,
    SESSION,
    THROTTLE,
    WATCH,
    Authenticator,
    Principal,
    Routes,
    SessionAuthenticator,
    TokenAuthenticator,
    access_middleware,
    check_declared,
    error,
    set_session_cookies,
    too_many,
)
from .keys import AUDIT, AUTH, CLOCK, FILES, HUB, LIVE, ORG, STATS, STORE
from .scope import visible_units
from .throttle import SignInThrottle

log = logging.getLogger("yijing.web")

STATIC = Path(__file__).parent / "static"

routes = Routes()


def _now_ms(request: web.Request) -> int:
    clock: Callable[[], float] = request.app[CLOCK]  # type: ignore[assignment]
    return int(clock() * 1000)


def _int_param(
    request: web.Request, name: str, lo: int, hi: int, default: int | None
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name}: {raw!r} is not an integer"}),
            content_type="application/json",
        ) from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name}: {value} is outside [{lo}, {hi}]"}),
            content_type="application/json",
        )
    return value


@routes.add("GET", "/", roles=PUBLIC)
async def index(request: web.Request) -> web.StreamResponse:
    # The page itself is public; everything it shows comes from role-checked API calls, and it
    # explains how to sign in when those answer 401.
    return web.FileResponse(STATIC / "index.html")


@routes.add("GET", "/admin", roles=PUBLIC)
async def admin(request: web.Request) -> web.StreamResponse:
    # Accounts and terminals. Public like "/": the page's API calls are admin-only, and it
    # tells anybody else (401, 403) so in their language.
    return web.FileResponse(STATIC / "admin.html")


@routes.add("GET", "/static/{name}", roles=PUBLIC)
async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    # Only plain file names inside static/: no "..", no sub-directories, no name longer than a
    # file system allows (is_file() raises ENAMETOOLONG rather than answer).
    if "/" in name or name.startswith(".") or len(name.encode()) > 255:
        return error(404, f"no static file {name[:80]!r}")
    path = STATIC / name
    if not path.is_file() or path.resolve().parent != STATIC.resolve():
        return error(404, f"no static file {name!r}")
    return web.FileResponse(path)


@routes.add("GET", "/login", roles=PUBLIC)
async def login(request: web.Request) -> web.StreamResponse:
    """Without a token: the sign-in form. With one (the link `yijing server` prints): a
    session like a password's, or, in an app without accounts, the token as a cookie."""
    if "token" not in request.query:
        return web.FileResponse(STATIC / "login.html")
    token = request.query.get("token", "")
    auth: TokenAuthenticator = request.app[AUTH]  # type: ignore[assignment]
    throttle = request.app.get(THROTTLE)
    address = request.remote or "?"
    if token and isinstance(throttle, SignInThrottle):
        wait = throttle.retry_after(address)
        if wait is not None:
            return too_many(wait)
    if not token or auth.check(token) is None:
        if token and isinstance(throttle, SignInThrottle):
            throttle.failed(address)
        return error(401, "unknown or missing token")
    # ?next= sends an inspector to /static/reports.html; only a path on this server, never
    # another site ("//host", "/\\host").
    target = request.query.get("next", "/")
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        target = "/"
    response = web.HTTPFound(target)
    accounts = request.app.get(ACCOUNTS)
    if isinstance(accounts, Accounts):
        principal = auth.check(token)
        assert principal is not None
        opened = await asyncio.to_thread(
            accounts.open, principal, token_sha256=TokenAuthenticator.digest(token)
        )
        set_session_cookies(response, request, opened)
        response.del_cookie(COOKIE, path="/")
    else:
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="Strict", secure=request.secure,
            max_age=12 * 3600,
        )  # fmt: skip
    raise response


@routes.add("GET", "/api/v1/health", roles=PUBLIC)
async def health(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok", "server_time_ms": _now_ms(request)})


@routes.add("GET", "/api/v1/me", roles=PUBLIC)
async def me(request: web.Request) -> web.StreamResponse:
    principal = request[PRINCIPAL]
    if principal is None:
        return error(401, "sign in first: /login, or the link printed by `yijing server`")
    doc: dict[str, object] = {
        "name": principal.name,
        "role": principal.role.value,
        "scope": principal.scope,
    }
    session = request[SESSION]
    if isinstance(session, Session):
        # The page may also take it from here (a cookie-less test, an embedded view).
        doc["csrf"] = session.csrf
        doc["account"] = session.username
        doc["expires_ms"] = session.expires_ms
    return web.json_response(doc)


async def _live_units(request: web.Request) -> frozenset[str] | None:
    """The units whose terminals and events the caller may watch (None: all of them)."""
    principal = request[PRINCIPAL]
    if principal is not None and principal.scope is not None and ORG not in request.app:
        return frozenset()  # no organisation store to resolve the scope with: nothing
    units = await visible_units(request)
    return None if units is None else frozenset(units)


async def _sees_terminal(request: web.Request, device: str) -> bool:
    """May the caller see this terminal? Its unit is the one the live map knows (from the
    organisation); a terminal of no unit is seen by unscoped people only."""
    units = await _live_units(request)
    if units is None:
        return True
    doc = request.app[LIVE].get(device)
    return doc is not None and doc.get("unit_id") in units


def _no_terminal(device: str) -> web.StreamResponse:
    # Out of scope answers as "not there", so ids from other stations do not leak.
    return error(404, f"no terminal {device!r}")


@routes.add("GET", "/api/v1/terminals", roles=WATCH)
async def terminals(request: web.Request) -> web.StreamResponse:
    live: LiveState = request.app[LIVE]
    units = await _live_units(request)
    # Off the loop: tens of thousands of docs, and ingest may hold the lock meanwhile.
    docs = await asyncio.to_thread(live.snapshot, units)
    return web.json_response({"server_time_ms": _now_ms(request), "terminals": docs})


@routes.add("GET", "/api/v1/terminals/{device}/track", roles=WATCH, audit="view_track")
async def track(request: web.Request) -> web.StreamResponse:
    store: Store = request.app[STORE]  # type: ignore[assignment]
    device = request.match_info["device"]
    if not await _sees_terminal(request, device):
        return _no_terminal(device)
    since = _int_param(request, "since_ms", 0, 2**62, None)
    until = _int_param(request, "until_ms", 0, 2**62, None)
    limit = _int_param(request, "limit", 1, 100_000, 10_000)
    assert limit is not None
    points = await asyncio.to_thread(
        store.track, device, since_ms=since, until_ms=until, limit=limit
    )
    return web.json_response(
        {
            "device": device,
            "points": [
                {
                    "seq": p.seq,
                    "time_ms": p.fix.time_ms,
                    "lat": p.fix.lat,
                    "lon": p.fix.lon,
                    "accuracy_m": p.fix.accuracy_m,
                    "speed_mps": p.fix.speed_mps,
                    "flags": p.flags,
                }
                for p in points
            ],
        }
    )


@routes.add("GET", "/api/v1/terminals/{device}/snapshots", roles=WATCH, audit="list_snapshots")
async def terminal_snapshots(request: web.Request) -> web.StreamResponse:
    store: Store = request.app[STORE]  # type: ignore[assignment]
    device = request.match_info["device"]
    if not await _sees_terminal(request, device):
        return _no_terminal(device)
    since = _int_param(request, "since_ms", 0, 2**62, None)
    limit = _int_param(request, "limit", 1, 1000, 50)
    assert limit is not None
    metas = await asyncio.to_thread(store.snapshots, device, since_ms=since, limit=limit)
    return web.json_response(
        {
            "device": device,
            "snapshots": [
                {
                    "seq": m.seq,
                    "sha256": m.sha256,
                    "url": f"/api/v1/snapshots/{m.sha256}.jpg",
                    "captured_ms": m.captured_ms,
                    "trigger": m.trigger,
                    "width": m.width,
                    "height": m.height,
                    "size": m.size,
                    "request_id": m.request_id,
                    "lat": m.lat,
                    "lon": m.lon,
                }
                for m in metas
            ],
        }
    )


@routes.add("GET", "/api/v1/snapshots/{name}", roles=WATCH, audit="view_snapshot")
async def snapshot_file(request: web.Request) -> web.StreamResponse:
    files = request.app[FILES]
    name = request.match_info["name"]
    sha = name.removesuffix(".jpg")
    if not name.endswith(".jpg") or not files.valid_name(sha):
        return error(400, f"{name!r}: expected <sha256 in lowercase hex>.jpg")
    # served(): None also for a link planted in the folder that leads outside it.
    path = files.served(sha)
    if path is None:
        return error(404, f"no snapshot {sha}")
    if await _live_units(request) is not None:
        store: Store = request.app[STORE]  # type: ignore[assignment]
        meta = await asyncio.to_thread(store.snapshot, sha)
        if meta is None or not await _sees_terminal(request, meta.device_id):
            return error(404, f"no snapshot {sha}")
    # Content-addressed: the bytes behind a name never change, so browsers may keep them.
    return web.FileResponse(
        path,
        headers={"Content-Type": "image/jpeg", "Cache-Control": "private, max-age=31536000"},
    )


@routes.add("GET", "/api/v1/stats", roles=WATCH)
async def stats(request: web.Request) -> web.StreamResponse:
    s: IngestStats = request.app[STATS]  # type: ignore[assignment]
    # Copies first (ingest's thread adds to them), then per-terminal figures only for the
    # terminals the caller may see; the totals are the server's.
    counted, future = dict(s.rejected), dict(s.future_fixes)
    seen: dict[str, bool] = {}
    for device in {d for d, _ in counted} | set(future):
        seen[device] = await _sees_terminal(request, device)
    rejected: dict[str, dict[str, int]] = {}
    for (device, reason), n in counted.items():
        if seen[device]:
            rejected.setdefault(device, {})[reason] = n
    return web.json_response(
        {
            "received": s.received,
            "stored": s.stored,
            "duplicates": s.duplicates,
            "conflicts": s.conflicts,
            "acks_sent": s.acks_sent,
            "batches": s.batches,
            "rejected": rejected,
            "future_fixes": {d: n for d, n in future.items() if seen[d]},
            "watchers": request.app[HUB].watchers,
        }
    )


def _update_text(now_ms: int, docs: list[dict[str, Any]]) -> str:
    """An ``update`` message, each terminal's JSON encoded once for all watchers."""
    parts = [d.text() if isinstance(d, TerminalDoc) else json.dumps(d) for d in docs]
    return f'{{"type": "update", "server_time_ms": {now_ms}, "terminals": [{", ".join(parts)}]}}'


@routes.add("GET", "/api/v1/live", roles=WATCH, audit="watch_live")
async def live_feed(request: web.Request) -> web.StreamResponse:
    units = await _live_units(request)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    hub = request.app[HUB]
    # Watch before the snapshot: a change in between arrives twice rather than never.
    watcher = hub.watch(units)
    tasks: list[asyncio.Future[Any]] = []
    try:
        terminals = await asyncio.to_thread(request.app[LIVE].snapshot, units)
        await ws.send_json(
            {"type": "hello", "server_time_ms": _now_ms(request), "terminals": terminals}
        )
        reader: asyncio.Future[Any] = asyncio.ensure_future(ws.receive())
        news: asyncio.Future[Any] = asyncio.ensure_future(watcher.next())
        tasks = [reader, news]
        while not ws.closed:
            done, _ = await asyncio.wait({reader, news}, return_when=asyncio.FIRST_COMPLETED)
            if news in done:  # first: what was taken from the watcher must not be lost
                kind, items = news.result()
                now_ms = _now_ms(request)
                if kind == "event":
                    for event in items:
                        await ws.send_json({"type": "event", "server_time_ms": now_ms, **event})
                else:
                    await ws.send_str(_update_text(now_ms, items))
                news = tasks[1] = asyncio.ensure_future(watcher.next())
            if reader in done:
                msg = reader.result()
                if msg.type in (
                    WSMsgType.CLOSE,
                    WSMsgType.CLOSING,
                    WSMsgType.CLOSED,
                    WSMsgType.ERROR,
                ):
                    break
                # Watchers send nothing we need.
                reader = tasks[0] = asyncio.ensure_future(ws.receive())
    except ConnectionResetError:
        pass  # the browser went away mid-send
    finally:
        for task in tasks:
            task.cancel()
        hub.unwatch(watcher)
    return ws


async def _record(request: web.Request, principal: Principal, action: str) -> None:
    """One audit-trail entry (``server.audit``) for an audited route, if the app has a trail."""
    trail = request.app.get(AUDIT)
    if not isinstance(trail, AuditLog):
        return
    subject = ",".join(f"{k}={v}" for k, v in sorted(request.match_info.items()))
    await asyncio.to_thread(
        trail.append,
        at_ms=_now_ms(request),
        actor=f"{principal.role.value}:{principal.name}",
        action=action,
        subject=subject,
        detail=f"{request.method} {request.path_qs}"[:500],
    )


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own 404/405 as JSON with a sentence, so API clients see what was wrong."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return error(exc.status, f"{exc.reason}: {request.method} {request.path}")
    except Exception:  # a bug: still JSON, and logged with its traceback, never the text
        log.exception("%s %s failed", request.method, request.path)
        return error(500, "internal error (logged on the server)")


def make_app(
    *,
    store: Store,
    live: LiveState,
    hub: Hub,
    auth: Authenticator,
    stats: IngestStats,
    snapshot_files: SnapshotFiles,
    clock: Callable[[], float] = time.time,
    extra_routes: Sequence[Routes] = (),
    services: Mapping[web.AppKey[Any], object] | None = None,
) -> web.Application:
    """The web app; ``extra_routes`` are the route tables of the ``*_routes`` modules, and
    ``services`` the objects their handlers find under the keys of ``server.web.keys``.

    With ``services[ACCOUNTS]`` (``server.accounts.Accounts``) browsers sign in with
    sessions (cookie + CSRF) and ``auth``, a ``TokenAuthenticator``, serves bearer tokens and
    token links; ``session_routes.routes`` then belongs in ``extra_routes``."""
    accounts = (services or {}).get(ACCOUNTS)
    checker: Authenticator = auth
    if isinstance(accounts, Accounts) and isinstance(auth, TokenAuthenticator):
        checker = SessionAuthenticator(accounts, auth)
    app = web.Application(middlewares=[json_errors, access_middleware(checker, _record)])
    for key, service in (services or {}).items():
        app[key] = service
    app[STORE] = store
    app[LIVE] = live
    app[HUB] = hub
    app[AUTH] = auth
    app[STATS] = stats
    app[CLOCK] = clock
    app[FILES] = snapshot_files
    app.setdefault(THROTTLE, SignInThrottle())  # a service may bring its own (tests: a clock)
    app.add_routes(routes.table)
    for extra in extra_routes:
        app.add_routes(extra.table)
    check_declared(app)

    async def bind_hub(app: web.Application) -> None:
        hub.bind(asyncio.get_running_loop())

    app.on_startup.append(bind_hub)
    return app
