"""Clues with their photos, SOS alerts, replay after a crash, and a restart on the same file."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import Event, EventKind, Message, SnapshotTrigger
from server.field.errors import AlreadyDone, NotFound
from server.field.model import AlertState, ClueState, Subject
from server.field.service import FieldReports
from server.ingest import Accepted
from server.sqlite_store import SqliteStore
from tests.server.support import Terminal, device_key, device_record

from .support import (
    NOW_MS,
    FakeHub,
    FakeLive,
    Frames,
    World,
    ack,
    clue,
    fix_at,
    make_world,
    photo,
    position,
    sos,
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path)
    yield w
    w.service.close()
    w.org.close()


# --- clues -----------------------------------------------------------------------------------


def test_a_clue_is_recorded_with_who_sent_it_and_published(world: World) -> None:
    world.service.on_accepted([clue("t-1", "c1", 3, NOW_MS)])
    [report] = world.service.clues()
    doc = report.to_json()
    assert doc["id"] == "t-1:c1" and doc["clue_id"] == "c1"
    assert (doc["volunteer_id"], doc["name"], doc["unit_id"]) == ("li", "Li Lei", "ft-s1-g1")
    assert (doc["time_ms"], doc["received_ms"]) == (NOW_MS - 1000, NOW_MS)
    assert doc["category"] == "theft" and doc["lat"] == pytest.approx(22.5431)
    assert doc["photo_url"] is None and doc["state"] == "new"
    [(topic, data, unit)] = world.hub.events
    assert (topic, data, unit) == ("clue", doc, "ft-s1-g1")
    # The same clue again (a resend): nothing new.
    world.service.on_accepted([clue("t-1", "c1", 3, NOW_MS)])
    assert len(world.service.clues()) == 1 and len(world.hub.events) == 1
    # Another terminal may use the same clue id: a different clue.
    world.service.on_accepted([clue("t-9", "c1", 1, NOW_MS + 5)])
    other = world.service.clue("t-9:c1")
    assert other is not None and other.unit_id is None and other.name is None


@pytest.mark.parametrize("photo_first", [False, True])
def test_a_clue_gets_its_photo_whichever_arrives_first(world: World, photo_first: bool) -> None:
    picture = photo("t-1", "c1", 4, NOW_MS + 800)
    report = clue("t-1", "c1", 3, NOW_MS)
    sha = picture.message.sha256.hex()  # type: ignore[attr-defined]
    first, second = (picture, report) if photo_first else (report, picture)
    world.service.on_accepted([first])
    world.service.on_accepted([second])
    got = world.service.clue("t-1:c1")
    assert got is not None and got.to_json()["photo_url"] == f"/api/v1/snapshots/{sha}.jpg"
    assert world.hub.topic("clue")[-1]["photo_url"] == f"/api/v1/snapshots/{sha}.jpg"
    # A second photo, another device's photo, or a photo with another trigger: ignored.
    world.service.on_accepted(
        [
            photo("t-1", "c1", 5, NOW_MS + 900),
            photo("t-2", "c1", 1, NOW_MS + 900),
            photo("t-1", "c2", 6, NOW_MS + 900, trigger=SnapshotTrigger.REQUEST),
        ]
    )
    got = world.service.clue("t-1:c1")
    assert got is not None and got.photo_sha256 == sha
    assert world.service.clue("t-2:c1") is None


def test_handling_a_clue_once(world: World) -> None:
    world.service.on_accepted([clue("t-3", "c7", 3, NOW_MS)])
    world.clock.advance(30)
    done = world.service.handle_clue("t-3:c7", actor="officer:Sun", note="已派人查看")
    assert done.state is ClueState.HANDLED and done.handled_ms == NOW_MS + 30_000
    assert world.hub.events[-1][1]["state"] == "handled"
    with pytest.raises(AlreadyDone):
        world.service.handle_clue("t-3:c7", actor="officer:Li")
    for key in ("t-3:nope", "no-colon"):
        with pytest.raises(NotFound):
            world.service.handle_clue(key, actor="officer:Li")
    assert [c.clue_id for c in world.service.clues(state=ClueState.NEW)] == []
    assert [c.clue_id for c in world.service.clues(units={"ft-s2"})] == ["c7"]
    assert world.service.clues(units={"ft-s1"}) == []
    steps = world.service.steps(Subject.CLUE, "t-3:c7")
    assert [(s.step, s.actor) for s in steps] == [
        ("reported", "terminal:t-3"),
        ("handled", "officer:Sun"),
    ]


# --- SOS alerts ------------------------------------------------------------------------------


def test_an_sos_opens_an_alert_at_once_and_repeats_count_on_it(world: World) -> None:
    world.live.docs["t-1"] = {
        "device": "t-1",
        "fix": {"time_ms": NOW_MS - 10_000, "lat": 1.0, "lon": 2.0},
        "snapshot": {"url": "/api/v1/snapshots/ab.jpg"},
    }
    world.service.on_accepted([position("t-1", 1, NOW_MS - 10), sos("t-1", 2, NOW_MS)])
    # Published inside on_accepted, with no tick in between.
    [(topic, doc, unit)] = world.hub.events
    assert topic == "alert" and unit == "ft-s1-g1"
    assert doc["state"] == "open" and doc["count"] == 1 and doc["raised_ms"] == NOW_MS
    assert (doc["volunteer_id"], doc["name"], doc["device_id"]) == ("li", "Li Lei", "t-1")
    assert doc["fix"]["lat"] == 1.0  # no fix in the event: the live one
    assert doc["snapshot"] == {"url": "/api/v1/snapshots/ab.jpg"}
    assert world.live.sos_calls == [("t-1", NOW_MS)]

    world.service.on_accepted([sos("t-1", 3, NOW_MS + 2_000, fix=fix_at(NOW_MS + 1_900))])
    [alert] = world.service.alerts()
    assert alert.count == 2 and alert.last_ms == NOW_MS + 2_000 and alert.raised_ms == NOW_MS
    assert alert.fix is not None and alert.fix["time_ms"] == NOW_MS + 1_900
    assert world.live.sos_calls == [("t-1", NOW_MS)]  # still the same SOS
    assert [e[1]["count"] for e in world.hub.events] == [1, 2]

    # Other events are not alerts.
    world.service.on_accepted([Accepted("t-2", 9, Event(EventKind.BUTTON, NOW_MS), NOW_MS + 10)])
    assert len(world.service.alerts()) == 1


def test_ack_ends_the_sos_and_a_new_sos_opens_a_new_alert(world: World) -> None:
    world.service.on_accepted([sos("t-3", 1, NOW_MS)])
    [alert] = world.service.alerts()
    world.clock.advance(20)
    acked = world.service.ack_alert(alert.alert_id, actor="officer:Sun", note="已联系")
    assert acked.state is AlertState.ACKED and acked.acked_ms == NOW_MS + 20_000
    assert world.live.sos == {"t-3": None}
    assert world.hub.events[-1][1]["state"] == "acked"
    assert world.hub.events[-1][2] == "ft-s2"
    with pytest.raises(AlreadyDone):
        world.service.ack_alert(alert.alert_id, actor="officer:Li")
    with pytest.raises(NotFound):
        world.service.ack_alert("al-none", actor="officer:Li")
    assert world.service.alerts() == []

    world.service.on_accepted([sos("t-3", 2, NOW_MS + 30_000)])
    [again] = world.service.alerts()
    assert again.alert_id != alert.alert_id and again.count == 1
    assert world.live.sos == {"t-3": NOW_MS + 30_000}
    assert len(world.service.alerts(state=None)) == 2
    assert [a.alert_id for a in world.service.alerts(units={"ft-s1"})] == []
    steps = world.service.steps(Subject.ALERT, alert.alert_id)
    assert [(s.step, s.actor) for s in steps] == [
        ("raised", "terminal:t-3"),
        ("acked", "officer:Sun"),
    ]


def test_a_restart_on_the_same_file_sets_open_alerts_in_the_live_state_again(
    world: World,
) -> None:
    world.service.on_accepted([sos("t-1", 1, NOW_MS), sos("t-3", 1, NOW_MS + 5)])
    world.service.ack_alert(world.service.alerts(units={"ft-s2"})[0].alert_id, actor="o:x")
    service = world.reopen()
    assert world.live.sos_calls == [("t-1", NOW_MS)]
    service.start()  # again: harmless
    assert world.live.sos == {"t-1": NOW_MS}
    # The open alert is the same one: a repeat counts on it.
    service.on_accepted([sos("t-1", 2, NOW_MS + 9)])
    [alert] = service.alerts()
    assert alert.count == 2


def test_a_failing_feed_or_live_state_does_not_lose_the_alert(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("feed down")

    world.hub.publish_event = broken  # type: ignore[method-assign, assignment]
    world.live.set_sos = broken  # type: ignore[method-assign, assignment]
    with caplog.at_level(logging.ERROR, logger="yijing.field"):
        world.service.on_accepted([sos("t-1", 1, NOW_MS)])
    assert len(world.service.alerts()) == 1
    assert "alert event not published" in caplog.text


def test_on_accepted_never_raises(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.service.close()  # every store call now fails
    with caplog.at_level(logging.ERROR, logger="yijing.field"):
        world.service.on_accepted([sos("t-1", 1, NOW_MS), clue("t-1", "c", 2, NOW_MS)])
    assert "not applied" in caplog.text
    world.service = world.reopen()


def test_batches_of_other_frames_are_cheap(world: World) -> None:
    batch = [position(f"d-{i % 500}", i, NOW_MS + i) for i in range(5_000)]
    start = time.perf_counter()
    for _ in range(10):
        world.service.on_accepted(batch)
    per_batch = (time.perf_counter() - start) / 10
    assert per_batch < 0.02, per_batch
    assert world.hub.events == []


# --- replay ----------------------------------------------------------------------------------


def _sealed(batch: list[Accepted]) -> Frames:
    terminals: dict[str, Terminal] = {}
    rows = []
    for a in batch:
        t = terminals.setdefault(a.device_id, Terminal(a.device_id))
        _, payload = t.frame(a.message, a.seq)
        rows.append((a.device_id, a.seq, a.received_ms, payload))
    return Frames(rows)


def test_replay_applies_what_was_missed_and_twice_changes_nothing(world: World) -> None:
    task_id = world.service.publish_task(
        title="集合", target_kind="unit", target="ft-s1-g1", actor="officer:Li"
    ).task_id
    frames: list[Accepted] = [
        sos("t-1", 1, NOW_MS + 100),
        sos("t-1", 2, NOW_MS + 200),
        photo("t-2", "c1", 3, NOW_MS + 300),
        clue("t-2", "c1", 4, NOW_MS + 400),
        ack("t-1", task_id, 5, NOW_MS + 500),
        position("t-1", 6, NOW_MS + 600),
    ]
    # Ingest applied the first SOS before the crash; the rest only reached the frame store.
    world.service.on_accepted(frames[:1])
    world.frames.rows = _sealed(frames).rows
    sent_before = len(world.broker.sent)
    world.clock.advance(3600)
    # Four frames (the position is not replayed) and one clue photo, from its metadata.
    assert world.service.replay(NOW_MS) == 5
    assert world.service.replay(NOW_MS) == 5
    [alert] = world.service.alerts()
    assert alert.count == 2  # seq 1 once, seq 2 once
    got = world.service.clue("t-2:c1")
    assert got is not None and got.photo_sha256 is not None
    task = world.service.task(task_id)
    assert task is not None and task.acked == 1
    assert len(world.broker.sent) == sent_before  # replay sends nothing
    assert world.service.replay(NOW_MS + 450) == 1  # from a time on


def test_replay_reads_the_real_frame_store(world: World, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "frames.db")
    try:
        t = Terminal("t-4")
        store.add_device(device_record(t.identity), device_key(t.identity))
        messages: list[tuple[Message, int]] = [
            (Event(EventKind.SOS, NOW_MS - 100), NOW_MS),
            (clue("t-4", "c9", 2, NOW_MS + 50).message, NOW_MS + 50),
            (photo("t-4", "c9", 3, NOW_MS + 80).message, NOW_MS + 80),
        ]
        store.store_frames(
            [t.incoming(m, seq, received_ms=at) for seq, (m, at) in enumerate(messages, 1)]
        )
        live = FakeLive()
        service = FieldReports(
            path=tmp_path / "replayed.db",
            live=live,
            org=world.org,
            store=store,
            hub=FakeHub(),
            send=world.broker.send,
            clock=world.clock,
        )
        try:
            assert service.replay(NOW_MS - 1) == 3
            [alert] = service.alerts()
            assert alert.device_id == "t-4" and alert.name == "Chen Jie"
            replayed = service.clue("t-4:c9")
            assert replayed is not None and replayed.photo_sha256 is not None
            assert live.sos == {"t-4": NOW_MS}
        finally:
            service.close()
    finally:
        store.close()
