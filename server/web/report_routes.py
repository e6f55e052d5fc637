"""REST for inspectors' reports: a unit's rates for a period, CSV, charts, one shift's timeline.

Who: inspectors and admins only. Reports are inspection — the three-level check of on-duty
and terminal usage rates — and a station's duty officer, who runs the volunteers being
inspected, watches the live map instead (``WATCH`` routes) rather than grading their own
station. A volunteer sees none of it.

Scope: a principal with a ``scope`` unit sees reports of units in its subtree only; any other
unit, and any shift at a post outside it, answers 404 exactly as an unknown id does, so ids
from other stations do not leak. The breadcrumb ``path`` stops at the top of the scope.

Routes (all JSON errors are ``{"error": "<field>: <reason>"}``):

- ``POST /api/v1/reports/jobs`` ``{"unit", "from", "to", "tz"?, "volunteers"?}`` → 202
  ``{"job": {"id", "status", "done", "total"}}``: a report on the job pool, for big units.
- ``GET /api/v1/reports/jobs/{id}`` → ``{"job": {..., "error"? , "report"?}}``; a job is
  visible only to the principal who started it.
- ``GET /api/v1/reports/units/{unit}?from=&to=[&tz=][&volunteers=all]`` → the report,
  computed in the request (422 past ``SYNC_MAX_SHIFTS`` shifts: start a job instead).
- ``GET /api/v1/reports/units/{unit}/units.csv`` and ``/volunteers.csv`` (same query).
- ``GET /api/v1/reports/units/{unit}/chart.svg|chart.png?...&lang=zh|en``.
- ``GET /api/v1/reports/shifts/{shift_id}`` → the shift's detail;
  ``/timeline.svg|timeline.png?lang=zh|en``.

Everything that reads a store or draws runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from ..errors import StoreError
from ..reports import charts, csv_export
from ..reports.jobs import JobsBusy, JobView
from ..reports.period import DEFAULT_TZ, Period, PeriodError
from ..reports.service import (
    ReportError,
    Reports,
    TooLarge,
    UnitReport,
    UnknownShift,
    UnknownUnit,
)
from ..reports.shapes import shift_detail_json, unit_report_json
from .access import PRINCIPAL, Principal, Role, Routes, error
from .keys import REPORTS
from .requests import BadField, json_body
from .scope import in_scope, visible_units

routes = Routes()

#: Inspection, not the live watch: see the module's docstring.
REPORTERS = frozenset({Role.INSPECTOR, Role.ADMIN})
#: A synchronous report of more shifts than this answers 422 and asks for a job: a station-day
#: recomputes in seconds, a district-week would hold the request (and a worker) for minutes.
SYNC_MAX_SHIFTS = 2000
BODY_LIMIT = 16 * 1024
_JOB_FIELDS = {"unit", "from", "to", "tz", "volunteers"}
_CONTENT_TYPES = {"svg": "image/svg+xml", "png": "image/png"}
#: An SVG opened on its own is a document of our origin: allow it no script and no fetches.
_IMAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-cache",
}


def _json_error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": message}), content_type="application/json")


def _bad(field: str, reason: str) -> web.HTTPException:
    return _json_error(web.HTTPBadRequest, f"{field}: {reason}")


def _reports(request: web.Request) -> Reports:
    reports: Reports = request.app[REPORTS]  # type: ignore[assignment]
    return reports


def _principal(request: web.Request) -> Principal:
    principal = request[PRINCIPAL]
    assert principal is not None  # the access middleware lets only signed-in callers through
    return principal


# --- request parsing --------------------------------------------------------------------------


def _text(name: str, value: object, default: str | None = None) -> str:
    if value is None or value == "":
        if default is not None:
            return default
        raise _bad(name, "required, as YYYY-MM-DD")
    if not isinstance(value, str):
        raise _bad(name, f"expected text, got {type(value).__name__}")
    return value


def _period(first: object, last: object, tz: object) -> Period:
    try:
        return Period.parse(_text("from", first), _text("to", last), _text("tz", tz, DEFAULT_TZ))
    except PeriodError as exc:
        raise _bad(exc.field, exc.reason) from None
    except OSError:
        # ZoneInfo opens the name as a file: one past 255 bytes raises ENAMETOOLONG, a 500
        # else (server/reports/period.py's zone() catches only ValueError).
        raise _bad("tz", "not a time zone name (such as Asia/Shanghai)") from None


def _query_period(request: web.Request) -> Period:
    q = request.query
    return _period(q.get("from"), q.get("to"), q.get("tz"))


def _all_volunteers(value: object) -> bool:
    if value in (None, "", "direct"):
        return False
    if value == "all":
        return True
    raise _bad("volunteers", f"{value!r}: direct (the default) or all")


def _lang(request: web.Request) -> str:
    lang = request.query.get("lang") or "zh"
    if lang not in charts.LANGS:
        raise _bad("lang", f"{lang!r}: one of {', '.join(charts.LANGS)}")
    return lang


async def _require_visible(request: web.Request, unit_id: str | None, what: str) -> None:
    """404 for a unit outside the caller's scope, worded as for one that does not exist."""
    if unit_id is None or not await in_scope(request, unit_id):
        raise _json_error(web.HTTPNotFound, what)


def _failure(exc: Exception) -> web.HTTPException:
    if isinstance(exc, UnknownUnit | UnknownShift):
        return _json_error(web.HTTPNotFound, str(exc))
    if isinstance(exc, TooLarge):
        return _json_error(web.HTTPUnprocessableEntity, str(exc))
    if isinstance(exc, ReportError):
        return _bad(exc.field, exc.reason)
    if isinstance(exc, StoreError):
        return _json_error(web.HTTPServiceUnavailable, f"store: {exc}")
    raise exc


async def _unit_report(request: web.Request) -> UnitReport:
    unit_id = request.match_info["unit"]
    await _require_visible(request, unit_id, f"unit: no unit {unit_id!r}")
    period = _query_period(request)
    every = _all_volunteers(request.query.get("volunteers"))
    try:
        return await asyncio.to_thread(
            _reports(request).unit_report,
            unit_id,
            period,
            all_volunteers=every,
            max_shifts=SYNC_MAX_SHIFTS,
        )
    except (ReportError, StoreError) as exc:
        raise _failure(exc) from None


# --- a unit's report --------------------------------------------------------------------------


@routes.add("GET", "/api/v1/reports/units/{unit}", roles=REPORTERS)
async def unit_report(request: web.Request) -> web.StreamResponse:
    report = await _unit_report(request)
    return web.json_response(
        unit_report_json(report, visible=await visible_units(request)), dumps=_dumps
    )


def _attachment(report: UnitReport, what: str) -> str:
    p = report.period
    days = f"{p.first_day.isoformat()}_{p.last_day.isoformat()}"
    # Unit ids are [A-Za-z0-9_.-] (server.org.model.ID_RE): safe in a header as they are.
    return f'attachment; filename="report-{report.unit.unit_id}-{days}-{what}"'


@routes.add("GET", "/api/v1/reports/units/{unit}/units.csv", roles=REPORTERS, audit="export_csv")
async def units_csv(request: web.Request) -> web.StreamResponse:
    report = await _unit_report(request)
    body = csv_export.units_csv(report.totals, report.children)
    return web.Response(
        body=body.encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": _attachment(report, "units.csv")},
    )


@routes.add(
    "GET", "/api/v1/reports/units/{unit}/volunteers.csv", roles=REPORTERS, audit="export_csv"
)
async def volunteers_csv(request: web.Request) -> web.StreamResponse:
    report = await _unit_report(request)
    body = csv_export.volunteers_csv(report.volunteers)
    return web.Response(
        body=body.encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": _attachment(report, "volunteers.csv")},
    )


@routes.add(
    "GET", "/api/v1/reports/units/{unit}/chart.{fmt:svg|png}", roles=REPORTERS, audit="export_chart"
)
async def unit_chart(request: web.Request) -> web.StreamResponse:
    fmt = request.match_info["fmt"]
    lang = _lang(request)
    report = await _unit_report(request)
    # A unit without children is drawn as its own single bar group.
    rows = list(report.children) or [report.totals]
    title = f"{report.unit.name} {report.period.label()}"
    body = await asyncio.to_thread(charts.rates_chart, rows, fmt, lang, title=title)
    return web.Response(body=body, content_type=_CONTENT_TYPES[fmt], headers=_IMAGE_HEADERS)


# --- one shift --------------------------------------------------------------------------------


async def _shift_detail(request: web.Request) -> Any:
    shift_id = request.match_info["shift_id"]
    reports = _reports(request)
    missing = f"shift: no shift {shift_id!r}"
    try:
        unit_id = await asyncio.to_thread(reports.shift_unit, shift_id)
        await _require_visible(request, unit_id, missing)
        return await asyncio.to_thread(reports.shift_detail, shift_id)
    except (ReportError, StoreError) as exc:
        raise _failure(exc) from None


@routes.add("GET", "/api/v1/reports/shifts/{shift_id}", roles=REPORTERS)
async def shift_detail(request: web.Request) -> web.StreamResponse:
    detail = await _shift_detail(request)
    return web.json_response(shift_detail_json(detail), dumps=_dumps)


@routes.add("GET", "/api/v1/reports/shifts/{shift_id}/timeline.{fmt:svg|png}", roles=REPORTERS)
async def shift_timeline(request: web.Request) -> web.StreamResponse:
    fmt = request.match_info["fmt"]
    lang = _lang(request)
    detail = await _shift_detail(request)
    body = await asyncio.to_thread(charts.timeline_chart, detail, fmt, lang)
    return web.Response(body=body, content_type=_CONTENT_TYPES[fmt], headers=_IMAGE_HEADERS)


# --- jobs -------------------------------------------------------------------------------------


def _job_json(view: JobView, visible: set[str] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": view.job_id,
        "status": view.status,
        "done": view.done,
        "total": view.total,
    }
    if view.error is not None:
        doc["error"] = view.error
    if view.status == "done" and isinstance(view.result, UnitReport):
        doc["report"] = unit_report_json(view.result, visible=visible)
    return doc


async def _body(request: web.Request) -> dict[str, Any]:
    # ``json_body``: 413 past the limit even for a chunked body read in several pieces, and
    # no NaN or RecursionError (a 500) from JSON nested thousands deep.
    try:
        doc = await json_body(request, limit=BODY_LIMIT, empty_ok=False)
    except BadField as exc:
        raise _bad(exc.field, str(exc).removeprefix(f"{exc.field}: ")) from None
    if not isinstance(doc, dict):
        raise _bad("body", "expected a JSON object")
    unknown = sorted(set(doc) - _JOB_FIELDS)
    if unknown:
        raise _bad(unknown[0], f"unknown field (expected {', '.join(sorted(_JOB_FIELDS))})")
    return doc


@routes.add("POST", "/api/v1/reports/jobs", roles=REPORTERS, audit="run_report")
async def start_job(request: web.Request) -> web.StreamResponse:
    doc = await _body(request)
    unit_id = doc.get("unit")
    if not isinstance(unit_id, str) or not unit_id:
        raise _bad("unit", "required: the id of the unit to report on")
    period = _period(doc.get("from"), doc.get("to"), doc.get("tz"))
    every = _all_volunteers(doc.get("volunteers"))
    await _require_visible(request, unit_id, f"unit: no unit {unit_id!r}")
    reports = _reports(request)
    # An unknown unit inside an unscoped caller's view: say so now, not from a failed job.
    if await asyncio.to_thread(reports.org.unit, unit_id) is None:
        raise _json_error(web.HTTPNotFound, f"unit: no unit {unit_id!r}")
    try:
        view = reports.start_job(_principal(request), unit_id, period, all_volunteers=every)
    except JobsBusy as exc:
        return error(429, f"jobs: {exc}")
    return web.json_response({"job": _job_json(view, None)}, status=202)


@routes.add("GET", "/api/v1/reports/jobs/{job_id}", roles=REPORTERS)
async def job_status(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["job_id"]
    view = _reports(request).job(job_id, _principal(request))
    if view is None:
        return error(404, f"job: no job {job_id!r}")
    return web.json_response({"job": _job_json(view, await visible_units(request))}, dumps=_dumps)


def _dumps(doc: Any) -> str:
    # Chinese names as themselves, not \\u escapes: a third of the size, and readable.
    return json.dumps(doc, ensure_ascii=False)
