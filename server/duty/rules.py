"""The duty rules of ``docs/metrics.md`` as constants and the records both computations share.

A shift's scheduled seconds are each given one ``State``; the on-duty rate is the share of them
that are ``ON_POST`` or ``ON_POST_BACKFILLED``. Two computations implement the rules —
``server.duty.batch`` (NumPy, from stored data, for audits and reports) and
``server.duty.incremental`` (in the ingest path, fixes in any order) — and a property test
holds them to identical results, second by second.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: A terminal is alive for this long after any evidence of it (a stored frame's sealing time,
#: or a fix's time). Agents heartbeat every 60 s by default: one lost heartbeat is forgiven,
#: two are not.
ALIVE_GAP_S = 150
#: A fix says where the terminal is for this long. Still terminals record a fix every 60 s.
FIX_MAX_AGE_S = 150
#: A fix less accurate than this says nothing about being on post (but still proves "alive").
MAX_ACCURACY_M = 100.0
#: A fix stored more than this long after its own time arrived by backfill (it was recorded
#: offline); it counts, and the report says how much of the on-post time came that way.
BACKFILL_AFTER_S = 120


class State(enum.IntEnum):
    """What one scheduled second of a shift was. Order matters only for display."""

    OFFLINE = 0  # no evidence of the terminal within ALIVE_GAP_S (or no terminal)
    NO_FIX = 1  # alive, but no usable fix within FIX_MAX_AGE_S
    OFF_POST = 2  # alive, and the latest fix is off the post
    ON_POST = 3  # alive, and the latest fix is on the post, stored live
    ON_POST_BACKFILLED = 4  # the same, the fix arriving by backfill


ON_STATES = (State.ON_POST, State.ON_POST_BACKFILLED)


class FixClass(enum.IntEnum):
    """What one fix says about its post (per shift: the same fix may be on one post, off
    another)."""

    UNUSABLE = 0  # accuracy worse than MAX_ACCURACY_M
    OFF = 1
    ON = 2
    ON_BACKFILLED = 3


#: The second's state for an alive terminal whose latest fix (within its age) has this class.
STATE_OF_CLASS = {
    FixClass.UNUSABLE: State.NO_FIX,
    FixClass.OFF: State.OFF_POST,
    FixClass.ON: State.ON_POST,
    FixClass.ON_BACKFILLED: State.ON_POST_BACKFILLED,
}


@dataclass(frozen=True, slots=True)
class Segment:
    """Seconds ``[start_s, end_s)`` (epoch seconds) in one state."""

    start_s: int
    end_s: int
    state: State


@dataclass(frozen=True, slots=True)
class ShiftTally:
    """Seconds of a shift in each state. ``first_on_s``/``last_on_s``: the first and last
    on-post second (epoch seconds), None if never on post."""

    shift_id: str
    scheduled_s: int
    offline_s: int = 0
    no_fix_s: int = 0
    off_post_s: int = 0
    on_post_s: int = 0  # including the backfilled seconds
    on_post_backfilled_s: int = 0
    first_on_s: int | None = None
    last_on_s: int | None = None

    @property
    def alive_s(self) -> int:
        return self.scheduled_s - self.offline_s

    @property
    def on_duty_rate(self) -> float:
        return self.on_post_s / self.scheduled_s if self.scheduled_s else 0.0

    @property
    def usage_rate(self) -> float:
        """This shift's share of terminal-on time (terminal usage over the shift's window)."""
        return self.alive_s / self.scheduled_s if self.scheduled_s else 0.0

    def late_s(self, start_s: int) -> int:
        """Seconds from the shift's start to the first on-post second (all of it if never)."""
        return self.scheduled_s if self.first_on_s is None else self.first_on_s - start_s

    def early_leave_s(self, end_s: int) -> int:
        """Seconds from the last on-post second to the shift's end (all of it if never)."""
        return self.scheduled_s if self.last_on_s is None else end_s - (self.last_on_s + 1)


def clip(segments: list[Segment], end_s: int) -> list[Segment]:
    """The segments before ``end_s`` (a running shift counted up to now)."""
    out = []
    for seg in segments:
        if seg.start_s >= end_s:
            break
        out.append(seg if seg.end_s <= end_s else Segment(seg.start_s, end_s, seg.state))
    return out


def tally_of(shift_id: str, start_s: int, end_s: int, segments: list[Segment]) -> ShiftTally:
    """Sum segments (which must tile ``[start_s, end_s)``) into a tally."""
    counts = dict.fromkeys(State, 0)
    first_on: int | None = None
    last_on: int | None = None
    for seg in segments:
        counts[seg.state] += seg.end_s - seg.start_s
        if seg.state in ON_STATES:
            if first_on is None:
                first_on = seg.start_s
            last_on = seg.end_s - 1
    return ShiftTally(
        shift_id=shift_id,
        scheduled_s=end_s - start_s,
        offline_s=counts[State.OFFLINE],
        no_fix_s=counts[State.NO_FIX],
        off_post_s=counts[State.OFF_POST],
        on_post_s=counts[State.ON_POST] + counts[State.ON_POST_BACKFILLED],
        on_post_backfilled_s=counts[State.ON_POST_BACKFILLED],
        first_on_s=first_on,
        last_on_s=last_on,
    )


@dataclass(frozen=True, slots=True)
class ShiftResult:
    """A shift recomputed from stored data: its tally and its timeline (segments tiling the
    shift's window, adjacent segments in different states)."""

    shift_id: str
    device_id: str | None
    start_s: int
    end_s: int
    tally: ShiftTally
    segments: tuple[Segment, ...]
