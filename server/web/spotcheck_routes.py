"""REST for spot checks: inspectors start them; officers, inspectors and admins read them.

- ``POST /api/v1/spotchecks`` (inspector, admin): start a check; 201 with the check.
- ``GET /api/v1/spotchecks?unit=&since_ms=&until_ms=&limit=`` (officer, inspector, admin):
  checks, newest first, with counts per result and without their targets.
- ``GET /api/v1/spotchecks/{check_id}`` (officer, inspector, admin): one check, its targets.

Officers may read but not start checks: inspectors check, officers dispatch (a duty officer
raising their own volunteers would grade their own homework). Scope (``server.web.scope``): a
principal with a ``scope`` unit starts checks only inside its subtree (403 naming the unit)
and sees only checks made for units inside it (404 for one outside, as if it did not exist;
lists filtered; a list asked for a unit outside it, 403).

The service is synchronous and may wait on SQLite, so handlers call it in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Collection
from typing import Any

from aiohttp import web

from ..spotcheck.errors import BadRequest
from ..spotcheck.model import MAX_DEADLINE_S, MAX_TARGETS, MIN_DEADLINE_S, SpotCheck, Target
from ..spotcheck.service import OrgView, SpotChecks
from .access import WATCH, Role, Routes, error
from .keys import ORG, SPOTCHECKS
from .requests import BadField, json_object, principal_of, query_int, refusals
from .scope import in_scope, require_in_scope, visible_units

routes = Routes()

#: Who may start a check.
CHECKERS = frozenset({Role.INSPECTOR, Role.ADMIN})
#: The largest request body: a hundred device ids are under 8 kB; anything near this is not a
#: spot check.
BODY_LIMIT = 64 * 1024
_FIELDS = frozenset({"unit", "devices", "sample", "deadline_s", "want_snapshot"})
MAX_LIST = 500


def _services(request: web.Request) -> tuple[SpotChecks, OrgView]:
    checks: SpotChecks = request.app[SPOTCHECKS]  # type: ignore[assignment]
    org: OrgView = request.app[ORG]  # type: ignore[assignment]
    return checks, org


# --- JSON out ------------------------------------------------------------------------------


def _target_json(t: Target) -> dict[str, Any]:
    return {
        "device_id": t.device_id,
        "volunteer_id": t.volunteer_id,
        "shift_id": t.shift_id,
        "rollcall_id": t.rollcall_id,
        "sent_ms": t.sent_ms,
        "answered_ms": t.answered_ms,
        "result": t.result.value,
        "reason": t.reason,
        "fix": (
            {
                "lat": t.fix.lat,
                "lon": t.fix.lon,
                "time_ms": t.fix.time_ms,
                "accuracy_m": t.fix.accuracy_m,
            }
            if t.fix is not None
            else None
        ),
        "snapshot_url": (
            f"/api/v1/snapshots/{t.snapshot_sha256}.jpg" if t.snapshot_sha256 is not None else None
        ),
        "error": t.error,
    }


def check_json(check: SpotCheck, *, targets: bool = True) -> dict[str, Any]:
    """A check as the API shows it; without ``targets``, with counts per result instead."""
    doc: dict[str, Any] = {
        "check_id": check.check_id,
        "unit_id": check.unit_id,
        "created_ms": check.created_ms,
        "created_by": check.created_by,
        "deadline_ms": check.deadline_ms,
        "want_snapshot": check.want_snapshot,
        "total": check.total,
        "answered": check.answered,
        "answer_rate": check.answer_rate,
        "counts": check.counts,
    }
    if targets:
        doc["targets"] = [_target_json(t) for t in check.targets]
    return doc


# --- JSON in -------------------------------------------------------------------------------


def _int_field(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadField(name, f"{value!r} is not a whole number")
    if not lo <= value <= hi:
        raise BadField(name, f"{value} is outside [{lo}, {hi}]")
    return value


def _create_args(body: dict[str, Any]) -> dict[str, Any]:
    unit = body.get("unit")
    if not isinstance(unit, str) or not unit:
        raise BadField("unit", "required: the id of the unit to check")
    devices = body.get("devices")
    sample = _int_field(body, "sample", 1, MAX_TARGETS)
    if (devices is None) == (sample is None):
        raise BadField("devices", "give either devices or sample, not both or neither")
    if devices is not None:
        if not isinstance(devices, list) or not devices:
            raise BadField("devices", "a non-empty list of device ids")
        if len(devices) > MAX_TARGETS:
            raise BadField("devices", f"at most {MAX_TARGETS} in one check")
        if not all(isinstance(d, str) for d in devices):
            raise BadField("devices", "every item must be a device id (a string)")
    deadline_s = _int_field(body, "deadline_s", MIN_DEADLINE_S, MAX_DEADLINE_S)
    want_snapshot = body.get("want_snapshot", False)
    if not isinstance(want_snapshot, bool):
        raise BadField("want_snapshot", f"{want_snapshot!r} is not true or false")
    args: dict[str, Any] = {"unit_id": unit, "want_snapshot": want_snapshot}
    if devices is not None:
        args["devices"] = devices
    else:
        args["sample"] = sample
    if deadline_s is not None:
        args["deadline_s"] = deadline_s
    return args


_refusals = refusals([(BadRequest, 400)], store="spot-check store")


# --- handlers ------------------------------------------------------------------------------


@routes.add("POST", "/api/v1/spotchecks", roles=CHECKERS, audit="spot_check")
@_refusals
async def create_check(request: web.Request) -> web.StreamResponse:
    principal = principal_of(request)
    body = await json_object(request, allowed=_FIELDS, limit=BODY_LIMIT, empty_ok=False)
    args = _create_args(body)
    await require_in_scope(request, args["unit_id"])
    checks, _ = _services(request)
    check = await asyncio.to_thread(functools.partial(checks.create, by=principal.name, **args))
    return web.json_response({"check": check_json(check)}, status=201)


@routes.add("GET", "/api/v1/spotchecks", roles=WATCH)
@_refusals
async def list_checks(request: web.Request) -> web.StreamResponse:
    since = query_int(request, "since_ms", 0, 2**62)
    until = query_int(request, "until_ms", 0, 2**62)
    limit = query_int(request, "limit", 1, MAX_LIST) or 100
    unit = request.query.get("unit") or None
    checks, org = _services(request)
    units: Collection[str] | None
    if unit is None:
        units = await visible_units(request)
    else:
        # Naming a unit outside one's scope is refused outright rather than answered with
        # an empty list that would look like "no checks there".
        await require_in_scope(request, unit)
        units = await asyncio.to_thread(org.subtree, unit)
        if not units:
            raise BadField("unit", f"no unit {unit!r}")
    found = await asyncio.to_thread(
        functools.partial(checks.history, units=units, since_ms=since, until_ms=until, limit=limit)
    )
    return web.json_response({"checks": [check_json(c, targets=False) for c in found]})


@routes.add("GET", "/api/v1/spotchecks/{check_id}", roles=WATCH)
@_refusals
async def get_check(request: web.Request) -> web.StreamResponse:
    check_id = request.match_info["check_id"]
    checks, _ = _services(request)
    check = await asyncio.to_thread(checks.check, check_id)
    if check is None or not await in_scope(request, check.unit_id):
        # The same answer either way: a check outside one's scope does not exist for one.
        return error(404, f"no spot check {check_id!r}")
    return web.json_response({"check": check_json(check)})
