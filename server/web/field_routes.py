"""REST for field reports: officers publish tasks, handle clues and acknowledge SOS alerts;
officers, inspectors and admins read them (docs/field.md).

- ``POST /api/v1/tasks`` (officer, admin): publish a task; 201 with the task.
- ``GET /api/v1/tasks?state=active|expired|all&limit=`` (officer, inspector, admin).
- ``GET /api/v1/tasks/{task_id}`` (officer, inspector, admin): the task and its audit.
- ``GET /api/v1/clues?state=new|handled|all&limit=``, ``GET /api/v1/clues/{id}``.
- ``POST /api/v1/clues/{id}/handle`` {note?} (officer, admin); id ``<device_id>:<clue_id>``.
- ``GET /api/v1/alerts?state=open|acked|all&limit=``, ``GET /api/v1/alerts/{id}``.
- ``POST /api/v1/alerts/{id}/ack`` {note?} (officer, admin).

An inspector reads but never acts: inspectors check, officers dispatch. Scope
(``server.web.scope``): a record belongs to its unit (a task: the unit it targets, or for a
post-kind task the publisher's scope unit; a clue or alert: its terminal's unit, None for a
terminal the organisation does not list). Reading one outside one's scope answers 404, acting
on one 403; lists are filtered. A task goes only to terminals inside the publisher's scope.

The service is synchronous and may wait on SQLite, so handlers call it in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from aiohttp import web

from ..field.errors import AlreadyDone, BadRequest, NotFound
from ..field.model import AlertState, ClueState, Subject
from ..field.service import MAX_LIST, FieldReports
from .access import WATCH, Role, Routes, error
from .keys import FIELD
from .requests import BadField, actor_of, json_object, principal_of, query_int, refusals
from .scope import forbidden, in_scope, require_in_scope, visible_units

routes = Routes()

#: Who may publish tasks, handle clues and acknowledge alerts.
DISPATCHERS = frozenset({Role.OFFICER, Role.ADMIN})
#: The largest request body: a task's text is at most 1000 characters.
BODY_LIMIT = 64 * 1024
_TASK_FIELDS = frozenset(
    {"title", "text", "priority", "target_kind", "target", "ttl_s", "lat", "lon"}
)
_NOTE_FIELDS = frozenset({"note"})


def _service(request: web.Request) -> FieldReports:
    service: FieldReports = request.app[FIELD]  # type: ignore[assignment]
    return service


def _task_args(body: dict[str, Any]) -> dict[str, Any]:
    """The body's fields, type-checked; ranges and lengths are the service's to check (its
    ``BadRequest`` names the field too)."""
    for name in ("title", "target_kind", "target"):
        if not isinstance(body.get(name), str):
            raise BadField(name, "required: text")
    args: dict[str, Any] = {n: body[n] for n in ("title", "target_kind", "target")}
    if body.get("text") is not None:
        if not isinstance(body["text"], str):
            raise BadField("text", "expected text")
        args["text"] = body["text"]
    for name in ("priority", "ttl_s"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadField(name, f"{value!r} is not a whole number")
        args[name] = value
    for name in ("lat", "lon"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadField(name, f"{value!r} is not a number")
        args[name] = value
    return args


def _note(body: dict[str, Any]) -> str | None:
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise BadField("note", "expected text")
    return note


def _query_limit(request: web.Request) -> int:
    limit = query_int(request, "limit", 1, MAX_LIST)
    return 100 if limit is None else limit


def _query_state(request: web.Request, choices: dict[str, Any], default: str) -> Any:
    raw = request.query.get("state") or default
    if raw not in choices:
        raise BadField("state", f"{raw!r}: one of {', '.join(choices)}")
    return choices[raw]


_refusals = refusals(
    [(BadRequest, 400), (NotFound, 404), (AlreadyDone, 409)], store="field-report store"
)


# --- tasks ---------------------------------------------------------------------------------


@routes.add("POST", "/api/v1/tasks", roles=DISPATCHERS, audit="publish_task")
@_refusals
async def publish_task(request: web.Request) -> web.StreamResponse:
    principal = principal_of(request)
    args = _task_args(await json_object(request, allowed=_TASK_FIELDS, limit=BODY_LIMIT))
    if args["target_kind"] == "unit":
        await require_in_scope(request, args["target"])
    service = _service(request)
    task = await asyncio.to_thread(
        functools.partial(
            service.publish_task,
            actor=actor_of(request),
            units=await visible_units(request),
            unit_id=principal.scope,
            **args,
        )
    )
    return web.json_response(service.task_json(task), status=201)


@routes.add("GET", "/api/v1/tasks", roles=WATCH)
@_refusals
async def list_tasks(request: web.Request) -> web.StreamResponse:
    state = _query_state(request, {"all": None, "active": "active", "expired": "expired"}, "all")
    limit = _query_limit(request)
    service = _service(request)
    found = await asyncio.to_thread(
        functools.partial(
            service.tasks, units=await visible_units(request), state=state, limit=limit
        )
    )
    return web.json_response({"tasks": [service.task_json(t) for t in found]})


@routes.add("GET", "/api/v1/tasks/{task_id}", roles=WATCH)
@_refusals
async def get_task(request: web.Request) -> web.StreamResponse:
    task_id = request.match_info["task_id"]
    service = _service(request)
    task = await asyncio.to_thread(service.task, task_id)
    if task is None or not await in_scope(request, task.unit_id):
        return error(404, f"no task {task_id!r}")  # out of scope: as if it did not exist
    steps = await asyncio.to_thread(service.steps, Subject.TASK, task_id)
    doc = service.task_json(task)
    doc["steps"] = [s.to_json() for s in steps]
    return web.json_response(doc)


# --- clues ---------------------------------------------------------------------------------

_CLUE_STATES = {"all": None, "new": ClueState.NEW, "handled": ClueState.HANDLED}


@routes.add("GET", "/api/v1/clues", roles=WATCH)
@_refusals
async def list_clues(request: web.Request) -> web.StreamResponse:
    state = _query_state(request, _CLUE_STATES, "all")
    limit = _query_limit(request)
    service = _service(request)
    found = await asyncio.to_thread(
        functools.partial(
            service.clues, units=await visible_units(request), state=state, limit=limit
        )
    )
    return web.json_response({"clues": [c.to_json() for c in found]})


@routes.add("GET", "/api/v1/clues/{clue_id}", roles=WATCH)
@_refusals
async def get_clue(request: web.Request) -> web.StreamResponse:
    key = request.match_info["clue_id"]
    service = _service(request)
    clue = await asyncio.to_thread(service.clue, key)
    if clue is None or not await in_scope(request, clue.unit_id):
        return error(404, f"no clue {key!r}")
    steps = await asyncio.to_thread(service.steps, Subject.CLUE, clue.key)
    return web.json_response({**clue.to_json(), "steps": [s.to_json() for s in steps]})


@routes.add("POST", "/api/v1/clues/{clue_id}/handle", roles=DISPATCHERS, audit="handle_clue")
@_refusals
async def handle_clue(request: web.Request) -> web.StreamResponse:
    key = request.match_info["clue_id"]
    note = _note(await json_object(request, allowed=_NOTE_FIELDS, limit=BODY_LIMIT))
    service = _service(request)
    clue = await asyncio.to_thread(service.clue, key)
    if clue is None:
        return error(404, f"no clue {key!r}")
    if not await in_scope(request, clue.unit_id):
        raise forbidden(f"clue {key!r} is outside your scope")
    done = await asyncio.to_thread(
        functools.partial(service.handle_clue, key, actor=actor_of(request), note=note)
    )
    return web.json_response(done.to_json())


# --- alerts --------------------------------------------------------------------------------

_ALERT_STATES = {"all": None, "open": AlertState.OPEN, "acked": AlertState.ACKED}


@routes.add("GET", "/api/v1/alerts", roles=WATCH)
@_refusals
async def list_alerts(request: web.Request) -> web.StreamResponse:
    state = _query_state(request, _ALERT_STATES, "open")
    limit = _query_limit(request)
    service = _service(request)

    def read() -> list[dict[str, Any]]:
        found = service.alerts(units=units, state=state, limit=limit)
        return [service.alert_json(a) for a in found]

    units = await visible_units(request)
    return web.json_response({"alerts": await asyncio.to_thread(read)})


@routes.add("GET", "/api/v1/alerts/{alert_id}", roles=WATCH)
@_refusals
async def get_alert(request: web.Request) -> web.StreamResponse:
    alert_id = request.match_info["alert_id"]
    service = _service(request)
    alert = await asyncio.to_thread(service.alert, alert_id)
    if alert is None or not await in_scope(request, alert.unit_id):
        return error(404, f"no alert {alert_id!r}")
    steps = await asyncio.to_thread(service.steps, Subject.ALERT, alert_id)
    doc = await asyncio.to_thread(service.alert_json, alert)
    return web.json_response({**doc, "steps": [s.to_json() for s in steps]})


@routes.add("POST", "/api/v1/alerts/{alert_id}/ack", roles=DISPATCHERS, audit="ack_alert")
@_refusals
async def ack_alert(request: web.Request) -> web.StreamResponse:
    alert_id = request.match_info["alert_id"]
    note = _note(await json_object(request, allowed=_NOTE_FIELDS, limit=BODY_LIMIT))
    service = _service(request)
    alert = await asyncio.to_thread(service.alert, alert_id)
    if alert is None:
        return error(404, f"no alert {alert_id!r}")
    if not await in_scope(request, alert.unit_id):
        raise forbidden(f"alert {alert_id!r} is outside your scope")
    acked = await asyncio.to_thread(
        functools.partial(service.ack_alert, alert_id, actor=actor_of(request), note=note)
    )
    return web.json_response(await asyncio.to_thread(service.alert_json, acked))
