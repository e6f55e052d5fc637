"""The two flags that follow a terminal's motion through a shift: ``SPEED_JUMP`` and
``STILL_IN_DRAWER`` (``docs/flags.md``).

Each rule takes the store's ``fix_rows`` tuples or its packed ``fix_array`` and gives the same
flags, to the bit (a property test holds them to it). The tuples go through the plain per-fix
loops, which are the rules' reference text. An array goes through NumPy: vectorised tests rule
out the fixes and pairs that cannot meet a rule (bounds of the distance, with margins far wider
than any rounding), and the same per-fix code runs only on the few candidates left — so a
shift with nothing to flag costs vectorised work only, and every decision and number in a
flag comes from the reference code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..fixpack import FixArray
from ..store import FixRow
from .flag_model import (
    _EARTH_RADIUS_M,
    _HOUR_MS,
    _INT64_MAX,
    _INT64_MIN,
    MAX_SPEED_MPS,
    MIN_DT_S,
    STILL_ACCURACY_SPREAD_M,
    STILL_HOURS,
    STILL_MAX_GAP_S,
    STILL_RADIUS_M,
    Bools,
    Fixes,
    Flag,
    FlagKind,
    Floats,
    Ints,
    Subject,
    _Fix,
    _usable,
    _when,
    distance_m,
)
from .geo import M_PER_DEG
from .rules import MAX_ACCURACY_M


@dataclass(frozen=True, slots=True)
class _Track:
    """What ``_usable`` gives, from a packed array: the same fixes in the same order, as
    columns (``acc`` NaN where no accuracy was given)."""

    time_ms: Ints
    seq: Ints
    idx: Ints
    lat: Floats
    lon: Floats
    acc: Floats

    def __len__(self) -> int:
        return int(self.time_ms.size)

    def fix(self, k: int) -> _Fix:
        """Fix ``k`` as ``_usable`` gives it for the same row: the same Python values."""
        acc = float(self.acc[k])
        return _Fix(
            int(self.time_ms[k]),
            int(self.seq[k]),
            int(self.idx[k]),
            float(self.lat[k]),
            float(self.lon[k]),
            None if math.isnan(acc) else acc,
        )

    def fixes(self, lo: int, hi: int) -> list[_Fix]:
        """Fixes ``lo`` to ``hi - 1``, as ``fix`` gives them."""
        cols = zip(
            self.time_ms[lo:hi].tolist(),
            self.seq[lo:hi].tolist(),
            self.idx[lo:hi].tolist(),
            self.lat[lo:hi].tolist(),
            self.lon[lo:hi].tolist(),
            self.acc[lo:hi].tolist(),
            strict=True,
        )
        return [
            _Fix(t, s, i, la, lo_, None if math.isnan(a) else a) for t, s, i, la, lo_, a in cols
        ]


def _track(fixes: FixArray, among: Bools | None = None) -> _Track:
    """``_usable`` for a packed array (the rows where ``among`` is set, if given): the same
    filter, the same order (a stable sort on the same keys; rows already in strict
    ``(time_ms, seq, idx)`` order, as the store gives them, are not sorted again)."""
    lat = np.asarray(fixes["lat"], dtype=np.float64)
    lon = np.asarray(fixes["lon"], dtype=np.float64)
    acc = np.asarray(fixes["accuracy_m"], dtype=np.float64)
    keep = (  # NaN compares False: off the globe, or (accuracy) none given, which is usable
        (np.asarray(fixes["flags"]) == 0)
        & (np.abs(lat) <= 90.0)
        & (np.abs(lon) <= 180.0)
        & ~((acc < 0.0) | (acc > MAX_ACCURACY_M))
    )
    if among is not None:
        keep &= among
    t = np.asarray(fixes["time_ms"], dtype=np.int64)[keep]
    seq = np.asarray(fixes["seq"], dtype=np.int64)[keep]
    idx = np.asarray(fixes["idx"], dtype=np.int64)[keep]
    lat, lon, acc = lat[keep], lon[keep], acc[keep]
    t0, t1 = t[:-1], t[1:]
    if not (t1 > t0).all():
        s0, s1 = seq[:-1], seq[1:]
        ascending = (t1 > t0) | ((t1 == t0) & ((s1 > s0) | ((s1 == s0) & (idx[1:] > idx[:-1]))))
        if not ascending.all():
            none = np.isnan(acc)
            order = np.lexsort((np.where(none, 0.0, acc), none, lon, lat, idx, seq, t))
            t, seq, idx = t[order], seq[order], idx[order]
            lat, lon, acc = lat[order], lon[order], acc[order]
    return _Track(t, seq, idx, lat, lon, acc)


# Bounds of the haversine distance without a sine. A degree of latitude is ``M_PER_DEG`` on
# the sphere, and a great circle is no longer than a path along a meridian and then a parallel
# (a parallel's degree being at most that): so ``distance <= M_PER_DEG × (|Δlat| + |Δlon|)``,
# Δlon the shorter way round. And no shorter than its change of latitude:
# ``distance >= M_PER_DEG × |Δlat|``; nor, where every latitude's cosine is at least ``c``
# and Δlon is small, than ``c × M_PER_DEG × |Δlon|`` (less 0.1 %: the sine of a small angle).


def _dlon(a: Floats | float, b: Floats) -> Floats:
    """|Δlon| in degrees, the shorter way round (longitudes within ±180°)."""
    d = np.abs(b - a)
    out: Floats = np.minimum(d, 360.0 - d)
    return out


def _lon_bound(track: _Track, metres: float) -> float:
    """A |Δlon| (degrees) beyond which no two of the track's fixes are within ``metres``:
    ``inf`` if the track comes so near a pole that none is worth having."""
    c = math.cos(math.radians(float(np.max(np.abs(track.lat))))) * (1 - 1e-9)
    if c <= 0.0:
        return math.inf
    bound = metres / M_PER_DEG / (c * 0.999)
    return bound if bound <= 1.0 else math.inf


def _haversine(lat1: Floats | float, lon1: Floats | float, lat2: Floats, lon2: Floats) -> Floats:
    """``distance_m`` over arrays, the same formula in the same order. NumPy's sines may differ
    from ``math``'s in the last bits, so a decision near a threshold is not taken from this."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out: Floats = 2 * _EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return out


def _within(times: Ints, lo: int, hi: int) -> Bools:
    """``lo <= time < hi`` over int64 times, for any Python ints ``lo`` and ``hi``."""
    mask = np.ones(times.shape, dtype=bool)
    if lo > _INT64_MAX or hi <= _INT64_MIN:
        return ~mask
    if lo > _INT64_MIN:
        mask &= times >= lo
    if hi <= _INT64_MAX:
        mask &= times < hi
    return mask


# --- SPEED_JUMP --------------------------------------------------------------------------------


def _implied_speed(a: _Fix, b: _Fix) -> tuple[float, float]:
    """(speed in m/s, distance in m) from ``a`` to ``b``, their accuracies allowed for: the
    least distance the terminal must have covered is what lies beyond both circles."""
    d = distance_m(a.lat, a.lon, b.lat, b.lon)
    excess = d - (a.accuracy_m or 0.0) - (b.accuracy_m or 0.0)
    dt_s = max((b.time_ms - a.time_ms) / 1000, MIN_DT_S)
    return max(excess, 0.0) / dt_s, d


def speed_jumps(subject: Subject, fixes: Fixes) -> list[Flag]:
    """Consecutive usable fixes implying more than ``MAX_SPEED_MPS``. Jumps sharing a fix (out
    to a spoofed point and back) make one flag; its value is the fastest of them."""
    if isinstance(fixes, np.ndarray):
        return _speed_jumps_track(subject, _track(fixes))
    return _speed_jumps_rows(subject, fixes)


def _speed_jumps_rows(subject: Subject, fixes: Iterable[FixRow]) -> list[Flag]:
    """``speed_jumps`` fix by fix: the reference the array path is held to."""
    pts = _usable(fixes)
    flags = []
    k = 0
    while k < len(pts) - 1:
        speed, d = _implied_speed(pts[k], pts[k + 1])
        if speed <= MAX_SPEED_MPS:
            k += 1
            continue
        first, fastest, far, jumps = k, speed, d, 1
        k += 1
        while k < len(pts) - 1:
            speed, d = _implied_speed(pts[k], pts[k + 1])
            if speed <= MAX_SPEED_MPS:
                break
            jumps += 1
            if speed > fastest:
                fastest, far = speed, d
            k += 1
        flags.append(_jump_flag(subject, pts[first], pts[k], jumps, fastest, far))
    return flags


def _jump_flag(subject: Subject, a: _Fix, b: _Fix, jumps: int, fastest: float, far: float) -> Flag:
    moves = "a move" if jumps == 1 else f"{jumps} consecutive moves"
    return subject.flag(
        FlagKind.SPEED_JUMP,
        a.time_ms,
        b.time_ms,
        fastest,
        f"Between {_when(a.time_ms)} and {_when(b.time_ms)} the terminal reported "
        f"{moves} no one on foot or on a bike makes: {far / 1000:.2f} km at "
        f"{fastest:.0f} m/s ({fastest * 3.6:.0f} km/h) beyond both fixes' accuracy "
        f"(limit {MAX_SPEED_MPS:.0f} m/s) — a replayed or spoofed position, or a "
        "receiver glitch.",
    )


def _speed_jumps_track(subject: Subject, track: _Track) -> list[Flag]:
    """``speed_jumps`` over columns. For every consecutive pair at once, with NumPy, an upper
    bound of its distance (``M_PER_DEG × (|Δlat| + |Δlon|)``: no sine, at most
    ``sqrt(1 + 1/cos² lat)`` times the haversine, 1.5 in Shenzhen), widened by far more than
    any rounding. A pair whose bound,
    beyond both accuracies, may exceed the limit — or whose interval wrapped past int64 — is a
    candidate, and ``_implied_speed`` decides it. Jumps are rare: the loop is over candidates
    only."""
    if len(track) < 2:
        return []
    lat, lon = track.lat, track.lon
    span_deg = np.abs(lat[1:] - lat[:-1]) + _dlon(lon[:-1], lon[1:])
    reach_m = M_PER_DEG * span_deg * (1 + 1e-9) + 1e-6  # >= the haversine, and its rounding
    allow = np.where(np.isnan(track.acc), 0.0, track.acc)
    both = allow[:-1] + allow[1:]
    dt_ms = track.time_ms[1:] - track.time_ms[:-1]  # negative only if it wrapped past 2**63
    limit_m = MAX_SPEED_MPS * np.maximum(dt_ms / 1000, MIN_DT_S)
    slack = 1e-6 * (reach_m + both) + 1e-6 + 1e-9 * limit_m
    candidates = np.flatnonzero((reach_m - both + slack > limit_m) | (dt_ms < 0))
    jumps: list[tuple[int, float, float]] = []  # (pair, speed, distance), the pairs in order
    for k in candidates.tolist():
        speed, d = _implied_speed(track.fix(k), track.fix(k + 1))
        if speed > MAX_SPEED_MPS:
            jumps.append((k, speed, d))
    flags = []
    g = 0
    while g < len(jumps):  # runs of consecutive pairs, as the reference groups them
        first, fastest, far = jumps[g]
        last = first
        g += 1
        while g < len(jumps) and jumps[g][0] == last + 1:
            last, speed, d = jumps[g]
            if speed > fastest:
                fastest, far = speed, d
            g += 1
        flags.append(
            _jump_flag(
                subject, track.fix(first), track.fix(last + 1), last - first + 1, fastest, far
            )
        )
    return flags


# --- STILL_IN_DRAWER ---------------------------------------------------------------------------


def still_in_drawer(subject: Subject, fixes: Fixes) -> list[Flag]:
    """Runs of usable fixes spanning ``STILL_HOURS`` or more, every fix within
    ``STILL_RADIUS_M`` of the run's first, accuracies within ``STILL_ACCURACY_SPREAD_M`` of
    each other (all absent counts as unchanged), no gap over ``STILL_MAX_GAP_S``."""
    if isinstance(fixes, np.ndarray):
        return _still_in_drawer_track(subject, _track(fixes))
    return _still_in_drawer_rows(subject, fixes)


def _still_in_drawer_rows(subject: Subject, fixes: Iterable[FixRow]) -> list[Flag]:
    """``still_in_drawer`` fix by fix: the reference the array path is held to."""
    pts = _usable(fixes)
    flags = []
    min_span_ms = STILL_HOURS * _HOUR_MS
    i = 0
    while i < len(pts):
        j, lo, hi, gap = _still_run(pts, i)
        first, last = pts[i], pts[j - 1]
        span_ms = last.time_ms - first.time_ms
        if span_ms >= min_span_ms:
            flags.append(_still_flag(subject, first, last, j - i, lo, hi))
            i = j
        elif gap or j == len(pts):
            # Any run starting before j ends at j too (the gap, or the data, ends there).
            i = j
        else:
            i += 1
    return flags


def _still_run(pts: list[_Fix], i: int) -> tuple[int, float | None, float | None, bool]:
    """The still run that starts at ``pts[i]``: ``(j, lo, hi, gap)``, the run being ``pts[i:j]``,
    ``lo``/``hi`` the accuracies seen, ``gap`` whether a gap ended it."""
    first = pts[i]
    lo = hi = first.accuracy_m
    j = i + 1
    gap = False
    while j < len(pts):
        p = pts[j]
        if p.time_ms - pts[j - 1].time_ms > STILL_MAX_GAP_S * 1000:
            gap = True
            break
        if (p.accuracy_m is None) != (first.accuracy_m is None):
            break
        if p.accuracy_m is not None and lo is not None and hi is not None:
            lo, hi = min(lo, p.accuracy_m), max(hi, p.accuracy_m)
            if hi - lo > STILL_ACCURACY_SPREAD_M:
                break
        if distance_m(first.lat, first.lon, p.lat, p.lon) > STILL_RADIUS_M:
            break
        j += 1
    return j, lo, hi, gap


def _still_flag(
    subject: Subject, first: _Fix, last: _Fix, count: int, lo: float | None, hi: float | None
) -> Flag:
    span_ms = last.time_ms - first.time_ms
    acc = "no accuracy" if lo is None else f"accuracy {lo:.1f}–{hi:.1f} m"
    return subject.flag(
        FlagKind.STILL_IN_DRAWER,
        first.time_ms,
        last.time_ms,
        span_ms / _HOUR_MS,
        f"From {_when(first.time_ms)} to {_when(last.time_ms)} "
        f"({span_ms / _HOUR_MS:.1f} h, {count} fixes) every fix lay within "
        f"{STILL_RADIUS_M:.0f} m of the first with a frozen {acc}: a carried "
        "receiver wanders and its accuracy moves; a terminal left in a drawer "
        "(or replaying one fix) does not.",
    )


#: The margin of the array path's tests for ``still_in_drawer``, in metres: far more than any
#: rounding of a distance here (nanometres), far less than a receiver's wander. It only widens
#: what is looked at; the reference code decides.
_STILL_SLACK_M = 1e-3


def _window_max(cols: Floats, lo: Ints, hi: Ints) -> Floats:
    """Column-wise maxima of ``cols[lo[k] : hi[k] + 1]`` for every ``k`` (``lo <= hi``), all
    at once: a sparse table of maxima over power-of-two windows, two lookups per window."""
    base = int(lo.min())
    level = cols[base : int(hi.max()) + 1]
    lo, hi = lo - base, hi - base
    length = hi - lo + 1
    rank = np.frexp(length.astype(np.float64))[1] - 1  # floor(log2(length)), exactly
    longest = int(length.max())
    out = np.empty((lo.size, cols.shape[1]), dtype=np.float64)
    j, width = 0, 1
    while True:
        pick = rank == j
        if pick.any():
            out[pick] = np.maximum(level[lo[pick]], level[hi[pick] - width + 1])
        if 2 * width > longest:
            return out
        level = np.maximum(level[:-width], level[width:])  # maxima over 2 × width fixes
        j, width = j + 1, 2 * width


def _still_in_drawer_track(subject: Subject, track: _Track) -> list[Flag]:
    """``still_in_drawer`` over columns.

    A run starting at fix ``i`` flags exactly when it reaches ``e(i)``, the first fix at least
    ``STILL_HOURS`` after it; so a start can flag only if, over ``i..e(i)``: no link between
    consecutive fixes is broken (a gap, accuracy given on one side only, accuracies more than
    the spread apart, fixes further apart than twice the radius can be, by the bounds above);
    every fix can be within the radius of fix ``i`` (by the same bounds: first at eight fixes
    spread over the window, then at all of them); and the accuracies' spread is within the
    limit (exact: a min and a max). All of that is tested for every start at once (the next
    broken link of each fix, window maxima), with no sine and no per-fix Python; the starts
    left are tested against the haversine distance, with NumPy; and only a start that passes
    that too is run through ``_still_run``, which decides the flag. The reference tries every
    start in order, and after a flag resumes where the run ended: so does this, over the
    candidates."""
    n = len(track)
    if n < 2:
        return []
    t, lat, lon = track.time_ms, track.lat, track.lon
    present = ~np.isnan(track.acc)
    allow = np.where(present, track.acc, 0.0)
    # Two fixes of a run lie within the radius of its first, so within twice that of each other.
    lat_step = (2 * STILL_RADIUS_M + _STILL_SLACK_M) / M_PER_DEG
    lon_step = _lon_bound(track, 2 * STILL_RADIUS_M + _STILL_SLACK_M)
    dt_ms = t[1:] - t[:-1]  # negative only if it wrapped past 2**63
    broken = (
        (dt_ms > STILL_MAX_GAP_S * 1000)
        | (dt_ms < 0)
        | (present[1:] != present[:-1])
        | (np.abs(allow[1:] - allow[:-1]) > STILL_ACCURACY_SPREAD_M)
        | (np.abs(lat[1:] - lat[:-1]) > lat_step)
    )
    if lon_step < math.inf:
        broken |= _dlon(lon[:-1], lon[1:]) > lon_step
    # The last fix a run from each fix can reach: the one before the next broken link.
    reachable = np.minimum.accumulate(np.where(broken, np.arange(n - 1), n - 1)[::-1])[::-1]
    reachable = np.append(reachable, n - 1)
    need = math.ceil(STILL_HOURS * _HOUR_MS)  # the span of a run is a whole number of ms
    late = t > _INT64_MAX - need  # nothing can be STILL_HOURS after these
    starts = np.flatnonzero(~late & (t[reachable] >= np.where(late, 0, t) + need))
    if starts.size == 0:
        return []
    ends = np.searchsorted(t, t[starts] + need, side="left")  # e(i), the first fix at 2 h
    lat_near = (STILL_RADIUS_M + _STILL_SLACK_M) / M_PER_DEG
    lon_near = _lon_bound(track, STILL_RADIUS_M + _STILL_SLACK_M)
    for eighth in range(1, 9):  # fixes spread over each window: cheap, and most starts fail
        k = starts + (ends - starts) * eighth // 8
        keep = (np.abs(lat[k] - lat[starts]) <= lat_near) & (
            np.abs(allow[k] - allow[starts]) <= STILL_ACCURACY_SPREAD_M
        )
        if lon_near < math.inf:
            keep &= _dlon(lon[starts], lon[k]) <= lon_near
        starts, ends = starts[keep], ends[keep]
        if starts.size == 0:
            return []
    # Every fix of each window, in latitude, longitude and accuracy: maxima and minima.
    cols = [lat, allow]
    if lon_near < math.inf and float(np.max(lon) - np.min(lon)) < 180.0:
        cols.append(lon)  # no window crosses ±180°, so a range of longitudes is |Δlon|
    top = _window_max(np.column_stack([*cols, *(-c for c in cols)]), starts, ends)
    least = -top[:, len(cols) :]
    most = top[:, : len(cols)]
    keep = (
        (most[:, 0] - lat[starts] <= lat_near)
        & (lat[starts] - least[:, 0] <= lat_near)
        & (most[:, 1] - least[:, 1] <= STILL_ACCURACY_SPREAD_M)  # the reference's hi - lo, exactly
    )
    if len(cols) == 3:
        keep &= (most[:, 2] - lon[starts] <= lon_near) & (lon[starts] - least[:, 2] <= lon_near)
    starts, ends = starts[keep], ends[keep]
    flags = []
    resume = 0
    pts: list[_Fix] = []
    base = 0
    for i, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if i < resume:
            continue
        end = e + 1
        dist = _haversine(
            track.lat[i], track.lon[i], track.lat[i + 1 : end], track.lon[i + 1 : end]
        )
        if (dist > STILL_RADIUS_M + _STILL_SLACK_M).any():
            continue
        # The run ends at the far end of the next broken link, at the latest: the reference
        # reads no further.
        stop = min(int(reachable[i]) + 2, n)
        if not base <= i < stop <= base + len(pts):
            pts, base = track.fixes(i, stop), i
        j, lo, hi, _gap = _still_run(pts, i - base)
        first, last = pts[i - base], pts[j - 1]
        if last.time_ms - first.time_ms >= STILL_HOURS * _HOUR_MS:
            flags.append(_still_flag(subject, first, last, j - (i - base), lo, hi))
            resume = base + j
    return flags
