"""Reports as JSON: the shapes the REST API answers and ``yijing report --format json`` prints.

One module for both, so the command line and the web can never disagree on a field's name.
Seconds are integers, times epoch milliseconds (``*_ms``) or seconds (``*_s`` in timelines,
as the duty engine counts), rates floats in [0, 1] or null when there was nothing to measure.
``docs/reports.md`` lists every field. Every on-duty rate comes with the part of it that rests on
a phone's word alone (``phone_on_post_s``, ``phone_only_rate``; ``docs/metrics.md`` §7), and a
shift with its devices and its ``trust``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import Any

from ..duty.rules import Segment, ShiftResult, ShiftTally, State
from ..org.model import Post, Shift, Unit, Volunteer
from .aggregate import ShiftRow, UnitRow, VolunteerRow
from .contracts import FlagLike
from .service import RollCallRecord, ShiftDetail, UnitReport

#: The JSON name of each state (and of its colour and label in ``charts``).
STATE_NAMES: dict[State, str] = {
    State.ON_POST: "on_post",
    State.ON_POST_BACKFILLED: "on_post_backfilled",
    State.OFF_POST: "off_post",
    State.NO_FIX: "no_fix",
    State.OFFLINE: "offline",
}


def _plain(value: Any) -> Any:
    """A flag's value or detail as JSON: numbers, text, lists and dicts pass; NaN and
    infinities become null; anything else its text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def unit_json(unit: Unit) -> dict[str, Any]:
    return {"unit_id": unit.unit_id, "name": unit.name, "level": str(unit.level)}


def unit_row_json(row: UnitRow) -> dict[str, Any]:
    return dataclasses.asdict(row)


def volunteer_row_json(row: VolunteerRow) -> dict[str, Any]:
    out = dataclasses.asdict(row)
    out["shifts"] = list(row.shifts)
    return out


def shift_row_json(row: ShiftRow) -> dict[str, Any]:
    out = dataclasses.asdict(row)
    out["devices"] = list(row.devices)
    return out


def flag_json(flag: FlagLike) -> dict[str, Any]:
    return {
        "kind": str(flag.kind),
        "device_id": flag.device_id,
        "shift_id": flag.shift_id,
        "volunteer_id": flag.volunteer_id,
        "start_ms": flag.start_ms,
        "end_ms": flag.end_ms,
        "value": _plain(flag.value),
        "detail": _plain(flag.detail),
    }


def unit_report_json(
    report: UnitReport, *, visible: Collection[str] | None = None
) -> dict[str, Any]:
    """The report; ``path`` keeps only the ancestors in ``visible`` (the reader's scope; None:
    all), so a district inspector's breadcrumb starts at the district."""
    return {
        "unit": unit_json(report.unit),
        "path": [unit_json(u) for u in report.path if visible is None or u.unit_id in visible],
        "period": report.period.as_json(),
        "totals": unit_row_json(report.totals),
        "children": [unit_row_json(r) for r in report.children],
        "volunteers": [volunteer_row_json(r) for r in report.volunteers],
        "shifts": [shift_row_json(r) for r in report.shifts],
        "flags": [flag_json(f) for f in report.flags],
    }


def shift_json(shift: Shift, unit_id: str | None) -> dict[str, Any]:
    return {
        "shift_id": shift.shift_id,
        "volunteer_id": shift.volunteer_id,
        "post_id": shift.post_id,
        "unit_id": unit_id,
        "device_id": shift.device_id,
        "start_ms": shift.start_ms,
        "end_ms": shift.end_ms,
        "role": str(shift.role),
        "roster_id": shift.roster_id,
    }


def post_json(post: Post | None) -> dict[str, Any] | None:
    if post is None:
        return None
    return {
        "post_id": post.post_id,
        "name": post.name,
        "kind": str(post.kind),
        "mode": str(post.mode),
        "unit_id": post.unit_id,
    }


def volunteer_json(volunteer: Volunteer | None) -> dict[str, Any] | None:
    # No phone number: an inspection report has no need of it.
    if volunteer is None:
        return None
    return {
        "volunteer_id": volunteer.volunteer_id,
        "name": volunteer.name,
        "unit_id": volunteer.unit_id,
        "kind": str(volunteer.kind),
    }


def tally_json(
    tally: ShiftTally,
    start_s: int,
    end_s: int,
    phone_on_post_s: int = 0,
    usage_rate: float | None = None,
) -> dict[str, Any]:
    """``usage_rate``: the recorded terminal's (``ShiftResult.usage_rate``, metrics.md §7);
    None: the tally's, the same for a shift without phones."""
    return {
        "scheduled_s": tally.scheduled_s,
        "on_post_s": tally.on_post_s,
        "on_post_backfilled_s": tally.on_post_backfilled_s,
        "off_post_s": tally.off_post_s,
        "no_fix_s": tally.no_fix_s,
        "offline_s": tally.offline_s,
        "alive_s": tally.alive_s,
        "first_on_s": tally.first_on_s,
        "last_on_s": tally.last_on_s,
        "on_duty_rate": tally.on_duty_rate,
        "phone_on_post_s": phone_on_post_s,
        "phone_only_rate": phone_on_post_s / tally.scheduled_s if tally.scheduled_s else None,
        "usage_rate": tally.usage_rate if usage_rate is None else usage_rate,
        "late_s": tally.late_s(start_s),
        "early_leave_s": tally.early_leave_s(end_s),
    }


def segment_json(segment: Segment) -> dict[str, Any]:
    return {"start_s": segment.start_s, "end_s": segment.end_s, "state": STATE_NAMES[segment.state]}


def trust_json(result: ShiftResult) -> dict[str, Any]:
    """A shift's devices and how far its on-post time rests on a phone alone (metrics.md §7):
    ``phone_only`` are those seconds, as ``[start_s, end_s)`` spans."""
    return {
        "devices": list(result.devices),
        "phones": list(result.phones),
        "trust": str(result.trust),
        "phone_only": [{"start_s": a, "end_s": b} for a, b in result.phone_only()],
    }


def roll_call_json(call: RollCallRecord) -> dict[str, Any]:
    return {
        "sent_ms": call.sent_ms,
        "deadline_ms": call.deadline_ms,
        "answered_ms": call.answered_ms,
        "answered": call.answered,
    }


def shift_detail_json(detail: ShiftDetail) -> dict[str, Any]:
    r = detail.result
    return {
        "shift": shift_json(detail.shift, detail.unit_id),
        "post": post_json(detail.post),
        "volunteer": volunteer_json(detail.volunteer),
        "tz": detail.tz,
        **trust_json(r),
        "tally": tally_json(r.tally, r.start_s, r.end_s, r.phone_on_post_s, r.usage_rate),
        "segments": [segment_json(s) for s in r.segments],
        "flags": [flag_json(f) for f in detail.flags],
        "roll_calls": [roll_call_json(c) for c in detail.roll_calls],
    }
