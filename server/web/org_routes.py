"""The organisation's REST API under ``/api/v1/org/``: units, volunteers, terminals, posts,
shifts and rosters, roster generation, and bulk import.

Each kind has the same four routes: ``GET /{kind}`` (list; ``?unit=U`` keeps U's subtree),
``GET /{kind}/{id}``, ``PUT /{kind}/{id}`` (create or replace: 201 or 200, the record back) and
``DELETE /{kind}/{id}`` (204). Reads are for ``WATCH`` roles, writes for admins; everything is
cut to the caller's scope (``server.web.scope``: out of scope reads 404, writes 403).

Errors: a bad body or field is 400, ``{"error": "<field>: <reason>"}``; a refusal caused by
other records (a unit that still has volunteers, an overlapping shift) is 409; an import with
bad rows is 422 with the whole report (``server.org.imports``: nothing is imported).

Store calls run in worker threads: the store is SQLite behind a lock that an import may hold
for seconds, and the event loop serves the live map meanwhile.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import Callable
from datetime import date
from typing import Any, NoReturn

from aiohttp import web

from ..org.codec import Kind, Record, from_json, to_json
from ..org.imports import COLUMNS, MAX_BYTES, ImportRefused, import_csv, import_geojson
from ..org.model import OrgError, Shift
from ..org.store import OrgConflict
from .access import ADMIN_ONLY, PRINCIPAL, WATCH, Routes
from .keys import CLOCK
from .requests import BadField, json_body
from .scope import forbidden, in_scope, narrow, org_store, require_in_scope, visible_units

routes = Routes()

PREFIX = "/api/v1/org"
#: A roster generated for more than about two months at once is more likely a typo in a year.
MAX_GENERATE_DAYS = 62
MAX_SHIFTS_LISTED = 100_000
#: The largest JSON body of one record (a post's polygon of a few thousand points fits).
BODY_LIMIT = 1024 * 1024
_SINGULAR = {
    Kind.UNITS: "unit",
    Kind.VOLUNTEERS: "volunteer",
    Kind.TERMINALS: "terminal",
    Kind.POSTS: "post",
    Kind.SHIFTS: "shift",
    Kind.ROSTERS: "roster",
}
_CSV = "text/csv"
_GEOJSON = ("application/geo+json", "application/json")


def _fail(status: type[web.HTTPException], message: str) -> NoReturn:
    raise status(text=json.dumps({"error": message}), content_type="application/json")


def _refused(exc: OrgError) -> NoReturn:
    _fail(web.HTTPConflict if isinstance(exc, OrgConflict) else web.HTTPBadRequest, str(exc))


def _now_ms(request: web.Request) -> int:
    clock: Callable[[], float] = request.app[CLOCK]  # type: ignore[assignment]
    return int(clock() * 1000)


async def _run(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``fn`` in a worker thread; the store's refusals become 400 or 409."""
    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except OrgError as exc:
        _refused(exc)


async def _json_body(request: web.Request) -> Any:
    # Not ``request.json()``: past aiohttp's ``client_max_size`` that answers 413 without
    # saying why, and it lets through NaN and JSON nested deep enough to raise
    # RecursionError (a 500); ``json_body`` refuses all of these by name.
    try:
        return await json_body(request, limit=BODY_LIMIT, empty_ok=False)
    except BadField as exc:
        _fail(web.HTTPBadRequest, str(exc))


def _int_query(request: web.Request, name: str, lo: int, hi: int) -> int | None:
    raw = request.query.get(name, "")
    if raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        _fail(web.HTTPBadRequest, f"{name}: {raw!r} is not an integer")
    if not lo <= value <= hi:
        _fail(web.HTTPBadRequest, f"{name}: {value} is outside [{lo}, {hi}]")
    return value


async def _filter_units(request: web.Request) -> set[str] | None:
    """The units a list keeps: the caller's scope, cut to ``?unit=``'s subtree if given."""
    unit = request.query.get("unit")
    subtree = None if not unit else await asyncio.to_thread(org_store(request).subtree, unit)
    return await narrow(request, subtree)


async def _visible(request: web.Request, record: Record) -> bool:
    if await visible_units(request) is None:
        return True
    return await in_scope(request, await asyncio.to_thread(org_store(request).owner, record))


async def _visible_record(request: web.Request, kind: Kind, record_id: str) -> Record:
    """The record, or 404 if it does not exist *or* is outside the caller's scope."""
    record = await asyncio.to_thread(org_store(request).get, kind, record_id)
    if record is None or not await _visible(request, record):
        _fail(web.HTTPNotFound, f"no {_SINGULAR[kind]} {record_id!r}")
    return record


def _register(kind: Kind) -> None:
    """The four routes of one kind (the shift list has its own, with time filters)."""
    path = f"{PREFIX}/{kind}"

    if kind is not Kind.SHIFTS:

        @routes.add("GET", path, roles=WATCH)
        async def list_records(request: web.Request) -> web.StreamResponse:
            units = await _filter_units(request)
            records = await asyncio.to_thread(org_store(request).records, kind, units=units)
            return web.json_response({str(kind): [to_json(r) for r in records]})

    @routes.add("GET", path + "/{id}", roles=WATCH)
    async def get_record(request: web.Request) -> web.StreamResponse:
        record = await _visible_record(request, kind, request.match_info["id"])
        return web.json_response(to_json(record))

    @routes.add("PUT", path + "/{id}", roles=ADMIN_ONLY, audit=f"put_{kind}")
    async def put_record(request: web.Request) -> web.StreamResponse:
        record_id = request.match_info["id"]
        doc = await _json_body(request)
        try:
            record = from_json(kind, doc, id=record_id)
        except OrgError as exc:
            _fail(web.HTTPBadRequest, str(exc))
        store = org_store(request)
        if isinstance(record, Shift) and "device_id" not in doc:
            # Left out (null is "no terminal"): the one already recorded on the shift, or for a
            # new shift the one the volunteer holds now.
            record = await asyncio.to_thread(store.with_terminal, record)
        old = await asyncio.to_thread(store.get, kind, record_id)
        if old is not None and not await _visible(request, old):
            raise forbidden(f"{_SINGULAR[kind]} {record_id!r} exists outside your scope")
        for unit in await asyncio.to_thread(store.write_units, record):
            await require_in_scope(request, unit)
        created = await _run(store.put, record, at_ms=_now_ms(request))
        return web.json_response(to_json(record), status=201 if created else 200)

    @routes.add("DELETE", path + "/{id}", roles=ADMIN_ONLY, audit=f"delete_{kind}")
    async def delete_record(request: web.Request) -> web.StreamResponse:
        record_id = request.match_info["id"]
        record = await _visible_record(request, kind, record_id)
        principal = request[PRINCIPAL]
        if kind is Kind.UNITS and principal is not None and principal.scope == record_id:
            raise forbidden(f"{record_id!r} is your own scope: an admin above it may delete it")
        store = org_store(request)
        await require_in_scope(request, await asyncio.to_thread(store.owner, record))
        await _run(store.delete, kind, record_id)
        return web.Response(status=204)


for _kind in Kind:
    _register(_kind)


@routes.add("GET", f"{PREFIX}/shifts", roles=WATCH)
async def list_shifts(request: web.Request) -> web.StreamResponse:
    """``since_ms``/``until_ms``: shifts overlapping that window; ``unit``: posts in that
    subtree; ``volunteer``, ``device``; ``limit`` (default and most: 100,000)."""
    since = _int_query(request, "since_ms", 0, 2**53)
    until = _int_query(request, "until_ms", 0, 2**53)
    limit = _int_query(request, "limit", 1, MAX_SHIFTS_LISTED) or MAX_SHIFTS_LISTED
    units = await _filter_units(request)
    shifts = await asyncio.to_thread(
        org_store(request).shifts,
        since_ms=since,
        until_ms=until,
        units=units,
        volunteer_id=request.query.get("volunteer") or None,
        device_id=request.query.get("device") or None,
        limit=limit + 1,
    )
    return web.json_response(
        {"shifts": [to_json(s) for s in shifts[:limit]], "truncated": len(shifts) > limit}
    )


@routes.add("GET", f"{PREFIX}/terminals/{{id}}/holdings", roles=WATCH)
async def terminal_holdings(request: web.Request) -> web.StreamResponse:
    """Who held the terminal when: ``to_ms`` null is the holder now."""
    device_id = request.match_info["id"]
    await _visible_record(request, Kind.TERMINALS, device_id)
    holdings = await asyncio.to_thread(org_store(request).holdings, device_id)
    return web.json_response(
        {
            "device_id": device_id,
            "holdings": [
                {"volunteer_id": v, "from_ms": start, "to_ms": end} for v, start, end in holdings
            ],
        }
    )


def _day(doc: dict[str, Any], name: str) -> date:
    raw = doc.get(name)
    if not isinstance(raw, str):
        _fail(web.HTTPBadRequest, f"{name}: missing (YYYY-MM-DD)")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        _fail(web.HTTPBadRequest, f"{name}: {raw!r} is not a date (YYYY-MM-DD)")


@routes.add("POST", f"{PREFIX}/rosters/{{id}}/generate", roles=ADMIN_ONLY, audit="generate_shifts")
async def generate(request: web.Request) -> web.StreamResponse:
    """Body ``{"from": "2026-03-02", "to": "2026-03-31"}`` (both days included, at most
    ``MAX_GENERATE_DAYS``): make the roster's shifts; those already made are skipped."""
    roster_id = request.match_info["id"]
    roster = await _visible_record(request, Kind.ROSTERS, roster_id)
    store = org_store(request)
    await require_in_scope(request, await asyncio.to_thread(store.owner, roster))
    doc = await _json_body(request)
    if not isinstance(doc, dict):
        _fail(web.HTTPBadRequest, 'body: expected {"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}')
    unknown = sorted(set(doc) - {"from", "to"})
    if unknown:
        # A misspelt field ("form", "until") must not be dropped while shifts are made anyway.
        _fail(web.HTTPBadRequest, f"{unknown[0]}: unknown field (expected: from, to)")
    first, last = _day(doc, "from"), _day(doc, "to")
    if last < first:
        _fail(web.HTTPBadRequest, f"to: {last} is before from ({first})")
    if (last - first).days + 1 > MAX_GENERATE_DAYS:
        _fail(web.HTTPBadRequest, f"to: at most {MAX_GENERATE_DAYS} days at once")
    created = await _run(store.generate, roster_id, first, last)
    return web.json_response(
        {
            "roster_id": roster_id,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "created": [to_json(s) for s in created],
        }
    )


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes (read by hand: the app's own
    ``client_max_size`` is 1 MB, right for JSON and too small for a district's roster)."""
    if request.content_length is not None and request.content_length > limit:
        _too_large(f"body: larger than {limit:,} bytes: split the file", limit)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            _too_large(f"body: larger than {limit:,} bytes: split the file", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(message: str, limit: int) -> NoReturn:
    raise web.HTTPRequestEntityTooLarge(
        max_size=limit, text=json.dumps({"error": message}), content_type="application/json"
    )


@routes.add("POST", f"{PREFIX}/import/{{kind}}", roles=ADMIN_ONLY, audit="import")
async def import_file(request: web.Request) -> web.StreamResponse:
    """The body is the file: ``text/csv`` for any kind in ``imports.COLUMNS``, or
    ``application/geo+json`` (or ``application/json``) for posts. UTF-8 unless the
    Content-Type says another charset (``text/csv; charset=gb18030`` for Excel in Chinese).
    200 with the report when everything was imported; 422 with it when nothing was."""
    raw_kind = request.match_info["kind"]
    kind = next((k for k in COLUMNS if k.value == raw_kind), None)
    if kind is None:
        _fail(web.HTTPNotFound, f"no import for {raw_kind!r}: one of {', '.join(COLUMNS)}")
    geojson = request.content_type in _GEOJSON
    if not geojson and request.content_type != _CSV:
        _fail(
            web.HTTPUnsupportedMediaType,
            f"Content-Type {request.content_type!r}: text/csv, or application/geo+json for posts",
        )
    if geojson and kind is not Kind.POSTS:
        _fail(web.HTTPUnsupportedMediaType, f"GeoJSON holds posts; send {kind} as text/csv")
    charset = request.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        _fail(web.HTTPUnsupportedMediaType, f"charset {charset!r} is unknown")
    body = await _read_body(request, MAX_BYTES)
    try:
        text = body.decode(charset)
    except UnicodeDecodeError as exc:
        _fail(
            web.HTTPBadRequest,
            f"body: not {charset} text at byte {exc.start} (say charset=gb18030 for a "
            "Chinese Excel file)",
        )
    principal = request[PRINCIPAL]
    scope = principal.scope if principal is not None else None
    store = org_store(request)
    try:
        if geojson:
            report = await asyncio.to_thread(
                import_geojson, store, text, at_ms=_now_ms(request), scope=scope
            )
        else:
            report = await asyncio.to_thread(
                import_csv, store, kind, text, at_ms=_now_ms(request), scope=scope
            )
    except ImportRefused as exc:
        _too_large(str(exc), MAX_BYTES)
    except RecursionError:
        # json.loads raises this, not ValueError, for GeoJSON nested ~1000 deep: a 500 else.
        _fail(web.HTTPBadRequest, "body: JSON nested too deeply")
    return web.json_response(report.to_json(), status=200 if report.ok else 422)
