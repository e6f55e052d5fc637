"""The duty rules of ``docs/metrics.md`` as constants and the records both computations share.

A shift's scheduled seconds are each given one ``State``; the on-duty rate is the share of them
that are ``ON_POST`` or ``ON_POST_BACKFILLED``. Two computations implement the rules —
``server.duty.batch`` (NumPy, from stored data, for audits and reports) and
``server.duty.incremental`` (in the ingest path, fixes in any order) — and a property test
holds them to identical results, second by second.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
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


# --- phones and trust (docs/metrics.md §7) ----------------------------------------------------

#: The end of a holding still running (a phone held now).
OPEN_MS = 2**62


@dataclass(frozen=True, slots=True)
class ShiftDevice:
    """One device whose data count for a shift (docs/metrics.md §7).

    ``phone``: a phone terminal, whose reports carry no device signature. ``held_ms``: the
    windows ``[from_ms, to_ms)`` in which its data count — a phone counts only while the
    shift's volunteer held it, by its fixes' and frames' own times; None: throughout (the
    shift's recorded terminal, §1, whatever became of it later).
    """

    device_id: str
    phone: bool = False
    held_ms: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, str) or not self.device_id:
            raise ValueError(f"device_id: {self.device_id!r} is not a device id")
        if not isinstance(self.phone, bool):
            raise ValueError(f"phone: {self.phone!r} is not true or false")
        if self.held_ms is not None:
            for window in self.held_ms:
                if (
                    len(window) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in window)
                    or window[0] >= window[1]
                ):
                    raise ValueError(f"held_ms: {window!r} is not a window [from_ms, to_ms)")

    def covers(self, time_ms: int) -> bool:
        """Whether data of this time count for the shift."""
        held = self.held_ms
        return held is None or any(a <= time_ms < b for a, b in held)


class Trust(enum.StrEnum):
    """How much of a shift's on-post time rests on signed data (docs/metrics.md §7)."""

    SIGNED = "signed"  # no on-post second rests on a phone alone
    PHONE = "phone"  # every on-post second (at least one) rests on a phone alone
    MIXED = "mixed"  # some do, some do not


def trust_of(on_post_s: int, phone_on_post_s: int) -> Trust:
    if phone_on_post_s <= 0:
        return Trust.SIGNED
    return Trust.PHONE if phone_on_post_s >= on_post_s else Trust.MIXED


def _on_intervals(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    return [(s.start_s, s.end_s) for s in segments if s.state in ON_STATES]


def phone_only(
    segments: Sequence[Segment], signed: Sequence[Segment] | None
) -> list[tuple[int, int]]:
    """The seconds on post in ``segments`` (all the shift's devices) that are not on post in
    ``signed`` (its signed devices alone), as sorted ``[start_s, end_s)`` intervals: what
    rests on a phone's word only. ``signed`` None: the shift has no phone, so none."""
    if signed is None:
        return []
    cover = _on_intervals(signed)
    out: list[tuple[int, int]] = []
    j = 0
    for a, b in _on_intervals(segments):
        while j < len(cover) and cover[j][1] <= a:
            j += 1
        t, k = a, j
        while t < b:
            if k < len(cover) and cover[k][0] < b:
                if cover[k][0] > t:
                    out.append((t, cover[k][0]))
                t = max(t, cover[k][1])
                k += 1
            else:
                out.append((t, b))
                t = b
    return out


@dataclass(frozen=True, slots=True)
class ShiftResult:
    """A shift recomputed from stored data: its tally and its timeline (segments tiling the
    shift's window, adjacent segments in different states), from all its ``devices``.

    ``devices``: the recorded terminal (``device_id``) and the phones the volunteer held
    during the shift; ``phones``: those of them that are phones. ``signed_segments``: the
    timeline from the signed (non-phone) devices alone — None when the shift has no phone
    (then it is ``segments``), all offline when it has only phones. ``phone_on_post_s``: the
    on-post seconds of ``segments`` that are not on post in ``signed_segments`` (§7).
    """

    shift_id: str
    device_id: str | None
    start_s: int
    end_s: int
    tally: ShiftTally
    segments: tuple[Segment, ...]
    devices: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    phone_on_post_s: int = 0
    signed_segments: tuple[Segment, ...] | None = None

    def __post_init__(self) -> None:
        if not self.devices and self.device_id is not None:
            object.__setattr__(self, "devices", (self.device_id,))
        if self.device_id is not None and self.device_id not in self.devices:
            raise ValueError(f"devices: {self.devices!r} leaves out device_id {self.device_id!r}")
        if not set(self.phones) <= set(self.devices):
            raise ValueError(f"phones: {self.phones!r} are not all among {self.devices!r}")
        if not 0 <= self.phone_on_post_s <= self.tally.on_post_s:
            raise ValueError(
                f"phone_on_post_s: {self.phone_on_post_s} is not within the "
                f"{self.tally.on_post_s} on-post seconds"
            )
        if self.phones and self.signed_segments is None:
            raise ValueError("signed_segments: required when the shift has a phone")

    @property
    def phone(self) -> bool:
        """Whether any of the shift's devices is a phone."""
        return bool(self.phones)

    @property
    def trust(self) -> Trust:
        return trust_of(self.tally.on_post_s, self.phone_on_post_s)

    @property
    def phone_only_rate(self) -> float:
        """The part of the on-duty rate that rests on a phone alone (§7)."""
        return self.phone_on_post_s / self.tally.scheduled_s if self.tally.scheduled_s else 0.0

    def phone_only(self) -> list[tuple[int, int]]:
        """The on-post seconds that rest on a phone alone, as ``[start_s, end_s)`` intervals."""
        return phone_only(self.segments, self.signed_segments)

    @property
    def terminal_segments(self) -> tuple[Segment, ...]:
        """The timeline by which the recorded terminal's usage is measured (§3, §7): its own
        when it is a signed terminal beside phones (a phone's reports do not switch a
        terminal on), else the shift's."""
        if self.signed_segments is not None and self.device_id not in self.phones:
            return self.signed_segments
        return self.segments

    @property
    def terminal_alive_s(self) -> int:
        """Seconds the recorded terminal was alive, by its own data (``terminal_segments``)."""
        return sum(
            s.end_s - s.start_s for s in self.terminal_segments if s.state is not State.OFFLINE
        )

    @property
    def usage_rate(self) -> float:
        """The recorded terminal's usage over the shift's window (§3): without a phone, the
        tally's; beside phones, its own evidence's (§7); without a terminal, 0."""
        scheduled = self.tally.scheduled_s
        return self.terminal_alive_s / scheduled if scheduled else 0.0
