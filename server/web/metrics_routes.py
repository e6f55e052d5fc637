"""``GET /metrics``: the Prometheus text exposition of ``server.metrics``.

Admin only, by bearer token: Prometheus sends one from a file
(``authorization: {type: Bearer, credentials_file: …}``), minted with
``yijing provision token --name prometheus --role admin``. The figures are counts, no
person's data, but they are a live picture of how many volunteers are out and how the
service is holding up; an anonymous scraper from the internet should not have it. A role
that may read only this (a "monitor") would be tighter than admin; there is none yet.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .access import ADMIN_ONLY, Routes, error

#: The ``prometheus_client.CollectorRegistry`` to expose (``server.metrics.server_registry``).
METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)

routes = Routes()


@routes.add("GET", "/metrics", roles=ADMIN_ONLY)
async def metrics(request: web.Request) -> web.StreamResponse:
    registry = request.app.get(METRICS)
    if registry is None:
        return error(404, "this server exports no metrics")
    # The text format, or OpenMetrics when the scraper asks for it in Accept.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    # Off the loop: counting tens of thousands of terminals' statuses takes milliseconds.
    body = await asyncio.to_thread(encode, registry)
    response = web.Response(body=body)
    # "text/plain; version=0.0.4; charset=utf-8": aiohttp's content_type= takes no
    # parameters, so the header is set whole.
    response.headers["Content-Type"] = content_type
    return response
