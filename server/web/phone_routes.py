"""Doors for phone apps, and the admin's phone enrolment.

Phone apps (they authenticate themselves, ``device_door``):

- ``POST /pub/owntracks``: OwnTracks in HTTP mode. Basic auth with the user and password of
  the phone's code; the body is one OwnTracks message (JSON, or ``_type: encrypted``). The
  reply is a JSON array of messages for the phone, as OwnTracks' HTTP mode reads it: a roll
  call's ``reportLocation`` command when one is pending, else ``[]``.
- ``GET|POST /pub/osmand``: Traccar Client (the OsmAnd protocol): the report in the query
  string, a form body, or the JSON body of newer versions.

  Each answers only after the report is stored, so the app deletes it from its queue only
  then; malformed reports get 400 with what was wrong, unknown credentials 401/403.

People (admin only):

- ``GET /api/v1/phones``: the enrolled phones in the admin's scope.
- ``POST /api/v1/phones`` {volunteer_id, app: owntracks|traccar, encrypt?} (audited
  ``phone.enrol``): enrol or re-issue; the answer carries the app's configuration and its
  QR code — once: the password is kept only as a hash.
- ``POST /api/v1/phones/{phone_id}/revoke`` (audited ``phone.revoke``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from urllib.parse import parse_qsl

from aiohttp import web

from provisioning.identity import ProvisioningError
from provisioning.phones import PhoneApp

from ..phones.ingress import PhoneRefused
from ..phones.service import Phones, phone_json
from .access import ADMIN_ONLY, PUBLIC, Routes, error
from .keys import PHONES
from .requests import BadField, json_object, read_at_most, refusals
from .scope import require_in_scope, visible_units

routes = Routes()

#: No phone report comes near this; OwnTracks' own HTTP example bodies are under 1 KB.
MAX_REPORT = 64 * 1024


def _phones(request: web.Request) -> Phones:
    phones = request.app[PHONES]
    assert isinstance(phones, Phones)
    return phones


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_REPORT:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_REPORT, actual_size=request.content_length,
            text=f"body: larger than {MAX_REPORT} bytes",
        )  # fmt: skip
    raw = await read_at_most(request, MAX_REPORT + 1)
    if len(raw) > MAX_REPORT:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_REPORT, actual_size=len(raw), text=f"body: larger than {MAX_REPORT} bytes"
        )
    return raw


def _refused(exc: PhoneRefused) -> web.Response:
    response = error(exc.status, str(exc))
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="yijing phones"'
    return response


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


@routes.add("POST", "/pub/owntracks", roles=PUBLIC, device_door=True)
async def owntracks_http(request: web.Request) -> web.StreamResponse:
    credentials = _basic(request)
    if credentials is None:
        return _refused(
            PhoneRefused(
                401,
                "OwnTracks HTTP mode needs the user and password of the phone's code (basic auth)",
            )
        )
    body = await _body(request)
    try:
        reply = await asyncio.wrap_future(
            _phones(request).ingress.owntracks_http(*credentials, body)
        )
    except PhoneRefused as exc:
        return _refused(exc)
    return web.Response(body=reply, content_type="application/json")


async def _osmand(request: web.Request) -> web.StreamResponse:
    ingress = _phones(request).ingress
    params = dict(request.query)
    body = b""
    if request.method == "POST":
        body = await _body(request)
    try:
        if request.content_type == "application/json" and body.strip():
            future = ingress.osmand(body=body)
        else:
            if body.strip():
                try:
                    form = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True)
                except (UnicodeDecodeError, ValueError):
                    return error(400, "body: not a form (id=…&lat=…&lon=…) and not JSON")
                params.update(form)
            future = ingress.osmand(params=params)
        reply = await asyncio.wrap_future(future)
    except PhoneRefused as exc:
        return _refused(exc)
    return web.Response(body=reply, content_type="text/plain")


routes.add("GET", "/pub/osmand", roles=PUBLIC, device_door=True)(_osmand)
routes.add("POST", "/pub/osmand", roles=PUBLIC, device_door=True)(_osmand)


@routes.add("GET", "/api/v1/phones", roles=ADMIN_ONLY)
@refusals([], store="the phone registry")
async def list_phones(request: web.Request) -> web.StreamResponse:
    units = await visible_units(request)
    phones = await asyncio.to_thread(_phones(request).list, units)
    return web.json_response({"phones": [phone_json(p) for p in phones]})


@routes.add("POST", "/api/v1/phones", roles=ADMIN_ONLY, audit="phone.enrol")
@refusals([(LookupError, 404), (ProvisioningError, 400)], store="the phone registry")
async def enrol_phone(request: web.Request) -> web.StreamResponse:
    body = await json_object(
        request, allowed=frozenset({"volunteer_id", "app", "encrypt"}), limit=4096, empty_ok=False
    )
    volunteer_id = body.get("volunteer_id")
    if not isinstance(volunteer_id, str) or not volunteer_id:
        raise BadField("volunteer_id", "required: whose phone it is")
    try:
        app = PhoneApp(body.get("app", PhoneApp.OWNTRACKS.value))
    except ValueError:
        raise BadField("app", f"one of {', '.join(a.value for a in PhoneApp)}") from None
    encrypt = body.get("encrypt", True)
    if not isinstance(encrypt, bool):
        raise BadField("encrypt", "true or false")
    phones = _phones(request)
    org = phones.org
    volunteer = await asyncio.to_thread(org.volunteer, volunteer_id)
    if volunteer is None:
        return error(404, f"no volunteer {volunteer_id!r}")
    await require_in_scope(request, volunteer.unit_id)
    base_url = str(request.url.origin())
    enrolled = await asyncio.to_thread(
        lambda: phones.enrol(volunteer_id=volunteer_id, app=app, encrypt=encrypt, base_url=base_url)
    )
    return web.json_response(enrolled.to_json())


@routes.add("POST", "/api/v1/phones/{phone_id}/revoke", roles=ADMIN_ONLY, audit="phone.revoke")
@refusals([(ProvisioningError, 404)], store="the phone registry")
async def revoke_phone(request: web.Request) -> web.StreamResponse:
    phones = _phones(request)
    phone_id = request.match_info["phone_id"]
    phone = await asyncio.to_thread(phones.get, phone_id)
    units = await visible_units(request)
    if phone is None or (units is not None and phone.unit_id not in units):
        return error(404, f"no phone {phone_id!r}")
    revoked = await asyncio.to_thread(phones.revoke, phone_id)
    return web.json_response(phone_json(revoked))
