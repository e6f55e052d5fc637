"""The backlog: newest fix first when the link returns, the rest oldest first in batches, and a
disk budget that gives up snapshots before fixes, thins old fixes, counts and reports it all."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.budget import KEEP_RECENT_S, thin
from agent.outbox import BATCH_FIXES, Lane, Outbox
from protocol import (
    Event,
    EventKind,
    Fix,
    Position,
    PositionBatch,
    Presence,
    PresenceKind,
    Snapshot,
    SnapshotTrigger,
    StoredAck,
    decode,
)
from provisioning import new_device

from .test_outbox import T0, Clock, endpoint_for


def fix(second: int) -> Fix:
    return Fix(time_ms=T0 + second * 1000, lat=22.5431 + second * 1e-6, lon=114.0579)


def snapshot(k: int, size: int = 2000) -> Snapshot:
    jpeg = b"\xff\xd8" + bytes([k % 256]) * size + b"\xff\xd9"
    return Snapshot(
        captured_ms=T0 + k * 60_000,
        trigger=SnapshotTrigger.PERIODIC,
        width=64,
        height=48,
        sha256=hashlib.sha256(jpeg).digest(),
        jpeg=jpeg,
    )


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "o.db", endpoint_for(new_device("dev-1")), clock_ms=Clock())
    yield outbox
    outbox.close()


def messages(box: Outbox, limit: int = 10_000) -> list[object]:
    return [decode(item.payload).envelope.message for item in box.next_items(limit)]


def test_after_an_hour_offline_the_newest_fix_goes_first_then_history_oldest_first(
    box: Outbox,
) -> None:
    for second in range(3600):
        box.record_fix(fix(second))
    assert box.counters()["backlog_fixes"] == 3600 and box.counters()["frames_unacked"] == 0
    sent = messages(box)
    first = sent[0]
    assert isinstance(first, Position) and first.fix.time_ms == T0 + 3599 * 1000
    batches = [m for m in sent[1:] if isinstance(m, PositionBatch)]
    assert all(len(b.fixes) <= BATCH_FIXES for b in batches)
    history = [f.time_ms for b in batches for f in b.fixes]
    assert history == [T0 + s * 1000 for s in range(3599)]  # oldest first, none twice
    assert box.counters()["backlog_fixes"] == 0


def test_urgent_frames_go_before_the_live_position(box: Outbox) -> None:
    box.record_fix(fix(0))
    box.put(Event(kind=EventKind.SOS, time_ms=T0 + 5, fix=fix(0)))
    sent = messages(box)
    assert isinstance(sent[0], Event) and sent[0].kind is EventKind.SOS
    assert isinstance(sent[1], Position)


def test_a_late_older_fix_goes_to_backfill_not_live(box: Outbox) -> None:
    box.record_fix(fix(10))
    assert isinstance(messages(box)[0], Position)
    box.record_fix(fix(5))  # older than what went out live
    [item] = box.next_items(10, exclude={1})
    assert item.lane is Lane.BACKFILL
    assert isinstance(decode(item.payload).envelope.message, PositionBatch)


def test_only_as_many_frames_are_sealed_as_there_is_room_for(box: Outbox) -> None:
    for second in range(1000):
        box.record_fix(fix(second))
    items = box.next_items(3)
    assert len(items) == 3
    # One live Position and two batches of the oldest: 1 + 2 * 100 fixes left the backlog.
    assert box.counters()["backlog_fixes"] == 1000 - 1 - 2 * BATCH_FIXES
    assert box.next_seq == 4


def test_sealed_frames_are_resent_before_more_backlog_is_sealed(box: Outbox) -> None:
    for second in range(300):
        box.record_fix(fix(second))
    first = box.next_items(2)
    again = box.next_items(2)
    assert [i.seq for i in again] == [i.seq for i in first]
    assert [i.payload for i in again] == [i.payload for i in first]


def test_acknowledged_backlog_is_gone_and_the_rest_survives_reopen(tmp_path: Path) -> None:
    endpoint = endpoint_for(new_device("dev-1"))
    box = Outbox(tmp_path / "o.db", endpoint, clock_ms=Clock())
    for second in range(250):
        box.record_fix(fix(second))
    items = box.next_items(2)
    box.acknowledge(StoredAck.of([i.seq for i in items]))
    box.close()
    again = Outbox(tmp_path / "o.db", endpoint, clock_ms=Clock())
    try:
        assert again.counters()["backlog_fixes"] == 250 - 1 - BATCH_FIXES
        assert again.counters()["fixes_accepted"] == 250
        assert again.pending() == 250 - 1 - BATCH_FIXES
    finally:
        again.close()


# --- the disk budget ----------------------------------------------------------------------------


def test_thin_keeps_the_earliest_fix_of_each_bucket() -> None:
    rows = [(1, 0), (2, 10_000), (3, 59_999), (4, 60_000), (5, 61_000), (6, 200_000)]
    assert sorted(thin(rows, 60_000)) == [2, 3, 5]
    assert thin([], 60_000) == []
    shuffled = list(reversed(rows))
    assert sorted(thin(shuffled, 60_000)) == [2, 3, 5]


def _reports(box: Outbox) -> dict[EventKind, int]:
    totals: dict[EventKind, int] = {}
    for message in messages(box):
        if isinstance(message, Event) and message.value is not None:
            totals[message.kind] = totals.get(message.kind, 0) + message.value
    return totals


def test_snapshots_go_before_any_fix_is_thinned(box: Outbox) -> None:
    for k in range(5):
        box.record_snapshot(snapshot(k))
    for second in range(0, 7200, 5):
        box.record_fix(fix(second))
    box.budget_bytes = box.bytes_used() - 3000  # about two snapshots too many
    box.record_fix(fix(7200))
    counters = box.counters()
    assert counters["snapshots_evicted"] >= 1
    assert counters["fixes_thinned"] == 0
    assert counters["backlog_snapshots"] == 5 - counters["snapshots_evicted"]
    assert _reports(box) == {EventKind.SNAPSHOTS_EVICTED: counters["snapshots_evicted"]}


def test_old_fixes_are_thinned_to_one_a_minute_and_recent_ones_kept(box: Outbox) -> None:
    for second in range(0, 7200, 5):  # two hours at one fix per 5 s: 1,440 fixes
        box.record_fix(fix(second))
    box.budget_bytes = box.bytes_used() // 2
    box.record_fix(fix(7200))
    counters = box.counters()
    assert counters["fixes_thinned"] > 0
    assert counters["backlog_fixes"] + counters["fixes_thinned"] == counters["fixes_accepted"]
    assert box.bytes_used() <= box.budget_bytes + 2000  # plus the report frame itself
    times = sorted(
        f.time_ms
        for m in messages(box)
        if isinstance(m, (Position, PositionBatch))
        for f in (m.fixes if isinstance(m, PositionBatch) else (m.fix,))
    )
    newest = T0 + 7200 * 1000
    recent = [t for t in times if t >= newest - KEEP_RECENT_S * 1000]
    assert len(recent) == KEEP_RECENT_S // 5 + 1  # the last 10 minutes untouched
    old = [t for t in times if t < newest - KEEP_RECENT_S * 1000]
    minutes = [t // 60_000 for t in old]
    assert len(minutes) == len(set(minutes))  # at most one per minute remains
    assert _reports(box)[EventKind.FIXES_THINNED] == counters["fixes_thinned"]


def test_urgent_and_presence_frames_are_never_evicted(box: Outbox) -> None:
    box.put(Event(kind=EventKind.SOS, time_ms=T0))
    box.put(Presence(kind=PresenceKind.CHECK_IN, shift_id="shift-1"))
    for second in range(0, 3600):
        box.record_fix(fix(second))
    box.budget_bytes = 1  # impossible: everything evictable goes, nothing else
    box.record_fix(fix(3600))
    sent = messages(box)
    assert any(isinstance(m, Event) and m.kind is EventKind.SOS for m in sent)
    assert any(isinstance(m, Presence) and m.kind is PresenceKind.CHECK_IN for m in sent)
    counters = box.counters()
    # The newest fix always survives, so the live position is never lost.
    assert counters["backlog_fixes"] == 0  # sealed by messages() above
    assert any(isinstance(m, Position) and m.fix.time_ms == T0 + 3600 * 1000 for m in sent)
    assert counters["fixes_accepted"] - counters["fixes_thinned"] == 1


def test_the_byte_count_always_equals_what_is_stored(box: Outbox) -> None:
    def actual() -> int:
        conn = box._conn
        return int(
            conn.execute(
                "SELECT (SELECT coalesce(sum(length(payload)), 0) FROM items)"
                " + (SELECT coalesce(sum(length(body)), 0) FROM backlog)"
            ).fetchone()[0]
        )

    for second in range(400):
        box.record_fix(fix(second))
    box.record_snapshot(snapshot(1))
    box.put(Event(kind=EventKind.SOS, time_ms=T0))
    assert box.bytes_used() == actual()
    items = box.next_items(4)
    assert box.bytes_used() == actual()
    box.acknowledge(StoredAck.of([i.seq for i in items[:2]]))
    assert box.bytes_used() == actual()
    box.budget_bytes = actual() // 3
    box.record_fix(fix(400))
    assert box.bytes_used() == actual()


def test_a_lane_can_be_limited_to_what_may_be_on_the_wire(box: Outbox) -> None:
    for k in range(5):
        box.record_snapshot(snapshot(k))
    box.record_fix(fix(0))
    items = list(box.iter_items(64, lane_room={Lane.SNAPSHOT: 1}))
    assert [i.lane for i in items] == [Lane.LIVE, Lane.SNAPSHOT]
    assert box.counters()["backlog_snapshots"] == 4  # the rest stay unsealed, evictable
    assert (
        list(box.iter_items(64, exclude={i.seq for i in items}, lane_room={Lane.SNAPSHOT: 0})) == []
    )
