"""Access control in one place: every route declares who may use it; one middleware checks.

A route is added only through ``Routes.add(..., roles=...)``; ``check_declared`` refuses to
start an app with any route that did not declare, so a forgotten check cannot ship. Roles:

=============  ===================================================================
volunteer      their own terminal and tasks
officer        a station's duty officer: the live map, dispatch
inspector      on-duty and usage rates, spot checks, reports; never dispatches
admin          organisation, terminals, accounts
=============  ===================================================================

Who the caller is comes from an ``Authenticator``. Today that is a bearer token (header, or a
cookie set by ``/login?token=...``); people's accounts with sessions and CSRF protection
replace it without touching any handler.
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
from typing import Any, Protocol

from aiohttp import web

from ..errors import ConfigError, StoreError
from .throttle import SignInThrottle


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
COOKIE = "yj_token"

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


class Authenticator(Protocol):
    def authenticate(self, request: web.Request) -> Principal | None: ...


class Routes:
    """A route table whose every entry carries its roles."""

    def __init__(self) -> None:
        self.table = web.RouteTableDef()

    def add(
        self, method: str, path: str, *, roles: frozenset[Role], audit: str | None = None
    ) -> Callable[[Handler], Handler]:
        """``audit``: the action written to the audit trail (``server.audit``) each time the
        route is used — people's looks at a terminal, dispatches, checks, exports, changes."""

        def register(handler: Handler) -> Handler:
            setattr(handler, _ROLES_ATTR, roles)
            if audit is not None:
                setattr(handler, _AUDIT_ATTR, audit)
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
        digest = _token_digest(token)
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None

    def authenticate(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else request.cookies.get(COOKIE, "")
        return self.check(token) if token else None


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
        # Guessing credentials is slowed per address (``throttle``); a request that presents
        # none is not a guess.
        throttle = request.app.get(THROTTLE)
        presented = "Authorization" in request.headers or COOKIE in request.cookies
        address = request.remote or "?"
        if presented and isinstance(throttle, SignInThrottle):
            wait = throttle.retry_after(address)
            if wait is not None:
                return too_many(wait)
        principal = auth.authenticate(request)
        if presented and principal is None and isinstance(throttle, SignInThrottle):
            throttle.failed(address)
        request[PRINCIPAL] = principal
        if roles is PUBLIC or not roles:
            return await handler(request)
        if principal is None:
            return error(401, "sign in first: open the link printed by `yijing server`")
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
