"""Duty, live: who is on post now, and one shift's running timeline.

The figures here come from the incremental computation (``server.duty.incremental``), updated
as frames are stored; a shift no longer tracked (ended more than 12 h ago) is recomputed from
the store instead, and the answer says which (``"source"``). Reports (``report_routes``) always
recompute. Scope: a shift belongs to its post's unit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..duty.rules import ShiftResult
from ..duty.service import DutyService
from ..reports.shapes import trust_json
from .access import WATCH, Routes, error
from .keys import CLOCK, DUTY
from .scope import in_scope, narrow, org_store

routes = Routes()


def _duty(request: web.Request) -> DutyService:
    duty: DutyService = request.app[DUTY]  # type: ignore[assignment]
    return duty


def _now_ms(request: web.Request) -> int:
    clock: Callable[[], float] = request.app.get(CLOCK, time.time)  # type: ignore[assignment]
    return int(clock() * 1000)


def result_json(result: ShiftResult) -> dict[str, Any]:
    t = result.tally
    return {
        "shift_id": result.shift_id,
        "device_id": result.device_id,
        # docs/metrics.md §7: every device counted, and what rests on a phone alone.
        **trust_json(result),
        "start_s": result.start_s,
        "end_s": result.end_s,
        "tally": {
            "scheduled_s": t.scheduled_s,
            "on_post_s": t.on_post_s,
            "on_post_backfilled_s": t.on_post_backfilled_s,
            "off_post_s": t.off_post_s,
            "no_fix_s": t.no_fix_s,
            "offline_s": t.offline_s,
            "on_duty_rate": t.on_duty_rate,
            "phone_on_post_s": result.phone_on_post_s,
            "phone_only_rate": result.phone_only_rate,
            "usage_rate": result.usage_rate,  # the recorded terminal's own (metrics.md §7)
            "late_s": t.late_s(result.start_s),
            "early_leave_s": t.early_leave_s(result.end_s),
        },
        "segments": [
            {"start_s": s.start_s, "end_s": s.end_s, "state": s.state.name.lower()}
            for s in result.segments
        ],
    }


@routes.add("GET", "/api/v1/duty/now", roles=WATCH)
async def duty_now(request: web.Request) -> web.StreamResponse:
    """Every shift running now in the caller's scope (or under ``?unit=``): its state this
    second and its on-duty rate so far, its devices, whether one is a phone (``phone``) and
    whether it is on post now on a phone's word alone (``on_phone``; docs/metrics.md §7).
    ``on_phone`` at the top counts those shifts among the ``on_post`` ones."""
    org = org_store(request)
    unit = request.query.get("unit")
    wanted = None
    if unit:
        if not await in_scope(request, unit):
            return error(404, f"no unit {unit!r}")
        wanted = await asyncio.to_thread(org.subtree, unit)
    units = await narrow(request, wanted)
    shifts = await asyncio.to_thread(_duty(request).now)
    if units is not None:
        post_units = {p.post_id: p.unit_id for p in await asyncio.to_thread(org.posts, units=units)}
        shifts = [s for s in shifts if s["post_id"] in post_units]
    on = sum(1 for s in shifts if s["state"].startswith("on_post"))
    on_phone = sum(1 for s in shifts if s.get("on_phone"))
    return web.json_response(
        {"server_time_ms": _now_ms(request), "on_post": on, "on_phone": on_phone, "shifts": shifts}
    )


@routes.add("GET", "/api/v1/duty/shifts/{shift_id}", roles=WATCH)
async def duty_shift(request: web.Request) -> web.StreamResponse:
    org = org_store(request)
    shift_id = request.match_info["shift_id"]
    shift = await asyncio.to_thread(org.shift, shift_id)
    if shift is None:
        return error(404, f"no shift {shift_id!r}")
    post = await asyncio.to_thread(org.post, shift.post_id)
    if post is None or not await in_scope(request, post.unit_id):
        return error(404, f"no shift {shift_id!r}")
    duty = _duty(request)
    result = await asyncio.to_thread(duty.live_result, shift_id)
    source = "live"
    if result is None:
        result = await asyncio.to_thread(duty.recompute, shift)
        source = "recomputed"
    return web.json_response({"source": source, **result_json(result)})
