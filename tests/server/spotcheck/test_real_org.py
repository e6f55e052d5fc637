"""Spot checks against the real organisation store (``server.org.store.OrgStore``), not the
fake: the calls of ``OrgView`` mean what the service assumes they mean."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.duty.geo import Circle
from server.org.model import Post, PostKind, Shift, Terminal, Unit, UnitLevel, Volunteer
from server.org.store import OrgStore
from server.spotcheck.errors import NotInUnit, UnknownUnit
from server.spotcheck.service import OrgView, SpotChecks
from server.sqlite_store import SqliteStore
from server.web import spotcheck_routes
from server.web.access import Principal, Role
from server.web.keys import ORG, SPOTCHECKS
from tests.server.support import api_app

from .support import T0, Broker, Clock


@pytest.fixture
def org(tmp_path: Path) -> Iterator[OrgStore]:
    """sz → ft → {ft-s1 → ft-s1-g1, ft-s2}; li (t-1) on duty at the bar (grid), zhao (t-3)
    at the gate (ft-s2); wang holds t-2 in ft-s1 with no shift."""
    store = OrgStore(tmp_path / "org.db")
    for unit in (
        Unit("sz", "深圳市", UnitLevel.CITY),
        Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"),
        Unit("ft-s1", "福田派出所", UnitLevel.STATION, "ft"),
        Unit("ft-s1-g1", "一级网格", UnitLevel.GRID, "ft-s1"),
        Unit("ft-s2", "沙头派出所", UnitLevel.STATION, "ft"),
    ):
        store.put_unit(unit)
    for volunteer_id, unit_id in (("li", "ft-s1-g1"), ("wang", "ft-s1"), ("zhao", "ft-s2")):
        store.put_volunteer(Volunteer(volunteer_id, volunteer_id.title(), unit_id))
    for device, unit_id, holder in (("t-1", "ft-s1", "li"), ("t-2", "ft-s1", "wang")):
        store.put_terminal(Terminal(device, unit_id, holder=holder), at_ms=T0 - 86_400_000)
    store.put_terminal(Terminal("t-3", "ft-s2", holder="zhao"), at_ms=T0 - 86_400_000)
    here = Circle(22.5431, 114.0579, 80)
    store.put_post(Post("bar", "酒吧街", PostKind.STRICT_ORDER_AREA, "ft-s1-g1", here))
    store.put_post(Post("gate", "校门", PostKind.DUTY_POINT, "ft-s2", here))
    end = T0 + 8 * 3_600_000
    store.put_shift(Shift("sh-li", "li", "bar", T0, end, device_id="t-1"))
    store.put_shift(Shift("sh-zhao", "zhao", "gate", T0, end, device_id="t-3"))
    yield store
    store.close()


def test_the_service_and_routes_work_on_the_real_organisation_store(
    tmp_path: Path, org: OrgStore
) -> None:
    view: OrgView = org  # the real store satisfies the protocol (mypy checks this line)
    broker = Broker()
    service = SpotChecks(
        path=tmp_path / "spotchecks.db",
        org=view,
        send=broker.send,
        clock=Clock(),
        rng=random.Random(1),
    )
    try:
        # A sample of the station draws from its grid too, and never from the other station.
        sampled = service.create(by="Wang", unit_id="ft-s1", sample=5)
        assert [(t.device_id, t.volunteer_id, t.shift_id, t.unit_id) for t in sampled.targets] == [
            ("t-1", "li", "sh-li", "ft-s1")
        ]
        named = service.create(by="Wang", unit_id="ft", devices=["t-2", "t-3"])
        assert [(t.device_id, t.volunteer_id, t.shift_id) for t in named.targets] == [
            ("t-2", "wang", None),
            ("t-3", "zhao", "sh-zhao"),
        ]
        with pytest.raises(NotInUnit, match="t-3 belongs to ft-s2, outside ft-s1"):
            service.create(by="Wang", unit_id="ft-s1", devices=["t-3"])
        with pytest.raises(UnknownUnit):
            service.create(by="Wang", unit_id="nowhere", sample=1)
        _routes_with_scope(tmp_path, service, org, named.check_id)
    finally:
        service.close()


def _routes_with_scope(tmp_path: Path, service: SpotChecks, org: OrgStore, outside: str) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        app = api_app(
            tmp_path,
            store,
            {"s1": Principal("Inspector Zhao", Role.INSPECTOR, scope="ft-s1")},
            routes=[spotcheck_routes.routes],
            services={SPOTCHECKS: service, ORG: org},
        )
        headers = {"Authorization": "Bearer s1"}
        try:
            async with TestClient(TestServer(app)) as client:
                r = await client.post(
                    "/api/v1/spotchecks", json={"unit": "ft-s1-g1", "sample": 2}, headers=headers
                )
                assert r.status == 201
                mine = (await r.json())["check"]["check_id"]
                r = await client.post(
                    "/api/v1/spotchecks", json={"unit": "ft", "sample": 2}, headers=headers
                )
                assert r.status == 403
                r = await client.get("/api/v1/spotchecks", headers=headers)
                listed = [c["check_id"] for c in (await r.json())["checks"]]
                assert mine in listed and outside not in listed
                r = await client.get(f"/api/v1/spotchecks/{outside}", headers=headers)
                assert r.status == 404
        finally:
            store.close()

    asyncio.run(main())
