"""The whole server's web app for the hostile-input tests: every route module, the real
services of ``server.app.Server`` over a temporary data folder, an admin signed in by bearer
token, and a way to send bytes exactly as written (no client-side URL normalisation)."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.app import Server, ServerConfig
from server.org.model import Roster
from server.web import (
    config_routes,
    device_routes,
    dispatch_routes,
    duty_routes,
    field_routes,
    metrics_routes,
    org_routes,
    report_routes,
    session_routes,
    spotcheck_routes,
)
from server.web.access import ACCOUNTS, Principal, Role
from server.web.config_routes import SiteConfig
from server.web.keys import AUDIT, DEVICES, DISPATCH, DUTY, FIELD, ORG, REPORTS, SITE, SPOTCHECKS
from server.web.metrics_routes import METRICS
from tests.server.org.support import BAR, build
from tests.server.support import api_app

ADMIN = "admin-token"
TOKENS = {ADMIN: Principal("Admin", Role.ADMIN)}
HEADERS = {"Authorization": f"Bearer {ADMIN}"}
ALL_ROUTES = [
    org_routes.routes,
    duty_routes.routes,
    spotcheck_routes.routes,
    report_routes.routes,
    dispatch_routes.routes,
    field_routes.routes,
    config_routes.routes,
    session_routes.routes,
    device_routes.routes,
    metrics_routes.routes,
]
#: Not one request may take longer than this: a hostile body must not hold a handler.
REQUEST_S = 10.0

Client = TestClient[web.Request, web.Application]


@dataclass
class Rig:
    client: Client
    app: web.Application
    server: Server
    data: Path
    #: An open incident (``/api/v1/incidents/{incident_id}/...`` routes).
    incident_id: str

    def rows(self) -> dict[str, int]:
        """Row counts of every table of every database in the data folder, and the number of
        snapshot files: what "nothing stored" is checked against. The audit trail is left
        out: it records attempts, refused ones included, by design."""
        counts: dict[str, int] = {}
        for db in sorted(self.data.glob("*.db")):
            if db.name == "audit.db":
                continue
            conn = sqlite3.connect(db)
            try:
                tables = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                        " AND name NOT LIKE 'sqlite_%'"
                    )
                ]
                for table in tables:
                    (n,) = conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
                    counts[f"{db.stem}.{table}"] = n
            finally:
                conn.close()
        counts["snapshot files"] = len(list((self.data / "snapshots").rglob("*")))
        return counts

    async def send(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, Any]:
        """One request as the admin: the status and the parsed JSON (``None`` if the answer
        is not JSON)."""
        r = await asyncio.wait_for(
            self.client.request(
                method,
                path,
                # (a large bytes body warns that it may block the loop: a stream does not)
                data=io.BytesIO(body) if body is not None else None,
                headers={**HEADERS, **headers},
            ),
            REQUEST_S,
        )
        async with r:
            raw = await r.read()
            return r.status, _json_or_none(raw, r.content_type)

    async def raw(self, request: bytes) -> tuple[int, str, bytes]:
        """Send ``request`` byte for byte over a fresh connection (so ``..``, ``%2f`` and
        the like reach the server as written); the status, Content-Type and body."""
        server = self.client.server
        assert server.host is not None and server.port is not None
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), REQUEST_S)
        finally:
            writer.close()
            await writer.wait_closed()
        head, _, content = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        content_type = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-type":
                content_type = value.strip()
            if name.lower() == "transfer-encoding" and "chunked" in value:
                content = _unchunk(content)
        return status, content_type, content

    async def get_raw(self, target: str) -> tuple[int, Any, bytes]:
        """GET ``target`` exactly as written; the status, the JSON (or None) and the bytes."""
        status, content_type, content = await self.raw(
            f"GET {target} HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n".encode()
        )
        return status, _json_or_none(content, content_type.split(";")[0]), content


def _json_or_none(raw: bytes, content_type: str) -> Any:
    if content_type != "application/json":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def run(
    tmp_path: Path,
    body: Callable[[Rig], Awaitable[None]],
    *,
    tiles_dir: Path | None = None,
) -> None:
    """``body`` against the whole app over a fresh data folder with the example
    organisation, a roster ``r1`` at the bar post and one open incident."""

    async def main() -> None:
        data = tmp_path / "data"
        site = SiteConfig(tiles_dir=tiles_dir)
        server = Server(ServerConfig(data_dir=data, site=site))
        try:
            build(server.org)
            server.org.put_roster(Roster("r1", BAR.post_id, ("li",), "20:00", "23:00"))
            # An account to change (``PATCH /api/v1/accounts/{name}``).
            server.accounts.create("hostile-officer", "correct horse battery", role="officer")
            incident = server.dispatcher.create_incident(
                kind="medical", priority=1, lat=BAR.fence.lat, lon=BAR.fence.lon,  # type: ignore[union-attr]
                actor="admin:Admin", unit_id="ft-s1",
            )  # fmt: skip
            app = api_app(
                data,
                server.store,
                TOKENS,
                routes=ALL_ROUTES,
                services={
                    ORG: server.org,
                    DUTY: server.duty,
                    SPOTCHECKS: server.spotchecks,
                    REPORTS: server.reports,
                    DISPATCH: server.dispatcher,
                    FIELD: server.field,
                    SITE: site,
                    AUDIT: server.audit,
                    ACCOUNTS: server.accounts,
                    DEVICES: server.devices,
                    METRICS: server.metrics,
                },
            )
            async with TestClient(TestServer(app)) as client:
                await body(Rig(client, app, server, data, incident["incident_id"]))
        finally:
            await server.stop()

    asyncio.run(main())
