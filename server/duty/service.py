"""Duty, assembled: recompute shifts from the store, and keep the live shifts running.

``recompute`` is the audit path (batch, from stored raw data); ``DutyTracker`` is the live one,
fed by ingest's ``on_stored`` hook. ``refresh`` (called at start and then every minute by the
server) tracks the shifts that are near now: those running or about to, and those ended in the
last ``KEEP_ENDED_S`` — late backfill for a shift ended long ago is not lost, it simply shows
in the next recomputation.

A shift's devices are its recorded terminal and the phones its volunteer held during it, each
phone while held (docs/metrics.md §7; ``devices_of``). Both paths merge their data as one set
and keep the signed devices' timeline beside it, so every result says how many on-post seconds
rest on a phone alone. The phones are looked up in two organisation queries for many shifts at
once: per refresh (every shift near now), per ``recompute_many`` chunk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from ..org.model import Post, Shift
from ..store import Store
from .batch import DeviceData, offline_segments, shift_segments
from .geo import Circle, Fence
from .incremental import DutyTracker
from .rules import (
    ALIVE_GAP_S,
    FIX_MAX_AGE_S,
    OPEN_MS,
    Segment,
    ShiftDevice,
    ShiftResult,
    State,
    clip,
    phone_only,
    tally_of,
)

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

    def phone_holdings(
        self, volunteer_ids: Collection[str], since_ms: int, until_ms: int
    ) -> list[tuple[str, str, int, int | None]]:
        """``(device_id, volunteer_id, from_ms, to_ms)`` of phones held (None: still)."""
        ...

    def phones(self, device_ids: Collection[str]) -> set[str]:
        """Which of ``device_ids`` are phones."""
        ...


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


#: A shift's devices, as the tracker and the batch path take them (docs/metrics.md §7).
Devices = tuple[ShiftDevice, ...]


def _held_window(device: ShiftDevice, since_ms: int, until_ms: int) -> tuple[int, int] | None:
    """The part of ``[since_ms, until_ms)`` worth reading for ``device`` (a phone: while
    held), or None if none."""
    if device.held_ms is None:
        return since_ms, until_ms
    lo = max(since_ms, min(a for a, _ in device.held_ms))
    hi = min(until_ms, max(b for _, b in device.held_ms))
    return (lo, hi) if lo < hi else None


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
        #: a reference and iterate it while ``refresh`` builds the next one. Each tracked
        #: shift with the devices it was tracked with: a phone handed on re-tracks it.
        self._tracked: dict[str, tuple[Shift, Devices]] = {}
        self._refreshing = threading.Lock()

    # --- devices --------------------------------------------------------------------------------

    def devices_of(self, shifts: Sequence[Shift]) -> dict[str, Devices]:
        """Each shift's devices (docs/metrics.md §7): its recorded terminal, counted
        throughout, then every phone its volunteer held at some moment of the shift, each
        counted while held. Two organisation queries for all the shifts together — refresh
        asks for every shift near now at once, reports a chunk at a time."""
        if not shifts:
            return {}
        since = min(s.start_ms for s in shifts) - LOOKBACK_S * 1000
        until = max(s.end_ms for s in shifts)
        held: dict[str, list[tuple[str, int, int]]] = {}
        for device, volunteer, a, b in self._org.phone_holdings(
            {s.volunteer_id for s in shifts}, since, until
        ):
            held.setdefault(volunteer, []).append((device, a, OPEN_MS if b is None else b))
        recorded = {s.device_id for s in shifts if s.device_id is not None}
        phones = self._org.phones(recorded) if recorded else set()
        out: dict[str, Devices] = {}
        for shift in shifts:
            devices: list[ShiftDevice] = []
            if shift.device_id is not None:
                devices.append(ShiftDevice(shift.device_id, phone=shift.device_id in phones))
            # Holdings reaching into the lookback count there too (a phone's fix 10 s before
            # the start keeps the shift alive at the start, §2), but only a phone held during
            # the shift is one of its devices.
            lo = shift.start_ms - LOOKBACK_S * 1000
            windows: dict[str, list[tuple[int, int]]] = {}
            during: set[str] = set()
            for device, a, b in held.get(shift.volunteer_id, ()):
                if a < shift.end_ms and b > lo:
                    windows.setdefault(device, []).append((a, b))
                    if b > shift.start_ms:
                        during.add(device)
            for device, spans in windows.items():
                if device in during and device != shift.device_id:
                    devices.append(ShiftDevice(device, phone=True, held_ms=tuple(spans)))
            out[shift.shift_id] = tuple(devices)
        return out

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

    def _device_data(self, device: ShiftDevice, start_s: int, end_s: int) -> DeviceData:
        window = _held_window(device, (start_s - LOOKBACK_S) * 1000, end_s * 1000)
        if window is None:
            return DeviceData.from_rows((), ())
        return DeviceData.from_array(
            self._store.fix_array(device.device_id, *window),
            self._store.evidence_rows(device.device_id, *window),
        ).during(device.held_ms)

    def recompute(self, shift: Shift, devices: Devices | None = None) -> ShiftResult:
        """The shift's timeline and tally from stored data (docs/metrics.md), from all its
        ``devices`` (None: looked up, ``devices_of``), and what rests on a phone alone (§7).

        A shift still running is counted up to now: the seconds still to come are not
        scheduled yet, rather than offline (metrics.md §3); its result ends before the shift.
        """
        if devices is None:
            devices = self.devices_of([shift])[shift.shift_id]
        start_s = shift.start_ms // 1000
        end_s = max(start_s, min(shift.end_ms // 1000, int(self._clock())))
        has_phone = any(d.phone for d in devices)
        segments: list[Segment]
        signed: list[Segment] | None = None
        if end_s == start_s:
            segments = []  # not started yet
            signed = [] if has_phone else None
        elif not devices:
            segments = offline_segments(start_s, end_s)
        else:
            fence = self._fence(shift)
            data = {d.device_id: self._device_data(d, start_s, end_s) for d in devices}
            # Merged in the order of the devices' ids: a tie between two devices' fixes goes
            # to the greater id, as in the incremental computation.
            merged = DeviceData.merge([data[k] for k in sorted(data)])
            segments = shift_segments(start_s, end_s, fence, merged)
            if has_phone:
                ids = sorted(d.device_id for d in devices if not d.phone)
                signed = (
                    shift_segments(start_s, end_s, fence, DeviceData.merge([data[k] for k in ids]))
                    if ids
                    else offline_segments(start_s, end_s)
                )
        return ShiftResult(
            shift_id=shift.shift_id,
            device_id=shift.device_id,
            start_s=start_s,
            end_s=end_s,
            tally=tally_of(shift.shift_id, start_s, end_s, segments),
            segments=tuple(segments),
            devices=tuple(d.device_id for d in devices),
            phones=tuple(d.device_id for d in devices if d.phone),
            phone_on_post_s=sum(b - a for a, b in phone_only(segments, signed)),
            signed_segments=None if signed is None else tuple(signed),
        )

    def recompute_many(
        self, shifts: Sequence[Shift], *, progress: Callable[[int], None] | None = None
    ) -> list[ShiftResult]:
        devices = self.devices_of(shifts)  # one lookup for them all
        out = []
        for n, shift in enumerate(shifts, start=1):
            out.append(self.recompute(shift, devices[shift.shift_id]))
            if progress is not None:
                progress(n)
        return out

    def terminal_usage(
        self, device_id: str, windows: Sequence[tuple[int, int]]
    ) -> tuple[int, int]:
        """(alive seconds, scheduled seconds) over the union of ``windows`` (epoch seconds):
        one device's own evidence, whatever other devices its shifts had (§3, §7)."""
        alive = scheduled = 0
        for a, b in _union(windows):
            segments = shift_segments(a, b, _ANY_FENCE, self._data(device_id, a, b))
            scheduled += b - a
            alive += sum(s.end_s - s.start_s for s in segments if s.state != State.OFFLINE)
        return alive, scheduled

    # --- live -----------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Track the shifts near now and forget the old ones; return how many are tracked.
        The shifts' phones are looked up once for all of them (``devices_of``)."""
        now_s = int(self._clock())
        wanted = {
            s.shift_id: s
            for s in self._org.shifts(
                since_ms=(now_s - KEEP_ENDED_S) * 1000, until_ms=(now_s + AHEAD_S) * 1000
            )
        }
        devices = self.devices_of(list(wanted.values()))
        with self._refreshing:  # one refresh at a time (start-up's and the minute's)
            tracked = dict(self._tracked)
            for shift_id in list(tracked):
                if shift_id not in wanted:
                    self.tracker.remove_shift(shift_id)
                    del tracked[shift_id]
            self._tracked = tracked
            for shift_id, shift in wanted.items():
                # New, edited, or its phones changed (one handed on or picked up).
                if tracked.get(shift_id) != (shift, devices[shift_id]):
                    self.track(shift, devices[shift_id])
            return len(self._tracked)

    def track(self, shift: Shift, devices: Devices | None = None) -> None:
        """Start tracking one shift with its devices (None: looked up), loaded with what is
        stored so far.

        Registered first, read after: a frame stored meanwhile reaches the shift through
        ``on_stored`` or through the read (both is harmless), never through neither.
        """
        if devices is None:
            devices = self.devices_of([shift])[shift.shift_id]
        start_s, end_s = shift.start_ms // 1000, shift.end_ms // 1000
        fence = self._fence(shift)
        self.tracker.add_shift(shift.shift_id, devices, start_s, end_s, fence)
        for device in devices:
            window = _held_window(device, (start_s - LOOKBACK_S) * 1000, end_s * 1000)
            if window is None:
                continue
            self.tracker.load_array(
                shift.shift_id,
                self._store.fix_array(device.device_id, *window),
                self._store.evidence_rows(device.device_id, *window),
                device_id=device.device_id,
            )
        self._tracked = {**self._tracked, shift.shift_id: (shift, devices)}

    def now(self) -> list[dict[str, Any]]:
        """Every tracked shift running now: its state and its rate so far, its devices, and
        whether it has a phone and is on post now on a phone's word alone (§7)."""
        now_s = int(self._clock())
        out = []
        for shift, devices in self._tracked.values():
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
                    "devices": [d.device_id for d in devices],
                    "phone": any(d.phone for d in devices),
                    "start_ms": shift.start_ms,
                    "end_ms": shift.end_ms,
                    "state": state.name.lower(),
                    "on_phone": bool(self.tracker.on_phone_at(shift.shift_id, now_s)),
                    "elapsed_s": elapsed,
                    "on_post_s": on,
                    "offline_s": counts[State.OFFLINE],
                    "on_duty_rate_so_far": on / elapsed,
                }
            )
        out.sort(key=lambda d: (d["post_id"], d["shift_id"]))
        return out

    def live_result(self, shift_id: str) -> ShiftResult | None:
        entry = self._tracked.get(shift_id)
        segments = self.tracker.segments(shift_id)
        if entry is None or segments is None:
            return None
        shift, devices = entry
        # Up to now, as recompute counts it (metrics.md §3).
        start_s = shift.start_ms // 1000
        end_s = max(start_s, min(shift.end_ms // 1000, int(self._clock())))
        segments = clip(segments, end_s)
        signed = self.tracker.signed_segments(shift_id)
        if signed is None and any(d.phone for d in devices):
            return None  # re-tracked with other devices meanwhile: ask again
        if signed is not None:
            signed = clip(signed, end_s)
        return ShiftResult(
            shift_id,
            shift.device_id,
            start_s,
            end_s,
            tally_of(shift_id, start_s, end_s, segments),
            tuple(segments),
            devices=tuple(d.device_id for d in devices),
            phones=tuple(d.device_id for d in devices if d.phone),
            phone_on_post_s=sum(b - a for a, b in phone_only(segments, signed)),
            signed_segments=None if signed is None else tuple(signed),
        )
