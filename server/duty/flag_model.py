"""What a flag is, the rules' constants, and the helpers every rule shares.

The rules themselves are in ``server.duty.flags`` (and, for the two that follow a terminal's
motion over a whole shift, ``server.duty.motion_flags``); ``docs/flags.md`` explains each
constant. Kept apart so the rule modules stay readable and import no more than they use.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from protocol.errors import AuthenticationError, BadTag, Revoked, Stale, UnknownKey

from ..fixpack import FixArray
from ..org.model import Shift
from ..store import FixRow
from .geo import M_PER_DEG
from .rules import FIX_MAX_AGE_S, MAX_ACCURACY_M

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
#: stale enrolment). ``Revoked``: a genuine frame from a terminal that was revoked (someone is
#: still using a lost terminal). ``Stale``: a genuine frame sealed longer ago than the replay
#: window (a replay of captured traffic, or a terminal back after a month).
#: Excluded: ``MalformedFrame``/``UnsupportedVersion``, ``InvalidField``
#: and ``TopicError`` — bytes that are not a valid frame or topic say nothing about who sent
#: them (an old or broken agent sends them every time), and the device they are counted
#: against is only the one the unauthenticated topic names. Replays within the window are not
#: rejections at all: (device, seq) deduplicates them at the store. Named from the classes, so
#: a rename fails here.
AUTHENTICITY_FAILURES = frozenset(
    c.__name__ for c in (AuthenticationError, UnknownKey, BadTag, Revoked, Stale)
)

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
