"""The batch computation of ``docs/metrics.md``: a shift's timeline from stored raw data.

Used for audits and reports, and to load the incremental state at start-up. Vectorised with
NumPy: the timeline only changes state at a few kinds of instants — a fix's second, a fix's
second plus ``FIX_MAX_AGE_S``, an evidence second, an evidence second plus ``ALIVE_GAP_S`` and
the shift's ends — so the state is evaluated once per such breakpoint (two ``searchsorted``)
and each stretch between breakpoints gets the state of its first second. That makes a shift
O(n log n) in its fixes however long it is, with no per-second arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..fixpack import FixArray
from ..store import EvidenceRow, FixRow
from .geo import Fence
from .rules import (
    ALIVE_GAP_S,
    BACKFILL_AFTER_S,
    FIX_MAX_AGE_S,
    MAX_ACCURACY_M,
    FixClass,
    Segment,
    State,
)

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

#: FixClass → State, as an array for fancy indexing (alive seconds only).
_STATE_OF_CLASS = np.array(
    [State.NO_FIX, State.OFF_POST, State.ON_POST, State.ON_POST_BACKFILLED], dtype=np.int64
)
_ALL_STATES = tuple(State)


@dataclass(frozen=True, slots=True)
class DeviceData:
    """One terminal's stored fixes and evidence over some window, as arrays — or several
    devices' merged into one set (``merge``, docs/metrics.md §7).

    Fixes in any order (they are sorted here); accuracy ``NaN`` stands for "none given".
    ``fix_dev``: per fix, the rank of its device among the merged ones (None: all 0), the last
    part of a fix's key, so two devices' fixes equal in (time, seq, idx) still have one winner.
    """

    fix_ms: Ints
    fix_seq: Ints
    fix_idx: Ints
    lat: Floats
    lon: Floats
    accuracy: Floats
    flags: Ints
    received_ms: Ints
    ev_ms: Ints
    ev_off: Bools
    fix_dev: Ints | None = None

    @classmethod
    def from_rows(cls, fixes: Sequence[FixRow], evidence: Sequence[EvidenceRow]) -> DeviceData:
        """From the store's ``fix_rows`` and ``evidence_rows`` tuples."""
        if fixes:
            cols = list(zip(*fixes, strict=True))
            acc = np.array([np.nan if a is None else a for a in cols[5]], dtype=np.float64)
            fix_ms, seq, idx = (np.array(c, dtype=np.int64) for c in cols[0:3])
            lat, lon = (np.array(c, dtype=np.float64) for c in cols[3:5])
            flags, received = (np.array(c, dtype=np.int64) for c in cols[6:8])
        else:
            fix_ms = seq = idx = flags = received = np.zeros(0, dtype=np.int64)
            lat = lon = acc = np.zeros(0, dtype=np.float64)
        if evidence:
            ev = np.array(evidence, dtype=np.int64).reshape(-1, 2)
            ev_ms, ev_off = ev[:, 0], ev[:, 1] != 0
        else:
            ev_ms, ev_off = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        return cls(fix_ms, seq, idx, lat, lon, acc, flags, received, ev_ms, ev_off)

    @classmethod
    def from_array(cls, fixes: FixArray, evidence: Sequence[EvidenceRow]) -> DeviceData:
        """From the store's packed ``fix_array`` (no per-row work) and ``evidence_rows``."""
        base = cls.from_rows((), evidence)
        return cls(
            np.ascontiguousarray(fixes["time_ms"]),
            np.ascontiguousarray(fixes["seq"]),
            np.ascontiguousarray(fixes["idx"]),
            np.ascontiguousarray(fixes["lat"]),
            np.ascontiguousarray(fixes["lon"]),
            np.ascontiguousarray(fixes["accuracy_m"]),
            np.ascontiguousarray(fixes["flags"]),
            np.ascontiguousarray(fixes["received_ms"]),
            base.ev_ms,
            base.ev_off,
        )

    def devs(self) -> Ints:
        """Each fix's device rank (all 0 for one device's data)."""
        if self.fix_dev is None:
            return np.zeros(self.fix_ms.size, dtype=np.int64)
        return self.fix_dev

    def during(self, windows: Sequence[tuple[int, int]] | None) -> DeviceData:
        """Only the fixes and evidence whose own times fall in ``windows`` (``[from_ms,
        to_ms)``; None: all): a phone's data while the shift's volunteer held it (§7)."""
        if windows is None:
            return self

        def inside(ms: Ints) -> Bools:
            keep = np.zeros(ms.size, dtype=bool)
            for a, b in windows:
                keep |= (ms >= a) & (ms < b)
            return keep

        f, e = inside(self.fix_ms), inside(self.ev_ms)
        return DeviceData(
            self.fix_ms[f],
            self.fix_seq[f],
            self.fix_idx[f],
            self.lat[f],
            self.lon[f],
            self.accuracy[f],
            self.flags[f],
            self.received_ms[f],
            self.ev_ms[e],
            self.ev_off[e],
            None if self.fix_dev is None else self.fix_dev[f],
        )

    @classmethod
    def merge(cls, parts: Sequence[DeviceData]) -> DeviceData:
        """Several devices' data as one set (docs/metrics.md §7), ``parts`` in the order of
        their device ids: a fix's device rank is its part's index, so within one second the
        winner is the greatest (time, seq, idx, device id) — whatever the devices' order."""
        if not parts:
            return cls.from_rows((), ())
        if len(parts) == 1:
            return parts[0]

        def cat(name: str) -> Any:
            return np.concatenate([getattr(p, name) for p in parts])

        return cls(
            cat("fix_ms"),
            cat("fix_seq"),
            cat("fix_idx"),
            cat("lat"),
            cat("lon"),
            cat("accuracy"),
            cat("flags"),
            cat("received_ms"),
            cat("ev_ms"),
            cat("ev_off"),
            np.concatenate(
                [np.full(p.fix_ms.size, k, dtype=np.int64) for k, p in enumerate(parts)]
            ),
        )


def fix_classes(fence: Fence, data: DeviceData) -> tuple[Ints, Ints]:
    """The seconds that hold a (not flagged) fix, sorted, and the class of each second's fix —
    the one with the greatest (time, seq, idx)."""
    sec, cls, _ = fix_winners(fence, data)
    return sec, cls


def fix_winners(fence: Fence, data: DeviceData) -> tuple[Ints, Ints, Ints]:
    """``fix_classes`` and, per second, the winning fix's (time_ms, seq, idx, device rank) as
    an n×4 array (what the incremental computation keeps to compare later fixes with)."""
    keep = data.flags == 0
    dev = data.devs()[keep]
    order = np.lexsort((dev, data.fix_idx[keep], data.fix_seq[keep], data.fix_ms[keep]))
    ms = data.fix_ms[keep][order]
    if ms.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 4), dtype=np.int64)
    sec = ms // 1000
    last = np.ones(sec.size, dtype=bool)
    last[:-1] = sec[1:] != sec[:-1]  # the last fix of each second wins
    pick = order[last]
    lat = data.lat[keep][pick]
    lon = data.lon[keep][pick]
    acc = data.accuracy[keep][pick]
    unusable = acc > MAX_ACCURACY_M  # NaN (no accuracy given) compares False: usable
    allowance = np.where(np.isnan(acc), 0.0, acc)
    inside = fence.contains_many(lat, lon, allowance)
    late = data.received_ms[keep][pick] - ms[last] > BACKFILL_AFTER_S * 1000
    cls = np.where(
        unusable,
        FixClass.UNUSABLE,
        np.where(inside, np.where(late, FixClass.ON_BACKFILLED, FixClass.ON), FixClass.OFF),
    ).astype(np.int64)
    keys = np.stack(
        [ms[last], data.fix_seq[keep][pick], data.fix_idx[keep][pick], dev[pick]], axis=1
    )
    return sec[last], cls, keys


def evidence_seconds(data: DeviceData) -> tuple[Ints, Bools]:
    """Seconds with evidence, sorted, and whether each says "on" (on wins within a second)."""
    fix_sec = data.fix_ms[data.flags == 0] // 1000
    secs = np.concatenate([data.ev_ms // 1000, fix_sec])
    on = np.concatenate([~data.ev_off, np.ones(fix_sec.size, dtype=bool)])
    if secs.size == 0:
        return secs.astype(np.int64), on
    order = np.lexsort((on, secs))  # within a second, "on" sorts last
    secs, on = secs[order], on[order]
    last = np.ones(secs.size, dtype=bool)
    last[:-1] = secs[1:] != secs[:-1]
    return secs[last], on[last]


def _states_at(
    points: Ints, fix_sec: Ints, fix_cls: Ints, ev_sec: Ints, ev_on: Bools
) -> Ints:
    """The state at each of ``points`` (epoch seconds), per docs/metrics.md §2."""
    j = np.searchsorted(ev_sec, points, side="right") - 1
    has_ev = j >= 0
    jj = np.where(has_ev, j, 0)
    alive = has_ev & ev_on[jj] & (points - ev_sec[jj] < ALIVE_GAP_S) if ev_sec.size else has_ev
    i = np.searchsorted(fix_sec, points, side="right") - 1
    has_fix = i >= 0
    ii = np.where(has_fix, i, 0)
    if fix_sec.size:
        placed = has_fix & (points - fix_sec[ii] < FIX_MAX_AGE_S)
        state_if_alive = np.where(placed, _STATE_OF_CLASS[fix_cls[ii]], State.NO_FIX)
    else:
        state_if_alive = np.full(points.size, State.NO_FIX, dtype=np.int64)
    states: Ints = np.where(alive, state_if_alive, State.OFFLINE).astype(np.int64)
    return states


def _expires_first(secs: Ints, expiry: Ints) -> Bools:
    """Which points run out before the next point of their kind (the last always does)."""
    mask = np.ones(secs.size, dtype=bool)
    mask[:-1] = secs[1:] > expiry[:-1]
    return mask


def shift_segments(start_s: int, end_s: int, fence: Fence, data: DeviceData) -> list[Segment]:
    """The timeline of a shift ``[start_s, end_s)``: segments tiling it, adjacent ones in
    different states. ``data`` should cover ``[start_s - max(gaps), end_s)``; more is
    harmless."""
    fix_sec, fix_cls = fix_classes(fence, data)
    ev_sec, ev_on = evidence_seconds(data)
    # A fix's (or evidence's) expiry only matters when nothing newer comes first; and every
    # fix second is an evidence second. So the breakpoints are the evidence seconds and the
    # expiries that fall in gaps — about one per fix rather than four.
    fix_expiry = fix_sec + FIX_MAX_AGE_S
    ev_expiry = ev_sec + ALIVE_GAP_S
    points = np.concatenate(
        [
            np.array([start_s], dtype=np.int64),
            ev_sec,
            fix_expiry[_expires_first(fix_sec, fix_expiry)],
            ev_expiry[_expires_first(ev_sec, ev_expiry)],
        ]
    )
    points = np.unique(points[(points >= start_s) & (points < end_s)])
    states = _states_at(points, fix_sec, fix_cls, ev_sec, ev_on)
    change = np.ones(points.size, dtype=bool)
    change[1:] = states[1:] != states[:-1]
    starts = points[change].tolist()
    kinds = states[change].tolist()
    ends = [*starts[1:], end_s]
    return [
        Segment(a, b, _ALL_STATES[k]) for a, b, k in zip(starts, ends, kinds, strict=True)
    ]


def offline_segments(start_s: int, end_s: int) -> list[Segment]:
    """The timeline of a shift with no terminal."""
    return [Segment(start_s, end_s, State.OFFLINE)]
