"""The agent's side of the replay window: a sealed frame the server would refuse as older than
``REPLAY_WINDOW_MS`` is dropped unsent, counted durably, and the count reported in an Event —
it never occupies the in-flight window forever."""

from __future__ import annotations

from pathlib import Path

from agent.outbox import EXPIRY_MARGIN_MS, Outbox
from protocol import REPLAY_WINDOW_MS, Event, EventKind, Presence, PresenceKind, decode
from provisioning import new_device

from .test_outbox import T0, Clock, endpoint_for, fix


def test_frames_sealed_before_the_window_are_dropped_counted_and_reported(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.db", endpoint_for(new_device("dev-1")), clock_ms=clock)
    for _ in range(3):
        box.put(Presence(kind=PresenceKind.HEARTBEAT))
    box.record_fix(fix(1))  # backlog: sealed only when sent, so never stale
    # A month in a drawer.
    clock.now_ms = T0 + REPLAY_WINDOW_MS - EXPIRY_MARGIN_MS + 60_000

    sent = [decode(i.payload).envelope.message for i in box.next_items(100)]

    assert not any(isinstance(m, Presence) for m in sent)
    expired = [m for m in sent if isinstance(m, Event) and m.kind is EventKind.FRAMES_EXPIRED]
    assert [e.value for e in expired] == [3]
    counters = box.counters()
    assert counters["frames_expired"] == counters["frames_expired_reported"] == 3
    assert counters["fixes_accepted"] == 1
    box.close()


def test_fresh_frames_are_kept(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.db", endpoint_for(new_device("dev-1")), clock_ms=clock)
    box.put(Presence(kind=PresenceKind.HEARTBEAT))
    clock.now_ms = T0 + REPLAY_WINDOW_MS - EXPIRY_MARGIN_MS - 60_000
    assert len(box.next_items(100)) == 1
    assert box.counters()["frames_expired"] == 0
    box.close()
