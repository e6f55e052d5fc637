"""The page's installation settings and tiles served from a folder (offline maps)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.sqlite_store import SqliteStore
from server.web import config_routes
from server.web.access import Principal, Role
from server.web.config_routes import SiteConfig
from server.web.keys import SITE
from tests.server.support import api_app

TOKENS = {
    "officer": Principal("Officer Li", Role.OFFICER),
    "volunteer": Principal("Volunteer Chen", Role.VOLUNTEER),
}
Client = TestClient[web.Request, web.Application]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(20)


def _run(tmp_path: Path, site: SiteConfig, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        app = api_app(tmp_path, store, TOKENS, routes=[config_routes.routes], services={SITE: site})
        try:
            async with TestClient(TestServer(app)) as client:
                await body(client)
        finally:
            store.close()

    asyncio.run(main())


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_default_is_no_tiles_and_the_walking_model(tmp_path: Path) -> None:
    async def body(client: Client) -> None:
        r = await client.get("/api/v1/config", headers=h("officer"))
        assert await r.json() == {
            "tiles": None,
            "walk_speed_mps": 1.4,
            "detour": 1.3,
            "circles_min": [1, 3, 5],
        }
        assert (await client.get("/api/v1/config", headers=h("volunteer"))).status == 403
        assert (await client.get("/api/v1/config")).status == 401
        r = await client.get("/tiles/1/0/0.png", headers=h("officer"))
        assert r.status == 404 and "--tiles-dir" in (await r.json())["error"]

    _run(tmp_path, SiteConfig(), body)


def test_tiles_from_a_folder(tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    (tiles / "3" / "6").mkdir(parents=True)
    (tiles / "3" / "6" / "3.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(b"no")

    async def body(client: Client) -> None:
        r = await client.get("/api/v1/config", headers=h("officer"))
        assert (await r.json())["tiles"] == "/tiles/{z}/{x}/{y}.png"
        r = await client.get("/tiles/3/6/3.png", headers=h("officer"))
        assert r.status == 200 and await r.read() == PNG
        assert (await client.get("/tiles/3/6/4.png", headers=h("officer"))).status == 404
        for bad in (
            "/tiles/3/6/..%2F..%2F..%2Fsecret.png",
            "/tiles/3/x/3.png",
            "/tiles/3/9/3.png",
            "/tiles/40/0/0.png",
            "/tiles/3/6/3.jpg",
        ):
            r = await client.get(bad, headers=h("officer"))
            assert r.status in (400, 404), bad
            assert "error" in await r.json()
        assert (await client.get("/tiles/3/6/3.png")).status == 401

    _run(tmp_path, SiteConfig(tiles_dir=tiles), body)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tiles": "ftp://x/{z}/{x}/{y}.png"}, "not an http(s) URL"),
        ({"tiles": "https://tiles.example/{z}/{x}.png"}, "lacks {y}"),
        ({"tiles_dir": Path("/nonexistent/tiles")}, "is not a folder"),
    ],
)
def test_bad_tile_settings_are_refused_naming_them(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SiteConfig(**kwargs)  # type: ignore[arg-type]
