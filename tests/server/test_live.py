"""Live state: the map marker only moves forward; watchers get the newest state per terminal."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from protocol import (
    Event,
    EventKind,
    Message,
    Position,
    PositionBatch,
    Presence,
    PresenceKind,
)
from server.ingest import Accepted
from server.live import Hub, LiveState
from server.sqlite_store import SqliteStore

from .support import T0, Terminal, device_key, device_record, fix


def accepted(device: str, seq: int, message: Message, received_ms: int = T0) -> Accepted:
    return Accepted(device, seq, message, received_ms)


def pos(t_ms: int, lat: float = 22.5431) -> Position:
    return Position(fix=fix(t_ms, lat=lat))


def state_of(live: LiveState, device: str) -> dict[str, Any]:
    (doc,) = [d for d in live.snapshot() if d["device"] == device]
    return doc


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
        return await asyncio.wait_for(watcher.next(), 5)

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
        return (
            await asyncio.wait_for(first.next(), 5),
            await asyncio.wait_for(second.next(), 5),
            watching,
        )

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
        assert [s["device"] for s in await asyncio.wait_for(waiting, 5)] == ["a"]

        live.apply([accepted("b", 1, pos(T0))])
        assert [s["device"] for s in await asyncio.wait_for(watcher.next(), 5)] == ["b"]

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
