"""Access control in one place: every route declares who may use it; one middleware checks.

A route is added only through ``Routes.add(..., roles=...)``; ``check_declared`` refuses to
start an app with any route that did not declare, so a forgotten check cannot ship. Roles:

=============  ===================================================================
volunteer      their own terminal and tasks
officer        a station's duty officer: the live map, dispatch
inspector      on-duty and usage rates, spot checks, reports; never dispatches
admin          organisation, terminals, accounts
=============  ===================================================================

Who the caller is comes from an ``Authenticator``: machine clients send a bearer token
(``TokenAuthenticator``); browsers hold a session (``SessionAuthenticator``, people's
accounts in ``server.accounts``), opened by a password or by a ``/login?token=`` link. A
session is an ambient credential, so the middleware also refuses, for a request that a
session authenticated:

- an unsafe method (POST, PUT, PATCH, DELETE) without ``X-CSRF-Token`` equal to the
  session's own token (403; the page reads it from the ``yj_csrf`` cookie, which only a page
  of this origin can read);
- a WebSocket upgrade whose ``Origin`` is not this server (403: cross-site WebSocket
  hijacking — browsers send cookies with a WebSocket handshake from any site).

Bearer requests are exempt: a browser never adds that header by itself. Without an account
store (tests that build the app by hand) the old ``yj_token`` cookie is still accepted.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from ..errors import ConfigError, StoreError
from .throttle import SignInThrottle

if TYPE_CHECKING:
    from ..accounts import Accounts, NewSession, Session


class Role(enum.StrEnum):
    VOLUNTEER = "volunteer"
    OFFICER = "officer"
    INSPECTOR = "inspector"
    ADMIN = "admin"


#: Declared by routes anyone may call (the login step, static files, health).
PUBLIC: frozenset[Role] = frozenset()
WATCH = frozenset({Role.OFFICER, Role.INSPECTOR, Role.ADMIN})
ADMIN_ONLY = frozenset({Role.ADMIN})

_ROLES_ATTR = "__yijing_roles__"
_AUDIT_ATTR = "__yijing_audit__"
_CSRF_EXEMPT_ATTR = "__yijing_csrf_exempt__"
_DEVICE_ATTR = "__yijing_device_door__"
COOKIE = "yj_token"
SESSION_COOKIE = "yj_session"
CSRF_COOKIE = "yj_csrf"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role
    #: The unit whose subtree this person may see (None: the whole organisation). An
    #: inspector of a district sees its stations, grids, teams and volunteers, nothing else.
    scope: str | None = None


#: Who made the request (``None``: anonymous), set by the middleware for every request.
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")
#: The browser session that authenticated the request (``None``: a bearer token, or nobody).
SESSION: web.RequestKey[object] = web.RequestKey("session")
#: The app's ``server.accounts.Accounts`` (absent: no people's accounts, tokens only).
ACCOUNTS: web.AppKey[object] = web.AppKey("accounts", object)


class Authenticator(Protocol):
    def authenticate(self, request: web.Request) -> Principal | None: ...


class Routes:
    """A route table whose every entry carries its roles."""

    def __init__(self) -> None:
        self.table = web.RouteTableDef()

    def add(
        self,
        method: str,
        path: str,
        *,
        roles: frozenset[Role],
        audit: str | None = None,
        csrf: bool = True,
        device_door: bool = False,
    ) -> Callable[[Handler], Handler]:
        """``device_door=True`` (with ``roles=PUBLIC``): a door for phone apps, which
        authenticate themselves in the handler against the phone registry; people's
        credentials are not looked at, so a phone's ``Authorization: Basic`` header is neither
        taken for a person's sign-in nor counted as a failed one.
        ``audit``: the action written to the audit trail (``server.audit``) each time the
        route is used — people's looks at a terminal, dispatches, checks, exports, changes.
        ``csrf=False``: a browser session need not send ``X-CSRF-Token`` (only signing in,
        which does not act with the session it replaces)."""

        def register(handler: Handler) -> Handler:
            setattr(handler, _ROLES_ATTR, roles)
            if not csrf:
                setattr(handler, _CSRF_EXEMPT_ATTR, True)
            if audit is not None:
                setattr(handler, _AUDIT_ATTR, audit)
            if device_door:
                if roles is not PUBLIC:
                    raise ValueError(f"{path}: a device door declares roles=PUBLIC")
                setattr(handler, _DEVICE_ATTR, True)
            self.table.route(method, path)(handler)
            return handler

        return register


def roles_of(handler: object) -> frozenset[Role] | None:
    return getattr(handler, _ROLES_ATTR, None)


def audit_of(handler: object) -> str | None:
    return getattr(handler, _AUDIT_ATTR, None)


def check_declared(app: web.Application) -> None:
    """Refuse an app in which any route has not declared its roles."""
    for route in app.router.routes():
        if roles_of(route.handler) is None:
            raise ConfigError(f"route {route.method} {route.resource} declares no roles")


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenAuthenticator:
    """Bearer tokens from a JSON file: ``{"tokens": [{"sha256", "name", "role"}]}``.

    Only digests are stored, so the file does not give the tokens away.
    """

    def __init__(self, entries: dict[str, Principal]) -> None:
        self._by_digest = entries

    @classmethod
    def load_or_create(cls, path: Path) -> tuple[TokenAuthenticator, str | None]:
        """Load the token file; on first start make one with an admin token and return it."""
        if path.exists():
            try:
                doc = json.loads(path.read_text())
                entries = {
                    str(t["sha256"]): Principal(
                        str(t["name"]), Role(t["role"]), t.get("scope") or None
                    )
                    for t in doc["tokens"]
                }
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}: not a token file ({exc})") from exc
            return cls(entries), None
        token = secrets.token_urlsafe(24)
        doc = {"tokens": [{"sha256": _token_digest(token), "name": "admin", "role": "admin"}]}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
        path.chmod(0o600)
        return cls({_token_digest(token): Principal("admin", Role.ADMIN)}), token

    def add(self, token: str, principal: Principal) -> None:
        """Accept ``token`` for this process's lifetime (not written to the file)."""
        self._by_digest[_token_digest(token)] = principal

    @staticmethod
    def issue(path: Path, name: str, role: Role, *, scope: str | None = None) -> str:
        """Mint a token, append its digest to the file, and return it (shown once)."""
        doc = json.loads(path.read_text()) if path.exists() else {"tokens": []}
        token = secrets.token_urlsafe(24)
        entry = {"sha256": _token_digest(token), "name": name, "role": role.value}
        if scope is not None:
            entry["scope"] = scope
        doc["tokens"].append(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
        path.chmod(0o600)
        return token

    def check(self, token: str) -> Principal | None:
        return self.check_digest(_token_digest(token))

    def check_digest(self, digest: str) -> Principal | None:
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None

    @staticmethod
    def digest(token: str) -> str:
        return _token_digest(token)

    def bearer(self, request: web.Request) -> Principal | None:
        """The principal of an ``Authorization: Bearer`` header, if any."""
        header = request.headers.get("Authorization", "")
        return self.check(header[7:]) if header.startswith("Bearer ") and header[7:] else None

    def authenticate(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else request.cookies.get(COOKIE, "")
        return self.check(token) if token else None


class SessionAuthenticator:
    """A session cookie first, then a bearer token. A session opened by a token link holds
    the token's digest and lasts only while the token is still known."""

    def __init__(self, accounts: Accounts, tokens: TokenAuthenticator) -> None:
        self.accounts = accounts
        self.tokens = tokens

    def authenticate(self, request: web.Request) -> Principal | None:
        session_id = request.cookies.get(SESSION_COOKIE, "")
        # 43 characters: token_urlsafe(32); anything else is not ours and costs no look-up.
        if session_id and len(session_id) <= 64:
            session = self.accounts.session(session_id)
            if session is not None and (
                session.token_sha256 is None
                or self.tokens.check_digest(session.token_sha256) is not None
            ):
                request[SESSION] = session
                return session.principal
        return self.tokens.bearer(request)


def set_session_cookies(
    response: web.StreamResponse, request: web.Request, opened: NewSession
) -> None:
    """``yj_session`` (HttpOnly: no script reads it) and ``yj_csrf`` (readable by this
    origin's pages, which echo it in ``X-CSRF-Token``). Both Strict: no other site's page
    sends them; Secure on HTTPS (or when the app says it is always behind HTTPS)."""
    secure = request.secure or bool(request.app.get(SECURE_COOKIES, False))
    # As long as the absolute limit: the idle limit is the server's to apply, so an idle
    # session is answered by a 401 (the page then goes to /login), not a vanished cookie.
    age = 7 * 86_400
    for name, value, httponly in (
        (SESSION_COOKIE, opened.session_id, True),
        (CSRF_COOKIE, opened.session.csrf, False),
    ):
        response.set_cookie(
            name, value, httponly=httponly, samesite="Strict", secure=secure, path="/", max_age=age
        )


def clear_session_cookies(response: web.StreamResponse) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE, COOKIE):
        response.del_cookie(name, path="/")


#: Set cookies Secure even on plain HTTP (a TLS-terminating proxy in front that aiohttp was
#: not told about). Put in the app through ``make_app(services=...)``.
SECURE_COOKIES: web.AppKey[object] = web.AppKey("secure_cookies", object)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if not origin:
        return False
    parts = urlsplit(origin)
    return parts.netloc.lower() == request.host.lower() and parts.scheme in ("http", "https")


def _csrf_refusal(request: web.Request, session: Session) -> web.Response | None:
    """Why a session's request is refused as possibly forged, or None."""
    if request.method in UNSAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            return error(403, f"missing or wrong {CSRF_HEADER} header (reload the page)")
    if request.headers.get("Upgrade", "").lower() == "websocket" and not _same_origin(request):
        return error(403, "a WebSocket with this server's cookie must come from its own pages")
    return None


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def too_many(wait_s: float) -> web.Response:
    seconds = max(1, int(wait_s + 0.999))
    response = error(429, f"too many failed sign-ins from here; try again in {seconds} s")
    response.headers["Retry-After"] = str(seconds)
    return response


#: The app's sign-in throttle (``server.web.throttle.SignInThrottle``), if it has one.
THROTTLE: web.AppKey[object] = web.AppKey("throttle", object)

Recorder = Callable[[web.Request, Principal, str], Awaitable[None]]


def access_middleware(auth: Authenticator, record: Recorder | None = None) -> Any:
    """Who is asking, and may they; then, for an audited route, ``record`` (the audit trail)
    before the request runs — a failure to record refuses the request (503) rather than let
    an unrecorded look through."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route_handler = request.match_info.route.handler
        roles = roles_of(route_handler)
        if roles is None:
            # Unmatched paths (404/405) come through aiohttp's own handlers.
            if request.match_info.http_exception is not None:
                raise request.match_info.http_exception
            return error(500, "route declares no roles")  # check_declared makes this unreachable
        if getattr(route_handler, _DEVICE_ATTR, False):
            request[PRINCIPAL] = None
            request[SESSION] = None
            return await handler(request)
        # Guessing credentials is slowed per address (``throttle``); a request that presents
        # none is not a guess. A session id is not counted: 256 random bits are not guessed,
        # and a page whose session ended sends a dozen requests at once, which must not lock
        # its person out of signing in again.
        throttle = request.app.get(THROTTLE)
        presented = "Authorization" in request.headers or COOKIE in request.cookies
        address = request.remote or "?"
        if presented and isinstance(throttle, SignInThrottle):
            wait = throttle.retry_after(address)
            if wait is not None:
                return too_many(wait)
        request[SESSION] = None
        try:
            principal = auth.authenticate(request)
        except StoreError as exc:
            return error(503, f"cannot check the sign-in now: {exc}")
        if presented and principal is None and isinstance(throttle, SignInThrottle):
            throttle.failed(address)
        request[PRINCIPAL] = principal
        session = request[SESSION]
        if session is not None and not getattr(route_handler, _CSRF_EXEMPT_ATTR, False):
            refusal = _csrf_refusal(request, session)  # type: ignore[arg-type]
            if refusal is not None:
                return refusal
        if roles is PUBLIC or not roles:
            return await handler(request)
        if principal is None:
            response = error(401, "sign in first: /login, or the link printed by `yijing server`")
            if SESSION_COOKIE in request.cookies:
                clear_session_cookies(response)  # ended or unknown: stop sending it
            return response
        if principal.role not in roles:
            allowed = ", ".join(sorted(r.value for r in roles))
            return error(403, f"role {principal.role.value} may not do this (needs: {allowed})")
        action = audit_of(route_handler)
        if action is not None and record is not None:
            try:
                await record(request, principal, action)
            except StoreError as exc:
                return error(503, f"audit trail unavailable, so not allowed: {exc}")
        return await handler(request)

    return middleware
