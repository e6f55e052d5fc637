"""Live state: the map marker only moves forward; watchers get the newest state per terminal."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from protocol import (
    Event,
    EventKind,
    Fix,
    Message,
    Position,
    PositionBatch,
    Presence,
    PresenceKind,
)
from server.ingest import Accepted
from server.live import Hub, LiveState, TerminalState, Watcher
from server.org.store import OrgStore
from server.sqlite_store import SqliteStore
from server.web.access import Principal, Role
from server.web.keys import HUB, LIVE, ORG

from .org.support import build
from .support import T0, Terminal, api_app, device_key, device_record, fix


def accepted(device: str, seq: int, message: Message, received_ms: int = T0) -> Accepted:
    return Accepted(device, seq, message, received_ms)


def pos(t_ms: int, lat: float = 22.5431) -> Position:
    return Position(fix=fix(t_ms, lat=lat))


def state_of(live: LiveState, device: str) -> dict[str, Any]:
    (doc,) = [d for d in live.snapshot() if d["device"] == device]
    return doc


async def updates(watcher: Watcher) -> list[dict[str, Any]]:
    kind, docs = await asyncio.wait_for(watcher.next(), 5)
    assert kind == "update"
    return docs


@pytest.fixture
def live() -> LiveState:
    return LiveState(Hub())  # an unbound hub: publishing is a no-op


# --- LiveState.apply --------------------------------------------------------------------------


def test_marker_moves_forward_in_fix_time_only(live: LiveState) -> None:
    live.apply([accepted("a", 1, pos(T0 + 10_000))])
    assert state_of(live, "a")["fix"]["time_ms"] == T0 + 10_000

    # Backfill arriving later, with older fixes, must not drag the marker back.
    backfill = PositionBatch(fixes=(fix(T0 + 1000), fix(T0 + 5000)))
    live.apply([accepted("a", 2, backfill, received_ms=T0 + 20_000)])
    assert state_of(live, "a")["fix"]["time_ms"] == T0 + 10_000

    live.apply([accepted("a", 3, pos(T0 + 15_000, lat=23.0))])
    doc = state_of(live, "a")
    assert doc["fix"]["time_ms"] == T0 + 15_000
    assert doc["fix"]["lat"] == 23.0


def test_batch_uses_its_newest_fix_whatever_the_order(live: LiveState) -> None:
    fixes = (fix(T0 + 3000, lat=3.0), fix(T0 + 9000, lat=9.0), fix(T0, lat=0.0))
    batch = PositionBatch(fixes=fixes)
    live.apply([accepted("a", 1, batch)])
    assert state_of(live, "a")["fix"]["lat"] == 9.0


def test_fix_carried_by_other_messages_counts(live: LiveState) -> None:
    sos = Event(kind=EventKind.SOS, time_ms=T0 + 5000, fix=fix(T0 + 5000, lat=1.5))
    live.apply([accepted("a", 1, sos)])
    assert state_of(live, "a")["fix"]["lat"] == 1.5
    live.apply([accepted("a", 2, Event(kind=EventKind.BUTTON, time_ms=T0 + 6000))])
    assert state_of(live, "a")["fix"]["lat"] == 1.5  # no fix: the marker stays


def test_offline_will_sets_offline_and_any_frame_brings_it_back(live: LiveState) -> None:
    live.apply([accepted("a", 1, pos(T0), received_ms=T0 + 100)])
    assert state_of(live, "a")["online"] is True
    assert state_of(live, "a")["last_seen_ms"] == T0 + 100

    live.apply([accepted("a", 0, Presence(kind=PresenceKind.OFFLINE), received_ms=T0 + 900)])
    doc = state_of(live, "a")
    assert doc["online"] is False
    assert doc["last_seen_ms"] == T0 + 100  # the will is not a sign of life
    assert doc["fix"]["time_ms"] == T0  # the last known position stays on the map

    live.apply([accepted("a", 2, Presence(kind=PresenceKind.HEARTBEAT), received_ms=T0 + 2000)])
    assert state_of(live, "a")["online"] is True
    assert state_of(live, "a")["last_seen_ms"] == T0 + 2000


def test_last_seen_never_goes_back(live: LiveState) -> None:
    live.apply([accepted("a", 2, pos(T0), received_ms=T0 + 5000)])
    live.apply([accepted("a", 1, pos(T0), received_ms=T0 + 1000)])
    assert state_of(live, "a")["last_seen_ms"] == T0 + 5000


def test_battery_from_presence(live: LiveState) -> None:
    live.apply([accepted("a", 1, Presence(kind=PresenceKind.HEARTBEAT, battery_pct=80))])
    assert state_of(live, "a")["battery_pct"] == 80
    live.apply([accepted("a", 2, Presence(kind=PresenceKind.HEARTBEAT))])
    assert state_of(live, "a")["battery_pct"] == 80  # unknown is not empty


def test_snapshot_is_sorted_and_json_shaped(live: LiveState) -> None:
    live.apply([accepted("b", 1, pos(T0)), accepted("a", 1, Presence(kind=PresenceKind.HEARTBEAT))])
    docs = live.snapshot()
    assert [d["device"] for d in docs] == ["a", "b"]
    assert docs[0]["fix"] is None  # no fix yet: the key is there, null
    assert set(docs[1]["fix"]) == {
        "time_ms",
        "lat",
        "lon",
        "accuracy_m",
        "speed_mps",
        "course_deg",
        "source",
    }


# --- LiveState.load -----------------------------------------------------------------------------


def test_load_rebuilds_from_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "yijing.db")
    try:
        alice, bob, idle = Terminal("alice"), Terminal("bob"), Terminal("idle")
        for t in (alice, bob, idle):
            store.add_device(device_record(t.identity), device_key(t.identity))
        store.store_frames(
            [
                alice.incoming(pos(T0 + 50_000, lat=5.0), 1, received_ms=T0 + 51_000),
                alice.incoming(PositionBatch(fixes=(fix(T0 + 1000),)), 2, received_ms=T0 + 90_000),
                bob.incoming(pos(T0 + 7000, lat=7.0), 1, received_ms=T0 + 8000),
            ]
        )
        live = LiveState(Hub())
        live.load(store)
    finally:
        store.close()

    docs = {d["device"]: d for d in live.snapshot()}
    assert set(docs) == {"alice", "bob", "idle"}
    assert docs["alice"]["fix"]["lat"] == 5.0  # newest by fix time, not by arrival
    assert docs["alice"]["last_seen_ms"] == T0 + 51_000
    assert docs["bob"]["fix"]["lat"] == 7.0
    assert docs["idle"]["fix"] is None
    assert not any(d["online"] for d in docs.values())  # nobody has spoken since the restart

    # After loading, an older fix still does not move the marker back.
    live.apply([accepted("alice", 3, pos(T0 + 2000, lat=9.0))])
    assert state_of(live, "alice")["fix"]["lat"] == 5.0


# --- Hub and Watcher ----------------------------------------------------------------------------


def test_watchers_get_the_newest_state_per_device() -> None:
    async def scenario() -> list[dict[str, Any]]:
        hub = Hub()
        hub.bind(asyncio.get_running_loop())
        live = LiveState(hub)
        watcher = hub.watch()
        live.apply([accepted("a", 1, pos(T0, lat=1.0))])
        live.apply([accepted("b", 1, pos(T0, lat=2.0))])
        live.apply([accepted("a", 2, pos(T0 + 1000, lat=3.0))])
        return await updates(watcher)

    states = asyncio.run(scenario())
    by_device = {s["device"]: s for s in states}
    assert len(states) == 2  # coalesced: one entry per terminal, not one per update
    assert by_device["a"]["fix"]["lat"] == 3.0
    assert by_device["b"]["fix"]["lat"] == 2.0


def test_updates_from_another_thread_reach_every_watcher() -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        hub = Hub()
        hub.bind(asyncio.get_running_loop())
        live = LiveState(hub)
        first, second = hub.watch(), hub.watch()
        watching = hub.watchers

        def ingest_thread() -> None:  # LiveState.apply runs on ingest's thread in the server
            for k in range(50):
                live.apply([accepted("a", k + 1, pos(T0 + k * 1000, lat=float(k)))])

        thread = threading.Thread(target=ingest_thread)
        thread.start()
        await asyncio.to_thread(thread.join)
        await asyncio.sleep(0)  # let the loop run the scheduled fan-outs
        return await updates(first), await updates(second), watching

    got_first, got_second, watching = asyncio.run(scenario())
    assert watching == 2
    for states in (got_first, got_second):
        # However many updates were pending, the watcher ends on the newest one.
        assert [s["device"] for s in states] == ["a"]
        assert states[0]["fix"]["lat"] == 49.0


def test_next_waits_for_news_and_then_starts_afresh() -> None:
    async def scenario() -> None:
        hub = Hub()
        hub.bind(asyncio.get_running_loop())
        live = LiveState(hub)
        watcher = hub.watch()
        waiting = asyncio.ensure_future(watcher.next())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # nothing happened yet
        live.apply([accepted("a", 1, pos(T0))])
        assert await asyncio.wait_for(waiting, 5) == ("update", [live.get("a")])

        live.apply([accepted("b", 1, pos(T0))])
        assert [s["device"] for s in await updates(watcher)] == ["b"]

    asyncio.run(scenario())


def test_unwatched_watcher_gets_nothing() -> None:
    async def scenario() -> tuple[bool, int]:
        hub = Hub()
        hub.bind(asyncio.get_running_loop())
        live = LiveState(hub)
        stays, leaves = hub.watch(), hub.watch()
        hub.unwatch(leaves)
        hub.unwatch(leaves)  # twice is harmless
        live.apply([accepted("a", 1, pos(T0))])
        await asyncio.wait_for(stays.next(), 5)
        try:
            await asyncio.wait_for(leaves.next(), 0.05)
        except TimeoutError:
            return False, hub.watchers
        return True, hub.watchers

    got_something, watchers = asyncio.run(scenario())
    assert not got_something
    assert watchers == 1


def test_unbound_hub_and_empty_updates_are_ignored() -> None:
    async def scenario() -> bool:
        hub = Hub()
        watcher = hub.watch()
        hub.publish([{"device": "a"}])  # no loop bound yet (server not started): dropped
        hub.bind(asyncio.get_running_loop())
        hub.publish([])  # nothing changed: no wake-up
        await asyncio.sleep(0)
        try:
            await asyncio.wait_for(watcher.next(), 0.05)
        except TimeoutError:
            return False
        return True

    assert asyncio.run(scenario()) is False


# --- the doc's status ---------------------------------------------------------------------------

NOW = T0 + 1_000_000


class Clock:
    """Seconds, moved by hand."""

    def __init__(self, ms: int = NOW) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def terminal(**changes: Any) -> TerminalState:
    """Online, heard from just now, a fresh fix at walking pace, nothing else."""
    base: dict[str, Any] = {
        "online": True,
        "last_seen_ms": NOW - 1000,
        "fix": Fix(time_ms=NOW - 2000, lat=22.54, lon=114.05, speed_mps=1.3),
    }
    return TerminalState("a", **{**base, **changes})


def still_fix(age_ms: int, speed: float | None = 0.0) -> Fix:
    return Fix(time_ms=NOW - age_ms, lat=22.54, lon=114.05, speed_mps=speed)


ON_POST = ("shift-1", "bar", "on_post")


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        # Each row drops the reason of the row above it, so it shows what comes next.
        ({"sos_ms": NOW, "dispatch_id": "d1", "online": False, "duty": ON_POST}, "sos"),
        ({"dispatch_id": "d1", "online": False, "duty": ON_POST}, "dispatched"),
        ({"online": False, "duty": ON_POST}, "offline"),
        ({"last_seen_ms": NOW - 150_001, "duty": ON_POST}, "offline"),
        ({"last_seen_ms": NOW - 150_000, "duty": ON_POST}, "on_post"),
        ({"duty": ("shift-1", "bar", "on_post_backfilled")}, "on_post"),
        ({"duty": ("shift-1", "bar", "off_post")}, "off_post"),
        ({"duty": ("shift-1", "bar", "no_fix"), "fix": None}, "off_post"),
        ({}, "moving"),
        ({"fix": still_fix(0, speed=0.5)}, "moving"),
        ({"fix": still_fix(0, speed=0.49)}, "still"),
        ({"fix": still_fix(0, speed=None)}, "still"),
        ({"fix": still_fix(150_000, speed=3.0)}, "moving"),
        ({"fix": still_fix(150_001, speed=3.0)}, "nofix"),
        ({"fix": None}, "nofix"),
    ],
)
def test_status_precedence(changes: dict[str, Any], status: str) -> None:
    state = terminal(**changes)
    assert state.status_at(NOW) == status
    assert state.to_json(NOW)["status"] == status


def test_doc_carries_unit_volunteer_duty_dispatch_and_sos() -> None:
    clock = Clock()
    live = LiveState(Hub(), clock=clock)
    live.apply([accepted("a", 1, Position(fix=still_fix(1000)), received_ms=NOW)])
    doc = live.get("a")
    assert doc is not None
    assert {k: doc[k] for k in ("status", "unit_id", "volunteer", "duty", "dispatch_id")} == {
        "status": "still",
        "unit_id": None,
        "volunteer": None,
        "duty": None,
        "dispatch_id": None,
    }
    assert doc["sos_ms"] is None
    live.set_directory({"a": "ft-s1", "ghost": "ft-s1"}, {"a": ("li", "李")})
    live.set_duty({"a": ON_POST})
    live.set_engaged("a", "d1")
    live.set_sos("a", NOW - 10)
    doc = live.get("a")
    assert doc is not None
    assert doc["unit_id"] == "ft-s1"
    assert doc["volunteer"] == {"volunteer_id": "li", "name": "李"}
    assert doc["duty"] == {"shift_id": "shift-1", "post_id": "bar", "state": "on_post"}
    assert (doc["dispatch_id"], doc["sos_ms"], doc["status"]) == ("d1", NOW - 10, "sos")
    assert live.get("ghost") is None  # the directory alone does not put a terminal on the map

    live.set_sos("a", None)
    live.set_engaged("a", None)
    assert live.get("a")["status"] == "on_post"  # type: ignore[index]
    live.set_duty({})
    assert live.get("a")["status"] == "still"  # type: ignore[index]

    # A terminal first heard of after the directory and duty were set picks them up.
    live.set_duty({"b": ("shift-2", "route", "off_post")})
    live.set_directory({"b": "ns-s1"}, {"b": ("chen", "陈")})
    live.apply([accepted("b", 1, Presence(kind=PresenceKind.HEARTBEAT), received_ms=NOW)])
    doc = live.get("b")
    assert doc is not None
    assert (doc["unit_id"], doc["status"]) == ("ns-s1", "off_post")
    assert [d["device"] for d in live.snapshot(["ns-s1"])] == ["b"]
    assert [d["device"] for d in live.snapshot(["ft-s1"])] == []  # "a" left the directory
    assert [d["device"] for d in live.snapshot()] == ["a", "b"]


# --- tick ---------------------------------------------------------------------------------------


class Recorder(Hub):
    """A hub that keeps what was published, without an event loop."""

    def __init__(self) -> None:
        super().__init__()
        self.docs: list[dict[str, Any]] = []
        self.events: list[tuple[str, dict[str, Any], str | None]] = []

    def publish(self, states: list[dict[str, Any]]) -> None:
        self.docs.extend(states)

    def publish_event(self, topic: str, data: dict[str, Any], unit_id: str | None) -> None:
        self.events.append((topic, data, unit_id))


def test_tick_turns_a_silent_terminal_offline_after_150_s() -> None:
    clock, hub = Clock(), Recorder()
    live = LiveState(hub, clock=clock)
    live.set_duty({"a": ON_POST})
    live.apply([accepted("a", 1, Position(fix=still_fix(0)), received_ms=NOW)])
    live.apply([accepted("b", 1, Position(fix=still_fix(-60_000)), received_ms=NOW + 60_000)])
    assert [d["status"] for d in hub.docs] == ["on_post", "still"]
    hub.docs.clear()

    clock.ms = NOW + 150_000
    assert live.tick() == 0  # 150 s of silence is still online
    assert hub.docs == []
    clock.ms = NOW + 150_001
    assert live.tick() == 1
    assert [(d["device"], d["status"]) for d in hub.docs] == [("a", "offline")]
    assert live.tick() == 0  # published once, not every tick
    hub.docs.clear()

    # b spoke (with a fix) 60 s later, so it goes silent 60 s later.
    clock.ms = NOW + 210_001
    live.tick()
    assert [(d["device"], d["status"]) for d in hub.docs] == [("b", "offline")]
    hub.docs.clear()

    # A frame brings a back; the next silence is timed from it.
    live.apply([accepted("a", 2, Presence(kind=PresenceKind.HEARTBEAT), received_ms=NOW + 300_000)])
    assert hub.docs[-1]["status"] == "on_post"
    hub.docs.clear()
    clock.ms = NOW + 300_000 + 150_001
    live.tick()
    assert [(d["device"], d["status"]) for d in hub.docs] == [("a", "offline")]


def test_tick_notices_a_stale_fix() -> None:
    clock, hub = Clock(), Recorder()
    live = LiveState(hub, clock=clock)
    live.apply([accepted("a", 1, Position(fix=still_fix(100_000)), received_ms=NOW)])
    for k in range(1, 8):  # heartbeats keep it online, but bring no position
        live.apply([accepted("a", k + 1, Presence(kind=PresenceKind.HEARTBEAT), NOW + k * 20_000)])
    assert hub.docs[-1]["status"] == "still"
    hub.docs.clear()
    clock.ms = NOW + 50_000
    assert live.tick() == 0
    clock.ms = NOW + 50_001
    assert live.tick() == 1
    assert hub.docs[-1]["status"] == "nofix"


# --- scoped hub, coalescing, events -------------------------------------------------------------


def doc_of(device: str, unit_id: str | None, n: int = 0) -> dict[str, Any]:
    return {"device": device, "unit_id": unit_id, "n": n}


async def nothing_from(watcher: Watcher) -> bool:
    try:
        await asyncio.wait_for(watcher.next(), 0.05)
    except TimeoutError:
        return True
    return False


def test_scoped_watchers_see_only_their_units() -> None:
    async def scenario() -> None:
        hub = Hub(min_interval_s=0)
        hub.bind(asyncio.get_running_loop())
        a, b, everything = hub.watch(frozenset({"A"})), hub.watch(frozenset({"B"})), hub.watch()
        hub.publish([doc_of("t-a", "A"), doc_of("t-b", "B"), doc_of("t-none", None)])
        hub.publish_event("incident", {"id": 1}, "B")
        hub.publish_event("alert", {"id": 2}, None)
        await asyncio.sleep(0)
        assert await asyncio.wait_for(a.next(), 5) == ("update", [doc_of("t-a", "A")])
        assert await nothing_from(a)  # neither B's terminal nor B's event, nor the unowned
        assert await asyncio.wait_for(b.next(), 5) == (
            "event",
            [{"topic": "incident", "data": {"id": 1}}],
        )
        assert await asyncio.wait_for(b.next(), 5) == ("update", [doc_of("t-b", "B")])
        assert await nothing_from(b)
        kind, events = await asyncio.wait_for(everything.next(), 5)
        assert (kind, [e["topic"] for e in events]) == ("event", ["incident", "alert"])
        _, docs = await asyncio.wait_for(everything.next(), 5)
        assert [d["device"] for d in docs] == ["t-a", "t-b", "t-none"]

    asyncio.run(scenario())


def test_live_state_publishes_to_the_watchers_of_the_terminals_unit() -> None:
    async def scenario() -> None:
        hub = Hub(min_interval_s=0)
        hub.bind(asyncio.get_running_loop())
        live = LiveState(hub)
        live.set_directory({"t-a": "A", "t-b": "B"}, {})
        a = hub.watch(frozenset({"A"}))
        live.apply([accepted("t-a", 1, pos(T0)), accepted("t-b", 1, pos(T0))])
        live.set_sos("t-b", T0)
        assert [d["device"] for d in await updates(a)] == ["t-a"]
        assert await nothing_from(a)

    asyncio.run(scenario())


def test_updates_are_coalesced_per_device_and_paced() -> None:
    async def scenario() -> None:
        clock = Clock(0)
        hub = Hub(min_interval_s=0.2, clock=clock)
        hub.bind(asyncio.get_running_loop())
        watcher = hub.watch()
        for n in range(100):
            hub.publish([doc_of("a", None, n)])
        hub.publish([doc_of("b", None, 0)])
        await asyncio.sleep(0)
        assert await updates(watcher) == [doc_of("a", None, 99), doc_of("b", None, 0)]

        # Within the interval the next update waits (here: the clock stands still, so until
        # the interval has passed in real time), and keeps only the newest doc.
        hub.publish([doc_of("a", None, 100)])
        waiting = asyncio.ensure_future(watcher.next())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        hub.publish([doc_of("a", None, 101)])
        assert await asyncio.wait_for(waiting, 5) == ("update", [doc_of("a", None, 101)])

        # Once the interval is over by the clock, the update goes at once.
        clock.ms = 1000
        hub.publish([doc_of("a", None, 102)])
        await asyncio.sleep(0)
        assert await asyncio.wait_for(watcher.next(), 0.05) == ("update", [doc_of("a", None, 102)])

    asyncio.run(scenario())


def test_events_are_never_coalesced_and_go_before_pending_updates() -> None:
    async def scenario() -> None:
        clock = Clock(0)
        hub = Hub(min_interval_s=0.2, clock=clock)
        hub.bind(asyncio.get_running_loop())
        watcher = hub.watch()
        hub.publish([doc_of("a", None, 0)])
        await asyncio.sleep(0)
        await updates(watcher)  # an update just went: the next one must wait

        hub.publish([doc_of("a", None, 1)])
        waiting = asyncio.ensure_future(watcher.next())
        await asyncio.sleep(0.01)
        for k in range(3):
            hub.publish_event("alert", {"k": k}, None)
        # The event does not wait for the interval, nor behind the pending update.
        kind, events = await asyncio.wait_for(waiting, 0.1)
        assert kind == "event"
        assert [e["data"]["k"] for e in events] == [0, 1, 2]  # every one, in order
        assert await asyncio.wait_for(watcher.next(), 5) == ("update", [doc_of("a", None, 1)])

        # Both pending at once: events first.
        clock.ms = 5000
        hub.publish([doc_of("a", None, 2)])
        hub.publish_event("task", {}, None)
        await asyncio.sleep(0)
        assert (await asyncio.wait_for(watcher.next(), 5))[0] == "event"
        assert (await asyncio.wait_for(watcher.next(), 5))[0] == "update"

    asyncio.run(scenario())


def test_events_from_other_threads_are_all_delivered() -> None:
    async def scenario() -> list[int]:
        hub = Hub(min_interval_s=0)
        hub.bind(asyncio.get_running_loop())
        watcher = hub.watch(frozenset({"A"}))

        def publisher() -> None:
            for k in range(500):
                hub.publish_event("clue", {"k": k}, "A")

        thread = threading.Thread(target=publisher)
        thread.start()
        await asyncio.to_thread(thread.join)
        got: list[int] = []
        while len(got) < 500:
            kind, events = await asyncio.wait_for(watcher.next(), 5)
            assert kind == "event"
            got.extend(e["data"]["k"] for e in events)
        return got

    assert asyncio.run(scenario()) == list(range(500))


# --- the WebSocket and /api/v1/terminals, scoped --------------------------------------------------

SCOPED = {
    "officer-all": Principal("Officer Zhou", Role.OFFICER),
    "officer-ft": Principal("Officer Li", Role.OFFICER, "ft"),
    "inspector-ns": Principal("Inspector Wang", Role.INSPECTOR, "ns"),
}


def run_scoped(
    tmp_path: Path, body: Callable[[TestClient, LiveState], Awaitable[None]], *, org: bool = True
) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")
        orgs = OrgStore(tmp_path / "org.db")
        build(orgs)
        app = api_app(tmp_path, store, SCOPED, routes=[], services={ORG: orgs} if org else {})
        live = app[LIVE]
        live.set_directory({"t-1": "ft-s1", "t-2": "ns-s1"}, {"t-1": ("li", "李")})
        live.apply([accepted(d, 1, pos(T0)) for d in ("t-1", "t-2", "t-x")])
        try:
            async with TestClient(TestServer(app)) as client:
                await body(client, live)
        finally:
            orgs.close()
            store.close()

    asyncio.run(main())


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def devices_seen(client: TestClient, token: str) -> list[str]:
    r = await client.get("/api/v1/terminals", headers=as_(token))
    assert r.status == 200
    return [d["device"] for d in (await r.json())["terminals"]]


def test_terminals_are_cut_to_the_scope(tmp_path: Path) -> None:
    async def body(client: TestClient, live: LiveState) -> None:
        assert await devices_seen(client, "officer-all") == ["t-1", "t-2", "t-x"]
        assert await devices_seen(client, "officer-ft") == ["t-1"]
        assert await devices_seen(client, "inspector-ns") == ["t-2"]
        r = await client.get("/api/v1/terminals", headers=as_("officer-ft"))
        [doc] = (await r.json())["terminals"]
        assert doc["volunteer"] == {"volunteer_id": "li", "name": "李"}
        assert doc["unit_id"] == "ft-s1" and doc["status"] == "offline"

    run_scoped(tmp_path, body)


def test_without_an_organisation_store_a_scoped_caller_sees_nothing(tmp_path: Path) -> None:
    async def body(client: TestClient, live: LiveState) -> None:
        assert await devices_seen(client, "officer-all") == ["t-1", "t-2", "t-x"]
        assert await devices_seen(client, "officer-ft") == []
        ws = await client.ws_connect("/api/v1/live", headers=as_("officer-ft"))
        assert (await ws.receive_json(timeout=5))["terminals"] == []
        live.apply([accepted("t-1", 2, pos(T0 + 1000))])
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive_json(timeout=0.3)
        await ws.close()

    run_scoped(tmp_path, body, org=False)


def test_the_live_feed_is_scoped(tmp_path: Path) -> None:
    async def body(client: TestClient, live: LiveState) -> None:
        hub = client.app[HUB]  # type: ignore[index]
        ft = await client.ws_connect("/api/v1/live", headers=as_("officer-ft"))
        everything = await client.ws_connect("/api/v1/live", headers=as_("officer-all"))
        hello = await ft.receive_json(timeout=5)
        assert hello["type"] == "hello" and [d["device"] for d in hello["terminals"]] == ["t-1"]
        hello = await everything.receive_json(timeout=5)
        assert [d["device"] for d in hello["terminals"]] == ["t-1", "t-2", "t-x"]

        live.apply([accepted("t-2", 2, pos(T0 + 1000)), accepted("t-x", 2, pos(T0 + 1000))])
        hub.publish_event("incident", {"incident_id": "ns-1"}, "ns-s1")
        hub.publish_event("alert", {"alert_id": "none"}, None)
        live.apply([accepted("t-1", 2, pos(T0 + 1000, lat=22.6))])
        hub.publish_event("incident", {"incident_id": "ft-1"}, "ft-s1-g1")

        got = [await ft.receive_json(timeout=5), await ft.receive_json(timeout=5)]
        by_type = {m["type"]: m for m in got}
        assert set(by_type) == {"event", "update"}
        assert by_type["event"]["topic"] == "incident"
        assert by_type["event"]["data"] == {"incident_id": "ft-1"}
        assert isinstance(by_type["event"]["server_time_ms"], int)
        [doc] = by_type["update"]["terminals"]
        assert doc["device"] == "t-1" and doc["fix"]["lat"] == 22.6
        with pytest.raises(asyncio.TimeoutError):  # nothing of Nanshan's, nothing unowned
            await ft.receive_json(timeout=0.3)

        events, devices = [], set()
        while len(events) < 3 or len(devices) < 3:
            m = await everything.receive_json(timeout=5)
            if m["type"] == "event":
                events.append(m["data"])
            else:
                devices |= {d["device"] for d in m["terminals"]}
        assert events == [{"incident_id": "ns-1"}, {"alert_id": "none"}, {"incident_id": "ft-1"}]
        await ft.close()
        await everything.close()
        for _ in range(100):  # the server notices the close on its own time
            if hub.watchers == 0:
                break
            await asyncio.sleep(0.01)
        assert hub.watchers == 0

    run_scoped(tmp_path, body)


def test_publishing_after_the_loop_closed_does_not_raise() -> None:
    hub = Hub()
    loop = asyncio.new_event_loop()
    hub.bind(loop)
    loop.close()
    live = LiveState(hub)
    live.apply([accepted("a", 1, pos(T0))])  # on ingest's thread at shutdown: no exception
    hub.publish_event("alert", {}, None)


def test_a_published_doc_is_encoded_once_for_every_watcher() -> None:
    """Several officers watch the same terminals: each doc's JSON is made once, and the
    update message built from it is the JSON a client expects."""
    from server.live import TerminalDoc, TerminalState
    from server.web.app import _update_text

    doc = TerminalState("ft-0001").to_json(0)
    assert isinstance(doc, TerminalDoc)
    assert doc.text() is doc.text()
    message = json.loads(_update_text(123, [doc, {"device": "plain"}]))
    assert message == {
        "type": "update",
        "server_time_ms": 123,
        "terminals": [dict(doc), {"device": "plain"}],
    }
