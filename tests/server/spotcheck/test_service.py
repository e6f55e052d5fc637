"""Making checks (who may be called, the random sample), history, reports and the store."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from server.errors import StoreError
from server.org.model import Shift, Terminal
from server.spotcheck.errors import BadRequest, NobodyOnDuty, NotInUnit, UnknownUnit
from server.spotcheck.model import TargetResult
from server.spotcheck.service import SpotChecks
from server.spotcheck.store import SpotCheckStore

from .support import NOW_MS, T0, Broker, Clock, answer, fix_at, futian, make_service


@pytest.mark.parametrize(
    ("kwargs", "error", "field", "words"),
    [
        ({"unit_id": "nowhere", "devices": ["ft-1"]}, UnknownUnit, "unit", "no unit 'nowhere'"),
        ({"unit_id": "s1", "devices": ["ft-9"]}, NotInUnit, "devices", "ft-9 belongs to s2"),
        ({"unit_id": "s1", "devices": ["ft-77"]}, NotInUnit, "devices", "ft-77 is not a known"),
        ({"unit_id": "s1", "devices": ["ft-1", "ft-1"]}, BadRequest, "devices", "twice"),
        ({"unit_id": "s1", "devices": []}, BadRequest, "devices", "non-empty"),
        ({"unit_id": "s1"}, BadRequest, "devices", "either devices or sample"),
        ({"unit_id": "s1", "devices": ["ft-1"], "sample": 1}, BadRequest, "devices", "not both"),
        ({"unit_id": "s1", "sample": 0}, BadRequest, "sample", "[1, 100]"),
        ({"unit_id": "s1", "sample": True}, BadRequest, "sample", "whole number"),
        ({"unit_id": "s1", "devices": ["ft-1"], "deadline_s": 9}, BadRequest, "deadline_s", "[10"),
        ({"unit_id": "s1", "devices": ["ft-1"], "deadline_s": 3601}, BadRequest, "deadline_s", ""),
        (
            {"unit_id": "s1", "devices": ["ft-1"], "want_snapshot": 1},
            BadRequest,
            "want_snapshot",
            "",
        ),
        ({"unit_id": "s1", "devices": [f"d{i}" for i in range(101)]}, BadRequest, "devices", "100"),
    ],
)
def test_a_check_that_cannot_be_made_names_the_field(
    tmp_path: Path, kwargs: dict[str, object], error: type[BadRequest], field: str, words: str
) -> None:
    service, _, broker = make_service(tmp_path)
    try:
        with pytest.raises(error) as caught:
            service.create(by="Wang", **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field
        assert words in caught.value.reason
        assert isinstance(caught.value, ValueError)
        assert broker.sent == []
        assert service.history() == []  # nothing recorded either
    finally:
        service.close()


def test_named_devices_record_who_is_on_duty_with_them(tmp_path: Path) -> None:
    service, clock, _ = make_service(tmp_path)
    try:
        # A district inspector may call terminals anywhere below it, grids included.
        check = service.create(
            by="Inspector Wang", unit_id="futian", devices=["ft-3", "ft-2"], deadline_s=30
        )
        assert check.created_by == "Inspector Wang" and check.unit_id == "futian"
        assert check.deadline_ms == clock.ms + 30_000
        three, two = check.targets
        assert (three.device_id, three.unit_id, three.volunteer_id, three.shift_id) == (
            "ft-3",
            "g1",
            "v-3",
            "sh-3",
        )
        # ft-2's shift is over: the volunteer is whoever holds it now, and there is no shift.
        assert (two.volunteer_id, two.shift_id) == ("v-2", None)
        assert three.rollcall_id == f"{check.check_id}.1" and two.rollcall_id.endswith(".2")
    finally:
        service.close()


def test_the_sample_is_drawn_from_terminals_on_duty_now_in_the_subtree(tmp_path: Path) -> None:
    org = futian()
    for i in range(10):
        org.terminals[f"ex-{i}"] = Terminal(f"ex-{i}", "s1")
        org.all_shifts.append(
            Shift(f"x-{i}", f"vx-{i}", "p-s1", T0, T0 + 8 * 3_600_000, device_id=f"ex-{i}")
        )
    # Not on duty now: a shift that starts in an hour.
    org.terminals["late-1"] = Terminal("late-1", "s1")
    org.all_shifts.append(
        Shift(
            "x-late", "v-late", "p-s1", NOW_MS + 3_600_000, NOW_MS + 7_200_000, device_id="late-1"
        )
    )
    on_duty = {"ft-1", "ft-3"} | {f"ex-{i}" for i in range(10)}

    def draw(seed: int, n: int) -> list[str]:
        service = SpotChecks(
            path=tmp_path / f"draw-{seed}-{n}.db",
            org=org,
            send=Broker().send,
            clock=Clock(),
            rng=random.Random(seed),
        )
        try:
            check = service.create(by="Wang", unit_id="s1", sample=n)
            return [t.device_id for t in check.targets]
        finally:
            service.close()

    picked = draw(7, 4)
    assert len(picked) == 4 and len(set(picked)) == 4 and set(picked) <= on_duty
    assert draw(7, 4) == picked  # the same seed draws the same terminals
    assert any(draw(seed, 4) != picked for seed in range(8, 20))  # and it is a draw
    # Asking for more than are on duty calls every one of them, once.
    assert sorted(draw(1, 50)) == sorted(on_duty)


def test_the_sample_records_the_shift_and_volunteer(tmp_path: Path) -> None:
    service, _, broker = make_service(tmp_path)
    try:
        check = service.create(by="Wang", unit_id="g1", sample=3)
        [t] = check.targets
        assert (t.device_id, t.volunteer_id, t.shift_id, t.unit_id) == ("ft-3", "v-3", "sh-3", "g1")
        assert [d for d, _ in broker.sent] == ["ft-3"]
    finally:
        service.close()


def test_a_sample_with_nobody_on_duty_is_refused(tmp_path: Path) -> None:
    org = futian()
    org.all_shifts = [s for s in org.all_shifts if s.device_id is None]  # v-4 has no terminal
    service, _, broker = make_service(tmp_path, org)
    try:
        with pytest.raises(NobodyOnDuty) as caught:
            service.create(by="Wang", unit_id="s1", sample=2)
        assert caught.value.field == "sample"
        assert caught.value.reason == "no terminal is on a shift in s1 now"
        assert broker.sent == [] and service.history() == []
    finally:
        service.close()


def test_history_is_newest_first_filtered_by_unit_and_window(tmp_path: Path) -> None:
    service, clock, _ = make_service(tmp_path)
    try:
        made = []
        for unit, devices in (
            ("s1", ["ft-1"]),
            ("s2", ["ft-9"]),
            ("g1", ["ft-3"]),
            ("s1", ["ft-2"]),
        ):
            made.append(service.create(by="Wang", unit_id=unit, devices=devices))
            clock.advance(60)
        ids = [c.check_id for c in made]
        assert [c.check_id for c in service.history()] == ids[::-1]
        assert [c.check_id for c in service.history(units={"s1", "g1"})] == [ids[3], ids[2], ids[0]]
        assert [c.check_id for c in service.history(limit=2)] == ids[:1:-1]
        window = service.history(since_ms=made[1].created_ms, until_ms=made[3].created_ms)
        assert [c.check_id for c in window] == [ids[2], ids[1]]  # until is excluded
        assert service.history(units=set()) == []
        # Every check comes with its targets, judged now: all past their deadline.
        clock.advance(120)
        assert all(t.result is TargetResult.MISSED for c in service.history() for t in c.targets)
        with pytest.raises(BadRequest, match="limit"):
            service.history(limit=0)
        assert service.check("sc-none") is None
    finally:
        service.close()


def test_answer_stats_and_requests_for_reports_and_flags(tmp_path: Path) -> None:
    service, clock, broker = make_service(tmp_path)
    try:
        start = clock.ms
        # Check 1: ft-1 answers, ft-3 does not.
        service.create(by="Wang", unit_id="s1", devices=["ft-1", "ft-3"])
        r1 = broker.call_to("ft-1").rollcall_id
        service.on_accepted([answer("ft-1", r1, clock.ms + 2_000, fix_at(clock.ms))])
        clock.advance(600)
        # Check 2: ft-1 answers late; ft-9 (s2) answers; the link refuses ft-3.
        broker.sent.clear()
        broker.down.add("ft-3")
        second = service.create(
            by="Wang", unit_id="futian", devices=["ft-1", "ft-9", "ft-3"], deadline_s=10
        )
        t2 = clock.ms
        r1b, r9 = broker.call_to("ft-1").rollcall_id, broker.call_to("ft-9").rollcall_id
        service.on_accepted(
            [
                answer("ft-1", r1b, t2 + 15_000, fix_at(t2)),
                answer("ft-9", r9, t2 + 5_000, fix_at(t2)),
            ]
        )
        clock.advance(5)  # check 2 still before its deadline ...
        # ... but a late answer and an answer are decided already; ft-3 was never sent.
        assert service.answer_stats() == {"v-1": (2, 1), "v-3": (1, 0), "v-9": (1, 1)}
        clock.advance(30)
        assert service.answer_stats(units={"s1", "g1"}) == {"v-1": (2, 1), "v-3": (1, 0)}
        assert service.answer_stats(since_ms=t2) == {"v-1": (1, 0), "v-9": (1, 1)}
        assert service.answer_stats(until_ms=t2) == {"v-1": (1, 1), "v-3": (1, 0)}

        assert service.requests("ft-1", None, None) == [
            (start, start + 120_000, start + 2_000),
            (t2, t2 + 10_000, t2 + 15_000),  # answered, late: the flag compares
        ]
        assert service.requests("ft-3", None, None) == [(start, start + 120_000, None)]
        assert service.requests("ft-1", start + 1, None) == [(t2, t2 + 10_000, t2 + 15_000)]
        assert service.requests("ft-2", None, None) == []
        assert {t.device_id: t.result for t in second.targets}["ft-3"] is TargetResult.NOT_SENT
    finally:
        service.close()


def test_pending_roll_calls_are_left_out_of_stats_until_decided(tmp_path: Path) -> None:
    service, clock, _ = make_service(tmp_path)
    try:
        service.create(by="Wang", unit_id="s1", devices=["ft-1"])
        assert service.answer_stats() == {}
        clock.advance(121)
        assert service.answer_stats() == {"v-1": (1, 0)}
    finally:
        service.close()


def test_checks_and_answers_survive_a_restart(tmp_path: Path) -> None:
    service, clock, broker = make_service(tmp_path)
    check = service.create(by="Wang", unit_id="s1", devices=["ft-1"], want_snapshot=True)
    rid = broker.call_to("ft-1").rollcall_id
    service.on_accepted([answer("ft-1", rid, clock.ms + 1_000, fix_at(clock.ms))])
    service.close()
    again = SpotChecks(path=tmp_path / "spotchecks.db", org=futian(), send=broker.send, clock=clock)
    try:
        got = again.check(check.check_id)
        assert got is not None and got.want_snapshot
        assert got.targets[0].answer_ms == clock.ms + 1_000
        assert got.targets[0].result is TargetResult.PENDING  # the picture is still awaited
    finally:
        again.close()


def test_store_failures_become_store_errors_and_do_not_stop_ingest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(StoreError, match="cannot open spot-check store"):
        SpotCheckStore(bad)
    service, clock, broker = make_service(tmp_path)
    service.create(by="Wang", unit_id="s1", devices=["ft-1"])
    rid = broker.call_to("ft-1").rollcall_id
    service.close()  # the connection is gone: every statement fails
    with caplog.at_level(logging.ERROR, logger="yijing.spotcheck"):
        service.on_accepted([answer("ft-1", rid, clock.ms + 1_000, fix_at(clock.ms))])
    assert "spot-check answers not recorded" in caplog.text
    with pytest.raises(StoreError):
        service.check("sc-anything")
