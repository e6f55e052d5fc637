"""Publishing tasks: who they reach, acknowledgements, sends refused and sent again, expiry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import Task
from server.field.errors import BadRequest, NobodyReached, UnknownUnit
from server.field.model import Subject

from .support import NOW_MS, World, ack, make_world, position


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path)
    yield w
    w.service.close()
    w.org.close()


def publish(world: World, **kw: object) -> str:
    args: dict[str, object] = {
        "title": "检查灭火器",
        "target_kind": "unit",
        "target": "ft-s1",
        "actor": "officer:Li",
        "ttl_s": 600,
    }
    args.update(kw)
    return world.service.publish_task(**args).task_id  # type: ignore[arg-type]


def test_a_unit_task_reaches_every_terminal_of_the_subtree_one_command_each(world: World) -> None:
    task = world.service.publish_task(
        title="检查灭火器",
        text="每个值守点",
        priority=1,
        target_kind="unit",
        target="ft-s1",
        ttl_s=600,
        actor="officer:Li",
        lat=22.5,
        lon=114.0,
    )
    assert [t.device_id for t in task.targets] == ["t-1", "t-2", "t-4", "t-5"]
    assert {t.device_id: t.name for t in task.targets}["t-1"] == "Li Lei"
    assert task.targets[3].volunteer_id is None  # t-5: nobody holds it, it still gets the task
    assert task.unit_id == "ft-s1" and task.created_by == "officer:Li"
    assert task.expires_ms == NOW_MS + 600_000
    assert sorted(d for d, _, _ in world.broker.sent) == ["t-1", "t-2", "t-4", "t-5"]
    for _, message, expiry_s in world.broker.sent:
        assert isinstance(message, Task)
        assert message.task_id == task.task_id and message.expires_ms == task.expires_ms
        assert (message.priority, message.lat, message.lon) == (1, 22.5, 114.0)
        assert expiry_s == 600
    assert all(t.sent_ms == NOW_MS and not t.send_failed for t in task.targets)
    doc = world.service.task_json(task)
    assert (doc["acked"], doc["total"], doc["expired"]) == (0, 4, False)
    assert set(doc["targets"][0]) >= {"device_id", "volunteer_id", "name", "sent_ms", "acked_ms"}
    [event] = world.hub.events
    assert event[0] == "task" and event[1]["task_id"] == task.task_id and event[2] == "ft-s1"
    steps = [s.step for s in world.service.steps(Subject.TASK, task.task_id)]
    assert steps == ["published", "sent"]


def test_a_post_kind_task_reaches_only_terminals_on_running_shifts_at_such_posts(
    world: World,
) -> None:
    task = world.service.publish_task(
        title="检查灭火器", target_kind="post_kind", target="duty_point", actor="officer:Li"
    )
    # Zhao at the gate and Chen at the door; Wang's shift at the door is over.
    assert [(t.device_id, t.volunteer_id, t.unit_id) for t in task.targets] == [
        ("t-3", "zhao", "ft-s2"),
        ("t-4", "chen", "ft-s1-t1"),
    ]
    assert task.unit_id is None
    scoped = world.service.publish_task(
        title="检查灭火器",
        target_kind="post_kind",
        target="duty_point",
        actor="officer:Sun",
        units=world.org.subtree("ft-s2"),
        unit_id="ft-s2",
    )
    assert [t.device_id for t in scoped.targets] == ["t-3"] and scoped.unit_id == "ft-s2"
    with pytest.raises(NobodyReached) as caught:
        publish(world, target_kind="post_kind", target="patrol_segment")
    assert caught.value.field == "target" and "patrol_segment" in caught.value.reason


@pytest.mark.parametrize(
    ("kw", "field", "words"),
    [
        ({"title": ""}, "title", "empty"),
        ({"title": "x" * 101}, "title", "100"),
        ({"priority": 4}, "priority", "1, 2 or 3"),
        ({"priority": 2.0}, "priority", "1, 2 or 3"),
        ({"ttl_s": 59}, "ttl_s", "[60"),
        ({"ttl_s": True}, "ttl_s", "whole number"),
        ({"lat": 22.5}, "lat", "both"),
        ({"lat": 91.0, "lon": 0.0}, "lat", "[-90"),
        ({"target_kind": "city"}, "target_kind", "unit, post_kind"),
        ({"target_kind": "post_kind", "target": "beach"}, "target", "not a post kind"),
        ({"target": "nowhere"}, "target", "no unit 'nowhere'"),
    ],
)
def test_a_task_that_cannot_be_published_names_the_field(
    world: World, kw: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        publish(world, **kw)
    assert caught.value.field == field and words in caught.value.reason
    assert world.broker.sent == [] and world.service.tasks() == []


def test_a_unit_outside_the_callers_units_is_unknown_to_them(world: World) -> None:
    with pytest.raises(UnknownUnit):
        publish(world, target="ft-s2", units=world.org.subtree("ft-s1"))


def test_the_first_acknowledgement_wins_and_unknown_ones_are_ignored(world: World) -> None:
    task_id = publish(world)
    world.hub.events.clear()
    at = NOW_MS + 5_000
    world.service.on_accepted([ack("t-1", task_id, 10, at, read_ms=at - 2_000)])
    world.service.on_accepted(
        [
            ack("t-1", task_id, 11, at + 9_000),  # again: the first stands
            ack("t-3", task_id, 5, at + 1_000),  # a terminal the task did not go to
            ack("t-2", "tk-unknown", 7, at + 1_000),  # no such task
            ack("t-2", task_id, 8, at + 3_000, read_ms=at + 60_000),  # clock ahead: capped
        ]
    )
    task = world.service.task(task_id)
    assert task is not None
    acked = {t.device_id: t.acked_ms for t in task.targets}
    assert acked == {"t-1": at - 2_000, "t-2": at + 3_000, "t-4": None, "t-5": None}
    assert task.acked == 2
    assert [e[1]["acked"] for e in world.hub.events] == [1, 2]
    steps = world.service.steps(Subject.TASK, task_id)
    assert [(s.step, s.actor) for s in steps if s.step == "acked"] == [
        ("acked", "terminal:t-1"),
        ("acked", "terminal:t-2"),
    ]


def test_an_unacknowledged_task_is_sent_again_when_the_terminal_returns(world: World) -> None:
    task_id = publish(world, ttl_s=3600)
    world.broker.sent.clear()
    # Heard from within a minute of the send: nothing.
    world.service.on_accepted([position("t-1", 1, NOW_MS + 59_000)])
    assert world.broker.sent == []
    # A minute or more later: sent again, with the time left as its expiry.
    world.clock.advance(120)
    world.service.on_accepted([position("t-1", 2, NOW_MS + 120_000)])
    [(device, message, expiry_s)] = world.broker.sent
    assert device == "t-1" and isinstance(message, Task) and message.task_id == task_id
    assert expiry_s == 3600 - 120
    # Not again until another minute has passed since this send.
    world.clock.advance(30)
    world.service.on_accepted([position("t-1", 3, NOW_MS + 150_000)])
    assert len(world.broker.sent) == 1
    # Acknowledged terminals are never sent it again.
    world.service.on_accepted([ack("t-2", task_id, 4, NOW_MS + 150_000)])
    world.clock.advance(600)
    world.service.on_accepted([position("t-2", 5, NOW_MS + 750_000)])
    assert [d for d, _, _ in world.broker.sent] == ["t-1"]
    steps = world.service.steps(Subject.TASK, task_id)
    assert [(s.step, s.device_id) for s in steps if s.step == "resent"] == [("resent", "t-1")]


def test_sends_refused_by_the_broker_are_retried_by_tick_until_expiry(world: World) -> None:
    world.broker.down = True
    task = world.service.publish_task(
        title="集合", target_kind="unit", target="ft-s1-g1", actor="officer:Li", ttl_s=60
    )
    [target] = task.targets
    assert target.send_failed and target.sent_ms is None
    steps = world.service.steps(Subject.TASK, task.task_id)
    assert [(s.step, s.device_id) for s in steps] == [
        ("published", None),
        ("send_failed", "t-1"),
    ]
    world.service.tick()  # still down: tried, no new audit row
    world.clock.advance(10)
    world.broker.down = False
    world.service.tick()
    [(device, _, expiry_s)] = world.broker.sent
    assert device == "t-1" and expiry_s == 50
    got = world.service.task(task.task_id)
    assert got is not None and got.targets[0].sent_ms == NOW_MS + 10_000
    assert not got.targets[0].send_failed
    world.service.tick()
    assert len(world.broker.sent) == 1  # sent once, not on every tick
    steps = world.service.steps(Subject.TASK, task.task_id)
    assert [s.step for s in steps] == ["published", "send_failed", "sent"]


def test_a_task_expires_once_and_is_not_retried_after(world: World) -> None:
    world.broker.down = True
    task_id = publish(world, ttl_s=60)
    world.clock.advance(61)
    world.broker.down = False
    world.hub.events.clear()
    world.service.tick()
    world.service.tick()
    assert world.broker.sent == []
    [event] = world.hub.events
    assert event[1]["expired"] is True and event[1]["task_id"] == task_id
    steps = world.service.steps(Subject.TASK, task_id)
    assert [s.step for s in steps][-1] == "expired" and steps[-1].detail == "0 of 4 acknowledged"
    assert [t.task_id for t in world.service.tasks(state="expired")] == [task_id]
    assert world.service.tasks(state="active") == []
    # A frame from the terminal after expiry sends nothing either.
    world.service.on_accepted([position("t-1", 1, world.clock.ms + 100_000)])
    assert world.broker.sent == []


def test_a_restart_keeps_watching_unacknowledged_tasks(world: World) -> None:
    world.broker.down = True
    task_id = publish(world, target="ft-s1-g1")
    service = world.reopen()
    world.broker.down = False
    service.tick()
    assert [d for d, _, _ in world.broker.sent] == ["t-1"]
    world.clock.advance(70)
    service.on_accepted([position("t-1", 3, world.clock.ms)])
    assert len(world.broker.sent) == 2
    service.on_accepted([ack("t-1", task_id, 4, world.clock.ms)])
    world.clock.advance(600)
    service.on_accepted([position("t-1", 5, world.clock.ms)])
    service.tick()
    assert len(world.broker.sent) == 2


def test_a_large_task_event_leaves_its_targets_out(world: World) -> None:
    from server.field import model

    task_id = publish(world)
    task = world.service.task(task_id)
    assert task is not None
    doc = task.to_json(NOW_MS, max_targets=3)
    assert doc["targets_omitted"] is True and "targets" not in doc and doc["total"] == 4
    assert "targets" in task.to_json(NOW_MS, max_targets=model.EVENT_TARGETS_MAX)
