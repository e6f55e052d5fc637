"""Reading a request and answering its refusals, the same way in every route module.

A route module raises ``BadField(field, reason)`` for anything in the request it cannot use
and lets its service raise its own errors; ``refusals`` turns both into JSON answers that
name what was wrong (``{"error": "<field>: <reason>"}``), so no handler formats an error.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from ..errors import StoreError
from .access import PRINCIPAL, Principal, error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadField(Exception):
    """A request field that cannot be used; becomes 400 ``{"error": "<field>: <reason>"}``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def principal_of(request: web.Request) -> Principal:
    principal = request[PRINCIPAL]
    assert principal is not None  # the access middleware let only signed-in callers through
    return principal


def actor_of(request: web.Request) -> str:
    """Who did it, in an audit trail: ``officer:<name>``, ``admin:<name>``."""
    principal = principal_of(request)
    return f"{principal.role.value}:{principal.name}"


def _too_large(limit: int, actual: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit,
        actual_size=actual,
        text=json.dumps({"error": f"body: larger than {limit} bytes"}),
        content_type="application/json",
    )


async def json_object(
    request: web.Request, *, allowed: frozenset[str], limit: int, empty_ok: bool = True
) -> dict[str, Any]:
    """The body's JSON object with only ``allowed`` fields (an empty body is ``{}`` when
    ``empty_ok``). More than ``limit`` bytes answer 413 before the rest is read."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length)
    raw = await request.content.read(limit + 1)  # a chunked body has no length to check
    if len(raw) > limit:
        raise _too_large(limit, len(raw))
    if empty_ok and not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadField("body", f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise BadField("body", "expected a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        # A misspelt optional field ("ttl", "deadline") must not silently become its default.
        raise BadField(unknown[0], f"unknown field (expected: {', '.join(sorted(allowed))})")
    return body


def query_int(request: web.Request, name: str, lo: int, hi: int) -> int | None:
    raw = request.query.get(name, "")
    if raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadField(name, f"{raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise BadField(name, f"{value} is outside [{lo}, {hi}]")
    return value


def refusals(
    statuses: Sequence[tuple[type[Exception] | tuple[type[Exception], ...], int]], *, store: str
) -> Callable[[Handler], Handler]:
    """A decorator answering ``BadField`` with 400, each service error with its status (in
    order: put subclasses first), and the store's failure with 503 naming ``store``."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except BadField as exc:
                return error(400, str(exc))
            except StoreError as exc:
                return error(503, f"{store} unavailable: {exc}")
            except Exception as exc:
                for kind, status in statuses:
                    if isinstance(exc, kind):
                        return error(status, str(exc))
                raise

        return wrapped

    return decorate
