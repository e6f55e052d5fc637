"""Duty, assembled: recompute shifts from the store, and keep the live shifts running.

``recompute`` is the audit path (batch, from stored raw data); ``DutyTracker`` is the live one,
fed by ingest's ``on_stored`` hook. ``refresh`` (called at start and then every minute by the
server) tracks the shifts that are near now: those running or about to, and those ended in the
last ``KEEP_ENDED_S`` — late backfill for a shift ended long ago is not lost, it simply shows
in the next recomputation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..org.model import Post, Shift
from ..store import Store
from .batch import DeviceData, offline_segments, shift_segments
from .geo import Circle, Fence
from .incremental import DutyTracker
from .rules import ALIVE_GAP_S, FIX_MAX_AGE_S, Segment, ShiftResult, State, clip, tally_of

LOOKBACK_S = max(ALIVE_GAP_S, FIX_MAX_AGE_S)
#: Shifts ended this long ago stay tracked, so a terminal that comes back online after a
#: night shift revises the live figures too.
KEEP_ENDED_S = 12 * 3600
#: Shifts starting within this are tracked ahead, so they are ready at their start.
AHEAD_S = 3600


class OrgReader(Protocol):
    def post(self, post_id: str) -> Post | None: ...

    def shifts(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        units: Any = None,
        volunteer_id: str | None = None,
        device_id: str | None = None,
    ) -> list[Shift]: ...


#: Whether a terminal is alive does not depend on the post: any fence will do.
_ANY_FENCE = Circle(0.0, 0.0, 1.0)


def _union(windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(w for w in windows if w[0] < w[1]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class DutyService:
    def __init__(
        self,
        store: Store,
        org: OrgReader,
        *,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self._store = store
        self._org = org
        self._clock = clock
        self._log = logger or logging.getLogger("yijing.duty")
        self.tracker = DutyTracker()
        #: Replaced whole, never changed in place: readers on other threads (the web) take
        #: a reference and iterate it while ``refresh`` builds the next one.
        self._tracked: dict[str, Shift] = {}
        self._refreshing = threading.Lock()

    # --- batch ----------------------------------------------------------------------------------

    def _fence(self, shift: Shift) -> Fence:
        post = self._org.post(shift.post_id)
        if post is None:  # the org store refuses to delete a post with shifts
            raise LookupError(f"shift {shift.shift_id}: post {shift.post_id} is gone")
        return post.fence

    def _data(self, device_id: str, start_s: int, end_s: int) -> DeviceData:
        since = (start_s - LOOKBACK_S) * 1000
        return DeviceData.from_array(
            self._store.fix_array(device_id, since, end_s * 1000),
            self._store.evidence_rows(device_id, since, end_s * 1000),
        )

    def recompute(self, shift: Shift) -> ShiftResult:
        """The shift's timeline and tally from stored data (docs/metrics.md).

        A shift still running is counted up to now: the seconds still to come are not
        scheduled yet, rather than offline (metrics.md §3); its result ends before the shift.
        """
        start_s = shift.start_ms // 1000
        end_s = max(start_s, min(shift.end_ms // 1000, int(self._clock())))
        segments: list[Segment]
        if end_s == start_s:
            segments = []  # not started yet
        elif shift.device_id is None:
            segments = offline_segments(start_s, end_s)
        else:
            data = self._data(shift.device_id, start_s, end_s)
            segments = shift_segments(start_s, end_s, self._fence(shift), data)
        return ShiftResult(
            shift_id=shift.shift_id,
            device_id=shift.device_id,
            start_s=start_s,
            end_s=end_s,
            tally=tally_of(shift.shift_id, start_s, end_s, segments),
            segments=tuple(segments),
        )

    def recompute_many(
        self, shifts: Sequence[Shift], *, progress: Callable[[int], None] | None = None
    ) -> list[ShiftResult]:
        out = []
        for n, shift in enumerate(shifts, start=1):
            out.append(self.recompute(shift))
            if progress is not None:
                progress(n)
        return out

    def terminal_usage(
        self, device_id: str, windows: Sequence[tuple[int, int]]
    ) -> tuple[int, int]:
        """(alive seconds, scheduled seconds) over the union of ``windows`` (epoch seconds)."""
        alive = scheduled = 0
        for a, b in _union(windows):
            segments = shift_segments(a, b, _ANY_FENCE, self._data(device_id, a, b))
            scheduled += b - a
            alive += sum(s.end_s - s.start_s for s in segments if s.state != State.OFFLINE)
        return alive, scheduled

    # --- live -----------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Track the shifts near now and forget the old ones; return how many are tracked."""
        now_s = int(self._clock())
        wanted = {
            s.shift_id: s
            for s in self._org.shifts(
                since_ms=(now_s - KEEP_ENDED_S) * 1000, until_ms=(now_s + AHEAD_S) * 1000
            )
        }
        with self._refreshing:  # one refresh at a time (start-up's and the minute's)
            tracked = dict(self._tracked)
            for shift_id in list(tracked):
                if shift_id not in wanted:
                    self.tracker.remove_shift(shift_id)
                    del tracked[shift_id]
            self._tracked = tracked
            for shift_id, shift in wanted.items():
                if tracked.get(shift_id) != shift:  # new, or edited
                    self.track(shift)
            return len(self._tracked)

    def track(self, shift: Shift) -> None:
        """Start tracking one shift, loaded with what is stored so far.

        Registered first, read after: a frame stored meanwhile reaches the shift through
        ``on_stored`` or through the read (both is harmless), never through neither.
        """
        start_s, end_s = shift.start_ms // 1000, shift.end_ms // 1000
        fence = self._fence(shift)
        self.tracker.add_shift(shift.shift_id, shift.device_id, start_s, end_s, fence)
        if shift.device_id is not None:
            since = (start_s - LOOKBACK_S) * 1000
            self.tracker.load_array(
                shift.shift_id,
                self._store.fix_array(shift.device_id, since, end_s * 1000),
                self._store.evidence_rows(shift.device_id, since, end_s * 1000),
            )
        self._tracked = {**self._tracked, shift.shift_id: shift}

    def now(self) -> list[dict[str, Any]]:
        """Every tracked shift running now: its state and its rate so far."""
        now_s = int(self._clock())
        out = []
        for shift in self._tracked.values():
            start_s, end_s = shift.start_ms // 1000, shift.end_ms // 1000
            if not start_s <= now_s < end_s:
                continue
            counts = self.tracker.elapsed_counts(shift.shift_id, now_s + 1)
            state = self.tracker.state_at(shift.shift_id, now_s)
            if counts is None or state is None:
                continue
            elapsed = now_s + 1 - start_s
            on = counts[State.ON_POST] + counts[State.ON_POST_BACKFILLED]
            out.append(
                {
                    "shift_id": shift.shift_id,
                    "volunteer_id": shift.volunteer_id,
                    "post_id": shift.post_id,
                    "device_id": shift.device_id,
                    "start_ms": shift.start_ms,
                    "end_ms": shift.end_ms,
                    "state": state.name.lower(),
                    "elapsed_s": elapsed,
                    "on_post_s": on,
                    "offline_s": counts[State.OFFLINE],
                    "on_duty_rate_so_far": on / elapsed,
                }
            )
        out.sort(key=lambda d: (d["post_id"], d["shift_id"]))
        return out

    def live_result(self, shift_id: str) -> ShiftResult | None:
        shift = self._tracked.get(shift_id)
        segments = self.tracker.segments(shift_id)
        if shift is None or segments is None:
            return None
        # Up to now, as recompute counts it (metrics.md §3).
        start_s = shift.start_ms // 1000
        end_s = max(start_s, min(shift.end_ms // 1000, int(self._clock())))
        segments = clip(segments, end_s)
        return ShiftResult(
            shift_id,
            shift.device_id,
            start_s,
            end_s,
            tally_of(shift_id, start_s, end_s, segments),
            tuple(segments),
        )


