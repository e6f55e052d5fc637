"""From recomputed shifts to report rows: sums per shift, volunteer and unit. Pure, no I/O.

Every figure is a sum of seconds or counts, and every rate is a ratio of two sums: a unit's
on-duty rate is (on-post seconds of every shift in its subtree) / (their scheduled seconds),
never the average of its children's rates. An average of rates would weigh a team with one
two-hour shift the same as a station with three hundred, and would not add up the tree. So a
unit's row is built from the sums of everything in its subtree, and its rates are computed
from those sums last. A rate whose denominator is zero is ``None`` ("nothing to measure"),
never 0, so a unit with no shifts does not look like a unit that failed all of them.

Attribution (``docs/reports.md``): a shift, its seconds, its terminal time and its flags count
for the unit of its *post* (where the duty is); spot checks count for the unit of the
*volunteer* they went to; a flag without a shift counts for its volunteer's unit. Anything that
points outside the report's subtree counts for the report's own unit, so nothing that the
stores returned for the subtree is dropped.

Terminal usage is per terminal over the *union* of its shifts' windows: a terminal on two
overlapping shifts is scheduled once for the overlap. Whether the terminal was alive is a
property of the terminal (``docs/metrics.md``: evidence within ``ALIVE_GAP_S``), so the
non-offline segments of its shifts' timelines give its alive seconds exactly, for any set of
shifts, without reading the fixes again. A shift with phones beside its terminal carries the
terminal's own timeline for this (``ShiftResult.terminal_segments``): a phone's reports do not
switch a terminal on.

Phones (``docs/metrics.md`` §7): the on-post seconds that rest on a phone's word alone count
toward every on-duty rate, and every row says how many they were (``phone_on_post_s``, summed
like the others) and what part of the rate they make (``phone_only_rate``, their share of the
scheduled seconds), so an inspector sees them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..duty.rules import ShiftResult, State
from ..org.model import Post, Shift, Unit, Volunteer
from .contracts import FlagLike

Interval = tuple[int, int]


def ratio(num: int, den: int) -> float | None:
    """``num / den``, or None when there is nothing to measure."""
    return num / den if den else None


@dataclass(frozen=True, slots=True)
class UnitRow:
    """One unit's figures for the period: everything in its subtree, summed."""

    unit_id: str
    name: str
    level: str
    shifts: int
    volunteers: int  # distinct volunteers with a shift at a post in the subtree
    scheduled_s: int
    on_post_s: int  # including the backfilled seconds
    on_post_backfilled_s: int
    off_post_s: int
    no_fix_s: int
    offline_s: int
    on_duty_rate: float | None  # on_post_s / scheduled_s
    phone_on_post_s: int  # of on_post_s, the seconds resting on a phone alone (metrics.md §7)
    phone_only_rate: float | None  # phone_on_post_s / scheduled_s: that part of on_duty_rate
    terminals: int  # distinct terminals with a shift in the subtree
    terminal_scheduled_s: int  # per terminal, the union of its shifts' windows
    terminal_alive_s: int  # the seconds of that union in which it was alive
    usage_rate: float | None  # terminal_alive_s / terminal_scheduled_s
    spot_checks_sent: int
    spot_checks_answered: int
    spot_check_answer_rate: float | None  # answered / sent; None when none were sent
    flags: dict[str, int]  # flag kind -> count


@dataclass(frozen=True, slots=True)
class VolunteerRow:
    """One volunteer's figures over their shifts at posts in the report's subtree."""

    volunteer_id: str
    name: str
    unit_id: str
    shifts: tuple[str, ...]  # the shift ids, by start (how many: its length)
    scheduled_s: int
    on_post_s: int
    on_post_backfilled_s: int
    off_post_s: int
    no_fix_s: int
    offline_s: int
    on_duty_rate: float | None
    phone_on_post_s: int
    phone_only_rate: float | None
    #: Alive / scheduled over the volunteer's shifts, each by its recorded terminal's own
    #: data (metrics.md §7); a shift without a terminal counts as scheduled and never alive.
    usage_rate: float | None
    late_s: int  # summed over shifts: start to the first on-post second
    early_leave_s: int  # summed over shifts: the last on-post second to the end
    spot_checks_sent: int
    spot_checks_answered: int
    spot_check_answer_rate: float | None
    flags: dict[str, int]


@dataclass(frozen=True, slots=True)
class ShiftRow:
    shift_id: str
    volunteer_id: str
    volunteer_name: str
    post_id: str
    post_name: str
    unit_id: str  # the post's unit
    device_id: str | None
    devices: tuple[str, ...]  # the recorded terminal and the phones held (metrics.md §7)
    trust: str  # signed, phone or mixed (metrics.md §7)
    role: str
    start_ms: int
    end_ms: int
    scheduled_s: int
    on_post_s: int
    on_post_backfilled_s: int
    off_post_s: int
    no_fix_s: int
    offline_s: int
    on_duty_rate: float | None
    phone_on_post_s: int
    phone_only_rate: float | None
    usage_rate: float | None
    late_s: int
    early_leave_s: int
    flags: dict[str, int]


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Rows for every unit of the subtree (by id), every volunteer seen, every shift."""

    units: dict[str, UnitRow]
    volunteers: dict[str, VolunteerRow]
    shifts: tuple[ShiftRow, ...]  # by start, then id


# --- sums -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Seconds:
    scheduled_s: int = 0
    on_post_s: int = 0
    on_post_backfilled_s: int = 0
    off_post_s: int = 0
    no_fix_s: int = 0
    offline_s: int = 0
    phone_on_post_s: int = 0
    terminal_alive_s: int = 0  # the recorded terminals' own alive seconds (metrics.md §7)

    def add(self, result: ShiftResult) -> None:
        t = result.tally
        self.scheduled_s += t.scheduled_s
        self.on_post_s += t.on_post_s
        self.phone_on_post_s += result.phone_on_post_s
        self.terminal_alive_s += result.terminal_alive_s
        self.on_post_backfilled_s += t.on_post_backfilled_s
        self.off_post_s += t.off_post_s
        self.no_fix_s += t.no_fix_s
        self.offline_s += t.offline_s


@dataclass(slots=True)
class _UnitSums:
    seconds: _Seconds = field(default_factory=_Seconds)
    shifts: int = 0
    volunteers: set[str] = field(default_factory=set)
    # device -> its shifts' windows and alive intervals within this subtree
    windows: dict[str, list[Interval]] = field(default_factory=dict)
    alive: dict[str, list[Interval]] = field(default_factory=dict)
    sent: int = 0
    answered: int = 0
    flags: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _VolunteerSums:
    seconds: _Seconds = field(default_factory=_Seconds)
    shift_ids: list[str] = field(default_factory=list)
    late_s: int = 0
    early_leave_s: int = 0
    sent: int = 0
    answered: int = 0
    flags: Counter[str] = field(default_factory=Counter)


def union_length(intervals: Iterable[Interval]) -> int:
    """Seconds covered by the union of half-open intervals."""
    total = 0
    end = None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def alive_intervals(result: ShiftResult) -> list[Interval]:
    """The shift's seconds in which its recorded terminal was alive (any state but offline),
    by its own data: phones beside it do not count for it (metrics.md §7)."""
    return [(s.start_s, s.end_s) for s in result.terminal_segments if s.state is not State.OFFLINE]


def _kind(flag: FlagLike) -> str:
    return str(flag.kind)


# --- the tree ---------------------------------------------------------------------------------


class Tree:
    """The report's subtree: each unit's parent within it, so a shift's unit adds to every
    unit from there up to the report's root."""

    def __init__(self, root_id: str, units: Sequence[Unit]) -> None:
        self.root_id = root_id
        self.units = {u.unit_id: u for u in units}
        if root_id not in self.units:
            raise ValueError(f"unit {root_id!r} is not among the report's units")

    def chain(self, unit_id: str | None) -> list[str]:
        """``unit_id`` and its ancestors up to the root; the root alone for anything outside."""
        if unit_id is None or unit_id not in self.units:
            return [self.root_id]
        out = [unit_id]
        seen = {unit_id}
        while out[-1] != self.root_id:
            parent = self.units[out[-1]].parent_id
            if parent is None or parent not in self.units or parent in seen:
                # Not below the root after all (a record outside the subtree): the root only.
                return [self.root_id]
            out.append(parent)
            seen.add(parent)
        return out


def build(
    *,
    root_id: str,
    units: Sequence[Unit],
    shifts: Sequence[Shift],
    results: Mapping[str, ShiftResult],
    posts: Mapping[str, Post],
    volunteers: Mapping[str, Volunteer],
    flags: Sequence[FlagLike] = (),
    spot_stats: Mapping[str, tuple[int, int]] | None = None,
) -> Aggregate:
    """Sum ``shifts`` (each with its ``results[shift_id]``), ``flags`` and spot-check
    ``spot_stats`` (volunteer -> (sent, answered)) into rows for the subtree ``units`` of
    ``root_id``."""
    tree = Tree(root_id, units)
    unit_sums = {uid: _UnitSums() for uid in tree.units}
    vol_sums: dict[str, _VolunteerSums] = {}
    shift_unit: dict[str, str] = {}
    shift_flags: dict[str, Counter[str]] = {}
    by_id = {s.shift_id: s for s in shifts}

    def volunteer_unit(volunteer_id: str | None) -> str | None:
        v = volunteers.get(volunteer_id) if volunteer_id is not None else None
        return v.unit_id if v is not None else None

    for shift in shifts:
        result = results.get(shift.shift_id)
        if result is None:
            raise ValueError(f"shift {shift.shift_id!r} has no recomputed result")
        post = posts.get(shift.post_id)
        unit_id = post.unit_id if post is not None else None
        chain = tree.chain(unit_id)
        shift_unit[shift.shift_id] = chain[0]
        device = result.device_id if result.device_id is not None else shift.device_id
        alive = alive_intervals(result) if device is not None else []
        for uid in chain:
            u = unit_sums[uid]
            u.seconds.add(result)
            u.shifts += 1
            u.volunteers.add(shift.volunteer_id)
            if device is not None:
                u.windows.setdefault(device, []).append((result.start_s, result.end_s))
                u.alive.setdefault(device, []).extend(alive)
        v = vol_sums.setdefault(shift.volunteer_id, _VolunteerSums())
        v.seconds.add(result)
        v.shift_ids.append(shift.shift_id)
        v.late_s += result.tally.late_s(result.start_s)
        v.early_leave_s += result.tally.early_leave_s(result.end_s)

    for volunteer_id, (sent, answered) in (spot_stats or {}).items():
        for uid in tree.chain(volunteer_unit(volunteer_id)):
            unit_sums[uid].sent += sent
            unit_sums[uid].answered += answered
        v = vol_sums.setdefault(volunteer_id, _VolunteerSums())
        v.sent += sent
        v.answered += answered

    for flag in flags:
        kind = _kind(flag)
        if flag.shift_id is not None and flag.shift_id in shift_unit:
            home: str | None = shift_unit[flag.shift_id]
            shift_flags.setdefault(flag.shift_id, Counter())[kind] += 1
        else:
            home = volunteer_unit(flag.volunteer_id)
        for uid in tree.chain(home):
            unit_sums[uid].flags[kind] += 1
        owner = flag.volunteer_id
        if owner is None and flag.shift_id is not None and flag.shift_id in by_id:
            owner = by_id[flag.shift_id].volunteer_id
        if owner is not None:
            vol_sums.setdefault(owner, _VolunteerSums()).flags[kind] += 1

    unit_rows = {uid: _unit_row(tree.units[uid], s) for uid, s in unit_sums.items()}
    for v in vol_sums.values():
        v.shift_ids.sort(key=lambda sid: (by_id[sid].start_ms, sid))
    volunteer_rows = {
        vid: _volunteer_row(vid, volunteers.get(vid), s, root_id) for vid, s in vol_sums.items()
    }
    shift_rows = tuple(
        _shift_row(
            s,
            results[s.shift_id],
            shift_unit[s.shift_id],
            posts.get(s.post_id),
            volunteers.get(s.volunteer_id),
            shift_flags.get(s.shift_id, Counter()),
        )
        for s in sorted(shifts, key=lambda s: (s.start_ms, s.shift_id))
    )
    return Aggregate(unit_rows, volunteer_rows, shift_rows)


def _flags(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items()))


def _unit_row(unit: Unit, s: _UnitSums) -> UnitRow:
    sec = s.seconds
    t_sched = sum(union_length(w) for w in s.windows.values())
    t_alive = sum(union_length(a) for a in s.alive.values())
    return UnitRow(
        unit_id=unit.unit_id,
        name=unit.name,
        level=str(unit.level),
        shifts=s.shifts,
        volunteers=len(s.volunteers),
        scheduled_s=sec.scheduled_s,
        on_post_s=sec.on_post_s,
        on_post_backfilled_s=sec.on_post_backfilled_s,
        off_post_s=sec.off_post_s,
        no_fix_s=sec.no_fix_s,
        offline_s=sec.offline_s,
        on_duty_rate=ratio(sec.on_post_s, sec.scheduled_s),
        phone_on_post_s=sec.phone_on_post_s,
        phone_only_rate=ratio(sec.phone_on_post_s, sec.scheduled_s),
        terminals=len(s.windows),
        terminal_scheduled_s=t_sched,
        terminal_alive_s=t_alive,
        usage_rate=ratio(t_alive, t_sched),
        spot_checks_sent=s.sent,
        spot_checks_answered=s.answered,
        spot_check_answer_rate=ratio(s.answered, s.sent),
        flags=_flags(s.flags),
    )


def _volunteer_row(
    volunteer_id: str, volunteer: Volunteer | None, s: _VolunteerSums, root_id: str
) -> VolunteerRow:
    sec = s.seconds
    return VolunteerRow(
        volunteer_id=volunteer_id,
        name=volunteer.name if volunteer is not None else volunteer_id,
        unit_id=volunteer.unit_id if volunteer is not None else root_id,
        shifts=tuple(s.shift_ids),
        scheduled_s=sec.scheduled_s,
        on_post_s=sec.on_post_s,
        on_post_backfilled_s=sec.on_post_backfilled_s,
        off_post_s=sec.off_post_s,
        no_fix_s=sec.no_fix_s,
        offline_s=sec.offline_s,
        on_duty_rate=ratio(sec.on_post_s, sec.scheduled_s),
        phone_on_post_s=sec.phone_on_post_s,
        phone_only_rate=ratio(sec.phone_on_post_s, sec.scheduled_s),
        usage_rate=ratio(sec.terminal_alive_s, sec.scheduled_s),
        late_s=s.late_s,
        early_leave_s=s.early_leave_s,
        spot_checks_sent=s.sent,
        spot_checks_answered=s.answered,
        spot_check_answer_rate=ratio(s.answered, s.sent),
        flags=_flags(s.flags),
    )


def _shift_row(
    shift: Shift,
    result: ShiftResult,
    unit_id: str,
    post: Post | None,
    volunteer: Volunteer | None,
    flags: Counter[str],
) -> ShiftRow:
    t = result.tally
    return ShiftRow(
        shift_id=shift.shift_id,
        volunteer_id=shift.volunteer_id,
        volunteer_name=volunteer.name if volunteer is not None else shift.volunteer_id,
        post_id=shift.post_id,
        post_name=post.name if post is not None else shift.post_id,
        unit_id=unit_id,
        device_id=result.device_id if result.device_id is not None else shift.device_id,
        devices=result.devices,
        trust=str(result.trust),
        role=str(shift.role),
        start_ms=shift.start_ms,
        end_ms=shift.end_ms,
        scheduled_s=t.scheduled_s,
        on_post_s=t.on_post_s,
        on_post_backfilled_s=t.on_post_backfilled_s,
        off_post_s=t.off_post_s,
        no_fix_s=t.no_fix_s,
        offline_s=t.offline_s,
        on_duty_rate=ratio(t.on_post_s, t.scheduled_s),
        phone_on_post_s=result.phone_on_post_s,
        phone_only_rate=ratio(result.phone_on_post_s, t.scheduled_s),
        usage_rate=ratio(result.terminal_alive_s, t.scheduled_s),
        late_s=t.late_s(result.start_s),
        early_leave_s=t.early_leave_s(result.end_s),
        flags=_flags(flags),
    )
