"""The terminal's screen: a small web app the agent serves on 127.0.0.1 for the volunteer.

It shows the ringing dispatch (what, how far, which way, a ``geo:`` link for the phone's map,
time left) with Accept / Decline, then Arrived once accepted; published tasks with "Read"; an
SOS button; and a clue form with an optional photo. The page (``agent.localui_page``) polls
``GET /api/state`` every second. Example::

    ui = LocalUI(agent, port=8765)     # port 0: any free port
    ui.start()
    print(ui.url)                      # http://127.0.0.1:8765/
    ...
    ui.stop()

API (every ``/api`` request carries ``X-Yijing-UI: <token>``; errors are
``{"error": "<field>: what was wrong"}``):

- ``GET /api/state`` → the screen's state (``state_doc``)
- ``POST /api/dispatch/accept|decline|arrived`` ``{"dispatch_id", "reason"?}`` → 200, or 409
  if that dispatch is no longer ringing (accept, decline) or accepted (arrived)
- ``POST /api/tasks/{task_id}/ack`` → 200, or 404 if the task is not pending
- ``POST /api/sos`` → 200 (the page asks for a second tap first)
- ``POST /api/clues`` multipart (``text``, ``category``, ``photo`` JPEG file) or JSON
  (``text``, ``category``) → 201 ``{"clue_id"}``; 400 bad field, 413 too large

Security: the server binds 127.0.0.1. That alone does not stop a web page the volunteer opens
in the same browser: it may post to 127.0.0.1 (CSRF), or rebind its own domain's DNS to
127.0.0.1 and read the answers. So a request whose Host is not a loopback name is refused
(rebinding), and every API call must carry the random token embedded in the served page in a
custom header: a foreign page can neither read the token nor send the header without a CORS
preflight this server never grants.

Threads: aiohttp runs on its own thread and event loop; everything that acts goes through
``Agent.call`` (run on the agent's thread, which owns the outbox), from a worker thread so the
event loop never waits on the agent.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

from aiohttp import web

from protocol import (
    DispatchCommand,
    EventKind,
    IncidentKind,
    ProtocolError,
    ResponseStatus,
    Task,
)
from protocol.messages import MAX_JPEG_BYTES

from .agent import Agent
from .errors import AgentError, ReportError
from .localui_page import render_page
from .sim_gps import distance_m

#: A clue with its photo, as a multipart form: the photo plus room for the text and framing.
MAX_BODY_BYTES = MAX_JPEG_BYTES + 16 * 1024
#: Every other request is a small JSON document.
MAX_SMALL_BODY_BYTES = 16 * 1024
#: How long a cancelled dispatch stays on screen as a notice.
NOTICE_S = 120
HEADER = "X-Yijing-UI"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LocalUIError(AgentError):
    """The local screen could not start (its port is taken, say)."""


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from the first point to the second, degrees from north."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


def _geo(lat: float, lon: float) -> str:
    # RFC 5870 geo URI; "q=" makes Android map apps drop a pin there rather than just centre.
    return f"geo:{lat:.7f},{lon:.7f}?q={lat:.7f},{lon:.7f}"


class LocalUI:
    def __init__(
        self,
        agent: Agent,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        clock: Callable[[], float] | None = None,
        call_timeout_s: float = 5.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self._agent = agent
        self.host = host
        self.port = port
        # The agent's clock by default: it is the one that decides what has expired.
        self._clock = clock or (lambda: agent.now_ms() / 1000)
        self._call_timeout = call_timeout_s
        self._log = logger or logging.getLogger(f"yijing.agent.{agent.device_id}.ui")
        #: The secret every API call must carry; new on each start of the agent.
        self.token = secrets.token_urlsafe(32)
        self._allowed_hosts = LOOPBACK_NAMES | {host.lower()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Serve on ``host:port`` (port 0: a free one, then in ``port``); raises LocalUIError."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(loop,), name="local-ui", daemon=True
        )
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), loop)
        try:
            future.result(15)
        except OSError as exc:
            self._halt()
            raise LocalUIError(
                f"local screen: cannot listen on {self.host}:{self.port} ({exc.strerror or exc})"
            ) from exc

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()
        # Stopped: let closing connections finish their callbacks, then release everything, so
        # no socket or worker thread outlives the screen.
        # A connection accepted just before the stop is still being set up by a task: let it
        # finish (cancelling it would leak its socket), then cancel whatever still waits.
        loop.run_until_complete(asyncio.sleep(0.1))
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    async def _serve(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            self._runner = None
            raise
        server = site._server  # aiohttp has no public accessor for the bound port
        if isinstance(server, asyncio.Server) and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._runner is not None:
            done: Future[None] = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                done.result(10)
            except Exception as exc:  # stopping anyway: the agent is shutting down
                self._log.warning("local screen did not stop cleanly: %s", exc)
            self._runner = None
        self._halt()

    async def _shutdown(self) -> None:
        runner = self._runner
        assert runner is not None
        # A connection accepted just before is still being set up by a task; closing the
        # listener under it leaks its socket (CPython 3.11: Server._attach asserts). Let it
        # finish first, and register with aiohttp, whose cleanup then closes it.
        await asyncio.sleep(0.05)
        for site in list(runner.sites):
            await site.stop()  # no new connections
        await asyncio.sleep(0.05)
        await runner.cleanup()

    def _halt(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # --- the app -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application (tests may drive it with aiohttp's test client)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/api/state", self._state)
        app.router.add_post("/api/dispatch/{answer}", self._answer)
        app.router.add_post("/api/tasks/{task_id}/ack", self._ack_task)
        app.router.add_post("/api/sos", self._sos)
        app.router.add_post("/api/clues", self._clue)
        return app

    def _host_allowed(self, request: web.Request) -> bool:
        host = (request.headers.get("Host") or "").lower()
        # "[::1]:8765" keeps its brackets; "localhost:8765" loses its port.
        name = host[: host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]
        return name in self._allowed_hosts

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._host_allowed(request):
            return _error(403, f"Host: {request.headers.get('Host')!r} is not this terminal")
        if request.path.startswith("/api/"):
            given = request.headers.get(HEADER, "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _error(403, f"{HEADER}: missing or wrong token (reload the page)")
        limit = MAX_BODY_BYTES if request.path == "/api/clues" else MAX_SMALL_BODY_BYTES
        size = request.content_length
        if size is not None and size > limit:
            return _error(
                413,
                f"body: {size} bytes is over the limit of {limit} bytes"
                + (f" (a photo may be at most {MAX_JPEG_BYTES // 1024} KiB)"
                   if request.path == "/api/clues" else ""),
            )  # fmt: skip
        try:
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body: over the limit of {limit} bytes")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"  # no clickjacking of the SOS button
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def _page(self, request: web.Request) -> web.Response:
        nonce = secrets.token_urlsafe(16)
        response = web.Response(
            text=render_page(self.token, nonce), content_type="text/html", charset="utf-8"
        )
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data: blob:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'"
        )
        return response

    async def _call(self, action: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(self._agent.call, action, self._call_timeout)

    # --- reads -------------------------------------------------------------------------------

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state_doc())

    def state_doc(self) -> dict[str, Any]:
        """What the screen shows. Reads the agent's published values only (thread-safe)."""
        agent = self._agent
        now = int(self._clock() * 1000)
        fix = agent.latest_fix
        ringing = agent.active_dispatch
        if ringing is not None and now >= ringing.expires_ms:
            ringing = None  # never shown after expiry, even before the loop prunes it
        current = agent.current_dispatch
        current_doc = None
        if current is not None:
            current_doc = self._dispatch_doc(current)
            current_doc["accepted_ms"] = agent.accepted_ms
            current_doc["on_scene_ms"] = agent.on_scene_ms
        notice = None
        if agent.last_cancel is not None:
            cancel, at_ms = agent.last_cancel
            if now - at_ms < NOTICE_S * 1000:
                notice = {"dispatch_id": cancel.dispatch_id, "reason": cancel.reason,
                          "at_ms": at_ms}  # fmt: skip
        tasks = sorted(
            (t for t in agent.tasks.values() if now < t.expires_ms),
            key=lambda t: (t.priority, t.sent_ms),
        )
        fix_doc = None
        if fix is not None:
            fix_doc = {"lat": fix.lat, "lon": fix.lon, "accuracy_m": fix.accuracy_m,
                       "time_ms": fix.time_ms}  # fmt: skip
        return {
            "device_id": agent.device_id,
            "now_ms": now,
            "online": agent.link.connected,
            "fix": fix_doc,
            "ringing": None if ringing is None else self._dispatch_doc(ringing),
            "current": current_doc,
            "notice": notice,
            "tasks": [self._task_doc(t) for t in tasks],
            "categories": [k.value for k in IncidentKind],
        }

    def _dispatch_doc(self, command: DispatchCommand) -> dict[str, Any]:
        fix = self._agent.latest_fix
        return {
            "dispatch_id": command.dispatch_id,
            "incident_id": command.incident_id,
            "kind": command.kind.value,
            "priority": command.priority,
            "note": command.note,
            "lat": command.lat,
            "lon": command.lon,
            "sent_ms": command.sent_ms,
            "expires_ms": command.expires_ms,
            "distance_m": None
            if fix is None
            else round(distance_m(fix.lat, fix.lon, command.lat, command.lon), 1),
            "bearing_deg": None
            if fix is None
            else round(bearing_deg(fix.lat, fix.lon, command.lat, command.lon), 1),
            "geo": _geo(command.lat, command.lon),
        }

    @staticmethod
    def _task_doc(task: Task) -> dict[str, Any]:
        return {
            "task_id": task.task_id,
            "title": task.title,
            "text": task.text,
            "priority": task.priority,
            "sent_ms": task.sent_ms,
            "expires_ms": task.expires_ms,
            "lat": task.lat,
            "lon": task.lon,
            "geo": None if task.lat is None or task.lon is None else _geo(task.lat, task.lon),
        }

    # --- actions -----------------------------------------------------------------------------

    async def _json(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            doc = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(
                text='{"error": "body: not JSON"}', content_type="application/json"
            ) from None
        if not isinstance(doc, dict):
            raise web.HTTPBadRequest(
                text='{"error": "body: expected a JSON object"}', content_type="application/json"
            )
        return doc

    async def _answer(self, request: web.Request) -> web.Response:
        answer = request.match_info["answer"]
        statuses = {"accept": ResponseStatus.ACCEPTED, "decline": ResponseStatus.DECLINED,
                    "arrived": ResponseStatus.ON_SCENE}  # fmt: skip
        if answer not in statuses:
            return _error(404, f"answer: {answer!r} is not accept, decline or arrived")
        doc = await self._json(request)
        dispatch_id = doc.get("dispatch_id")
        if not isinstance(dispatch_id, str) or not dispatch_id:
            return _error(400, "dispatch_id: required (the dispatch on screen)")
        reason = doc.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
            return _error(400, "reason: expected text of at most 200 characters")
        status = statuses[answer]
        agent = self._agent

        def act() -> bool:
            # Checked on the agent's thread: the dispatch on screen may have been cancelled,
            # or replaced by another, since the page last polled.
            if status is ResponseStatus.ON_SCENE:
                current = agent.current_dispatch
                return (
                    current is not None and current.dispatch_id == dispatch_id and agent.arrived()
                )
            ringing = agent.active_dispatch
            if ringing is None or ringing.dispatch_id != dispatch_id:
                return False
            return agent.answer_dispatch(status, reason=reason)

        try:
            done = await self._call(act)
        except (AgentError, ProtocolError) as exc:
            return _error(503, f"agent: {exc}")
        if not done:
            what = (
                "accepted (or arrival was already reported)"
                if answer == "arrived"
                else "ringing (answered, cancelled or expired)"
            )
            return _error(409, f"dispatch_id: {dispatch_id} is no longer {what}")
        return web.json_response({"ok": True, "dispatch_id": dispatch_id, "status": status.value})

    async def _ack_task(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        agent = self._agent
        try:
            done = await self._call(lambda: agent.ack_task(task_id))
        except (AgentError, ProtocolError) as exc:
            return _error(503, f"agent: {exc}")
        if not done:
            return _error(404, f"task_id: {task_id} is not pending (read already or expired)")
        return web.json_response({"ok": True, "task_id": task_id})

    async def _sos(self, request: web.Request) -> web.Response:
        agent = self._agent
        try:
            seq = await self._call(lambda: agent.raise_event(EventKind.SOS, detail="screen"))
        except (AgentError, ProtocolError) as exc:
            return _error(503, f"agent: {exc}")
        self._log.warning("SOS raised on the local screen (frame %s)", seq)
        return web.json_response({"ok": True})

    async def _clue(self, request: web.Request) -> web.Response:
        photo: bytes | None = None
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
            text, category = form.get("text"), form.get("category", "other")
            field = form.get("photo")
            if isinstance(field, web.FileField):
                photo = field.file.read(MAX_JPEG_BYTES + 1)
                if len(photo) > MAX_JPEG_BYTES:
                    return _error(
                        413, f"photo: over the limit of {MAX_JPEG_BYTES} bytes "
                        f"({MAX_JPEG_BYTES // 1024} KiB); send a smaller JPEG",
                    )  # fmt: skip
                if not photo:
                    photo = None  # an empty file input
        else:
            doc = await self._json(request)
            text, category = doc.get("text"), doc.get("category", "other")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "text: required (what was seen, 1 to 1000 characters)")
        if len(text) > 1000:
            return _error(400, f"text: {len(text)} characters is over the limit of 1000")
        try:
            kind = IncidentKind(str(category))
        except ValueError:
            known = ", ".join(k.value for k in IncidentKind)
            return _error(400, f"category: {category!r} is not one of {known}")
        agent, said = self._agent, text.strip()
        try:
            clue_id = await self._call(lambda: agent.report_clue(said, kind, photo))
        except ReportError as exc:
            return _error(400, str(exc))
        except (AgentError, ProtocolError) as exc:
            return _error(503, f"agent: {exc}")
        return web.json_response({"clue_id": clue_id}, status=201)
