"""What the officer's page needs to know about this installation, and offline map tiles.

``GET /api/v1/config`` tells the page the tile source (``None``: no tiles, the default — a
station's network often has no internet, and the map draws a metric grid instead) and the
walking model behind the 1/3/5-minute circles, so the circles it draws are the ones the
server proposes from.

Tiles from a folder (``yijing server --tiles-dir DIR``) are served at
``/tiles/{z}/{x}/{y}.png`` — the layout every tile downloader writes (the "slippy map"
scheme) — for stations with no internet at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from .access import WATCH, Routes, error
from .keys import SITE

routes = Routes()

#: Highest zoom level a tile pyramid has in practice (street level is 18–19).
MAX_ZOOM = 22
_NUMBER = re.compile(r"[0-9]{1,10}")
_TILE = re.compile(r"[0-9]{1,10}\.png")
_TEMPLATE = re.compile(r"^(https?://[^\s]+|/[^\s]*)$")


@dataclass(frozen=True, kw_only=True)
class SiteConfig:
    #: An ``{z}/{x}/{y}`` URL template, or None for no tiles.
    tiles: str | None = None
    #: A folder of ``z/x/y.png`` tiles served at /tiles/ (sets ``tiles`` when given).
    tiles_dir: Path | None = None
    walk_speed_mps: float = 1.4
    detour: float = 1.3
    circles_min: tuple[int, ...] = (1, 3, 5)

    def __post_init__(self) -> None:
        if self.tiles is not None:
            if not _TEMPLATE.match(self.tiles):
                raise ValueError(f"tiles: {self.tiles!r} is not an http(s) URL or a /path")
            missing = [k for k in ("{z}", "{x}", "{y}") if k not in self.tiles]
            if missing:
                raise ValueError(f"tiles: {self.tiles!r} lacks {', '.join(missing)}")
        if self.tiles_dir is not None and not self.tiles_dir.is_dir():
            raise ValueError(f"tiles_dir: {self.tiles_dir} is not a folder")

    @property
    def tile_template(self) -> str | None:
        if self.tiles_dir is not None:
            return "/tiles/{z}/{x}/{y}.png"
        return self.tiles

    def to_json(self) -> dict[str, Any]:
        return {
            "tiles": self.tile_template,
            "walk_speed_mps": self.walk_speed_mps,
            "detour": self.detour,
            "circles_min": list(self.circles_min),
        }


def _site(request: web.Request) -> SiteConfig:
    site = request.app.get(SITE)
    return site if isinstance(site, SiteConfig) else SiteConfig()


@routes.add("GET", "/api/v1/config", roles=WATCH)
async def config(request: web.Request) -> web.StreamResponse:
    return web.json_response(_site(request).to_json())


@routes.add("GET", "/tiles/{z}/{x}/{name}", roles=WATCH)
async def tile(request: web.Request) -> web.StreamResponse:
    folder = _site(request).tiles_dir
    if folder is None:
        return error(404, "this server serves no tiles (start it with --tiles-dir)")
    m = request.match_info
    z, x, name = m["z"], m["x"], m["name"]
    # Only ASCII digits reach the file system: no "..", no other names. (Not isdigit(): "²"
    # and "٣" pass it, and int() refuses the first; a bounded length, as int() refuses more
    # than 4300 digits. Either was a 500.)
    if not (_NUMBER.fullmatch(z) and _NUMBER.fullmatch(x) and _TILE.fullmatch(name)):
        return error(400, f"tile {z}/{x}/{name}: expected /tiles/<z>/<x>/<y>.png with integers")
    zoom, col, row = int(z), int(x), int(name[:-4])
    if zoom > MAX_ZOOM or col >= 2**zoom or row >= 2**zoom:
        return error(400, f"tile {zoom}/{col}/{row} is outside the tile pyramid")
    path = folder / str(zoom) / str(col) / f"{row}.png"
    if not path.is_file():
        return error(404, f"no tile {zoom}/{col}/{row}")
    # A link inside the folder (downloaders share one blank tile so) is fine; one leading
    # outside it would serve any file the server may read.
    if not path.resolve().is_relative_to(folder.resolve()):
        return error(404, f"no tile {zoom}/{col}/{row}")
    return web.FileResponse(
        path, headers={"Content-Type": "image/png", "Cache-Control": "private, max-age=86400"}
    )
