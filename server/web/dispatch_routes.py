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
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..dispatch.errors import BadRequest, Conflict, NotFound, OutOfScope
from ..dispatch.service import Dispatcher
from ..errors import StoreError
from .access import PRINCIPAL, WATCH, Principal, Role, Routes, error
from .keys import DISPATCH
from .scope import in_scope, require_in_scope, visible_units

routes = Routes()

#: Who may open incidents and send terminals.
DISPATCHERS = frozenset({Role.OFFICER, Role.ADMIN})
#: Twenty device ids and a note are well under this.
BODY_LIMIT = 16 * 1024
MAX_LIST = 500


class _Bad(Exception):
    """A request field that cannot be used; becomes 400 ``{"error": "<field>: <reason>"}``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")


def _service(request: web.Request) -> Dispatcher:
    service: Dispatcher = request.app[DISPATCH]  # type: ignore[assignment]
    return service


def _principal(request: web.Request) -> Principal:
    principal = request[PRINCIPAL]
    assert principal is not None  # the access middleware let only signed-in callers through
    return principal


def _actor(request: web.Request) -> str:
    return f"officer:{_principal(request).name}"


async def _body(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The JSON object of the body (empty body: ``{}``), with only ``allowed`` fields."""
    raw = await request.content.read(BODY_LIMIT + 1)
    if len(raw) > BODY_LIMIT:
        raise web.HTTPRequestEntityTooLarge(
            max_size=BODY_LIMIT,
            actual_size=len(raw),
            text=json.dumps({"error": f"body: larger than {BODY_LIMIT} bytes"}),
            content_type="application/json",
        )
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Bad("body", f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise _Bad("body", "expected a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        # A misspelt "ttl" must not silently become the default ttl.
        raise _Bad(unknown[0], f"unknown field (expected: {', '.join(sorted(allowed))})")
    return body


def _text(body: dict[str, Any], name: str, limit: int) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise _Bad(name, f"must be text of at most {limit} characters")
    return value


def _errors(handler: Any) -> Any:
    """Turn the request's and the service's refusals into JSON answers in one place."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except (_Bad, BadRequest) as exc:
            return error(400, str(exc))
        except NotFound as exc:
            return error(404, str(exc))
        except OutOfScope as exc:
            return error(403, str(exc))
        except Conflict as exc:
            return error(409, str(exc))
        except StoreError as exc:
            return error(503, f"dispatch store unavailable: {exc}")

    return wrapped


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


@routes.add("POST", "/api/v1/incidents", roles=DISPATCHERS)
@_errors
async def create_incident(request: web.Request) -> web.StreamResponse:
    body = await _body(request, _CREATE)
    for name in ("kind", "priority", "lat", "lon"):
        if body.get(name) is None:
            raise _Bad(name, "required")
    unit_id = body.get("unit_id", _principal(request).scope)
    if unit_id is not None and not isinstance(unit_id, str):
        raise _Bad("unit_id", f"{unit_id!r} is not a unit id")
    await require_in_scope(request, unit_id)
    auto = body.get("auto_escalate", True)
    if not isinstance(auto, bool):
        raise _Bad("auto_escalate", f"{auto!r} is not true or false")
    doc = await _call(
        _service(request).create_incident,
        kind=body["kind"],
        priority=body["priority"],
        lat=body["lat"],
        lon=body["lon"],
        actor=_actor(request),
        note=_text(body, "note", 500),
        unit_id=unit_id,
        auto_escalate=auto,
    )
    return web.json_response(doc, status=201)


@routes.add("GET", "/api/v1/incidents", roles=WATCH)
@_errors
async def list_incidents(request: web.Request) -> web.StreamResponse:
    state = request.query.get("state", "open")
    if state not in ("open", "closed", "all"):
        raise _Bad("state", f"{state!r} is not open, closed or all")
    units = await visible_units(request)
    found = await _call(_service(request).incidents, state=state, units=units, limit=MAX_LIST)
    return web.json_response({"incidents": found})


@routes.add("GET", "/api/v1/incidents/{incident_id}", roles=WATCH)
@_errors
async def get_incident(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _visible_incident(request, request.match_info["incident_id"]))


@routes.add("GET", "/api/v1/incidents/{incident_id}/proposals", roles=DISPATCHERS)
@_errors
async def proposals(request: web.Request) -> web.StreamResponse:
    incident_id = request.match_info["incident_id"]
    await _visible_incident(request, incident_id)  # a read: out of scope is 404
    units = await visible_units(request)
    return web.json_response(await _call(_service(request).propose, incident_id, units))


@routes.add("POST", "/api/v1/incidents/{incident_id}/dispatches", roles=DISPATCHERS)
@_errors
async def dispatch(request: web.Request) -> web.StreamResponse:
    body = await _body(request, frozenset({"device_ids", "ttl_s"}))
    devices = body.get("device_ids")
    if not isinstance(devices, list) or not devices:
        raise _Bad("device_ids", "required: a non-empty list of device ids")
    if not all(isinstance(d, str) for d in devices):
        raise _Bad("device_ids", "every item must be a device id (a string)")
    ttl_s = body.get("ttl_s")
    if ttl_s is not None and (isinstance(ttl_s, bool) or not isinstance(ttl_s, int)):
        raise _Bad("ttl_s", f"{ttl_s!r} is not a whole number of seconds")
    units = await visible_units(request)
    docs = await _call(
        _service(request).dispatch,
        request.match_info["incident_id"],
        devices,
        _actor(request),
        ttl_s=ttl_s,
        units=units,
    )
    return web.json_response({"dispatches": docs}, status=201)


@routes.add("POST", "/api/v1/dispatches/{dispatch_id}/cancel", roles=DISPATCHERS)
@_errors
async def cancel(request: web.Request) -> web.StreamResponse:
    body = await _body(request, frozenset({"reason"}))
    reason = _text(body, "reason", 200)
    units = await visible_units(request)
    doc = await _call(
        _service(request).cancel,
        request.match_info["dispatch_id"],
        _actor(request),
        reason,
        units=units,
    )
    return web.json_response(doc)


@routes.add("POST", "/api/v1/incidents/{incident_id}/close", roles=DISPATCHERS)
@_errors
async def close(request: web.Request) -> web.StreamResponse:
    body = await _body(request, frozenset({"note"}))
    note = _text(body, "note", 500)
    units = await visible_units(request)
    doc = await _call(
        _service(request).close_incident,
        request.match_info["incident_id"],
        _actor(request),
        note,
        units=units,
    )
    return web.json_response(doc)
