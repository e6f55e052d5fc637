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
(``server.fixpack``) and give the same flags, to the bit; the two that follow motion live in
``server.duty.motion_flags``, which says how. What a flag is and the constants are in
``server.duty.flag_model``; all are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import numpy as np

from ..org.model import Shift
from ..store import FUTURE_TOLERANCE_MS, FixFlag
from .flag_model import (
    _DAY,
    _EPOCH,
    _HOUR_MS,
    AUTHENTICITY_FAILURES,
    FIX_MARGIN_MS,
    GAP_WINDOW_S,
    MAX_SKEW_MS,
    MAX_SPEED_MPS,
    MIN_DT_S,
    STILL_ACCURACY_SPREAD_M,
    STILL_HOURS,
    STILL_MAX_GAP_S,
    STILL_RADIUS_M,
    VALUE_UNIT,
    Fixes,
    Flag,
    FlagKind,
    Ints,
    SpotRequest,
    Subject,
    _day,
    _when,
    distance_m,
    sort_flags,
)
from .motion_flags import (
    _speed_jumps_rows,
    _speed_jumps_track,
    _still_in_drawer_rows,
    _still_in_drawer_track,
    _track,
    _within,
    speed_jumps,
    still_in_drawer,
)
from .rules import Segment, ShiftResult, State

__all__ = [
    "AUTHENTICITY_FAILURES",
    "FIX_MARGIN_MS",
    "GAP_WINDOW_S",
    "MAX_SKEW_MS",
    "MAX_SPEED_MPS",
    "MIN_DT_S",
    "STILL_ACCURACY_SPREAD_M",
    "STILL_HOURS",
    "STILL_MAX_GAP_S",
    "STILL_RADIUS_M",
    "VALUE_UNIT",
    "Fixes",
    "Flag",
    "FlagKind",
    "SpotRequest",
    "Subject",
    "clock_skew",
    "distance_m",
    "future_frames",
    "future_time",
    "shared_terminal",
    "shared_terminal_pairs",
    "shift_days",
    "shift_flags",
    "signature_failures",
    "sort_flags",
    "speed_jumps",
    "spot_check_gaps",
    "still_in_drawer",
]


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


def future_frames(subject: Subject, sent_ms: Iterable[int]) -> list[Flag]:
    """One flag counting the stored frames (heartbeats, events, batches) sealed ahead of the
    server's clock: the rate does not take them as evidence that the terminal was on."""
    times = sorted(sent_ms)
    if not times:
        return []
    first, last = times[0], times[-1]
    return [
        subject.flag(
            FlagKind.FUTURE_TIME,
            first,
            last,
            float(len(times)),
            f"{len(times)} frames sealed {_when(first)} to {_when(last)} reached the server more "
            f"than {FUTURE_TOLERANCE_MS // 1000} s before their own time: the terminal's clock "
            "ran ahead. They are kept and shown, and the on-duty rate does not take them as "
            "evidence that the terminal was on.",
        )
    ]


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
    future_frame_times: Iterable[int] = (),
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
            *future_frames(subject, (t for t in future_frame_times if start <= t < end)),
            *signature_failures(subject, rejections, start, end),
            *spot_check_gaps(
                subject, (r for r in spot_requests if start <= r[0] < end), result.segments
            ),
        ]
    )


def shift_days(start_ms: int, end_ms: int) -> tuple[str, str]:
    """The first and last UTC day (``YYYY-MM-DD``, as rejections are kept) of ``[start, end)``."""
    return _day(start_ms), _day(max(end_ms - 1, start_ms))
