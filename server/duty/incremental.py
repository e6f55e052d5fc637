"""The incremental computation of ``docs/metrics.md``, in the ingest path.

``DutyTracker`` routes each newly stored frame and fix to the shifts it touches and feeds their
timelines (``server.duty.timeline``: each change costs O(log n) plus the seconds it changes,
in any arrival order). A shift has several devices (§7): its recorded terminal and the phones
its volunteer held during it, each counting only while held. Their data go into one timeline,
as one set; and when the shift has both a phone and a signed terminal, the signed data also go
into a second timeline of their own, so that the seconds on post that rest on a phone alone
can be told apart at any time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..fixpack import FixArray
from ..store import FUTURE_TOLERANCE_MS, EvidenceRow, FixRow, IncomingFrame
from .batch import DeviceData, evidence_seconds, fix_winners
from .geo import Fence
from .rules import (
    ALIVE_GAP_S,
    FIX_MAX_AGE_S,
    ON_STATES,
    Segment,
    ShiftDevice,
    ShiftTally,
    State,
    clip,
    phone_only,
    tally_of,
)
from .timeline import EvPoint, FixPoint, Timeline, classify, points, with_rank

__all__ = ["DutyTracker", "classify", "shift_devices"]

_LOOKBACK_S = max(FIX_MAX_AGE_S, ALIVE_GAP_S)
R = TypeVar("R", FixRow, EvidenceRow)

#: What ``add_shift`` takes as a shift's devices: a device id (signed, counted throughout), a
#: ``ShiftDevice``, several of these, or None (no device).
Devices = str | ShiftDevice | Iterable[str | ShiftDevice] | None


def shift_devices(devices: Devices) -> tuple[ShiftDevice, ...]:
    """``devices`` as ``ShiftDevice``s, each id once (the first given wins)."""
    if devices is None:
        return ()
    items = [devices] if isinstance(devices, str | ShiftDevice) else list(devices)
    out: dict[str, ShiftDevice] = {}
    for d in items:
        dev = ShiftDevice(d) if isinstance(d, str) else d
        out.setdefault(dev.device_id, dev)
    return tuple(out.values())


@dataclass(eq=False)
class _Shift:
    """A tracked shift: the timeline of all its devices (``merged``) and, when it has a phone
    beside a signed device, that of its signed devices alone (``signed``)."""

    shift_id: str
    devices: tuple[ShiftDevice, ...]
    merged: Timeline
    signed: Timeline | None

    @property
    def has_phone(self) -> bool:
        return any(d.phone for d in self.devices)


@dataclass(eq=False, slots=True)
class _Route:
    """Where one device's data go for one shift: ranks are by device id among the devices of
    each timeline, so the merged and the batch computation break ties alike."""

    shift: _Shift
    device: ShiftDevice
    rank: int
    signed: Timeline | None  # the shift's signed timeline, if this device feeds it
    signed_rank: int


def _ranks(devices: Iterable[ShiftDevice]) -> dict[str, int]:
    return {d: k for k, d in enumerate(sorted(dev.device_id for dev in devices))}


class DutyTracker:
    """Running timelines of the shifts being tracked, fed by ingest. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shifts: dict[str, _Shift] = {}
        self._by_device: dict[str, list[_Route]] = {}

    # --- which shifts ---------------------------------------------------------------------------

    def add_shift(
        self,
        shift_id: str,
        devices: Devices,
        start_s: int,
        end_s: int,
        fence: Fence,
        *,
        fixes: Sequence[FixRow] | Mapping[str, Sequence[FixRow]] = (),
        evidence: Sequence[EvidenceRow] | Mapping[str, Sequence[EvidenceRow]] = (),
    ) -> None:
        """Track a shift (replacing any track of that id) with its devices, loaded with stored
        rows: per device id (a mapping), or a sequence for a shift with one device."""
        devs = shift_devices(devices)
        merged = Timeline(shift_id, start_s, end_s, fence)
        signed_devs = [d for d in devs if not d.phone]
        has_phone = len(signed_devs) < len(devs)
        signed = Timeline(shift_id, start_s, end_s, fence) if has_phone and signed_devs else None
        shift = _Shift(shift_id, devs, merged, signed)
        rank, signed_rank = _ranks(devs), _ranks(signed_devs)
        routes = [
            _Route(
                shift,
                d,
                rank[d.device_id],
                None if d.phone else signed,
                signed_rank.get(d.device_id, 0),
            )
            for d in devs
        ]
        fix_rows, ev_rows = _by_device(devs, fixes, "fixes"), _by_device(devs, evidence, "evidence")
        all_f: list[FixPoint] = []
        all_e: list[EvPoint] = []
        sig_f: list[FixPoint] = []
        sig_e: list[EvPoint] = []
        for route in routes:
            d = route.device
            f_rows = [r for r in fix_rows.get(d.device_id, ()) if d.covers(r[0])]
            e_rows = [r for r in ev_rows.get(d.device_id, ()) if d.covers(r[0])]
            f, e = points(fence, f_rows, e_rows)
            all_f += with_rank(f, route.rank)
            all_e += e
            if route.signed is not None:
                sig_f += with_rank(f, route.signed_rank)
                sig_e += e
        merged.load(all_f, all_e)
        if signed is not None:
            signed.load(sig_f, sig_e)
        with self._lock:
            self._drop(shift_id)
            self._shifts[shift_id] = shift
            for route in routes:
                self._by_device.setdefault(route.device.device_id, []).append(route)

    def load_array(
        self,
        shift_id: str,
        fixes: FixArray,
        evidence: Sequence[EvidenceRow],
        *,
        device_id: str | None = None,
    ) -> None:
        """Merge the store's packed ``fix_array`` of one of the shift's devices (``device_id``;
        None: its only one) into the tracked shift in one pass: the batch path classifies the
        fixes (bit for bit as ``classify`` would) and picks each second's winner, so start-up
        costs NumPy work plus one dict entry per second. A phone's data count only while held.

        The server registers a shift first and reads the store after, so a frame stored
        meanwhile arrives by ``on_stored`` or by the read, or both (harmless), never neither.
        """
        with self._lock:
            shift = self._shifts.get(shift_id)
            if shift is None:
                return
            if device_id is None:
                n = len(shift.devices)
                if n != 1:
                    raise ValueError(f"device_id: shift {shift_id!r} has {n} devices: say which")
                device_id = shift.devices[0].device_id
            routes = self._by_device.get(device_id, ())
            route = next((r for r in routes if r.shift is shift), None)
        if route is None:
            raise ValueError(f"device_id: {device_id!r} is not a device of shift {shift_id!r}")
        data = DeviceData.from_array(fixes, evidence).during(route.device.held_ms)
        sec, cls, keys = fix_winners(shift.merged.fence, data)
        fix_points: list[FixPoint] = [
            (s, (k[0], k[1], k[2], route.rank), c)
            for s, c, k in zip(sec.tolist(), cls.tolist(), keys.tolist(), strict=True)
        ]
        ev_sec, ev_on = evidence_seconds(data)
        ev_points = list(zip(ev_sec.tolist(), ev_on.tolist(), strict=True))
        with self._lock:
            if self._shifts.get(shift_id) is shift:
                shift.merged.load(fix_points, ev_points)
                if route.signed is not None:
                    route.signed.load(with_rank(fix_points, route.signed_rank), ev_points)

    def remove_shift(self, shift_id: str) -> None:
        with self._lock:
            self._drop(shift_id)

    def _drop(self, shift_id: str) -> None:
        old = self._shifts.pop(shift_id, None)
        if old is None:
            return
        for dev in old.devices:
            routes = self._by_device[dev.device_id]
            routes[:] = [r for r in routes if r.shift is not old]
            if not routes:
                del self._by_device[dev.device_id]

    # --- data -----------------------------------------------------------------------------------

    def add_fix(
        self,
        device_id: str,
        time_ms: int,
        seq: int,
        idx: int,
        lat: float,
        lon: float,
        accuracy_m: float | None,
        flags: int,
        received_ms: int,
    ) -> None:
        if flags:
            return  # a flagged fix is neither position nor evidence (docs/metrics.md §1)
        with self._lock:
            self._add_fix(device_id, time_ms, seq, idx, lat, lon, accuracy_m, received_ms)

    def _add_fix(
        self,
        device_id: str,
        time_ms: int,
        seq: int,
        idx: int,
        lat: float,
        lon: float,
        accuracy_m: float | None,
        received_ms: int,
    ) -> None:
        routes = self._by_device.get(device_id)
        if not routes:
            return
        s = time_ms // 1000
        for route in routes:
            track = route.shift.merged
            if not track.start_s - _LOOKBACK_S <= s < track.end_s:
                continue
            if route.device.held_ms is not None and not route.device.covers(time_ms):
                continue  # a phone's fix from when someone else held it
            cls = classify(track.fence, time_ms, lat, lon, accuracy_m, received_ms)
            track.add_fix(s, (time_ms, seq, idx, route.rank), cls)
            if route.signed is not None:
                route.signed.add_fix(s, (time_ms, seq, idx, route.signed_rank), cls)

    def add_evidence(self, device_id: str, time_ms: int, *, off: bool = False) -> None:
        with self._lock:
            self._add_evidence(device_id, time_ms, off)

    def _add_evidence(self, device_id: str, time_ms: int, off: bool) -> None:
        routes = self._by_device.get(device_id)
        if not routes:
            return
        s = time_ms // 1000
        for route in routes:
            track = route.shift.merged
            if not track.start_s - ALIVE_GAP_S <= s < track.end_s:
                continue
            if route.device.held_ms is not None and not route.device.covers(time_ms):
                continue
            track.add_evidence(s, not off)
            if route.signed is not None:
                route.signed.add_evidence(s, not off)

    def on_stored(self, frames: Sequence[IncomingFrame]) -> None:
        """Ingest's hook: every newly stored frame is evidence, every fix a position — for
        every tracked shift that counts the frame's device (a terminal or a phone)."""
        with self._lock:
            for f in frames:
                if f.device_id not in self._by_device:
                    continue
                if f.sent_ms <= f.received_ms + FUTURE_TOLERANCE_MS:
                    self._add_evidence(f.device_id, f.sent_ms, f.offline)
                for k, fix in enumerate(f.fixes):
                    if f.fix_flags and f.fix_flags[k]:
                        continue
                    self._add_fix(
                        f.device_id,
                        fix.time_ms,
                        f.seq,
                        k,
                        fix.lat,
                        fix.lon,
                        fix.accuracy_m,
                        f.received_ms,
                    )

    # --- results --------------------------------------------------------------------------------

    def devices(self, shift_id: str) -> tuple[ShiftDevice, ...] | None:
        with self._lock:
            shift = self._shifts.get(shift_id)
            return None if shift is None else shift.devices

    def counts(self, shift_id: str) -> dict[State, int] | None:
        """Seconds per state, as kept running (no walk)."""
        with self._lock:
            shift = self._shifts.get(shift_id)
            if shift is None:
                return None
            return dict(zip(State, shift.merged.counts, strict=True))

    def tally(self, shift_id: str) -> ShiftTally | None:
        with self._lock:
            shift = self._shifts.get(shift_id)
            if shift is None:
                return None
            t = shift.merged
            return tally_of(shift_id, t.start_s, t.end_s, t.segments())

    def segments(self, shift_id: str) -> list[Segment] | None:
        """The shift's timeline, from all its devices."""
        with self._lock:
            shift = self._shifts.get(shift_id)
            return None if shift is None else shift.merged.segments()

    def signed_segments(self, shift_id: str) -> list[Segment] | None:
        """The timeline from the shift's signed devices alone; None when the shift has no
        phone (then it is ``segments``) or is not tracked. A shift of phones only: offline."""
        with self._lock:
            shift = self._shifts.get(shift_id)
            if shift is None or not shift.has_phone:
                return None
            return _signed(shift)

    def phone_on_post_s(self, shift_id: str, until_s: int | None = None) -> int | None:
        """On-post seconds before ``until_s`` (None: the end) that rest on a phone alone
        (docs/metrics.md §7); a walk over both timelines, for one shift at a time."""
        with self._lock:
            shift = self._shifts.get(shift_id)
            if shift is None:
                return None
            if not shift.has_phone:
                return 0
            merged, signed = shift.merged.segments(), _signed(shift)
        if until_s is not None:
            merged, signed = clip(merged, until_s), clip(signed, until_s)
        return sum(b - a for a, b in phone_only(merged, signed))

    def state_at(self, shift_id: str, t_s: int) -> State | None:
        with self._lock:
            shift = self._shifts.get(shift_id)
            if shift is None:
                return None
            track = shift.merged
            if not track.start_s <= t_s < track.end_s:
                return None
            return track.state_at(t_s)

    def on_phone_at(self, shift_id: str, t_s: int) -> bool | None:
        """Whether the shift is on post at ``t_s`` on a phone's word alone: on post from all
        its devices, and not from its signed ones. None: not tracked, or not in the shift."""
        with self._lock:
            shift = self._shifts.get(shift_id)
            if shift is None:
                return None
            track = shift.merged
            if not track.start_s <= t_s < track.end_s:
                return None
            if not shift.has_phone or track.state_at(t_s) not in ON_STATES:
                return False
            return shift.signed is None or shift.signed.state_at(t_s) not in ON_STATES

    def elapsed_counts(self, shift_id: str, now_s: int) -> dict[State, int] | None:
        """Seconds per state from the shift's start until ``now_s`` (running rates): the running
        counts less the seconds still to come, which hold no points but expiries — a few
        steps, not a walk over the whole shift, for every shift on every ``/duty/now``."""
        with self._lock:
            shift = self._shifts.get(shift_id)
            if shift is None:
                return None
            track = shift.merged
            now_s = max(track.start_s, min(now_s, track.end_s))
            rest = track._tally(now_s, track.end_s)
            return {s: track.counts[s] - rest[s] for s in State}


def _signed(shift: _Shift) -> list[Segment]:
    if shift.signed is not None:
        return shift.signed.segments()
    t = shift.merged
    return [Segment(t.start_s, t.end_s, State.OFFLINE)] if t.end_s > t.start_s else []


def _by_device(
    devices: Sequence[ShiftDevice], rows: Sequence[R] | Mapping[str, Sequence[R]], name: str
) -> Mapping[str, Sequence[R]]:
    if isinstance(rows, Mapping):
        return rows
    if not rows:
        return {}
    if len(devices) != 1:
        raise ValueError(f"{name}: give rows per device id for a shift of {len(devices)} devices")
    return {devices[0].device_id: rows}
