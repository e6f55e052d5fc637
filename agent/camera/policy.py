"""When a frame becomes a ``protocol.Snapshot``, and how many bytes it may take.

Triggers, in priority order on each ``Snapper.offer(frame, now_ms, fix)``:

1. ``request(request_id)`` / ``event(kind)``: forced. Kept pending until a frame can be taken,
   taken even when the frame is blurred or dark, rate-limited by ``forced_min_interval_s``. They
   count against the hourly budget but are not refused by it: an operator who asks for a
   picture gets one, at ``target_bytes``.
2. ``scene_change``: the mean absolute difference of a 64×36 grey thumbnail against the
   thumbnail of the last snapshot exceeds ``scene_threshold`` (fraction of 255). Comparing
   against the last *snapshot* (not the previous frame) also catches slow changes, and a
   change held back by the rate limit or a bad frame is still there on the next frame.
3. ``periodic``: ``periodic_s`` since the last snapshot of any kind.

Automatic snapshots (2, 3) are skipped when the frame is blurred or dark, when fewer than
``min_interval_s`` passed since the last snapshot, or when the sliding one-hour window has no
room: their byte target is ``min(target_bytes, bytes_per_hour - used)``, and below
``min_snapshot_bytes`` they are not taken, so automatic snapshots never take the window over
``bytes_per_hour``. ``target_bytes`` is ``bytes_per_hour`` shared over the planned snapshots per
hour (``3600 / periodic_s + scene_changes_per_hour``), capped at ``protocol.MAX_JPEG_BYTES``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from protocol import Fix, Snapshot, SnapshotTrigger
from protocol.messages import ID_PATTERN, MAX_JPEG_BYTES

from .encode import BLUR_THRESHOLD, DARK_THRESHOLD, Encoded, encode_within, quality_checks

HOUR_MS = 3_600_000
THUMB_SIZE = (64, 36)


@dataclass(frozen=True, slots=True)
class SnapPolicy:
    periodic_s: float = 300.0
    scene_threshold: float = 0.12  # mean |Δ| of the 64×36 grey thumbnail, fraction of 255
    min_interval_s: float = 10.0  # between automatic snapshots and the last snapshot
    forced_min_interval_s: float = 1.0  # between a forced snapshot and the last snapshot
    bytes_per_hour: int = 2_000_000
    scene_changes_per_hour: int = 12  # planned on top of the periodic ones
    min_snapshot_bytes: int = 4 * 1024
    blur_threshold: float = BLUR_THRESHOLD
    dark_threshold: float = DARK_THRESHOLD
    max_width: int = 1280
    min_quality: int = 20
    max_quality: int = 90

    def __post_init__(self) -> None:
        if self.periodic_s <= 0 or self.min_interval_s < 0 or self.forced_min_interval_s < 0:
            raise ValueError("periodic_s must be positive and the intervals not negative")
        if not 0 < self.scene_threshold <= 1:
            raise ValueError(f"scene_threshold {self.scene_threshold} is outside (0, 1]")
        if self.bytes_per_hour < self.min_snapshot_bytes or self.min_snapshot_bytes < 1:
            raise ValueError("need 1 <= min_snapshot_bytes <= bytes_per_hour")
        if self.scene_changes_per_hour < 0:
            raise ValueError("scene_changes_per_hour must not be negative")

    @property
    def planned_per_hour(self) -> int:
        return math.ceil(3600 / self.periodic_s) + self.scene_changes_per_hour

    @property
    def target_bytes(self) -> int:
        """The byte target of one snapshot when the budget has room."""
        share = self.bytes_per_hour // max(1, self.planned_per_hour)
        return max(self.min_snapshot_bytes, min(MAX_JPEG_BYTES, share))


@dataclass(frozen=True, slots=True)
class SnapInfo:
    """How the last snapshot was made (for logs, status and tests)."""

    trigger: SnapshotTrigger
    captured_ms: int
    target_bytes: int
    size: int
    quality: int
    width: int
    height: int
    event_kind: str | None = None


@dataclass
class SnapStats:
    taken: Counter[SnapshotTrigger] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> frames
    events: Counter[str] = field(default_factory=Counter)  # event kind -> snapshots


Encoder = Callable[..., Encoded]


class Snapper:
    """Turns frames into snapshots following a ``SnapPolicy``; see the module docstring."""

    def __init__(
        self,
        policy: SnapPolicy | None = None,
        *,
        encoder: Encoder = encode_within,
        logger: logging.Logger | None = None,
    ) -> None:
        self.policy = policy or SnapPolicy()
        self._encode = encoder
        self._log = logger or logging.getLogger("yijing.agent.camera.snap")
        self._window: deque[tuple[int, int]] = deque()  # (captured_ms, bytes)
        self._reference: np.ndarray | None = None  # thumbnail of the last snapshot
        self._last_ms: int | None = None  # captured_ms of the last snapshot
        self._requests: deque[str] = deque()
        self._events: deque[str] = deque()
        self.last: SnapInfo | None = None
        self.stats = SnapStats()

    # --- forced triggers -------------------------------------------------------------------------

    def request(self, request_id: str) -> None:
        """Take a snapshot for this request as soon as the rate limit allows."""
        if not isinstance(request_id, str) or not re.fullmatch(ID_PATTERN, request_id):
            raise ValueError(f"request_id {request_id!r} does not match {ID_PATTERN}")
        self._requests.append(request_id)

    def event(self, kind: str) -> None:
        """Take a snapshot for an event (alarm button, geofence) as soon as allowed."""
        self._events.append(kind)

    @property
    def pending(self) -> int:
        return len(self._requests) + len(self._events)

    # --- the budget ------------------------------------------------------------------------------

    def used_bytes(self, now_ms: int) -> int:
        """Bytes of snapshots captured in the hour up to ``now_ms``."""
        while self._window and self._window[0][0] <= now_ms - HOUR_MS:
            self._window.popleft()
        return sum(n for _, n in self._window)

    # --- frames ----------------------------------------------------------------------------------

    def offer(self, frame: np.ndarray, now_ms: int, fix: Fix | None = None) -> Snapshot | None:
        """A snapshot of ``frame`` if the policy wants one now, else None."""
        p = self.policy
        thumb = cv2.resize(_grey(frame), THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(
            np.float32
        )
        since_s = None if self._last_ms is None else (now_ms - self._last_ms) / 1000
        trigger: SnapshotTrigger | None = None
        if self._requests:
            trigger = SnapshotTrigger.REQUEST
        elif self._events:
            trigger = SnapshotTrigger.EVENT
        if trigger is not None:
            if since_s is not None and since_s < p.forced_min_interval_s:
                self._skip("rate_limited")
                return None
            target = p.target_bytes
        else:
            if self._reference is None:
                trigger = SnapshotTrigger.SCENE_CHANGE  # the first frame: nothing to compare
            elif float(np.abs(thumb - self._reference).mean()) / 255 > p.scene_threshold:
                trigger = SnapshotTrigger.SCENE_CHANGE
            elif since_s is not None and since_s >= p.periodic_s:
                trigger = SnapshotTrigger.PERIODIC
            else:
                return None
            if since_s is not None and since_s < p.min_interval_s:
                self._skip("rate_limited")
                return None
            quality = quality_checks(frame)
            if quality.is_dark(p.dark_threshold):
                self._skip("dark")
                return None
            if quality.is_blurred(p.blur_threshold):
                self._skip("blurred")
                return None
            target = min(p.target_bytes, p.bytes_per_hour - self.used_bytes(now_ms))
            if target < p.min_snapshot_bytes:
                self._skip("over_budget")
                return None
        try:
            encoded = self._encode(
                frame,
                max_bytes=target,
                min_quality=p.min_quality,
                max_quality=p.max_quality,
                max_width=p.max_width,
            )
        except ValueError as exc:
            self._log.warning("snapshot skipped: %s", exc)
            self._skip("encode_failed")
            return None
        request_id = event_kind = None
        if trigger is SnapshotTrigger.REQUEST:
            request_id = self._requests.popleft()
        elif trigger is SnapshotTrigger.EVENT:
            event_kind = self._events.popleft()
            self.stats.events[event_kind] += 1
        snapshot = Snapshot(
            captured_ms=now_ms,
            trigger=trigger,
            width=encoded.width,
            height=encoded.height,
            sha256=hashlib.sha256(encoded.jpeg).digest(),
            jpeg=encoded.jpeg,
            fix=fix,
            request_id=request_id,
        )
        self.used_bytes(now_ms)
        self._window.append((now_ms, len(encoded.jpeg)))
        self._reference = thumb
        self._last_ms = now_ms
        self.stats.taken[trigger] += 1
        self.last = SnapInfo(
            trigger,
            now_ms,
            target,
            len(encoded.jpeg),
            encoded.quality,
            encoded.width,
            encoded.height,
            event_kind,
        )
        return snapshot

    def _skip(self, reason: str) -> None:
        self.stats.skipped[reason] += 1


def _grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return frame.reshape(frame.shape[0], frame.shape[1])
