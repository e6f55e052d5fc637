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


#: How deep a request's JSON may nest. The deepest real body (a GeoJSON polygon inside a
#: feature collection) is 7 levels; a body nested hundreds deep is an attack on the parser
#: (Python's ``json`` raises ``RecursionError``, not ``ValueError``, past ~1000 levels, and
#: code that walks or prints a value that deep can hit the limit later on).
MAX_DEPTH = 32


def _no_constant(name: str) -> Any:
    # json.loads takes NaN, Infinity and -Infinity by default; no field of ours means them,
    # a NaN slips through range checks (every comparison is false), and json.dumps would
    # then write them back as invalid JSON.
    raise ValueError(f"{name} is not a JSON number")


def _check(value: Any) -> None:
    """Refuse nesting past ``MAX_DEPTH`` and text that is not Unicode (walked iteratively:
    the point is not to recurse)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                # "\ud800" is valid JSON but no character: SQLite cannot store it, and it
                # failed inside the stores' transactions as a 500.
                raise BadField(
                    "body", "text with a lone surrogate (\\udXXX) is not Unicode"
                ) from None
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise BadField("body", f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON: ``BadField("body", ...)`` for anything that is not JSON text, for NaN and
    Infinity, for nesting deeper than ``MAX_DEPTH`` and for lone surrogates."""
    try:
        doc = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise BadField("body", f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        # (int() past 4300 digits, invalid UTF-8 and lone surrogates are ValueErrors too.)
        raise BadField("body", f"not JSON ({exc})") from None
    _check(doc)
    return doc


async def read_at_most(request: web.Request, size: int) -> bytes:
    """The body's first ``size`` bytes (all of it if shorter). ``content.read(n)`` alone
    returns what has arrived so far, at most ``n``: a body in several TCP segments would be
    cut short (and its tail never read), so read until the end or ``size``."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = await request.content.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


async def json_body(request: web.Request, *, limit: int, empty_ok: bool = True) -> Any:
    """The body parsed by ``parse_json`` (an empty body is ``{}`` when ``empty_ok``). More
    than ``limit`` bytes answer 413 before the rest is read, whether or not the length was
    declared; read from the stream, so the app's ``client_max_size`` does not apply."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length)
    raw = await read_at_most(request, limit + 1)  # a chunked body has no length to check
    if len(raw) > limit:
        raise _too_large(limit, len(raw))
    if empty_ok and not raw.strip():
        return {}
    return parse_json(raw)


async def json_object(
    request: web.Request, *, allowed: frozenset[str], limit: int, empty_ok: bool = True
) -> dict[str, Any]:
    """The body's JSON object (``json_body``) with only ``allowed`` fields."""
    body = await json_body(request, limit=limit, empty_ok=empty_ok)
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
