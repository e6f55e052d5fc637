"""A volunteer's clue report (线索举报) made into protocol messages: the text, and the photo.

The photo travels as its own ``Snapshot`` (trigger ``clue``, ``request_id`` = the clue's id) so
the text goes out in the urgent lane at once and the picture follows in the picture lane. A
photo is checked here, before anything is queued: the volunteer is told at once (a
``ReportError`` naming what is wrong), not the station hours later.
"""

from __future__ import annotations

import hashlib
import secrets

from protocol import Clue, Fix, IncidentKind, ProtocolError, Snapshot, SnapshotTrigger
from protocol.messages import MAX_JPEG_BYTES

from .errors import ReportError

#: JPEG start-of-frame markers (ITU T.81 B.1.1.3, table B.1): SOF0-SOF15 but DHT, JPG, DAC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def build_clue(
    text: str,
    category: IncidentKind,
    *,
    fix: Fix | None,
    now_ms: int,
    photo_jpeg: bytes | None = None,
    width: int | None = None,
    height: int | None = None,
) -> tuple[Clue, Snapshot | None]:
    """The ``Clue`` and, with a photo, its ``Snapshot``; ``ReportError`` if either cannot be
    made (a photo that is not a JPEG, too big, damaged; empty or too long text)."""
    clue_id = f"c-{secrets.token_hex(8)}"
    snapshot = None
    if photo_jpeg is not None:
        snapshot = _photo(clue_id, photo_jpeg, fix=fix, now_ms=now_ms, width=width, height=height)
    try:
        clue = Clue(
            clue_id=clue_id,
            time_ms=now_ms,
            text=text,
            category=category,
            fix=fix,
            photo_sha256=None if snapshot is None else snapshot.sha256,
        )
    except ProtocolError as exc:
        raise ReportError(str(exc)) from exc
    return clue, snapshot


def _photo(
    clue_id: str,
    jpeg: bytes,
    *,
    fix: Fix | None,
    now_ms: int,
    width: int | None,
    height: int | None,
) -> Snapshot:
    if len(jpeg) > MAX_JPEG_BYTES:
        raise ReportError(
            f"photo: {len(jpeg)} bytes is over the limit of {MAX_JPEG_BYTES} "
            f"bytes ({MAX_JPEG_BYTES // 1024} KiB)"
        )
    if jpeg[:2] != b"\xff\xd8":
        raise ReportError("photo: not a JPEG (it does not start with FF D8)")
    if width is None or height is None:
        size = jpeg_size(jpeg)
        if size is None:
            raise ReportError("photo: a damaged JPEG (no frame header with its size)")
        width, height = size
    try:
        return Snapshot(
            captured_ms=now_ms,
            trigger=SnapshotTrigger.CLUE,
            width=width,
            height=height,
            sha256=hashlib.sha256(jpeg).digest(),
            jpeg=jpeg,
            fix=fix,
            request_id=clue_id,
        )
    except ProtocolError as exc:
        raise ReportError(f"photo: {exc}") from exc


def jpeg_size(jpeg: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None if there is none to read."""
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i] != 0xFF:
            return None
        marker = jpeg[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if marker in _SOF:
            if i + 9 > len(jpeg):
                return None
            height = int.from_bytes(jpeg[i + 5 : i + 7], "big")
            width = int.from_bytes(jpeg[i + 7 : i + 9], "big")
            return (width, height) if width and height else None
        if marker == 0xDA or length < 2:  # scan data before any frame header: not a JPEG
            return None
        i += 2 + length
    return None
