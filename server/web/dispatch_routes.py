"""REST for dispatch: officers and admins open incidents and send terminals; inspectors read.

=======  ==========================================  ============  ==========================
method   path                                        roles         answer
=======  ==========================================  ============  ==========================
POST     /api/v1/incidents                           DISPATCHERS   201 incident doc
GET      /api/v1/incidents?state=open|closed|all     WATCH         {"incidents": [...]}
GET      /api/v1/incidents/{id}                      WATCH         incident doc + "steps"
GET      /api/v1/incidents/{id}/proposals            DISPATCHERS   {"circles": [...]}
POST     /api/v1/incidents/{id}/dispatches           DISPATCHERS   201 {"dispatches": [...]}
POST     /api/v1/dispatches/{id}/cancel              DISPATCHERS   dispatch doc
POST     /api/v1/incidents/{id}/close                DISPATCHERS   incident doc
=======  ==========================================  ============  ==========================

An inspector never dispatches (``DISPATCHERS`` leaves them out): inspectors check, officers
dispatch. Scope (``server.web.scope``): an incident belongs to a unit (by default the
caller's scope unit); one outside the caller's subtree reads as 404, as if it did not exist,
and creating or changing one there answers 403. Proposals and dispatches reach only the
terminals of the caller's visible units. Bad bodies answer 400 ``{"error": "<field>: why"}``.

The service is synchronous and may wait on SQLite, so handlers call it in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..dispatch.errors import BadRequest, Conflict, NotFound, OutOfScope
from ..dispatch.service import Dispatcher
from .access import WATCH, Role, Routes
from .keys import DISPATCH
from .requests import BadField, actor_of, json_object, principal_of, refusals
from .scope import in_scope, require_in_scope, visible_units

routes = Routes()

#: Who may open incidents and send terminals.
DISPATCHERS = frozenset({Role.OFFICER, Role.ADMIN})
#: Twenty device ids and a note are well under this.
BODY_LIMIT = 16 * 1024
MAX_LIST = 500


def _service(request: web.Request) -> Dispatcher:
    service: Dispatcher = request.app[DISPATCH]  # type: ignore[assignment]
    return service


def _text(body: dict[str, Any], name: str, limit: int) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise BadField(name, f"must be text of at most {limit} characters")
    return value


_refusals = refusals(
    [(BadRequest, 400), (NotFound, 404), (OutOfScope, 403), (Conflict, 409)],
    store="dispatch store",
)


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


async def _visible_incident(request: web.Request, incident_id: str) -> dict[str, Any]:
    """The incident's doc with its steps, or 404 if it does not exist for the caller."""
    doc = await _call(_service(request).incident, incident_id)
    if doc is None or not await in_scope(request, doc["unit_id"]):
        raise NotFound(f"no incident {incident_id!r}")
    assert isinstance(doc, dict)
    return doc


# --- handlers ------------------------------------------------------------------------------

_CREATE = frozenset({"kind", "priority", "lat", "lon", "note", "unit_id", "auto_escalate"})


@routes.add("POST", "/api/v1/incidents", roles=DISPATCHERS, audit="open_incident")
@_refusals
async def create_incident(request: web.Request) -> web.StreamResponse:
    body = await json_object(request, limit=BODY_LIMIT, allowed=_CREATE)
    for name in ("kind", "priority", "lat", "lon"):
        if body.get(name) is None:
            raise BadField(name, "required")
    unit_id = body.get("unit_id", principal_of(request).scope)
    if unit_id is not None and not isinstance(unit_id, str):
        raise BadField("unit_id", f"{unit_id!r} is not a unit id")
    await require_in_scope(request, unit_id)
    auto = body.get("auto_escalate", True)
    if not isinstance(auto, bool):
        raise BadField("auto_escalate", f"{auto!r} is not true or false")
    doc = await _call(
        _service(request).create_incident,
        kind=body["kind"],
        priority=body["priority"],
        lat=body["lat"],
        lon=body["lon"],
        actor=actor_of(request),
        note=_text(body, "note", 500),
        unit_id=unit_id,
        auto_escalate=auto,
    )
    return web.json_response(doc, status=201)


@routes.add("GET", "/api/v1/incidents", roles=WATCH)
@_refusals
async def list_incidents(request: web.Request) -> web.StreamResponse:
    state = request.query.get("state", "open")
    if state not in ("open", "closed", "all"):
        raise BadField("state", f"{state!r} is not open, closed or all")
    units = await visible_units(request)
    found = await _call(_service(request).incidents, state=state, units=units, limit=MAX_LIST)
    return web.json_response({"incidents": found})


@routes.add("GET", "/api/v1/incidents/{incident_id}", roles=WATCH)
@_refusals
async def get_incident(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _visible_incident(request, request.match_info["incident_id"]))


@routes.add("GET", "/api/v1/incidents/{incident_id}/proposals", roles=DISPATCHERS)
@_refusals
async def proposals(request: web.Request) -> web.StreamResponse:
    incident_id = request.match_info["incident_id"]
    await _visible_incident(request, incident_id)  # a read: out of scope is 404
    units = await visible_units(request)
    return web.json_response(await _call(_service(request).propose, incident_id, units))


@routes.add(
    "POST", "/api/v1/incidents/{incident_id}/dispatches", roles=DISPATCHERS, audit="dispatch"
)
@_refusals
async def dispatch(request: web.Request) -> web.StreamResponse:
    body = await json_object(request, limit=BODY_LIMIT, allowed=frozenset({"device_ids", "ttl_s"}))
    devices = body.get("device_ids")
    if not isinstance(devices, list) or not devices:
        raise BadField("device_ids", "required: a non-empty list of device ids")
    if not all(isinstance(d, str) for d in devices):
        raise BadField("device_ids", "every item must be a device id (a string)")
    ttl_s = body.get("ttl_s")
    if ttl_s is not None and (isinstance(ttl_s, bool) or not isinstance(ttl_s, int)):
        raise BadField("ttl_s", f"{ttl_s!r} is not a whole number of seconds")
    units = await visible_units(request)
    docs = await _call(
        _service(request).dispatch,
        request.match_info["incident_id"],
        devices,
        actor_of(request),
        ttl_s=ttl_s,
        units=units,
    )
    return web.json_response({"dispatches": docs}, status=201)


@routes.add(
    "POST", "/api/v1/dispatches/{dispatch_id}/cancel", roles=DISPATCHERS, audit="cancel_dispatch"
)
@_refusals
async def cancel(request: web.Request) -> web.StreamResponse:
    body = await json_object(request, limit=BODY_LIMIT, allowed=frozenset({"reason"}))
    reason = _text(body, "reason", 200)
    units = await visible_units(request)
    doc = await _call(
        _service(request).cancel,
        request.match_info["dispatch_id"],
        actor_of(request),
        reason,
        units=units,
    )
    return web.json_response(doc)


@routes.add(
    "POST", "/api/v1/incidents/{incident_id}/close", roles=DISPATCHERS, audit="close_incident"
)
@_refusals
async def close(request: web.Request) -> web.StreamResponse:
    body = await json_object(request, limit=BODY_LIMIT, allowed=frozenset({"note"}))
    note = _text(body, "note", 500)
    units = await visible_units(request)
    doc = await _call(
        _service(request).close_incident,
        request.match_info["incident_id"],
        actor_of(request),
        note,
        units=units,
    )
    return web.json_response(doc)
