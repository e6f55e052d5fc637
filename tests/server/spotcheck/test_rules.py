"""The rules that judge a roll call: fresh fix, the deadline on the server's clock, the
picture when one is asked for, late against missed, and a roll call the broker refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.spotcheck.model import (
    FRESH_FIX_S,
    AnswerFix,
    SpotCheck,
    Target,
    TargetResult,
    judge,
)
from server.store import FUTURE_TOLERANCE_MS

from .support import NOW_MS, answer, fix_at, make_service, picture

SENT = NOW_MS
DEADLINE = SENT + 120_000


def target(**facts: object) -> Target:
    base: dict[str, object] = {
        "rollcall_id": "sc-1.1",
        "device_id": "ft-1",
        "unit_id": "s1",
        "sent_ms": SENT,
    }
    return Target(**{**base, **facts})  # type: ignore[arg-type]


def answered_at(received_ms: int, fix_ms: int | None) -> Target:
    fix = AnswerFix(lat=22.5, lon=114.0, time_ms=fix_ms) if fix_ms is not None else None
    return target(answer_ms=received_ms, fix=fix)


def result(t: Target, *, now_ms: int = DEADLINE + 1, want_snapshot: bool = False) -> Target:
    return judge(t, deadline_ms=DEADLINE, want_snapshot=want_snapshot, now_ms=now_ms)


@pytest.mark.parametrize(
    ("fix_ms", "expected"),
    [
        (SENT, TargetResult.ANSWERED),
        (SENT + 1_500, TargetResult.ANSWERED),  # taken after the call: the freshest there is
        (SENT - FRESH_FIX_S * 1000, TargetResult.ANSWERED),  # exactly at the limit
        (SENT - FRESH_FIX_S * 1000 - 1, TargetResult.MISSED),  # a millisecond too old
        (SENT - 600_000, TargetResult.MISSED),  # the terminal in a drawer
        (SENT + 2_000 + FUTURE_TOLERANCE_MS, TargetResult.ANSWERED),  # a clock a bit ahead
        (SENT + 2_001 + FUTURE_TOLERANCE_MS, TargetResult.MISSED),  # a fix from the future
        (None, TargetResult.MISSED),  # an answer without any fix
    ],
)
def test_an_answer_counts_only_with_a_fresh_fix(fix_ms: int | None, expected: TargetResult) -> None:
    judged = result(answered_at(SENT + 2_000, fix_ms))
    assert judged.result is expected
    if expected is TargetResult.ANSWERED:
        assert judged.answered_ms == SENT + 2_000 and judged.reason is None
    else:
        assert judged.answered_ms is None and judged.reason is not None


def test_stale_fix_reason_says_how_old() -> None:
    judged = result(answered_at(SENT + 2_000, SENT - 95_000))
    assert judged.reason == "the answer's fix was taken 95 s before the roll call (limit 30 s)"
    assert result(answered_at(SENT + 2_000, None)).reason == "the answer carried no fix"
    assert result(target()).reason == "no answer"


def test_the_deadline_is_inclusive_and_on_the_servers_receive_time() -> None:
    assert result(answered_at(DEADLINE, SENT)).result is TargetResult.ANSWERED
    late = result(answered_at(DEADLINE + 1, SENT))
    assert late.result is TargetResult.LATE and late.answered_ms == DEADLINE + 1
    assert late.reason == "complete 0 s after the deadline"
    assert result(answered_at(DEADLINE + 61_000, SENT)).reason == (
        "complete 61 s after the deadline"
    )


def test_pending_until_the_deadline_then_missed() -> None:
    assert result(target(), now_ms=SENT).result is TargetResult.PENDING
    assert result(target(), now_ms=DEADLINE).result is TargetResult.PENDING
    assert result(target(), now_ms=DEADLINE + 1).result is TargetResult.MISSED
    # A stale answer is no answer: pending while there is time, missed after.
    stale = answered_at(SENT + 1_000, SENT - 300_000)
    assert result(stale, now_ms=SENT + 1_000).result is TargetResult.PENDING
    assert result(stale).result is TargetResult.MISSED


def test_with_a_picture_asked_for_both_must_arrive_by_the_deadline() -> None:
    sha = "ab" * 32
    fresh = answered_at(SENT + 1_000, SENT)
    both = target(
        answer_ms=SENT + 1_000, fix=fresh.fix, snapshot_ms=SENT + 9_000, snapshot_sha256=sha
    )
    judged = result(both, want_snapshot=True)
    assert judged.result is TargetResult.ANSWERED and judged.answered_ms == SENT + 9_000
    # The answer alone is complete when no picture was asked for.
    assert result(fresh).result is TargetResult.ANSWERED
    no_picture = result(fresh, want_snapshot=True)
    assert no_picture.result is TargetResult.MISSED
    assert no_picture.reason == "no picture with the roll call's id"
    assert result(fresh, want_snapshot=True, now_ms=SENT + 5_000).result is TargetResult.PENDING
    late_picture = target(
        answer_ms=SENT + 1_000, fix=fresh.fix, snapshot_ms=DEADLINE + 4_000, snapshot_sha256=sha
    )
    judged = result(late_picture, want_snapshot=True)
    assert judged.result is TargetResult.LATE and judged.answered_ms == DEADLINE + 4_000
    # A picture without a qualifying answer is not an answer.
    picture_only = target(snapshot_ms=SENT + 2_000, snapshot_sha256=sha)
    assert result(picture_only, want_snapshot=True).result is TargetResult.MISSED


def test_not_sent_is_final_whatever_arrives() -> None:
    t = target(error="not connected", answer_ms=SENT + 1, fix=AnswerFix(22.5, 114.0, SENT))
    judged = result(t, now_ms=SENT)
    assert judged.result is TargetResult.NOT_SENT
    assert judged.reason == "not sent: not connected"


def test_records_refuse_what_cannot_be() -> None:
    with pytest.raises(ValueError, match="device_id"):
        target(device_id="ft/1")
    with pytest.raises(ValueError, match="snapshot_sha256"):
        target(snapshot_ms=SENT, snapshot_sha256="XYZ")
    with pytest.raises(ValueError, match="lat"):
        AnswerFix(lat=91.0, lon=0.0, time_ms=SENT)
    with pytest.raises(ValueError, match="deadline_ms"):
        SpotCheck("sc-1", "s1", SENT, "Wang", SENT)
    with pytest.raises(ValueError, match="called twice"):
        SpotCheck("sc-1", "s1", SENT, "Wang", DEADLINE, targets=(target(), target(rollcall_id="x")))


# --- the same rules through the service: answers matched as ingest hands them over ----------


def test_answers_reach_their_targets_through_on_accepted(tmp_path: Path) -> None:
    service, clock, broker = make_service(tmp_path)
    try:
        check = service.create(by="Inspector Wang", unit_id="s1", devices=["ft-1", "ft-3"])
        now = clock.ms
        call1, call3 = broker.call_to("ft-1"), broker.call_to("ft-3")
        assert call1.sent_ms == now and call1.deadline_ms == now + 120_000
        assert not call1.want_snapshot
        assert call1.rollcall_id != call3.rollcall_id
        assert {t.rollcall_id for t in check.targets} == {call1.rollcall_id, call3.rollcall_id}
        assert [t.result for t in check.targets] == [TargetResult.PENDING] * 2

        service.on_accepted([answer("ft-1", call1.rollcall_id, now + 3_000, fix_at(now + 1_000))])
        clock.advance(121)
        got = service.check(check.check_id)
        assert got is not None
        by_device = {t.device_id: t for t in got.targets}
        one = by_device["ft-1"]
        assert one.result is TargetResult.ANSWERED and one.answered_ms == now + 3_000
        assert one.fix is not None and one.fix.time_ms == now + 1_000 and one.fix.accuracy_m == 6.0
        assert by_device["ft-3"].result is TargetResult.MISSED
        assert (got.total, got.answered, got.answer_rate) == (2, 1, 0.5)
        # An answer after the deadline turns the miss into "late".
        service.on_accepted([answer("ft-3", call3.rollcall_id, clock.ms, fix_at(clock.ms))])
        got = service.check(check.check_id)
        assert got is not None
        assert {t.device_id: t.result for t in got.targets}["ft-3"] is TargetResult.LATE
    finally:
        service.close()


def test_strangers_unknown_ids_and_repeats_change_nothing(tmp_path: Path) -> None:
    service, clock, broker = make_service(tmp_path)
    try:
        check = service.create(by="Wang", unit_id="s1", devices=["ft-1"])
        rid = broker.call_to("ft-1").rollcall_id
        now = clock.ms
        service.on_accepted(
            [
                # Another terminal answering ft-1's roll call (ids are not secret): ignored.
                answer("ft-3", rid, now + 1_000, fix_at(now)),
                answer("ft-1", "sc-unknown.1", now + 1_000, fix_at(now)),
                picture("ft-1", "sc-unknown.1", now + 1_000),
            ]
        )
        got = service.check(check.check_id)
        assert got is not None and got.targets[0].answer_ms is None
        # A stale answer first, then (the command resent) a fresh one: the fresh one counts.
        service.on_accepted([answer("ft-1", rid, now + 2_000, fix_at(now - 600_000))])
        service.on_accepted([answer("ft-1", rid, now + 4_000, fix_at(now + 3_000), seq=2)])
        # Then a repeat with another fix: the first qualifying answer stays.
        service.on_accepted([answer("ft-1", rid, now + 6_000, fix_at(now + 5_000), seq=3)])
        got = service.check(check.check_id)
        assert got is not None
        [t] = got.targets
        assert t.answer_ms == now + 4_000 and t.fix is not None and t.fix.time_ms == now + 3_000
        assert t.result is TargetResult.ANSWERED
        # Messages that are not answers are passed over without touching the store.
        service.on_accepted([picture("ft-1", None, now + 7_000)])
    finally:
        service.close()


def test_a_picture_is_matched_by_the_roll_call_id_and_device(tmp_path: Path) -> None:
    service, clock, broker = make_service(tmp_path)
    try:
        check = service.create(
            by="Wang", unit_id="s1", devices=["ft-1", "ft-3"], want_snapshot=True
        )
        assert broker.call_to("ft-1").want_snapshot
        r1, r3 = broker.call_to("ft-1").rollcall_id, broker.call_to("ft-3").rollcall_id
        now = clock.ms
        first = picture("ft-1", r1, now + 8_000)
        service.on_accepted(
            [
                answer("ft-1", r1, now + 1_000, fix_at(now)),
                answer("ft-3", r3, now + 1_000, fix_at(now)),
                picture("ft-9", r3, now + 2_000),  # not ft-3's picture
            ]
        )
        clock.advance(60)
        got = service.check(check.check_id)
        assert got is not None
        assert [t.result for t in got.targets] == [TargetResult.PENDING] * 2
        service.on_accepted([first])
        service.on_accepted([picture("ft-1", r1, now + 9_000, seq=3)])  # a second picture
        service.on_accepted([picture("ft-3", r3, now + 130_000)])  # after the deadline
        clock.advance(100)
        got = service.check(check.check_id)
        assert got is not None
        one, three = got.targets
        assert one.result is TargetResult.ANSWERED and one.answered_ms == now + 8_000
        assert first.message.sha256.hex() == one.snapshot_sha256  # type: ignore[attr-defined]
        assert three.result is TargetResult.LATE and three.answered_ms == now + 130_000
    finally:
        service.close()


def test_a_roll_call_the_broker_refuses_is_not_sent_with_the_reason(tmp_path: Path) -> None:
    service, _, broker = make_service(tmp_path)
    broker.down.add("ft-3")
    try:
        check = service.create(by="Wang", unit_id="s1", devices=["ft-1", "ft-3"])
        by_device = {t.device_id: t for t in check.targets}
        assert by_device["ft-1"].result is TargetResult.PENDING
        three = by_device["ft-3"]
        assert three.result is TargetResult.NOT_SENT
        assert three.error == "yijing-server: not connected to 127.0.0.1:1883"
        assert [d for d, _ in broker.sent] == ["ft-1"]
        # The broker's failure is not held against the volunteers.
        assert (check.total, check.sent, check.answer_rate) == (2, 1, 0.0)
        assert check.counts == {"pending": 1, "answered": 0, "late": 0, "missed": 0, "not_sent": 1}
    finally:
        service.close()
