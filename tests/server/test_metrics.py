"""GET /metrics: the Prometheus exposition parses, carries ingest's and the live map's numbers
as they are at scrape time, labels rejections by reason only, and is for admins alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from protocol import Position, Presence, PresenceKind, ServerEndpoint
from server.ingest import Ingest, IngestStats
from server.keyring import StoreKeyRing
from server.live import Hub, LiveState
from server.metrics import server_registry
from server.sqlite_store import SqliteStore
from server.web import metrics_routes
from server.web.access import Principal, Role
from server.web.metrics_routes import METRICS

from .support import SERVER_KEY, T0, Terminal, api_app, device_key, device_record, fix

NOW_S = (T0 + 60_000) / 1000
TOKENS = {
    "admin": Principal("Admin Wu", Role.ADMIN),
    "officer": Principal("Officer Zhou", Role.OFFICER),
    "inspector": Principal("Inspector Wang", Role.INSPECTOR),
}

Client = TestClient[web.Request, web.Application]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def samples(text: str) -> Samples:
    """Every sample of the exposition by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class Station:
    """A real ingest over a real store, its live map, and two terminals."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = SqliteStore(tmp_path / "yijing.db")
        self.alice, self.bob = Terminal("alice"), Terminal("bob")
        for t in (self.alice, self.bob):
            self.store.add_device(device_record(t.identity), device_key(t.identity))
        self.hub = Hub()
        self.live = LiveState(self.hub, clock=lambda: NOW_S)
        self.ingest = Ingest(
            self.store,
            StoreKeyRing(self.store),
            ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
            publish=lambda out: None,
            on_accepted=self.live.apply,
            clock=lambda: NOW_S,
        )
        self.waiting = 0

    def registry(self, **kw: Any) -> CollectorRegistry:
        return server_registry(
            self.ingest.stats,
            live=self.live,
            hub=self.hub,
            queue_depth=lambda: self.waiting,
            **kw,
        )

    def traffic(self) -> None:
        """alice: 3 fixes (one sent twice), bob: 1 fix then offline, and 5 forged frames
        (2 of alice's, 3 of bob's): stored 4, duplicate 1, rejected 5 of one reason."""
        a = [self.alice.frame(Position(fix=fix(T0 + k * 1000)), k) for k in (1, 2, 3)]
        b = self.bob.frame(Position(fix=fix(T0)), 1)
        forged = []
        for t, n in ((self.alice, 2), (self.bob, 3)):
            for k in range(n):
                topic, payload = t.frame(Position(fix=fix(T0)), 100 + k)
                forged.append((topic, payload[:-1] + bytes([payload[-1] ^ 1])))
        offline = self.bob.frame(Presence(kind=PresenceKind.OFFLINE), 2)
        received = T0 + 500
        self.ingest.process([(tp, p, received) for tp, p in [*a, b, *forged]])
        self.ingest.process([(tp, p, received) for tp, p in [a[0], offline]])

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    s = Station(tmp_path)
    yield s
    s.close()


def test_the_exposition_carries_ingest_and_live_numbers(station: Station) -> None:
    registry = station.registry()
    station.traffic()
    station.waiting = 7
    watcher = station.hub.watch()

    got = samples(generate_latest(registry).decode())

    assert got[("yijing_ingest_frames_received_total", ())] == 11
    assert got[("yijing_ingest_frames_stored_total", ())] == 5  # 3 + 1 + bob's offline
    assert got[("yijing_ingest_duplicates_total", ())] == 1
    assert got[("yijing_ingest_conflicts_total", ())] == 0
    assert got[("yijing_ingest_batches_total", ())] == 2
    assert got[("yijing_ingest_acks_sent_total", ())] == 4  # alice, bob; alice, bob again
    assert got[("yijing_ingest_ack_failures_total", ())] == 0
    assert got[("yijing_ingest_queue_depth", ())] == 7
    # One series for the reason, summed over both terminals: no per-device label.
    rejected = {k: v for k, v in got.items() if k[0] == "yijing_ingest_rejected_total"}
    assert rejected == {("yijing_ingest_rejected_total", (("reason", "BadTag: tag"),)): 5}
    assert got[("yijing_terminals_online", ())] == 1
    assert got[("yijing_terminals", (("status", "offline"),))] == 1  # bob said goodbye
    assert got[("yijing_terminals", (("status", "moving"),))] == 1  # alice, at 1.3 m/s
    assert got[("yijing_terminals", (("status", "sos"),))] == 0  # every status, even at 0
    assert got[("yijing_live_watchers", ())] == 1
    assert got[("process_resident_memory_bytes", ())] > 0

    # Read at scrape time: later work shows in the next scrape, nothing registered per event.
    station.hub.unwatch(watcher)
    station.waiting = 0
    station.ingest.process([(*station.alice.frame(Position(fix=fix(T0 + 9000)), 9), T0)])
    again = samples(generate_latest(registry).decode())
    assert again[("yijing_ingest_frames_stored_total", ())] == 6
    assert again[("yijing_ingest_queue_depth", ())] == 0
    assert again[("yijing_live_watchers", ())] == 0


def test_registries_are_private_and_sources_optional(station: Station) -> None:
    # Two servers in one process: no "Duplicated timeseries" from a shared global registry.
    first, second = station.registry(), station.registry()
    assert first is not second
    # Terminals by status from a counting method when there is one; several ingests summed.
    more = IngestStats(received=4, stored=4)
    bare = server_registry(
        lambda: [station.ingest.stats, more],
        status_counts=lambda: {"on_post": 3, "offline": 2},
        process=False,
    )
    station.traffic()
    got = samples(generate_latest(bare).decode())
    assert got[("yijing_ingest_frames_received_total", ())] == 15
    assert got[("yijing_terminals", (("status", "on_post"),))] == 3
    assert got[("yijing_terminals_online", ())] == 3
    names = {name for name, _ in got}
    assert "yijing_ingest_queue_depth" not in names  # no source given: not exported
    assert "yijing_live_watchers" not in names
    assert not any(n.startswith("process_") for n in names)


def _serve(
    tmp_path: Path,
    station: Station,
    body: Callable[[Client], Awaitable[None]],
    *,
    with_registry: bool = True,
) -> None:
    async def main() -> None:
        services = {METRICS: station.registry()} if with_registry else {}
        app = api_app(
            tmp_path, station.store, TOKENS, routes=[metrics_routes.routes], services=services
        )
        async with TestClient(TestServer(app)) as client:
            await body(client)

    asyncio.run(main())


def test_metrics_route_is_for_admins(tmp_path: Path, station: Station) -> None:
    station.traffic()

    async def body(client: Client) -> None:
        anonymous = await client.get("/metrics")
        assert anonymous.status == 401
        for token in ("officer", "inspector"):
            refused = await client.get("/metrics", headers=h(token))
            assert refused.status == 403, token
        wrong = await client.get("/metrics", headers=h("not-a-token"))
        assert wrong.status == 401

        response = await client.get("/metrics", headers=h("admin"))
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        got = samples(await response.text())
        assert got[("yijing_ingest_frames_stored_total", ())] == 5
        assert got[("yijing_terminals_online", ())] == 1

        # Prometheus asks for OpenMetrics first; it gets it.
        accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        om = await client.get("/metrics", headers={**h("admin"), "Accept": accept})
        assert om.status == 200
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await om.text()
        assert text.endswith("# EOF\n")
        assert "yijing_ingest_frames_stored_total 5.0" in text

    _serve(tmp_path, station, body)


def test_metrics_route_without_a_registry(tmp_path: Path, station: Station) -> None:
    async def body(client: Client) -> None:
        response = await client.get("/metrics", headers=h("admin"))
        assert response.status == 404
        assert "no metrics" in (await response.json())["error"]

    _serve(tmp_path, station, body, with_registry=False)
