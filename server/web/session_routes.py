"""Signing in and out with a password, and the administrators' accounts API.

- ``POST /api/v1/session`` ``{"username", "password"}``: a session (cookies ``yj_session``
  and ``yj_csrf``, see ``server.web.access``). Failures are slowed per address by the same
  ``SignInThrottle`` as token links; an unknown username and a wrong password get the same
  answer. The body must be JSON (``Content-Type: application/json``): another site's form
  cannot send that without the browser asking this server first, so nobody can be signed in
  to somebody else's account by a page they visited.
- ``DELETE /api/v1/session``: sign out (the session is deleted, the cookies cleared).
- ``GET|POST /api/v1/accounts``, ``PATCH /api/v1/accounts/{name}`` (admins): an admin with a
  scope sees and changes only accounts scoped inside their subtree, and cannot grant a scope
  outside it — nor none at all, which is the whole organisation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..accounts import (
    Account,
    AccountExists,
    Accounts,
    InvalidField,
    SignInFailed,
    UnknownAccount,
)
from ..org.store import OrgStore
from .access import (
    ACCOUNTS,
    ADMIN_ONLY,
    PRINCIPAL,
    PUBLIC,
    SESSION,
    SESSION_COOKIE,
    THROTTLE,
    Routes,
    clear_session_cookies,
    error,
    set_session_cookies,
    too_many,
)
from .keys import ORG
from .requests import BadField, json_object, principal_of, refusals
from .scope import forbidden, visible_units
from .throttle import SignInThrottle

routes = Routes()

_SIGN_IN = frozenset({"username", "password"})
_CREATE = frozenset({"username", "password", "role", "scope", "display_name", "volunteer_id"})
_CHANGE = frozenset({"password", "role", "scope", "display_name", "volunteer_id", "disabled"})
_LIMIT = 8 * 1024
_STATUSES: list[tuple[type[Exception] | tuple[type[Exception], ...], int]] = [
    (InvalidField, 400),
    (AccountExists, 409),
    (UnknownAccount, 404),
]


def _accounts(request: web.Request) -> Accounts:
    accounts = request.app.get(ACCOUNTS)
    if not isinstance(accounts, Accounts):
        raise web.HTTPNotFound(
            text='{"error": "this server has no people\'s accounts"}',
            content_type="application/json",
        )
    return accounts


async def _visible(request: web.Request) -> set[str] | None:
    """Units whose accounts the caller may see (None: all)."""
    principal = principal_of(request)
    if principal.scope is not None and ORG not in request.app:
        return set()  # no organisation to resolve the scope with: nothing
    return await visible_units(request)


def _shows(account: Account, visible: set[str] | None) -> bool:
    # An unscoped account (the whole organisation) is seen by unscoped admins only.
    return visible is None or (account.scope is not None and account.scope in visible)


async def _may_grant(request: web.Request, scope: str | None, volunteer_id: str | None) -> None:
    visible = await _visible(request)
    if visible is not None:
        if scope is None:
            raise forbidden(
                f"scope: an admin scoped to {principal_of(request).scope!r} must give a "
                "scope inside it"
            )
        if scope not in visible:
            raise forbidden(f"scope: unit {scope!r} is outside your scope")
    org = request.app.get(ORG)
    if isinstance(org, OrgStore):
        if scope is not None and await asyncio.to_thread(org.unit, scope) is None:
            raise BadField("scope", f"no unit {scope!r}")
        if volunteer_id is not None:
            volunteer = await asyncio.to_thread(org.volunteer, volunteer_id)
            if volunteer is None or (visible is not None and volunteer.unit_id not in visible):
                raise BadField("volunteer_id", f"no volunteer {volunteer_id!r}")


def _text(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise BadField(field, "must be text")
    return value


@routes.add("POST", "/api/v1/session", roles=PUBLIC, csrf=False)
@refusals(_STATUSES, store="accounts")
async def sign_in(request: web.Request) -> web.StreamResponse:
    accounts = _accounts(request)
    if request.content_type != "application/json":
        raise BadField("body", "send JSON (Content-Type: application/json)")
    throttle = request.app.get(THROTTLE)
    address = request.remote or "?"
    if isinstance(throttle, SignInThrottle):
        wait = throttle.retry_after(address)
        if wait is not None:
            return too_many(wait)
    body = await json_object(request, allowed=_SIGN_IN, limit=_LIMIT, empty_ok=False)
    username, password = _text(body, "username") or "", _text(body, "password") or ""
    try:
        opened = await accounts.sign_in_async(username, password)
    except SignInFailed as exc:
        if isinstance(throttle, SignInThrottle):
            throttle.failed(address)
        return error(401, str(exc))
    if request[SESSION] is not None:  # signing in again, maybe as someone else: end the old
        await asyncio.to_thread(accounts.sign_out, request.cookies.get(SESSION_COOKIE, ""))
    principal = opened.session.principal
    response = web.json_response(
        {
            "name": principal.name,
            "role": principal.role.value,
            "scope": principal.scope,
            "csrf": opened.session.csrf,
            "expires_ms": opened.session.expires_ms,
        }
    )
    set_session_cookies(response, request, opened)
    return response


@routes.add("DELETE", "/api/v1/session", roles=PUBLIC)
@refusals(_STATUSES, store="accounts")
async def sign_out(request: web.Request) -> web.StreamResponse:
    # Public so that a stale page can always clear its cookies; with a live session the
    # middleware has already checked the CSRF header (DELETE is unsafe).
    session_id = request.cookies.get(SESSION_COOKIE, "")
    accounts = request.app.get(ACCOUNTS)
    if request[SESSION] is not None and isinstance(accounts, Accounts):
        await asyncio.to_thread(accounts.sign_out, session_id)
    response = web.Response(status=204)
    clear_session_cookies(response)
    return response


@routes.add("GET", "/api/v1/accounts", roles=ADMIN_ONLY)
@refusals(_STATUSES, store="accounts")
async def list_accounts(request: web.Request) -> web.StreamResponse:
    accounts = _accounts(request)
    visible = await _visible(request)
    found = await asyncio.to_thread(accounts.store.all)
    return web.json_response({"accounts": [a.to_json() for a in found if _shows(a, visible)]})


@routes.add("POST", "/api/v1/accounts", roles=ADMIN_ONLY, audit="account.create")
@refusals(_STATUSES, store="accounts")
async def create_account(request: web.Request) -> web.StreamResponse:
    accounts = _accounts(request)
    body = await json_object(request, allowed=_CREATE, limit=_LIMIT, empty_ok=False)
    for field in ("username", "password", "role"):
        if field not in body:
            raise BadField(field, "required")
    scope, volunteer_id = _text(body, "scope"), _text(body, "volunteer_id")
    await _may_grant(request, scope, volunteer_id)
    account = await asyncio.to_thread(
        accounts.create,
        body["username"],
        body["password"],
        role=body["role"],
        display_name=_text(body, "display_name"),
        scope=scope,
        volunteer_id=volunteer_id,
    )
    return web.json_response(account.to_json(), status=201)


@routes.add("PATCH", "/api/v1/accounts/{name}", roles=ADMIN_ONLY, audit="account.change")
@refusals(_STATUSES, store="accounts")
async def change_account(request: web.Request) -> web.StreamResponse:
    accounts = _accounts(request)
    name = request.match_info["name"]
    visible = await _visible(request)
    current = await asyncio.to_thread(accounts.store.get, name)
    if current is None or not _shows(current, visible):
        return error(404, f"no account {name!r}")  # out of scope reads as "not there"
    body = await json_object(request, allowed=_CHANGE, limit=_LIMIT, empty_ok=False)
    scope = _text(body, "scope") if "scope" in body else current.scope
    volunteer_id = _text(body, "volunteer_id") if "volunteer_id" in body else None
    await _may_grant(request, scope, volunteer_id)
    me = request[PRINCIPAL]
    myself = me is not None and current.username.casefold() == me.name.casefold()
    if myself and (body.get("disabled") is True or body.get("role", "admin") != "admin"):
        field = "disabled" if body.get("disabled") is True else "role"
        raise BadField(field, "an admin cannot disable or demote their own account")
    changes: dict[str, Any] = {}
    for field in ("role", "display_name", "password"):
        if field in body:
            changes[field] = _text(body, field)
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise BadField("disabled", "must be true or false")
        changes["disabled"] = body["disabled"]
    if "scope" in body:
        changes["scope"] = scope
    if "volunteer_id" in body:
        changes["volunteer_id"] = volunteer_id
    account = await asyncio.to_thread(accounts.change, current.username, **changes)
    return web.json_response(account.to_json())
