"""Reports over fakes of the stores: which shifts, which rows, progress, cache, one shift's
detail; and the job pool."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from server.reports.jobs import JobsBusy, ReportJobs
from server.reports.period import Period
from server.reports.service import Reports, TooLarge, UnknownShift, UnknownUnit
from server.reports.shapes import shift_detail_json, unit_report_json

from .fakes import FakeDuty, FakeOrg, FakeSpotChecks, H, at, fake_scan, make_reports

DAY = Period.parse("2026-03-02", "2026-03-02")


def test_district_report_rows_and_order() -> None:
    report = make_reports().unit_report("futian", DAY)
    assert report.unit.unit_id == "futian"
    assert [u.unit_id for u in report.path] == ["sz"]
    assert [r.unit_id for r in report.children] == ["s1", "s2"]
    assert report.totals.shifts == 4  # E starts the next day, F the day before
    assert report.totals.on_duty_rate == pytest.approx(9 / 11)
    assert report.volunteers == ()  # nobody lives in the district itself
    assert report.shifts == ()  # and it has no posts of its own
    assert [f.kind for f in report.flags] == ["speed_jump", "shared_terminal", "clock_skew"]


def test_all_volunteers_of_the_subtree_when_asked() -> None:
    report = make_reports().unit_report("futian", DAY, all_volunteers=True)
    assert [v.volunteer_id for v in report.volunteers] == ["v1", "v2", "v3", "v4"]


def test_station_lists_what_is_directly_in_it() -> None:
    report = make_reports().unit_report("s1", DAY)
    assert [r.unit_id for r in report.children] == ["t1"]
    assert [v.volunteer_id for v in report.volunteers] == ["v4"]
    assert [s.shift_id for s in report.shifts] == ["C"]


def test_leaf_unit_lists_its_volunteers_and_shifts() -> None:
    report = make_reports().unit_report("t1", DAY)
    assert report.children == ()
    assert [u.unit_id for u in report.path] == ["sz", "futian", "s1"]
    assert [v.volunteer_id for v in report.volunteers] == ["v1", "v2"]
    assert [s.shift_id for s in report.shifts] == ["A", "B"]
    assert report.totals.on_duty_rate == pytest.approx(0.5)


def test_a_night_shift_counts_in_the_day_it_starts() -> None:
    reports = make_reports(cache_s=0)
    next_day = Period.parse("2026-03-03", "2026-03-03")
    assert [s.shift_id for s in reports.unit_report("s2", next_day).shifts] == ["E"]
    both = Period.parse("2026-03-02", "2026-03-03")
    assert [s.shift_id for s in reports.unit_report("s2", both).shifts] == ["D", "E"]


def test_progress_counts_shifts_and_the_cache_serves_a_second_ask() -> None:
    duty = FakeDuty()
    reports = Reports(None, FakeOrg(), duty, FakeSpotChecks(), scan=fake_scan)
    seen: list[tuple[int, int]] = []
    first = reports.unit_report("futian", DAY, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert sorted(duty.recomputed) == ["A", "B", "C", "D"]
    again = reports.unit_report("futian", DAY)
    assert again is first
    assert len(duty.recomputed) == 4  # not recomputed


def test_the_cache_expires() -> None:
    now = [0.0]
    duty = FakeDuty()
    reports = Reports(None, FakeOrg(), duty, FakeSpotChecks(), scan=fake_scan, clock=lambda: now[0])
    reports.unit_report("t1", DAY)
    now[0] = 61.0
    reports.unit_report("t1", DAY)
    assert duty.recomputed.count("A") == 2


def test_unknown_unit_and_too_large() -> None:
    reports = make_reports()
    with pytest.raises(UnknownUnit) as info:
        reports.unit_report("nowhere", DAY)
    assert str(info.value) == "unit: no unit 'nowhere'"
    with pytest.raises(TooLarge):
        reports.unit_report("futian", DAY, max_shifts=3)


def test_same_report_same_json() -> None:
    a = unit_report_json(make_reports().unit_report("sz", DAY, all_volunteers=True))
    b = unit_report_json(make_reports().unit_report("sz", DAY, all_volunteers=True))
    assert a == b
    assert a["path"] == []
    assert a["totals"]["flags"] == {"clock_skew": 1, "shared_terminal": 1, "speed_jump": 1}
    assert a["volunteers"][0]["shifts"] == ["A"]


def test_path_is_cut_to_the_readers_scope() -> None:
    doc = unit_report_json(make_reports().unit_report("t1", DAY), visible={"s1", "t1"})
    assert [u["unit_id"] for u in doc["path"]] == ["s1"]


def test_shift_detail() -> None:
    detail = make_reports().shift_detail("A")
    assert detail.unit_id == "t1"
    assert detail.post is not None and detail.post.name == "华强北路口"
    assert [c.answered for c in detail.roll_calls] == [True, False]
    doc = shift_detail_json(detail)
    assert doc["shift"]["unit_id"] == "t1"
    assert doc["volunteer"] == {
        "volunteer_id": "v1",
        "name": "张三",
        "unit_id": "t1",
        "kind": "voluntary",
    }
    assert doc["tally"]["on_duty_rate"] == pytest.approx(0.5)
    assert doc["tally"]["late_s"] == 0 and doc["tally"]["early_leave_s"] == H
    assert [s["state"] for s in doc["segments"]] == ["on_post", "off_post", "offline"]
    assert doc["segments"][0]["start_s"] == at(8) // 1000
    assert doc["flags"][0]["kind"] == "speed_jump"
    assert doc["roll_calls"][1] == {
        "sent_ms": at(9, 45),
        "deadline_ms": at(9, 47),
        "answered_ms": None,
        "answered": False,
    }
    with pytest.raises(UnknownShift):
        make_reports().shift_detail("nope")
    assert make_reports().shift_unit("nope") is None
    assert make_reports().shift_unit("D") == "s2"


# --- jobs -------------------------------------------------------------------------------------


def _wait(jobs: ReportJobs, job_id: str, owner: Any) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        view = jobs.get(job_id, owner)
        if view is not None and view.status != "running":
            return view
        time.sleep(0.01)
    raise AssertionError("job did not finish")


def test_job_runs_reports_progress_and_its_result() -> None:
    jobs = ReportJobs()
    try:

        def work(progress: Any) -> str:
            for n in range(1, 4):
                progress(n, 3)
            return "the report"

        view = jobs.submit("alice", work)
        assert (view.status, view.done, view.total) == ("running", 0, 0)
        done = _wait(jobs, view.job_id, "alice")
        assert (done.status, done.done, done.total, done.result) == ("done", 3, 3, "the report")
        assert jobs.get(view.job_id, "bob") is None  # only its owner sees it
    finally:
        jobs.close()


def test_a_failed_job_says_why_and_hides_internals() -> None:
    jobs = ReportJobs(explain=lambda exc: str(exc) if isinstance(exc, KeyError) else None)
    try:

        def expected(progress: Any) -> None:
            raise KeyError("unit")

        def internal(progress: Any) -> None:
            raise ZeroDivisionError("secret detail")

        a = _wait(jobs, jobs.submit("o", expected).job_id, "o")
        assert (a.status, a.error) == ("failed", "'unit'")
        b = _wait(jobs, jobs.submit("o", internal).job_id, "o")
        assert b.status == "failed"
        assert "ZeroDivisionError" in b.error and "secret" not in b.error
    finally:
        jobs.close()


def test_finished_jobs_are_forgotten_after_an_hour() -> None:
    now = [1000.0]
    jobs = ReportJobs(clock=lambda: now[0])
    try:
        view = jobs.submit("o", lambda progress: 1)
        assert _wait(jobs, view.job_id, "o").status == "done"
        now[0] += 3599
        assert jobs.get(view.job_id, "o") is not None
        now[0] += 1
        assert jobs.get(view.job_id, "o") is None
    finally:
        jobs.close()


def test_at_most_two_run_at_once_and_a_few_per_owner() -> None:
    release = threading.Event()
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(progress: Any) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(10)
        with lock:
            running -= 1

    jobs = ReportJobs(max_per_owner=4)
    try:
        ids = [jobs.submit(f"owner{i % 2}", work).job_id for i in range(6)]
        with pytest.raises(JobsBusy):
            for _ in range(2):
                jobs.submit("owner0", work)
        time.sleep(0.1)
        assert peak == 2
        release.set()
        for i, job_id in enumerate(ids):
            assert _wait(jobs, job_id, f"owner{i % 2}").status == "done"
        assert peak == 2
    finally:
        release.set()
        jobs.close()


def test_reports_start_job_returns_the_unit_report() -> None:
    reports = make_reports()
    try:
        view = reports.start_job("alice", "t1", DAY)
        deadline = time.monotonic() + 10
        while (v := reports.job(view.job_id, "alice")) is not None and v.status == "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert v is not None and v.status == "done"
        assert (v.done, v.total) == (2, 2)
        assert v.result.totals.shifts == 2
        bad = reports.start_job("alice", "nowhere", DAY)
        while (w := reports.job(bad.job_id, "alice")) is not None and w.status == "running":
            time.sleep(0.01)
        assert w is not None and w.error == "unit: no unit 'nowhere'"
    finally:
        reports.close()


def test_a_jobs_report_is_kept_longer_for_its_downloads() -> None:
    now = [0.0]
    duty = FakeDuty()
    reports = Reports(None, FakeOrg(), duty, FakeSpotChecks(), scan=fake_scan, clock=lambda: now[0])
    try:
        view = reports.start_job("alice", "t1", DAY)
        deadline = time.monotonic() + 10
        while (v := reports.job(view.job_id, "alice")) is not None and v.status == "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        now[0] = 300.0  # past the minute of a synchronous report
        assert reports.unit_report("t1", DAY, max_shifts=1) is v.result  # not recomputed
        now[0] = 601.0
        with pytest.raises(TooLarge):
            reports.unit_report("t1", DAY, max_shifts=1)
    finally:
        reports.close()
