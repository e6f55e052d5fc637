"""What part of the organisation the caller may see and change: their scope's subtree.

A principal's ``scope`` is a unit id (``server.web.access.Principal``); they see that unit and
everything below it, and nothing else; ``None`` is the whole organisation. Route modules (the
organisation's, duty, spot checks, reports) filter with ``visible_units`` and guard writes with
``require_in_scope``. Two rules for every handler:

- a read of one record outside the scope answers **404**, the same as a record that does not
  exist, so ids from other stations do not leak;
- a write outside the scope answers **403**, naming the unit the caller asked for.

Both helpers are coroutines: the subtree comes from the organisation store, whose lock an
import may hold for seconds, and the event loop must not wait on it. The subtree is computed
once per request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection

from aiohttp import web

from ..org.store import OrgStore
from .access import PRINCIPAL
from .keys import ORG

_VISIBLE: web.RequestKey[frozenset[str]] = web.RequestKey("visible_units")


def org_store(request: web.Request) -> OrgStore:
    store: OrgStore = request.app[ORG]  # type: ignore[assignment]
    return store


def forbidden(message: str) -> web.HTTPForbidden:
    return web.HTTPForbidden(text=json.dumps({"error": message}), content_type="application/json")


async def visible_units(request: web.Request) -> set[str] | None:
    """The units the caller may see (``None``: all of them). Anonymous callers see none."""
    principal = request[PRINCIPAL]
    if principal is None:
        return set()
    if principal.scope is None:
        return None
    cached = request.get(_VISIBLE)
    if cached is None:
        # An unknown scope unit (deleted since the token was issued) sees nothing.
        cached = frozenset(await asyncio.to_thread(org_store(request).subtree, principal.scope))
        request[_VISIBLE] = cached
    return set(cached)


async def in_scope(request: web.Request, unit_id: str | None) -> bool:
    """May the caller see records of ``unit_id``? (``None``, an unknown unit: only an
    unscoped caller.)"""
    visible = await visible_units(request)
    return visible is None or (unit_id is not None and unit_id in visible)


async def require_in_scope(request: web.Request, unit_id: str | None) -> None:
    """Raise 403 unless the caller may write records of ``unit_id``. ``None`` stands for the
    top of the tree (a city), which only an unscoped admin may create or move."""
    if await in_scope(request, unit_id):
        return
    principal = request[PRINCIPAL]
    scope = principal.scope if principal is not None else None
    if unit_id is None:
        raise forbidden(f"only an admin without a scope may change the top of the tree ({scope})")
    raise forbidden(f"unit {unit_id!r} is outside your scope ({scope})")


async def narrow(request: web.Request, units: Collection[str] | None) -> set[str] | None:
    """``units`` (None: all) cut down to what the caller may see."""
    visible = await visible_units(request)
    if units is None:
        return visible
    return set(units) if visible is None else visible & set(units)
