"""REST for registered terminals (enrolment): what an administrator sees and revokes.

- ``GET /api/v1/devices`` (admin): every registered terminal in the admin's scope, with its
  key generations and whether (and when) it was revoked.
- ``POST /api/v1/devices/{device_id}/revoke`` {reason} (admin, audited ``terminal.revoke``):
  a lost or stolen terminal. Its next frame is refused, its certificate goes on the CRL, and
  the embedded secure broker drops its topics within seconds. Final: a recovered terminal is
  enrolled again under a new id or a new bundle.

Scope: a terminal belongs to the unit the organisation lists it under; a scoped admin sees and
revokes only those in their subtree (others answer 404, as if not there). A terminal the
organisation does not list is an unscoped admin's.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..devices import DeviceRegistry, DeviceView, UnknownDevice
from .access import ADMIN_ONLY, Routes, error
from .keys import DEVICES, ORG
from .requests import BadField, json_object, refusals
from .scope import visible_units

routes = Routes()

MAX_REASON = 200


def _registry(request: web.Request) -> DeviceRegistry:
    registry = request.app[DEVICES]
    assert isinstance(registry, DeviceRegistry)
    return registry


async def _in_scope(request: web.Request, devices: list[DeviceView]) -> list[DeviceView]:
    units = await visible_units(request)
    if units is None:
        return devices
    if ORG not in request.app:
        return []
    org = request.app[ORG]

    def unit_of(device_id: str) -> str | None:
        terminal = org.terminal(device_id)  # type: ignore[attr-defined]
        return None if terminal is None else str(terminal.unit_id)

    owners = await asyncio.to_thread(lambda: {d.device_id: unit_of(d.device_id) for d in devices})
    return [d for d in devices if owners[d.device_id] in units]


@routes.add("GET", "/api/v1/devices", roles=ADMIN_ONLY)
@refusals([], store="the terminal registry")
async def list_devices(request: web.Request) -> web.StreamResponse:
    devices = await asyncio.to_thread(_registry(request).list)
    visible = await _in_scope(request, devices)
    return web.json_response({"devices": [d.to_json() for d in visible]})


@routes.add("POST", "/api/v1/devices/{device_id}/revoke", roles=ADMIN_ONLY, audit="terminal.revoke")
@refusals([(UnknownDevice, 404)], store="the terminal registry")
async def revoke_device(request: web.Request) -> web.StreamResponse:
    device_id = request.match_info["device_id"]
    body = await json_object(request, allowed=frozenset({"reason"}), limit=4096, empty_ok=False)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise BadField("reason", f"say why, in 1 to {MAX_REASON} characters")
    registry = _registry(request)
    device = await asyncio.to_thread(registry.get, device_id)
    if device is None or not await _in_scope(request, [device]):
        return error(404, f"no terminal {device_id!r}")
    revoked = await asyncio.to_thread(registry.revoke, device_id, reason.strip())
    return web.json_response(revoked.to_json())
