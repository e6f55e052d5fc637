"""Path traversal and odd paths on every route that serves files or takes a path-like
parameter: none reads outside its folder, each answers 400 or 404 with a JSON error."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from .support import Rig, run

SECRET = b"the secret outside every served folder"
SHA = hashlib.sha256(b"picture").hexdigest()
#: Path tails that try to leave a folder or confuse a file-name check.
ODD = [
    "..",
    "%2e%2e",
    "..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "..%5c..%5csecret.txt",
    "%2fetc%2fpasswd",
    "%00",
    "index.html%00.png",
    "a%00b",
    ".hidden",
    "x" * 300,
    "9" * 5000,
    "%c0%ae%c0%ae",  # overlong UTF-8 for ".."
    "%ff%fe",
]


def _refused(status: int, doc: object, content: bytes, what: str) -> None:
    assert status in (400, 404), (what, status, content[:200])
    assert isinstance(doc, dict) and doc.get("error"), (what, content[:200])
    assert SECRET not in content and b"root:" not in content, what


def _outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    return secret


def test_snapshot_files_static_files_and_tiles_refuse_odd_paths(tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    (tiles / "1" / "0").mkdir(parents=True)
    (tiles / "1" / "0" / "0.png").write_bytes(b"\x89PNG tile")
    _outside(tmp_path)

    async def body(rig: Rig) -> None:
        rig.server.snapshot_files.put(SHA, b"picture")
        status, _, content = await rig.get_raw(f"/api/v1/snapshots/{SHA}.jpg")
        assert status == 200 and content == b"picture"  # the folder does serve
        status, _, content = await rig.get_raw("/tiles/1/0/0.png")
        assert status == 200 and content == b"\x89PNG tile"
        checked = 0
        for odd in ODD:
            for target in (
                f"/api/v1/snapshots/{odd}",
                f"/api/v1/snapshots/{odd}.jpg",
                f"/api/v1/snapshots/{SHA}.jpg{odd}",
                f"/static/{odd}",
                f"/tiles/{odd}/0/0.png",
                f"/tiles/1/{odd}/0.png",
                f"/tiles/1/0/{odd}",
                f"/tiles/1/0/{odd}.png",
            ):
                status, doc, content = await rig.get_raw(target)
                _refused(status, doc, content, target)
                checked += 1
        for target in (
            "/api/v1/snapshots/" + SHA.upper() + ".jpg",
            "/tiles/1/0/%C2%B2.png",  # "²": isdigit(), yet int() refuses it
            "/tiles/23/0/0.png",
            "/tiles/1/2/0.png",
            "/tiles/-1/0/0.png",
            "/tiles/99999999999999999999999/0/0.png",
            "/tiles/1/0/0.PNG",
        ):
            status, doc, content = await rig.get_raw(target)
            _refused(status, doc, content, target)
            checked += 1
        assert checked > 100

    run(tmp_path, body, tiles_dir=tiles)


def test_without_a_tiles_folder_every_tile_is_404(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        for target in ("/tiles/1/0/0.png", "/tiles/..%2f..%2f/0/0.png", "/tiles/%00/0/0.png"):
            status, doc, _ = await rig.get_raw(target)
            assert status == 404 and "tiles" in doc["error"], (target, doc)

    run(tmp_path, body)


def test_a_symlinked_tile_leading_outside_the_folder_is_not_served(tmp_path: Path) -> None:
    secret = _outside(tmp_path)
    tiles = tmp_path / "tiles"
    (tiles / "2" / "1").mkdir(parents=True)
    (tiles / "2" / "1" / "1.png").write_bytes(b"\x89PNG blank")
    os.symlink(secret, tiles / "2" / "1" / "0.png")
    # A link inside the pyramid (downloaders share one blank tile this way) is fine.
    os.symlink(tiles / "2" / "1" / "1.png", tiles / "2" / "1" / "2.png")

    async def body(rig: Rig) -> None:
        status, doc, content = await rig.get_raw("/tiles/2/1/0.png")
        _refused(status, doc, content, "symlinked tile")
        status, _, content = await rig.get_raw("/tiles/2/1/2.png")
        assert status == 200 and content == b"\x89PNG blank"

    run(tmp_path, body, tiles_dir=tiles)


def test_snapshot_files_do_not_lead_outside_their_folder(tmp_path: Path) -> None:
    """``SnapshotFiles.served`` resolves links; the route in app.py still serves
    ``files.path`` (see the report: not this module's file)."""
    from server.snapshots import SnapshotFiles

    secret = _outside(tmp_path)
    files = SnapshotFiles(tmp_path / "snapshots")
    files.put(SHA, b"picture")
    assert files.served(SHA) == files.path(SHA)
    evil = hashlib.sha256(b"evil").hexdigest()
    files.path(evil).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, files.path(evil))
    assert files.served(evil) is None
    assert files.served(hashlib.sha256(b"missing").hexdigest()) is None
    with pytest.raises(ValueError):
        files.served("../" + SHA)


def test_a_symlinked_snapshot_file_is_not_served(tmp_path: Path) -> None:
    secret = _outside(tmp_path)
    evil = hashlib.sha256(b"evil").hexdigest()

    async def body(rig: Rig) -> None:
        path = rig.server.snapshot_files.path(evil)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(secret, path)
        status, doc, content = await rig.get_raw(f"/api/v1/snapshots/{evil}.jpg")
        _refused(status, doc, content, "symlinked snapshot")

    run(tmp_path, body)
