"""Reports read from the stores: a unit's report for a period, one shift's detail, report jobs.

``Reports`` gathers what ``aggregate`` sums: the subtree's units, posts, volunteers and the
shifts that *start* in the period (``Period.contains_start``: a night shift is never split
between two days or counted in both), recomputes every shift from stored data with the duty
engine, scans each for flags and asks spot checks for their answer counts. Everything is
ordered (rows by id, shifts by start, flags by time) so two runs give the same report, byte
for byte, in JSON and CSV.

A finished report is kept for ``cache_s`` (a minute; a job's for ten) so the JSON, the two CSVs
and the chart of one screen cost one computation; late data changes a report only slowly, and
the cache is small and keyed by everything that shapes the report.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..duty.rules import ShiftResult
from ..errors import StoreError
from ..org.model import Post, Shift, Unit, Volunteer
from . import aggregate
from .aggregate import ShiftRow, UnitRow, VolunteerRow
from .contracts import DutySource, FlagLike, OrgSource, Progress, ScanShift, SpotCheckSource
from .jobs import JobsBusy, JobView, ReportJobs
from .period import DEFAULT_TZ, Period, PeriodError

__all__ = [
    "JobView",
    "JobsBusy",
    "ReportError",
    "ReportJobs",
    "Reports",
    "RollCallRecord",
    "ShiftDetail",
    "TooLarge",
    "UnitReport",
    "UnknownShift",
    "UnknownUnit",
]

#: Shifts recomputed per call of ``recompute_many``: big enough that a duty engine batching by
#: terminal reads a terminal's data once for its several shifts (they are sorted by terminal),
#: small enough that the progress bar moves and each chunk's flag scan follows it closely.
CHUNK = 64
CACHE_S = 60.0
#: A job's report is kept longer: the page that polled for it then downloads its CSVs and
#: chart, and a big unit's report is too large to compute again within a request.
JOB_CACHE_S = 600.0
CACHE_ENTRIES = 32


class ReportError(Exception):
    """A report that cannot be made as asked: ``field`` names the part of the request."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownUnit(ReportError):
    pass


class UnknownShift(ReportError):
    pass


class TooLarge(ReportError):
    """More shifts than the caller allows synchronously (the web then asks for a job)."""


@dataclass(frozen=True, slots=True)
class UnitReport:
    unit: Unit
    path: tuple[Unit, ...]  # the unit's ancestors, root first, the unit itself excluded
    period: Period
    totals: UnitRow  # the unit's own row: its whole subtree
    children: tuple[UnitRow, ...]  # by unit id
    #: Volunteers directly in the unit (home unit, or a shift at one of its own posts); with
    #: ``all_volunteers``, every volunteer seen in the subtree. By volunteer id.
    volunteers: tuple[VolunteerRow, ...]
    shifts: tuple[ShiftRow, ...]  # shifts at the unit's own posts (a leaf: all), by start
    flags: tuple[FlagLike, ...]  # every flag in the subtree, by time
    all_volunteers: bool = False


@dataclass(frozen=True, slots=True)
class RollCallRecord:
    """A spot check's roll call to the shift's terminal during the shift."""

    sent_ms: int
    deadline_ms: int
    answered_ms: int | None

    @property
    def answered(self) -> bool:
        """Answered by the deadline: what the answer rate counts."""
        return self.answered_ms is not None and self.answered_ms <= self.deadline_ms


@dataclass(frozen=True, slots=True)
class ShiftDetail:
    shift: Shift
    unit_id: str | None  # the post's unit (None: the post is gone)
    post: Post | None
    volunteer: Volunteer | None
    result: ShiftResult
    flags: tuple[FlagLike, ...]
    roll_calls: tuple[RollCallRecord, ...]
    tz: str = DEFAULT_TZ


def _default_scan() -> ScanShift:
    from ..duty.flag_scan import scan_shift  # being written beside the duty engine

    return scan_shift


def flag_order(flag: FlagLike) -> tuple[Any, ...]:
    return (flag.start_ms, str(flag.kind), flag.shift_id or "", flag.device_id or "", flag.end_ms)


def explain(exc: BaseException) -> str | None:
    """The sentence a report job's owner sees for an expected failure."""
    if isinstance(exc, ReportError | PeriodError):
        return str(exc)
    if isinstance(exc, StoreError):
        return f"the store could not be read: {exc}"
    return None


class Reports:
    def __init__(
        self,
        store: Any,
        org: OrgSource,
        duty: DutySource,
        spotchecks: SpotCheckSource,
        *,
        scan: ScanShift | None = None,
        tz: str = DEFAULT_TZ,
        jobs: ReportJobs | None = None,
        cache_s: float = CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``store`` is the telemetry store (``server.store.Store``), handed to the flag scan;
        ``scan`` defaults to ``server.duty.flag_scan.scan_shift``; ``tz`` is the timezone of
        shift timelines' hour ticks."""
        self.store = store
        self.org = org
        self.duty = duty
        self.spotchecks = spotchecks
        self.tz = tz
        self._scan = scan
        self._jobs = jobs
        self._cache_s = cache_s
        self._clock = clock
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, UnitReport]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def jobs(self) -> ReportJobs:
        """The job pool for the web, made on first use."""
        with self._lock:
            if self._jobs is None:
                self._jobs = ReportJobs(explain=explain)
            return self._jobs

    def close(self) -> None:
        """Stop the job pool (the stores belong to whoever opened them)."""
        with self._lock:
            jobs = self._jobs
        if jobs is not None:
            jobs.close()

    def scan(self) -> ScanShift:
        if self._scan is None:
            self._scan = _default_scan()
        return self._scan

    # --- a unit's report -----------------------------------------------------------------------

    def unit_report(
        self,
        unit_id: str,
        period: Period,
        *,
        progress: Progress | None = None,
        all_volunteers: bool = False,
        max_shifts: int | None = None,
        keep_s: float | None = None,
    ) -> UnitReport:
        """The report of ``unit_id``'s subtree over ``period``. ``progress(done, total)`` is
        called as shifts are recomputed; ``max_shifts`` refuses (``TooLarge``) a bigger one;
        the result is kept ``keep_s`` (default: ``cache_s``) for the same question again."""
        key = (unit_id, period, all_volunteers)
        cached = self._cached(key)
        if cached is not None:
            if progress is not None:
                progress(cached.totals.shifts, cached.totals.shifts)
            return cached
        unit = self.org.unit(unit_id)
        if unit is None:
            raise UnknownUnit("unit", f"no unit {unit_id!r}")
        subtree = self.org.subtree(unit_id)
        units = self.org.units(units=subtree)
        since_ms, until_ms = period.window_ms
        shifts = [
            s
            for s in self.org.shifts(since_ms=since_ms, until_ms=until_ms, units=subtree)
            if period.contains_start(s.start_ms)
        ]
        if max_shifts is not None and len(shifts) > max_shifts:
            raise TooLarge(
                "unit",
                f"{len(shifts)} shifts in this report, more than {max_shifts} at once; "
                "start a report job instead",
            )
        # By terminal, then time: a duty engine that batches by terminal reads each one's data
        # once per chunk, and the order is the same from run to run.
        shifts.sort(key=lambda s: (s.device_id or "", s.start_ms, s.shift_id))
        posts = {p.post_id: p for p in self.org.posts(units=subtree)}
        volunteers = {v.volunteer_id: v for v in self.org.volunteers(units=subtree)}
        for s in shifts:  # volunteers from outside the subtree on its posts
            if s.volunteer_id not in volunteers:
                found = self.org.volunteer(s.volunteer_id)
                if found is not None:
                    volunteers[s.volunteer_id] = found

        results, flags = self._recompute_and_scan(shifts, progress)
        spot_stats = self.spotchecks.answer_stats(
            units=subtree, since_ms=since_ms, until_ms=until_ms
        )
        # Roll calls go to the subtree's terminals, whose holders may live elsewhere.
        for volunteer_id in sorted(set(spot_stats) - set(volunteers)):
            found = self.org.volunteer(volunteer_id)
            if found is not None:
                volunteers[volunteer_id] = found
        agg = aggregate.build(
            root_id=unit_id,
            units=units,
            shifts=shifts,
            results=results,
            posts=posts,
            volunteers=volunteers,
            flags=flags,
            spot_stats=spot_stats,
        )
        children = sorted(
            (agg.units[u.unit_id] for u in units if u.parent_id == unit_id),
            key=lambda r: r.unit_id,
        )
        direct_posts = {p.post_id for p in posts.values() if p.unit_id == unit_id}
        direct_volunteers = {s.volunteer_id for s in shifts if s.post_id in direct_posts}
        volunteer_rows = sorted(
            (
                row
                for row in agg.volunteers.values()
                if all_volunteers or row.unit_id == unit_id or row.volunteer_id in direct_volunteers
            ),
            key=lambda r: r.volunteer_id,
        )
        path = tuple(
            u for u in (self.org.unit(a) for a in self.org.ancestors(unit_id)) if u is not None
        )
        report = UnitReport(
            unit=unit,
            path=path,
            period=period,
            totals=agg.units[unit_id],
            children=tuple(children),
            volunteers=tuple(volunteer_rows),
            shifts=tuple(r for r in agg.shifts if r.unit_id == unit_id),
            flags=tuple(sorted(flags, key=flag_order)),
            all_volunteers=all_volunteers,
        )
        self._remember(key, report, self._cache_s if keep_s is None else keep_s)
        return report

    def _recompute_and_scan(
        self, shifts: Sequence[Shift], progress: Progress | None
    ) -> tuple[dict[str, ShiftResult], list[FlagLike]]:
        total = len(shifts)
        if progress is not None:
            progress(0, total)
        results: dict[str, ShiftResult] = {}
        flags: list[FlagLike] = []
        scan = self.scan()
        for base in range(0, total, CHUNK):
            chunk = shifts[base : base + CHUNK]

            def step(n: int, base: int = base) -> None:
                if progress is not None:
                    progress(base + n, total)

            done = self.duty.recompute_many(chunk, progress=step)
            for shift, result in zip(chunk, done, strict=True):
                results[shift.shift_id] = result
                flags.extend(self._flags_of(scan, shift, result))
            if progress is not None:
                progress(base + len(chunk), total)
        return results, flags

    def _flags_of(self, scan: ScanShift, shift: Shift, result: ShiftResult) -> list[FlagLike]:
        if shift.device_id is None:
            return list(scan(self.store, shift, result))
        spot = self.spotchecks.requests(shift.device_id, shift.start_ms, shift.end_ms)
        # The flag scan looks for one terminal on two overlapping shifts (a terminal handed
        # round to cover two posts); it needs the terminal's other shifts, inside the report's
        # subtree or not.
        others = [
            s
            for s in self.org.shifts(
                since_ms=shift.start_ms, until_ms=shift.end_ms, device_id=shift.device_id
            )
            if s.shift_id != shift.shift_id
        ]
        return list(scan(self.store, shift, result, spot_requests=spot, other_shifts=others))

    def _cached(self, key: tuple[Any, ...]) -> UnitReport | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            expires, report = hit
            if self._clock() >= expires:
                del self._cache[key]
                return None
            return report

    def _remember(self, key: tuple[Any, ...], report: UnitReport, keep_s: float) -> None:
        if self._cache_s <= 0 or keep_s <= 0:
            return
        with self._lock:
            self._cache[key] = (self._clock() + keep_s, report)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)

    # --- one shift -----------------------------------------------------------------------------

    def shift_unit(self, shift_id: str) -> str | None:
        """The unit of the shift's post (None: no such shift), to check scope before the work."""
        shift = self.org.shift(shift_id)
        if shift is None:
            return None
        post = self.org.post(shift.post_id)
        return post.unit_id if post is not None else None

    def shift_detail(self, shift_id: str) -> ShiftDetail:
        """One shift recomputed now, with its flags and the roll calls sent during it."""
        shift = self.org.shift(shift_id)
        if shift is None:
            raise UnknownShift("shift", f"no shift {shift_id!r}")
        post = self.org.post(shift.post_id)
        volunteer = self.org.volunteer(shift.volunteer_id)
        result = self.duty.recompute(shift)
        flags = sorted(self._flags_of(self.scan(), shift, result), key=flag_order)
        roll_calls: list[RollCallRecord] = []
        if shift.device_id is not None:
            roll_calls = [
                RollCallRecord(sent, deadline, answered)
                for sent, deadline, answered in self.spotchecks.requests(
                    shift.device_id, shift.start_ms, shift.end_ms
                )
            ]
        return ShiftDetail(
            shift=shift,
            unit_id=post.unit_id if post is not None else None,
            post=post,
            volunteer=volunteer,
            result=result,
            flags=tuple(flags),
            roll_calls=tuple(sorted(roll_calls, key=lambda r: r.sent_ms)),
            tz=self.tz,
        )

    # --- jobs ----------------------------------------------------------------------------------

    def start_job(
        self, owner: Any, unit_id: str, period: Period, *, all_volunteers: bool = False
    ) -> JobView:
        """A report job for the web; its result is the ``UnitReport``. Raises ``JobsBusy``."""
        return self.jobs.submit(
            owner,
            lambda progress: self.unit_report(
                unit_id,
                period,
                progress=progress,
                all_volunteers=all_volunteers,
                keep_s=JOB_CACHE_S,
            ),
        )

    def job(self, job_id: str, owner: Any) -> JobView | None:
        return self.jobs.get(job_id, owner)
