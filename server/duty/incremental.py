"""The incremental computation of ``docs/metrics.md``, in the ingest path.

Each tracked shift keeps the seconds that hold a fix (with that second's winning fix and its
class for the shift's post) and the seconds that hold evidence, as sorted lists, plus running
counts of seconds per ``State``. A new fix or frame changes the timeline only from its own
second up to the next point of the same kind or its own reach (``FIX_MAX_AGE_S``,
``ALIVE_GAP_S``), whichever is first; the tracker tallies that window before and after the
change and adds the difference. Arrival order does not matter — late backfill lands in the
past and revises it — and the same data twice changes nothing.

A forward walk (``_walk``) yields the timeline between two instants in O(points in between):
at each step the state is fixed until the next fix or evidence second, or until the current
fix or evidence runs out.
"""

from __future__ import annotations

import threading
from bisect import bisect_right, insort
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ..fixpack import FixArray
from ..store import FUTURE_TOLERANCE_MS, EvidenceRow, FixRow, IncomingFrame
from .batch import DeviceData, evidence_seconds, fix_winners
from .geo import Fence
from .rules import (
    ALIVE_GAP_S,
    BACKFILL_AFTER_S,
    FIX_MAX_AGE_S,
    MAX_ACCURACY_M,
    STATE_OF_CLASS,
    FixClass,
    Segment,
    ShiftTally,
    State,
    tally_of,
)

_NEVER = -(2**62)
_LOOKBACK_S = max(FIX_MAX_AGE_S, ALIVE_GAP_S)
_STATES = tuple(State)
_STATE_OF_CLASS = tuple(STATE_OF_CLASS[c] for c in FixClass)


def classify(
    fence: Fence,
    time_ms: int,
    lat: float,
    lon: float,
    accuracy_m: float | None,
    received_ms: int,
) -> FixClass:
    """One fix's class for a post (docs/metrics.md §2.3); the batch path's twin."""
    if accuracy_m is not None and accuracy_m > MAX_ACCURACY_M:
        return FixClass.UNUSABLE
    if not fence.contains(lat, lon, 0.0 if accuracy_m is None else accuracy_m):
        return FixClass.OFF
    late = received_ms - time_ms > BACKFILL_AFTER_S * 1000
    return FixClass.ON_BACKFILLED if late else FixClass.ON


@dataclass(eq=False)
class _Track:
    shift_id: str
    device_id: str | None
    start_s: int
    end_s: int
    fence: Fence
    fix_secs: list[int] = field(default_factory=list)
    #: second → ((time_ms, seq, idx), class) of the winning fix of that second
    fixes: dict[int, tuple[tuple[int, int, int], int]] = field(default_factory=dict)
    ev_secs: list[int] = field(default_factory=list)
    ev_on: dict[int, bool] = field(default_factory=dict)
    counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.counts = [0] * len(State)
        self.counts[State.OFFLINE] = self.end_s - self.start_s

    # --- reading -------------------------------------------------------------------------------

    def _walk(self, a: int, b: int) -> Iterator[tuple[int, int, int]]:
        """``(from, to, state)`` steps tiling ``[a, b)``; neighbours may share a state."""
        fs, es = self.fix_secs, self.ev_secs
        i = bisect_right(fs, a) - 1
        j = bisect_right(es, a) - 1
        nf, ne = len(fs), len(es)
        t = a
        while t < b:
            alive_until = es[j] + ALIVE_GAP_S if j >= 0 and self.ev_on[es[j]] else _NEVER
            placed_until = fs[i] + FIX_MAX_AGE_S if i >= 0 else _NEVER
            if t >= alive_until:
                state = State.OFFLINE
            elif t >= placed_until:
                state = State.NO_FIX
            else:
                state = _STATE_OF_CLASS[self.fixes[fs[i]][1]]
            nxt = b
            if j + 1 < ne and es[j + 1] < nxt:
                nxt = es[j + 1]
            if t < alive_until < nxt:
                nxt = alive_until
            if i + 1 < nf and fs[i + 1] < nxt:
                nxt = fs[i + 1]
            if t < placed_until < nxt:
                nxt = placed_until
            yield t, nxt, state
            t = nxt
            while j + 1 < ne and es[j + 1] <= t:
                j += 1
            while i + 1 < nf and fs[i + 1] <= t:
                i += 1

    def _tally(self, a: int, b: int, i: int = -2, j: int = -2) -> list[int]:
        """Seconds per state in ``[a, b)``: ``_walk`` summed, written out because this is the
        ingest path's inner loop (a generator costs a third more). ``i``/``j``: the index of
        the last fix/evidence second at or before ``a``, when the caller knows it."""
        out = [0, 0, 0, 0, 0]
        fs, es, fixes, ev_on = self.fix_secs, self.ev_secs, self.fixes, self.ev_on
        if i == -2:
            i = bisect_right(fs, a) - 1
        if j == -2:
            j = bisect_right(es, a) - 1
        nf, ne = len(fs), len(es)
        t = a
        while t < b:
            alive_until = es[j] + ALIVE_GAP_S if j >= 0 and ev_on[es[j]] else _NEVER
            placed_until = fs[i] + FIX_MAX_AGE_S if i >= 0 else _NEVER
            nxt = b
            if j + 1 < ne and es[j + 1] < nxt:
                nxt = es[j + 1]
            if t < alive_until < nxt:
                nxt = alive_until
            if i + 1 < nf and fs[i + 1] < nxt:
                nxt = fs[i + 1]
            if t < placed_until < nxt:
                nxt = placed_until
            if t >= alive_until:
                out[0] += nxt - t
            elif t >= placed_until:
                out[1] += nxt - t
            else:
                out[_STATE_OF_CLASS[fixes[fs[i]][1]]] += nxt - t
            t = nxt
            while j + 1 < ne and es[j + 1] <= t:
                j += 1
            while i + 1 < nf and fs[i + 1] <= t:
                i += 1
        return out

    def segments(self) -> list[Segment]:
        merged: list[Segment] = []
        for lo, hi, state in self._walk(self.start_s, self.end_s):
            if merged and merged[-1].state == state:
                merged[-1] = Segment(merged[-1].start_s, hi, _STATES[state])
            else:
                merged.append(Segment(lo, hi, _STATES[state]))
        return merged

    def state_at(self, t: int) -> State:
        for _, _, state in self._walk(t, t + 1):
            return _STATES[state]
        return State.OFFLINE

    # --- changing -----------------------------------------------------------------------------

    def _window(self, s: int, reach: int, secs: list[int]) -> tuple[int, int]:
        """The seconds a point at ``s`` can change: up to the next point of its kind or its
        reach, clipped to the shift."""
        k = bisect_right(secs, s)
        end = min(secs[k], s + reach) if k < len(secs) else s + reach
        return max(s, self.start_s), min(end, self.end_s)

    def _apply(self, a: int, b: int, change: object) -> None:
        """Tally ``[a, b)``, run ``change()``, tally again, add the difference."""
        if a >= b:
            assert callable(change)
            change()
            return
        before = self._tally(a, b)
        assert callable(change)
        change()
        after = self._tally(a, b)
        counts = self.counts
        for k in range(len(counts)):
            counts[k] += after[k] - before[k]

    def add_evidence(self, s: int, on: bool) -> None:
        old = self.ev_on.get(s)
        if old is True or old is on:
            return  # nothing new: "on" already wins in this second
        a, b = self._window(s, ALIVE_GAP_S, self.ev_secs)

        def change() -> None:
            if old is None:
                insort(self.ev_secs, s)
            self.ev_on[s] = on

        self._apply(a, b, change)

    def add_fix(self, s: int, key: tuple[int, int, int], cls: int) -> None:
        """A fix at second ``s``: a position, and evidence of being on — one window, one
        tally before and one after, for both. (Written out: the ingest path's hot spot.)"""
        fixes, ev_on, fs, es = self.fixes, self.ev_on, self.fix_secs, self.ev_secs
        old = fixes.get(s)
        new_fix = old is None or old[0] < key  # else this second's fix stays (greatest key)
        old_ev = ev_on.get(s)
        new_ev = old_ev is not True
        if not new_fix and not new_ev:
            return
        # The seconds this can change: from s to the next point of each kind or its reach.
        kf = bisect_right(fs, s)  # fs[kf - 1] is s itself or the last fix before it
        ke = bisect_right(es, s)
        b = s
        if new_fix:
            b = s + FIX_MAX_AGE_S if kf == len(fs) or fs[kf] > s + FIX_MAX_AGE_S else fs[kf]
        if new_ev:
            e = s + ALIVE_GAP_S if ke == len(es) or es[ke] > s + ALIVE_GAP_S else es[ke]
            if e > b:
                b = e
        if b > self.end_s:
            b = self.end_s
        # Tallies from s reuse the indices just found; from the shift's start (a point before
        # it) they look them up.
        at_s = s >= self.start_s
        a = s if at_s else self.start_s
        before = None
        if a < b:
            before = self._tally(a, b, kf - 1, ke - 1) if at_s else self._tally(a, b)
        if new_fix:
            if old is None:
                fs.insert(kf, s)
                kf += 1
            fixes[s] = (key, cls)
        if new_ev:
            if old_ev is None:
                es.insert(ke, s)
                ke += 1
            ev_on[s] = True
        if before is not None:
            after = self._tally(a, b, kf - 1, ke - 1) if at_s else self._tally(a, b)
            counts = self.counts
            for n in range(5):
                counts[n] += after[n] - before[n]

    def load(
        self,
        fixes: Iterable[tuple[int, tuple[int, int, int], int]],
        evidence: Iterable[tuple[int, bool]],
    ) -> None:
        """Merge many points at once, then count with one walk (start-up, large backfill)."""
        for s, key, cls in fixes:
            old = self.fixes.get(s)
            if old is None or old[0] < key:
                self.fixes[s] = (key, cls)
        for s, on in evidence:
            self.ev_on[s] = self.ev_on.get(s, False) or on
        self.fix_secs = sorted(self.fixes)
        self.ev_secs = sorted(self.ev_on)
        self.counts = self._tally(self.start_s, self.end_s)


def _points(
    fence: Fence, fixes: Sequence[FixRow], evidence: Sequence[EvidenceRow]
) -> tuple[list[tuple[int, tuple[int, int, int], int]], list[tuple[int, bool]]]:
    fix_points = [
        (r[0] // 1000, (r[0], r[1], r[2]), int(classify(fence, r[0], r[3], r[4], r[5], r[7])))
        for r in fixes
        if r[6] == 0
    ]
    ev_points = [(r[0] // 1000, not r[1]) for r in evidence]
    ev_points += [(s, True) for s, _, _ in fix_points]
    return fix_points, ev_points


class DutyTracker:
    """Running timelines of the shifts being tracked, fed by ingest. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tracks: dict[str, _Track] = {}
        self._by_device: dict[str, list[_Track]] = {}

    # --- which shifts ---------------------------------------------------------------------------

    def add_shift(
        self,
        shift_id: str,
        device_id: str | None,
        start_s: int,
        end_s: int,
        fence: Fence,
        *,
        fixes: Sequence[FixRow] = (),
        evidence: Sequence[EvidenceRow] = (),
    ) -> None:
        """Track a shift (replacing any track of that id), loaded with stored rows."""
        track = _Track(shift_id, device_id, start_s, end_s, fence)
        track.load(*_points(fence, fixes, evidence))
        with self._lock:
            self._drop(shift_id)
            self._tracks[shift_id] = track
            if device_id is not None:
                self._by_device.setdefault(device_id, []).append(track)

    def load_array(
        self, shift_id: str, fixes: FixArray, evidence: Sequence[EvidenceRow]
    ) -> None:
        """Merge the store's packed ``fix_array`` into a tracked shift in one pass: the batch
        path classifies the fixes (bit for bit as ``classify`` would) and picks each second's
        winner, so start-up costs NumPy work plus one dict entry per second.

        The server registers a shift first and reads the store after, so a frame stored
        meanwhile arrives by ``on_stored`` or by the read, or both (harmless), never neither.
        """
        with self._lock:
            track = self._tracks.get(shift_id)
        if track is None:
            return
        data = DeviceData.from_array(fixes, evidence)
        sec, cls, keys = fix_winners(track.fence, data)
        fix_points = [
            (s, (k[0], k[1], k[2]), c)
            for s, c, k in zip(sec.tolist(), cls.tolist(), keys.tolist(), strict=True)
        ]
        ev_sec, ev_on = evidence_seconds(data)
        ev_points = list(zip(ev_sec.tolist(), ev_on.tolist(), strict=True))
        with self._lock:
            if self._tracks.get(shift_id) is track:
                track.load(fix_points, ev_points)

    def remove_shift(self, shift_id: str) -> None:
        with self._lock:
            self._drop(shift_id)

    def _drop(self, shift_id: str) -> None:
        old = self._tracks.pop(shift_id, None)
        if old is not None and old.device_id is not None:
            tracks = self._by_device[old.device_id]
            tracks.remove(old)
            if not tracks:
                del self._by_device[old.device_id]

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
        tracks = self._by_device.get(device_id)
        if not tracks:
            return
        s = time_ms // 1000
        for track in tracks:
            if track.start_s - _LOOKBACK_S <= s < track.end_s:
                cls = classify(track.fence, time_ms, lat, lon, accuracy_m, received_ms)
                track.add_fix(s, (time_ms, seq, idx), cls)

    def add_evidence(self, device_id: str, time_ms: int, *, off: bool = False) -> None:
        with self._lock:
            self._add_evidence(device_id, time_ms, off)

    def _add_evidence(self, device_id: str, time_ms: int, off: bool) -> None:
        tracks = self._by_device.get(device_id)
        if not tracks:
            return
        s = time_ms // 1000
        for track in tracks:
            if track.start_s - ALIVE_GAP_S <= s < track.end_s:
                track.add_evidence(s, not off)

    def on_stored(self, frames: Sequence[IncomingFrame]) -> None:
        """Ingest's hook: every newly stored frame is evidence, every fix a position."""
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

    def counts(self, shift_id: str) -> dict[State, int] | None:
        """Seconds per state, as kept running (no walk)."""
        with self._lock:
            track = self._tracks.get(shift_id)
            return None if track is None else dict(zip(State, track.counts, strict=True))

    def tally(self, shift_id: str) -> ShiftTally | None:
        with self._lock:
            track = self._tracks.get(shift_id)
            if track is None:
                return None
            return tally_of(shift_id, track.start_s, track.end_s, track.segments())

    def segments(self, shift_id: str) -> list[Segment] | None:
        with self._lock:
            track = self._tracks.get(shift_id)
            return None if track is None else track.segments()

    def state_at(self, shift_id: str, t_s: int) -> State | None:
        with self._lock:
            track = self._tracks.get(shift_id)
            if track is None or not track.start_s <= t_s < track.end_s:
                return None
            return track.state_at(t_s)

    def elapsed_counts(self, shift_id: str, now_s: int) -> dict[State, int] | None:
        """Seconds per state from the shift's start until ``now_s`` (running rates): the running
        counts less the seconds still to come, which hold no points but expiries — a few
        steps, not a walk over the whole shift, for every shift on every ``/duty/now``."""
        with self._lock:
            track = self._tracks.get(shift_id)
            if track is None:
                return None
            now_s = max(track.start_s, min(now_s, track.end_s))
            rest = track._tally(now_s, track.end_s)
            return {s: track.counts[s] - rest[s] for s in State}
