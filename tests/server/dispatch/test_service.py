"""The dispatcher with a fake live state, hub and broker, on an injected clock."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from protocol import DispatchCancel, DispatchCommand, Presence, PresenceKind
from server.dispatch.errors import BadRequest, Conflict, NotEligible, NotFound, OutOfScope
from server.dispatch.service import Dispatcher
from server.ingest import Accepted
from tests.server.support import Terminal

from .support import LAT, LON, World, position, response, world


def _open(w: World, service: Dispatcher, **kw: Any) -> str:
    doc = service.create_incident(
        kind="fight", priority=1, lat=LAT, lon=LON, actor="officer:Li", unit_id="s1", **kw
    )
    return str(doc["incident_id"])


def _one(w: World, service: Dispatcher, device: str = "a", **kw: Any) -> tuple[str, str]:
    incident = _open(w, service, **kw)
    [d] = service.dispatch(incident, [device], "officer:Li")
    return incident, str(d["dispatch_id"])


def _state(service: Dispatcher, incident: str) -> dict[str, str]:
    doc = service.incident(incident)
    assert doc is not None
    return {d["device_id"]: d["state"] for d in doc["dispatches"]}


def _steps(service: Dispatcher, incident: str) -> list[tuple[str, str | None]]:
    doc = service.incident(incident)
    assert doc is not None
    return [(s["step"], s["dispatch_id"]) for s in doc["steps"]]


def test_proposals_are_walking_circles_of_free_terminals_on_duty(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.live.add("off", 20, on_duty=False)
    w.live.add("gone", 20, online=False)
    w.live.add("help", 20, sos=True)
    w.live.add("other", 20, unit="s2")
    service = w.dispatcher()
    incident = _open(w, service)
    [opened] = [e for e in w.hub.events if e[0] == "incident"]
    assert opened[1]["incident_id"] == incident and opened[2] == "s1"
    circles = service.propose(incident, units={"s1", "g1"})["circles"]
    assert [(c["minutes"], [x["device_id"] for x in c["candidates"]]) for c in circles] == [
        (1, ["a", "b"]),
        (3, ["c", "d"]),
        (5, ["e"]),
    ]
    first = circles[0]["candidates"][0]
    assert first["distance_m"] == pytest.approx(30, abs=0.1)
    assert first["walk_m"] == pytest.approx(39, abs=0.1)
    assert first["eta_s"] == pytest.approx(39 / 1.4, abs=0.1)
    assert (first["volunteer_id"], first["name"], first["post_id"]) == ("v-a", "Name a", "p-s1")
    assert first["status"] == "on_post" and first["asked"] is None
    assert circles[2]["radius_m"] == pytest.approx(1.4 * 300 / 1.3, abs=0.1)
    # Unscoped, the other station's terminal is a candidate too.
    assert "other" in [
        x["device_id"] for x in service.propose(incident)["circles"][0]["candidates"]
    ]


def test_dispatch_sends_the_command_and_engages_the_terminal(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident = _open(w, service, note="north gate")
    docs = service.dispatch(incident, ["a", "c"], "officer:Li", ttl_s=120)
    assert [d["device_id"] for d in docs] == ["a", "c"]
    assert all(d["state"] == "sent" and d["pending"] is False for d in docs)
    assert [d["circle"] for d in docs] == [1, 3]
    [(_, command, expiry)] = [s for s in w.broker.sent if s[0] == "a"]
    assert isinstance(command, DispatchCommand)
    assert (command.incident_id, command.kind, command.priority) == (incident, "fight", 1)
    assert (command.lat, command.lon, command.note) == (LAT, LON, "north gate")
    assert command.sent_ms == w.clock.ms and command.expires_ms == w.clock.ms + 120_000
    assert command.dispatch_id == docs[0]["dispatch_id"] and expiry == 120
    assert command.dispatch_id.startswith("d-") and len(command.dispatch_id) == 12
    assert ("a", command.dispatch_id) in w.live.engaged_calls
    doc = service.incident(incident)
    assert doc is not None and doc["circle"] == 3
    # An engaged terminal is no candidate any more.
    with pytest.raises(NotEligible, match="a is already engaged"):
        service.dispatch(incident, ["a"], "officer:Li")


@pytest.mark.parametrize(
    "device,why",
    [
        ("nobody", "nobody is not a known terminal"),
        ("off", "off is not on duty"),
        ("gone", "gone is offline"),
        ("help", "help has raised an SOS"),
        ("other", "other is outside your scope"),
    ],
)
def test_an_ineligible_device_is_named_and_nothing_is_sent(
    tmp_path: Path, device: str, why: str
) -> None:
    w = world(tmp_path)
    w.live.add("off", 20, on_duty=False)
    w.live.add("gone", 20, online=False)
    w.live.add("help", 20, sos=True)
    w.live.add("other", 20, unit="s2")
    service = w.dispatcher()
    incident = _open(w, service)
    with pytest.raises(NotEligible) as caught:
        service.dispatch(incident, ["a", device], "officer:Li", units={"s1", "g1"})
    assert str(caught.value) == f"device_ids: {why}"
    assert w.broker.sent == [] and _state(service, incident) == {}


def test_bad_requests_name_the_field(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident = _open(w, service)
    for args, field in (
        ({"device_ids": []}, "device_ids"),
        ({"device_ids": ["a", "a"]}, "device_ids"),
        ({"device_ids": [f"t{i}" for i in range(21)]}, "device_ids"),
        ({"device_ids": ["a"], "ttl_s": 5}, "ttl_s"),
    ):
        with pytest.raises(BadRequest) as caught:
            service.dispatch(incident, actor="officer:Li", **args)
        assert caught.value.field == field
    with pytest.raises(BadRequest, match="unit_id"):
        service.create_incident(
            kind="fire", priority=1, lat=LAT, lon=LON, actor="officer:Li", unit_id="nowhere"
        )
    with pytest.raises(BadRequest, match="kind"):
        service.create_incident(kind="riot", priority=1, lat=LAT, lon=LON, actor="officer:Li")
    with pytest.raises(NotFound):
        service.dispatch("i-none", ["a"], "officer:Li")
    with pytest.raises(OutOfScope):
        service.dispatch(incident, ["a"], "officer:Li", units={"s2"})


def test_expiry_at_exactly_expires_ms(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, dispatch_id = _one(w, service, auto_escalate=False)
    w.clock.advance(600 - 0.001)
    service.tick()
    assert _state(service, incident) == {"a": "sent"}
    w.clock.advance(0.001)
    service.tick()
    assert _state(service, incident) == {"a": "expired"}
    assert w.live.engaged_calls[-1] == ("a", None)
    doc = service.incident(incident)
    assert (
        doc is not None and doc["dispatches"][0]["expired_ms"] == doc["dispatches"][0]["expires_ms"]
    )
    # An answer after expiry is audited as late, once, and changes nothing.
    for _ in range(2):
        service.on_accepted([response("a", dispatch_id, "accepted", w.clock.ms + 10)])
    assert _state(service, incident) == {"a": "expired"}
    assert _steps(service, incident).count(("late_answer", dispatch_id)) == 1


def test_an_answer_received_after_expiry_is_late_even_before_the_tick(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, dispatch_id = _one(w, service, auto_escalate=False)
    w.clock.advance(601)
    service.on_accepted([response("a", dispatch_id, "accepted", w.clock.ms)])
    assert _state(service, incident) == {"a": "expired"}
    assert [s for s, _ in _steps(service, incident)][-2:] == ["expired", "late_answer"]


def test_answers_step_the_table_with_times_capped_at_receipt(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, d = _one(w, service)
    t = w.clock.ms
    batch = [
        response("a", d, "delivered", t + 1_000, time_ms=t + 900),
        # The terminal's clock runs ahead: the time is capped at the server's receipt.
        response("a", d, "accepted", t + 5_000, time_ms=t + 60_000, seq=2),
    ]
    service.on_accepted(batch)
    doc = service.incident(incident)
    assert doc is not None
    [disp] = doc["dispatches"]
    assert (disp["state"], disp["delivered_ms"], disp["accepted_ms"]) == (
        "accepted",
        t + 900,
        t + 5_000,
    )
    # Declining after accepting is not in the table: audited once, ignored.
    for _ in range(2):
        service.on_accepted([response("a", d, "declined", t + 6_000, seq=3)])
    assert _state(service, incident) == {"a": "accepted"}
    assert _steps(service, incident).count(("ignored_answer", d)) == 1
    # Another terminal answering this dispatch, and unknown ids, are ignored and counted.
    service.on_accepted(
        [response("b", d, "on_scene", t + 7_000), response("a", "d-x", "accepted", t)]
    )
    assert _state(service, incident) == {"a": "accepted"}
    assert (service.counts["foreign"], service.counts["unknown"]) == (1, 1)
    service.on_accepted([response("a", d, "on_scene", t + 8_000, seq=4)])
    assert _state(service, incident) == {"a": "on_scene"}
    assert ("a", None) not in w.live.engaged_calls  # on scene is still engaged


def test_replaying_the_same_answers_changes_nothing(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, d = _one(w, service)
    t = w.clock.ms
    batch = [
        response("a", d, "delivered", t + 1_000),
        response("a", d, "accepted", t + 2_000, seq=2),
        response("a", d, "on_scene", t + 3_000, seq=3),
    ]
    service.on_accepted(batch)
    first = service.incident(incident)
    service.on_accepted(batch)
    service.on_accepted(batch[:1])
    assert service.incident(incident) == first
    assert first is not None
    assert [s["step"] for s in first["steps"]] == [
        "opened",
        "dispatched",
        "delivered",
        "accepted",
        "on_scene",
    ]


def test_replay_applies_answers_stored_while_down_once(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, d = _one(w, service)
    service.close()
    terminal = Terminal("a")
    t = w.clock.ms
    for seq, status in ((1, "delivered"), (2, "accepted")):
        message = response("a", d, status, t + seq * 1000).message
        _, payload = terminal.frame(message, seq, sent_ms=t + seq * 1000)
        w.frames.frames.append(("a", seq, t + seq * 1000, 6, payload))
    w.clock.advance(30)
    service = w.dispatcher()
    assert service.replay(t) == 2
    assert service.replay(t) == 2
    assert _state(service, incident) == {"a": "accepted"}
    steps = [s for s, _ in _steps(service, incident)]
    assert steps == ["opened", "dispatched", "delivered", "accepted"]
    service.close()


def test_escalation_by_timeout_widens_the_circle_until_exhausted(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, _ = _one(w, service)
    w.clock.advance(89.9)
    service.tick()
    assert set(_state(service, incident)) == {"a"}
    w.clock.advance(0.1)
    service.tick()
    # The next circle (3 min), nearest first, two per round; a was asked already.
    assert _state(service, incident) == {"a": "sent", "b": "sent", "c": "sent"}
    doc = service.incident(incident)
    assert doc is not None and doc["circle"] == 3
    assert [s["actor"] for s in doc["steps"] if s["step"] == "dispatched"][-2:] == ["system"] * 2
    w.clock.advance(90)
    w.live.refresh()
    service.tick()
    assert set(_state(service, incident)) == {"a", "b", "c", "d", "e"}
    w.clock.advance(90)
    w.hub.events.clear()
    service.tick()
    doc = service.incident(incident)
    assert doc is not None and doc["exhausted"] is True and doc["circle"] == 5
    assert [s["step"] for s in doc["steps"]].count("escalation_exhausted") == 1
    assert [e[1]["exhausted"] for e in w.hub.events if e[0] == "incident"] == [True]
    w.clock.advance(90)
    service.tick()  # exhausted once, not every tick
    doc = service.incident(incident)
    assert doc is not None
    assert [s["step"] for s in doc["steps"]].count("escalation_exhausted") == 1


def test_escalation_when_everyone_declined_and_not_once_someone_accepted(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, d = _one(w, service)
    service.on_accepted([response("a", d, "declined", w.clock.ms + 1000)])
    w.clock.advance(2)
    service.tick()
    assert _state(service, incident) == {"a": "declined", "b": "sent", "c": "sent"}
    doc = service.incident(incident)
    assert doc is not None
    [b] = [x for x in doc["dispatches"] if x["device_id"] == "b"]
    service.on_accepted([response("b", b["dispatch_id"], "accepted", w.clock.ms + 1000)])
    w.clock.advance(600)
    service.tick()
    assert _state(service, incident) == {"a": "declined", "b": "accepted", "c": "expired"}
    # Without auto_escalate nothing happens on its own.
    quiet, _ = _one(w, service, device="d", auto_escalate=False)
    w.clock.advance(600)
    service.tick()
    assert _state(service, quiet) == {"d": "expired"}


def test_on_scene_by_position_within_the_radius_and_the_accuracy_cap(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, d = _one(w, service)
    t = w.clock.ms
    service.on_accepted([position("a", 10, t + 500)])  # not accepted yet: nothing
    assert _state(service, incident) == {"a": "sent"}
    service.on_accepted([response("a", d, "accepted", t + 1_000)])
    service.on_accepted([position("a", 10, t - 1_000)])  # a fix from before the dispatch
    service.on_accepted([position("a", 60, t + 2_000)])
    service.on_accepted([position("a", 85, t + 3_000, accuracy_m=100)])  # 50 + 30 at most
    assert _state(service, incident) == {"a": "accepted"}
    service.on_accepted([position("a", 75, t + 4_000, accuracy_m=100)])
    doc = service.incident(incident)
    assert doc is not None
    assert doc["dispatches"][0]["state"] == "on_scene"
    assert doc["dispatches"][0]["on_scene_ms"] == t + 4_000
    assert doc["steps"][-1]["detail"] == "by position"


def test_resend_when_a_terminal_is_heard_from_again(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, d = _one(w, service)
    start = w.clock.ms
    heartbeat = Presence(kind=PresenceKind.HEARTBEAT)

    def heard(at_s: float) -> int:
        w.clock.ms = start + int(at_s * 1000)
        service.on_accepted([Accepted("a", 9, heartbeat, w.clock.ms)])
        return len(w.broker.to("a"))

    assert heard(4.9) == 1
    assert heard(5) == 2
    assert heard(9) == 2
    assert heard(14.9) == 2  # not twice in 10 s
    assert heard(15) == 3
    resent = w.broker.to("a")[-1]
    assert isinstance(resent, DispatchCommand) and resent == w.broker.to("a")[0]
    assert w.broker.sent[-1][2] == 600 - 15  # MQTT expiry: what is left of the ttl
    assert _steps(service, incident).count(("resent", d)) == 2
    service.on_accepted([response("a", d, "delivered", w.clock.ms)])
    assert heard(40) == 3  # delivered: never again


def test_a_refused_send_is_audited_once_and_retried_by_the_tick(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident = _open(w, service)
    w.broker.down = True
    [doc] = service.dispatch(incident, ["a"], "officer:Li")
    assert doc["state"] == "sent" and doc["pending"] is True
    for _ in range(3):
        w.clock.advance(1)
        service.tick()
    steps = [s for s, _ in _steps(service, incident)]
    assert steps.count("send_failed") == 1
    w.broker.down = False
    w.clock.advance(1)
    service.tick()
    assert len(w.broker.to("a")) == 1 and w.broker.sent[0][2] == 600 - 4
    doc2 = service.incident(incident)
    assert doc2 is not None and doc2["dispatches"][0]["pending"] is False
    assert [s["step"] for s in doc2["steps"]][-1] == "resent"
    service.tick()
    assert len(w.broker.to("a")) == 1


def test_closing_closes_the_accepted_and_cancels_the_rest(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident = _open(w, service)
    docs = service.dispatch(incident, ["a", "b", "c"], "officer:Li")
    ids = {x["device_id"]: x["dispatch_id"] for x in docs}
    t = w.clock.ms
    service.on_accepted(
        [
            response("a", ids["a"], "accepted", t + 1000),
            response("b", ids["b"], "declined", t + 1000),
        ]
    )
    doc = service.close_incident(incident, "officer:Li", "handled")
    assert doc["state"] == "closed" and doc["closed_by"] == "officer:Li"
    assert {x["device_id"]: x["state"] for x in doc["dispatches"]} == {
        "a": "closed",
        "b": "declined",
        "c": "cancelled",
    }
    # The ringing terminal stops; the one on its way stands down; the one that declined
    # hears nothing more.
    for device in ("a", "c"):
        [cancel] = [m for m in w.broker.to(device) if isinstance(m, DispatchCancel)]
        assert cancel.dispatch_id == ids[device] and cancel.reason == "incident closed"
    assert not [m for m in w.broker.to("b") if isinstance(m, DispatchCancel)]
    assert {("a", None), ("c", None)} <= set(w.live.engaged_calls)
    with pytest.raises(Conflict):
        service.close_incident(incident, "officer:Li")
    with pytest.raises(Conflict):
        service.dispatch(incident, ["d"], "officer:Li")
    assert service.incidents(state="open") == []
    assert [i["incident_id"] for i in service.incidents(state="closed")] == [incident]


def test_an_officer_cancels_one_dispatch(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, d = _one(w, service)
    service.on_accepted([response("a", d, "accepted", w.clock.ms + 1)])
    doc = service.cancel(d, "officer:Li", "wrong place")
    assert doc["state"] == "cancelled" and doc["reason"] == "wrong place"
    [cancel] = [m for m in w.broker.to("a") if isinstance(m, DispatchCancel)]
    assert cancel.reason == "wrong place"
    with pytest.raises(Conflict):
        service.cancel(d, "officer:Li")
    with pytest.raises(NotFound):
        service.cancel("d-none", "officer:Li")
    with pytest.raises(OutOfScope):
        service.cancel(d, "officer:Li", units={"s2"})
    # The terminal is free again and may be sent anew.
    assert service.dispatch(incident, ["a"], "officer:Li")[0]["state"] == "sent"


def test_state_survives_a_restart(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, d = _one(w, service)
    service.on_accepted([response("a", d, "delivered", w.clock.ms + 1)])
    before = service.incident(incident)
    service.close()
    w.live.docs["a"]["dispatch_id"] = None  # a fresh live state knows nothing
    service = w.dispatcher()
    assert service.incident(incident) == before
    assert w.live.docs["a"]["dispatch_id"] == d
    service.on_accepted([response("a", d, "accepted", w.clock.ms + 2)])
    assert _state(service, incident) == {"a": "accepted"}
    service.close()


def test_the_audit_trail_is_append_only(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    _one(w, service)
    service.close()
    conn = sqlite3.connect(w.path)
    for sql in ("UPDATE steps SET actor='system'", "DELETE FROM steps"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_failures_of_other_parts_never_escape_on_accepted(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident, d = _one(w, service)

    def broken(*args: object) -> None:
        raise RuntimeError("hub down")

    w.hub.publish_event = broken  # type: ignore[method-assign,assignment]
    service.on_accepted([response("a", d, "accepted", w.clock.ms + 1)])
    assert _state(service, incident) == {"a": "accepted"}


def test_a_closed_incident_leaves_memory_but_an_unsent_cancel_stays(tmp_path: Path) -> None:
    w = world(tmp_path)
    service = w.dispatcher()
    incident = _open(w, service)
    docs = service.dispatch(incident, ["a", "b"], "officer:Li")
    service.on_accepted([response("a", docs[0]["dispatch_id"], "declined", w.clock.ms + 1)])
    w.broker.down = True
    service.close_incident(incident, "officer:Li")
    assert set(service._dispatches) == {docs[1]["dispatch_id"]}  # the cancel to b
    w.broker.down = False
    w.clock.advance(1)
    service.tick()
    assert service._dispatches == {}
    assert [type(m) for m in w.broker.to("b")] == [DispatchCommand, DispatchCancel]
    steps = [s for s, _ in _steps(service, incident)]
    assert steps[-2:] == ["send_failed", "resent"]
