"""One shift's running timeline, for the incremental computation of ``docs/metrics.md``.

A ``Timeline`` keeps the seconds that hold a fix (with that second's winning fix and its class
for the shift's post) and the seconds that hold evidence, as sorted lists, plus running counts
of seconds per ``State``. A new fix or frame changes the timeline only from its own second up
to the next point of the same kind or its own reach (``FIX_MAX_AGE_S``, ``ALIVE_GAP_S``),
whichever is first; the timeline tallies that window before and after the change and adds the
difference. Arrival order does not matter — late backfill lands in the past and revises it —
and the same data twice changes nothing.

A fix's key is (time_ms, seq, idx, device rank): a shift merges the data of several devices
into one set (§7), and within a second the greatest key wins, the device's rank among the
shift's devices (by id) breaking a tie between two devices' fixes.

A forward walk (``_walk``) yields the timeline between two instants in O(points in between):
at each step the state is fixed until the next fix or evidence second, or until the current
fix or evidence runs out. ``server.duty.incremental`` routes stored data to timelines.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ..store import EvidenceRow, FixRow
from .geo import Fence
from .rules import (
    ALIVE_GAP_S,
    BACKFILL_AFTER_S,
    FIX_MAX_AGE_S,
    MAX_ACCURACY_M,
    STATE_OF_CLASS,
    FixClass,
    Segment,
    State,
)

#: A fix's key: (time_ms, seq, idx, device rank).
Key = tuple[int, int, int, int]
FixPoint = tuple[int, Key, int]  # (second, key, class)
EvPoint = tuple[int, bool]  # (second, on)

_NEVER = -(2**62)
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
class Timeline:
    """One shift's timeline from the points fed to it (see the module's docstring)."""

    shift_id: str
    start_s: int
    end_s: int
    fence: Fence
    fix_secs: list[int] = field(default_factory=list)
    #: second → (key, class) of the winning fix of that second
    fixes: dict[int, tuple[Key, int]] = field(default_factory=dict)
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

    def add_fix(self, s: int, key: Key, cls: int) -> None:
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

    def load(self, fixes: Iterable[FixPoint], evidence: Iterable[EvPoint]) -> None:
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


def points(
    fence: Fence, fixes: Sequence[FixRow], evidence: Sequence[EvidenceRow]
) -> tuple[list[FixPoint], list[EvPoint]]:
    """Stored rows of one device as points (device rank 0: ``with_rank`` sets it)."""
    fix_points = [
        (r[0] // 1000, (r[0], r[1], r[2], 0), int(classify(fence, r[0], r[3], r[4], r[5], r[7])))
        for r in fixes
        if r[6] == 0
    ]
    ev_points = [(r[0] // 1000, not r[1]) for r in evidence]
    ev_points += [(s, True) for s, _, _ in fix_points]
    return fix_points, ev_points


def with_rank(fix_points: Iterable[FixPoint], rank: int) -> list[FixPoint]:
    """The points with their device's rank among a shift's devices as their key's last part."""
    return [(s, (k[0], k[1], k[2], rank), c) for s, k, c in fix_points]
