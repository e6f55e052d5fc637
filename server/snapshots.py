"""Snapshot files, content-addressed: a JPEG is stored once under its SHA-256, whoever sent it.

Layout: ``<root>/<aa>/<bb>/<sha256 hex>.jpg``. A file is written (temporary name, fsync,
rename) before the database transaction that records its metadata: if the server dies in
between, the file is an orphan that retention removes, never a row without its file.
Metadata lives in the store (``snapshots`` table); the frame itself stays in ``frames`` as the
terminal sealed it, because proving a snapshot's origin needs those exact bytes. So a picture
is held twice until retention, which deletes the file and empties the frame (its digest stays
in the checkpoint, so what was there can still be named).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

_HEX = re.compile(r"[0-9a-f]{64}")


class SnapshotFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def valid_name(sha256_hex: str) -> bool:
        return bool(_HEX.fullmatch(sha256_hex))

    def path(self, sha256_hex: str) -> Path:
        if not self.valid_name(sha256_hex):
            raise ValueError(f"{sha256_hex!r} is not a SHA-256 in lowercase hex")
        return self.root / sha256_hex[:2] / sha256_hex[2:4] / f"{sha256_hex}.jpg"

    def served(self, sha256_hex: str) -> Path | None:
        """The file to hand out for ``sha256_hex``, or None when there is none — or when it
        is a link leading outside the folder: only ``put`` writes here, so such a link was
        planted, and following it would serve any file the server can read."""
        path = self.path(sha256_hex)
        if not path.is_file():
            return None
        if not path.resolve().is_relative_to(self.root.resolve()):
            return None
        return path

    def put(self, sha256_hex: str, jpeg: bytes) -> Path:
        """Write ``jpeg`` under its hash unless it is there already (idempotent)."""
        target = self.path(sha256_hex)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            f.write(jpeg)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        return target

    def delete(self, sha256_hex: str) -> bool:
        try:
            self.path(sha256_hex).unlink()
        except FileNotFoundError:
            return False
        return True

    def names(self) -> set[str]:
        return {p.stem for p in self.root.glob("*/*/*.jpg")}

    def remove_orphans(self, referenced: set[str], *, older_than_s: float) -> int:
        """Delete files no snapshot refers to (a crash between file and transaction), once
        they are older than ``older_than_s`` (so none is raced while being recorded)."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.root.glob("*/*/*.jpg"):
            if path.stem not in referenced and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
