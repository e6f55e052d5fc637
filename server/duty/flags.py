"""Anti-gaming flags: patterns in a shift's data that an inspector should look at.

Flags are *shown, never silently excluded*: each is reported next to the on-duty rate for the
inspector to judge, and none changes the rate (``docs/flags.md``; the rate's own rules, in
``docs/metrics.md``, ignore only fixes flagged ``FUTURE_TIME`` at ingest and fixes less
accurate than ``MAX_ACCURACY_M``). Every rule here is a pure function over plain data — the
store's row tuples or its packed fix array, ``Shift`` records, a shift's timeline — with no
I/O; ``server.duty.flag_scan`` reads the store and calls ``shift_flags``.

Every rule sorts its input itself, so the order of the rows never changes its result, and none
raises on finite input, however odd (a property test holds them to both).

The rules over fixes (``speed_jumps``, ``still_in_drawer``, ``future_time``, and so
``shift_flags``) take either the store's ``fix_rows`` tuples or its packed ``fix_array``
(``server.fixpack``) — the same flags, to the bit (a property test holds them to it). The
tuples go through the plain per-fix loops below, which are the rules' reference text. An
array goes through NumPy: vectorised tests that rule out the fixes and pairs that cannot meet
a rule (bounds of the distance, with margins far wider than any rounding), and the same
per-fix code only on the few candidates that remain — so a shift with nothing to flag costs
vectorised work only, and every decision and number in a flag comes from the reference code.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from protocol.errors import AuthenticationError, BadTag, UnknownKey

from ..fixpack import FixArray
from ..org.model import Shift
from ..store import FUTURE_TOLERANCE_MS, FixFlag, FixRow
from .geo import M_PER_DEG
from .rules import FIX_MAX_AGE_S, MAX_ACCURACY_M, Segment, ShiftResult, State

# --- the rules' constants ----------------------------------------------------------------------

#: Faster than any volunteer on foot, bicycle or e-bike (legally 25 km/h) or in city traffic:
#: 42 m/s ≈ 150 km/h. A position that implies it was replayed, spoofed or a receiver glitch.
MAX_SPEED_MPS = 42.0
#: Fix times closer than this are taken as this far apart. GNSS times are stamped to the
#: second or finer; dividing by a floor can only *understate* a speed, so it never creates a
#: jump that the true interval would not, and two fixes in one second cannot divide by zero.
MIN_DT_S = 1.0

#: A terminal in one spot this long, with a frozen accuracy, is likely not carried.
STILL_HOURS = 2.0
#: A real receiver at rest wanders several metres over minutes (multipath, changing
#: satellites); every fix within 3 m of the first for hours is a cached or replayed fix.
STILL_RADIUS_M = 3.0
#: ... and its accuracy estimate moves with the satellites in view; a frozen one (all values
#: within 0.5 m of each other) is a fix repeated, not measured.
STILL_ACCURACY_SPREAD_M = 0.5
#: A gap longer than this between fixes ends a still run: the duty engine credits a fix for
#: ``FIX_MAX_AGE_S`` only, so stillness across a longer gap says nothing about credited time.
STILL_MAX_GAP_S = FIX_MAX_AGE_S

#: Phones and terminals synced by NTP, the network or GNSS agree to well under a second; 10 s
#: is beyond any honest sync error and is what a hand-set clock (to make frames look timed
#: elsewhere) shows. Fix times come from GNSS; frame times (heartbeats, evidence of "alive")
#: come from this clock.
MAX_SKEW_MS = 10_000

#: Rejection reasons (``"<exception name>: <field>"``, as ingest writes them) whose exception
#: means the frame was well formed but *not proven genuine*: the ``AuthenticationError``
#: subtree of ``protocol/errors.py``. ``BadTag``: a MAC or signature that does not verify (a
#: forged or altered frame). ``UnknownKey``: a key id the server does not hold (a cloned or
#: revoked enrolment). Excluded: ``MalformedFrame``/``UnsupportedVersion``, ``InvalidField``
#: and ``TopicError`` — bytes that are not a valid frame or topic say nothing about who sent
#: them (an old or broken agent sends them every time), and the device they are counted
#: against is only the one the unauthenticated topic names. Replays are not rejections at all:
#: (device, seq) deduplicates them at the store. Named from the classes, so a rename fails here.
AUTHENTICITY_FAILURES = frozenset(c.__name__ for c in (AuthenticationError, UnknownKey, BadTag))

#: An outage that begins at most this long before a spot check and ends at most this long
#: after its deadline frames the check: the pattern of switching off just for it. Five minutes
#: covers two heartbeat intervals (60 s) plus the duty engine's ``ALIVE_GAP_S`` (150 s) of
#: grace, rounded up: an outage that short is unlikely to meet a check by chance.
GAP_WINDOW_S = 300

#: Fixes this far outside the shift are read too: the fix just before the start still places
#: the terminal for its first ``FIX_MAX_AGE_S``, and a jump across the start shows only with it.
FIX_MARGIN_MS = FIX_MAX_AGE_S * 1000

_EARTH_RADIUS_M = M_PER_DEG * 180.0 / math.pi  # the same sphere as the geofences
_HOUR_MS = 3_600_000
_DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant datetime holds

#: What the rules over fixes take: the store's ``fix_rows`` tuples, or its packed ``fix_array``
#: (``server.fixpack.FIX_DTYPE``; accuracy NaN where none was given). Both give the same flags.
Fixes = Iterable[FixRow] | FixArray

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class FlagKind(enum.StrEnum):
    SPEED_JUMP = "speed_jump"
    STILL_IN_DRAWER = "still_in_drawer"
    SHARED_TERMINAL = "shared_terminal"
    CLOCK_SKEW = "clock_skew"
    FUTURE_TIME = "future_time"
    SIGNATURE_FAILURES = "signature_failures"
    SPOT_CHECK_GAP = "spot_check_gap"


#: What ``Flag.value`` measures, per kind.
VALUE_UNIT: dict[FlagKind, str] = {
    FlagKind.SPEED_JUMP: "m/s",  # the fastest implied speed, accuracies allowed for
    FlagKind.STILL_IN_DRAWER: "h",  # the still run's length
    FlagKind.SHARED_TERMINAL: "h",  # the overlap of the two shifts
    FlagKind.CLOCK_SKEW: "s",  # the worst reported skew, signed (positive: terminal ahead)
    FlagKind.FUTURE_TIME: "fixes",  # fixes timed ahead of the server's clock
    FlagKind.SIGNATURE_FAILURES: "frames",  # frames refused for failed authenticity
    FlagKind.SPOT_CHECK_GAP: "s",  # the length of the outage around the check
}
_KIND_ORDER = {k: i for i, k in enumerate(FlagKind)}


@dataclass(frozen=True, slots=True)
class Flag:
    """One pattern worth an inspector's look, over ``[start_ms, end_ms]`` (epoch ms; equal for
    an instant). ``value`` is in ``VALUE_UNIT[kind]``; ``detail`` is the sentence shown."""

    kind: FlagKind
    device_id: str
    shift_id: str | None
    volunteer_id: str | None
    start_ms: int
    end_ms: int
    value: float
    detail: str


@dataclass(frozen=True, slots=True)
class Subject:
    """Whom a rule's flags are about."""

    device_id: str
    shift_id: str | None = None
    volunteer_id: str | None = None

    @classmethod
    def of(cls, shift: Shift) -> Subject:
        return cls(shift.device_id or "", shift.shift_id, shift.volunteer_id)

    def flag(self, kind: FlagKind, start_ms: int, end_ms: int, value: float, detail: str) -> Flag:
        return Flag(
            kind, self.device_id, self.shift_id, self.volunteer_id, start_ms, end_ms, value, detail
        )


#: ``(sent_ms, deadline_ms, answered_ms or None)`` of one roll call sent to the terminal.
SpotRequest = tuple[int, int, int | None]


def sort_flags(flags: Iterable[Flag]) -> list[Flag]:
    """The order reports show: by start, then kind (as ``FlagKind`` lists them)."""
    return sorted(
        flags,
        key=lambda f: (
            f.start_ms,
            _KIND_ORDER[f.kind],
            f.end_ms,
            f.shift_id or "",
            f.value,
            f.detail,
        ),
    )


# --- helpers -----------------------------------------------------------------------------------


class _Fix(NamedTuple):
    time_ms: int
    seq: int
    idx: int
    lat: float
    lon: float
    accuracy_m: float | None


def _when(ms: int) -> str:
    """A time for a sentence: ISO, UTC, to the second (raw ms if datetime cannot hold it)."""
    if not 0 <= ms <= _MAX_MS:
        return f"{ms} ms"
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d %H:%M:%SZ")


def _day(ms: int) -> str:
    """The UTC day of an instant, as ingest names days (clamped to what datetime holds)."""
    return (_EPOCH + timedelta(milliseconds=min(max(ms, 0), _MAX_MS))).strftime("%Y-%m-%d")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) on the geofences' sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


def _usable(rows: Iterable[FixRow]) -> list[_Fix]:
    """The fixes the duty engine credits, in time order: not flagged, not less accurate than
    ``MAX_ACCURACY_M`` (no accuracy given counts as exact there, so here too), on the globe.
    Sorted on every field, so rows that tie on time still come out in one order."""
    out = []
    for t, seq, idx, lat, lon, acc, flags, _received in rows:
        if flags != 0 or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            continue
        if acc is not None and not 0.0 <= acc <= MAX_ACCURACY_M:
            continue
        out.append(_Fix(t, seq, idx, float(lat), float(lon), acc))
    out.sort(
        key=lambda f: (
            f.time_ms,
            f.seq,
            f.idx,
            f.lat,
            f.lon,
            f.accuracy_m is None,
            f.accuracy_m or 0.0,
        )
    )
    return out


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


# --- SHARED_TERMINAL ---------------------------------------------------------------------------


def _pair_flag(shift: Shift, other: Shift) -> Flag | None:
    if (
        shift.device_id is None
        or other.device_id != shift.device_id
        or other.volunteer_id == shift.volunteer_id
        or other.shift_id == shift.shift_id
    ):
        return None
    start, end = max(shift.start_ms, other.start_ms), min(shift.end_ms, other.end_ms)
    if end <= start:
        return None
    hours = (end - start) / _HOUR_MS
    return Subject.of(shift).flag(
        FlagKind.SHARED_TERMINAL,
        start,
        end,
        hours,
        f"Terminal {shift.device_id} was on shift {shift.shift_id} (volunteer "
        f"{shift.volunteer_id}) and on shift {other.shift_id} (volunteer {other.volunteer_id}) "
        f"at once from {_when(start)} to {_when(end)} ({hours:.1f} h): one terminal cannot "
        "show two volunteers on duty.",
    )


def shared_terminal(shift: Shift, others: Iterable[Shift]) -> list[Flag]:
    """One flag per other shift of a *different* volunteer on the same terminal that overlaps
    ``shift``, on the overlap, about ``shift`` (the other shift's own report has the twin)."""
    found = (_pair_flag(shift, o) for o in others)
    return sort_flags(f for f in found if f is not None)


def shared_terminal_pairs(shifts: Iterable[Shift]) -> list[Flag]:
    """Over a set of shifts: one flag per overlapping pair, about the pair's earlier shift."""
    ordered = sorted(
        set(shifts),
        key=lambda s: (s.start_ms, s.shift_id, s.volunteer_id, s.end_ms, s.device_id or ""),
    )
    found = (_pair_flag(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :])
    return sort_flags(f for f in found if f is not None)


# --- CLOCK_SKEW and FUTURE_TIME ----------------------------------------------------------------


def clock_skew(subject: Subject, skews: Iterable[tuple[int, int]]) -> list[Flag]:
    """One flag if any reported skew ``(sent_ms, skew_ms)`` exceeds ``MAX_SKEW_MS`` either way,
    valued at the worst one (seconds, positive: the terminal's clock ahead)."""
    bad = sorted((t, s) for t, s in skews if abs(s) > MAX_SKEW_MS)
    if not bad:
        return []
    worst = max((abs(s), s) for _, s in bad)[1]  # on a tie, the clock ahead
    way = "ahead of" if worst > 0 else "behind"
    return [
        subject.flag(
            FlagKind.CLOCK_SKEW,
            bad[0][0],
            bad[-1][0],
            worst / 1000,
            f"The terminal reported its clock {abs(worst) / 1000:.1f} s {way} GNSS time "
            f"(worst of {len(bad)} reports beyond ±{MAX_SKEW_MS / 1000:.0f} s, "
            f"{_when(bad[0][0])} to {_when(bad[-1][0])}). Fix times come from GNSS, but the "
            "times of its frames, which show it alive, come from that clock.",
        )
    ]


def future_time(subject: Subject, fixes: Fixes) -> list[Flag]:
    """One flag counting the fixes that ingest flagged ``FUTURE_TIME``."""
    if isinstance(fixes, np.ndarray):
        return _future_time_columns(subject, fixes["time_ms"], fixes["flags"])
    times = sorted(row[0] for row in fixes if row[6] & FixFlag.FUTURE_TIME)
    if not times:
        return []
    return [_future_flag(subject, times[0], times[-1], len(times))]


def _future_time_columns(subject: Subject, times: Ints, flags: Ints) -> list[Flag]:
    ahead = np.asarray(times)[(np.asarray(flags) & int(FixFlag.FUTURE_TIME)) != 0]
    if ahead.size == 0:
        return []
    return [_future_flag(subject, int(ahead.min()), int(ahead.max()), int(ahead.size))]


def _future_flag(subject: Subject, first_ms: int, last_ms: int, count: int) -> Flag:
    return subject.flag(
        FlagKind.FUTURE_TIME,
        first_ms,
        last_ms,
        float(count),
        f"{count} fixes timed {_when(first_ms)} to {_when(last_ms)} reached the "
        f"server more than {FUTURE_TOLERANCE_MS // 1000} s before their own time: a wrong "
        "GNSS clock, or positions made up in advance. They are kept and shown, and the "
        "on-duty rate does not count them.",
    )


# --- SIGNATURE_FAILURES ------------------------------------------------------------------------


def _day_start_ms(day: str) -> int | None:
    try:
        d = date.fromisoformat(day)
    except (TypeError, ValueError):
        return None
    if len(day) != 10:
        return None  # fromisoformat takes other ISO forms; ingest writes only YYYY-MM-DD
    return (datetime(d.year, d.month, d.day, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)


def signature_failures(
    subject: Subject,
    rejections: Iterable[tuple[str, str, str, int]],
    start_ms: int,
    end_ms: int,
) -> list[Flag]:
    """One flag summing the ``(device_id, day, reason, count)`` rows of this terminal whose
    reason is in ``AUTHENTICITY_FAILURES``, on the UTC days that ``[start_ms, end_ms)``
    overlaps. Rejections are counted per day only, so the flag spans those whole days."""
    first, last = shift_days(start_ms, end_ms)
    per_reason: dict[str, int] = {}
    days: list[int] = []
    for device, day, reason, count in rejections:
        if device != subject.device_id or not first <= day <= last or count <= 0:
            continue
        if reason.split(":", 1)[0].strip() not in AUTHENTICITY_FAILURES:
            continue
        day_ms = _day_start_ms(day)
        if day_ms is None:
            continue
        per_reason[reason] = per_reason.get(reason, 0) + count
        days.append(day_ms)
    if not per_reason:
        return []
    total = sum(per_reason.values())
    reasons = ", ".join(f"{r} ×{n}" for r, n in sorted(per_reason.items()))
    start, end = min(days), max(days) + _DAY // timedelta(milliseconds=1)
    return [
        subject.flag(
            FlagKind.SIGNATURE_FAILURES,
            start,
            end,
            float(total),
            f"{total} frames on this terminal's topic failed authentication ({reasons}) on "
            f"{_day(start)} to {_day(end - 1)} (UTC), the days of the shift: frames forged or "
            "altered, or sent with a key the server does not hold (a cloned or revoked "
            "enrolment). They were refused; the day is all that is kept of when.",
        )
    ]


# --- SPOT_CHECK_GAP ----------------------------------------------------------------------------


def spot_check_gaps(
    subject: Subject, requests: Iterable[SpotRequest], segments: Iterable[Segment]
) -> list[Flag]:
    """Roll calls that went unanswered (no answer, or one after the deadline) while the
    timeline shows the terminal OFFLINE at the sent time or going OFFLINE before the
    deadline. The detail says when the outage *frames* the check: it began at most
    ``GAP_WINDOW_S`` before it was sent and ended at most ``GAP_WINDOW_S`` after its deadline
    — the pattern of switching off just for the check. Checks outside the timeline are not
    judged; an answered check passed and is never flagged."""
    segs = sorted(segments, key=lambda s: (s.start_s, s.end_s, s.state))
    if not segs:
        return []
    t0_ms, t1_ms = segs[0].start_s * 1000, max(s.end_s for s in segs) * 1000
    offline = [s for s in segs if s.state == State.OFFLINE]
    flags = []
    order = sorted(requests, key=lambda r: (r[0], r[1], r[2] is None, r[2] or 0))
    for sent, deadline, answered in order:
        if not t0_ms <= sent < t1_ms or (answered is not None and answered <= deadline):
            continue
        deadline = max(deadline, sent)
        outage = next(
            (s for s in offline if s.start_s * 1000 <= deadline and s.end_s * 1000 > sent), None
        )
        if outage is None:
            continue
        a_ms, b_ms = outage.start_s * 1000, outage.end_s * 1000
        framed = (
            a_ms >= sent - GAP_WINDOW_S * 1000
            and b_ms <= deadline + GAP_WINDOW_S * 1000
            and b_ms < t1_ms  # alive again, not merely the end of the timeline
        )
        seconds = float(outage.end_s - outage.start_s)
        how = "offline when it was sent" if a_ms <= sent else "going offline before its deadline"
        began = (
            f"{(sent - a_ms) / 1000:.0f} s before the check"
            if a_ms <= sent
            else f"{(a_ms - sent) / 1000:.0f} s after the check was sent"
        )
        pattern = (
            f" The outage began {began} and ended {(b_ms - deadline) / 1000:.0f} s after its "
            "deadline: the pattern of switching off just for the check."
            if framed
            else ""
        )
        answer = "no answer" if answered is None else f"a late answer at {_when(answered)}"
        flags.append(
            subject.flag(
                FlagKind.SPOT_CHECK_GAP,
                sent,
                deadline,
                seconds,
                f"The spot check sent at {_when(sent)} (deadline {_when(deadline)}) got "
                f"{answer}, the terminal {how}: offline {_when(a_ms)} to {_when(b_ms)} "
                f"({seconds:.0f} s).{pattern}",
            )
        )
    return flags


# --- one shift -----------------------------------------------------------------------------------


def _overlaps(flag: Flag, start_ms: int, end_ms: int) -> bool:
    return flag.end_ms >= start_ms and flag.start_ms < end_ms


def shift_flags(
    shift: Shift,
    result: ShiftResult,
    fixes: Fixes,
    skews: Iterable[tuple[int, int]],
    rejections: Iterable[tuple[str, str, str, int]],
    spot_requests: Iterable[SpotRequest],
    other_shifts_of_device: Iterable[Shift],
) -> list[Flag]:
    """Every rule applied to one shift, flags in report order (``sort_flags``).

    Fixes — ``fix_rows`` tuples or a packed ``fix_array``, the same flags either way — are
    taken within ``FIX_MARGIN_MS`` of the shift and a flag from them is kept if it touches the
    shift; skews and roll calls are those sent during the shift. A shift without a terminal has
    no flags: every second of it is offline already.
    """
    if result.shift_id != shift.shift_id:
        raise ValueError(f"result of {result.shift_id!r} given for shift {shift.shift_id!r}")
    if shift.device_id is None:
        return []
    subject = Subject.of(shift)
    start, end = shift.start_ms, shift.end_ms
    if isinstance(fixes, np.ndarray):
        times = fixes["time_ms"]
        track = _track(fixes, _within(times, start - FIX_MARGIN_MS, end + FIX_MARGIN_MS))
        moved = [*_speed_jumps_track(subject, track), *_still_in_drawer_track(subject, track)]
        during = _within(times, start, end)
        ahead = _future_time_columns(subject, times[during], fixes["flags"][during])
    else:
        near = [r for r in fixes if start - FIX_MARGIN_MS <= r[0] < end + FIX_MARGIN_MS]
        moved = [*_speed_jumps_rows(subject, near), *_still_in_drawer_rows(subject, near)]
        ahead = future_time(subject, [r for r in near if start <= r[0] < end])
    return sort_flags(
        [
            *(f for f in moved if _overlaps(f, start, end)),
            *shared_terminal(shift, other_shifts_of_device),
            *clock_skew(subject, (s for s in skews if start <= s[0] < end)),
            *ahead,
            *signature_failures(subject, rejections, start, end),
            *spot_check_gaps(
                subject, (r for r in spot_requests if start <= r[0] < end), result.segments
            ),
        ]
    )


def shift_days(start_ms: int, end_ms: int) -> tuple[str, str]:
    """The first and last UTC day (``YYYY-MM-DD``, as rejections are kept) of ``[start, end)``."""
    return _day(start_ms), _day(max(end_ms - 1, start_ms))
