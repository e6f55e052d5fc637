"""Live state of every terminal, and its fan-out to WebSocket watchers.

Ingest (its own thread) calls ``LiveState.apply``; the asyncio side reads snapshots and gets
updates through ``Hub``. Each watcher has a pending map keyed by device, so a slow browser
gets the newest position of each terminal rather than an ever-growing queue of old ones.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from protocol import Fix, Position, PositionBatch, Presence, PresenceKind, Snapshot
from protocol.messages import Message

from .ingest import Accepted
from .store import FUTURE_TOLERANCE_MS, Store


@dataclass
class TerminalState:
    device_id: str
    fix: Fix | None = None
    fix_seq: int = 0
    last_seen_ms: int = 0
    online: bool = False
    battery_pct: int | None = None
    clock_skew_ms: int | None = None
    snapshot: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "device": self.device_id,
            "online": self.online,
            "last_seen_ms": self.last_seen_ms,
            "battery_pct": self.battery_pct,
            "clock_skew_ms": self.clock_skew_ms,
            "snapshot": self.snapshot,
            "fix": None,  # always present: API clients need not test for the key
        }
        if self.fix is not None:
            f = self.fix
            doc["fix"] = {
                "time_ms": f.time_ms,
                "lat": f.lat,
                "lon": f.lon,
                "accuracy_m": f.accuracy_m,
                "speed_mps": f.speed_mps,
                "course_deg": f.course_deg,
                "source": f.source.value,
            }
        return doc


def _newest_fix(message: Message) -> Fix | None:
    if isinstance(message, Position):
        return message.fix
    if isinstance(message, PositionBatch):
        return max(message.fixes, key=lambda f: f.time_ms)
    fix = getattr(message, "fix", None)
    return fix if isinstance(fix, Fix) else None


class Hub:
    """Fan-out of state changes from any thread to asyncio watchers."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers: set[Watcher] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def watch(self) -> Watcher:
        watcher = Watcher()
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def publish(self, states: list[dict[str, Any]]) -> None:
        if self._loop is None or not states:
            return
        self._loop.call_soon_threadsafe(self._fanout, states)

    def _fanout(self, states: list[dict[str, Any]]) -> None:
        for watcher in self._watchers:
            watcher.offer(states)


class Watcher:
    def __init__(self) -> None:
        self._pending: dict[str, dict[str, Any]] = {}
        self._ready = asyncio.Event()

    def offer(self, states: list[dict[str, Any]]) -> None:
        for state in states:
            self._pending[state["device"]] = state
        self._ready.set()

    async def next(self) -> list[dict[str, Any]]:
        await self._ready.wait()
        self._ready.clear()
        states, self._pending = list(self._pending.values()), {}
        return states


class LiveState:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._lock = threading.Lock()
        self._terminals: dict[str, TerminalState] = {}

    def load(self, store: Store) -> None:
        """Rebuild from the store after a restart: known devices, their newest fix."""
        latest = store.latest_fixes()
        with self._lock:
            for device in store.devices():
                state = self._terminals.setdefault(
                    device.device_id, TerminalState(device.device_id)
                )
                point = latest.get(device.device_id)
                if point is not None:
                    state.fix, state.fix_seq = point.fix, point.seq
                    state.last_seen_ms = point.received_ms

    def apply(self, batch: list[Accepted]) -> None:
        changed: dict[str, TerminalState] = {}
        with self._lock:
            for item in batch:
                state = self._terminals.setdefault(item.device_id, TerminalState(item.device_id))
                message = item.message
                if isinstance(message, Presence) and message.kind is PresenceKind.OFFLINE:
                    state.online = False
                else:
                    state.online = True
                    state.last_seen_ms = max(state.last_seen_ms, item.received_ms)
                if isinstance(message, Presence):
                    if message.battery_pct is not None:
                        state.battery_pct = message.battery_pct
                    if message.clock_skew_ms is not None:
                        state.clock_skew_ms = message.clock_skew_ms
                if isinstance(message, Snapshot) and (
                    state.snapshot is None or message.captured_ms >= state.snapshot["captured_ms"]
                ):
                    state.snapshot = {
                        "sha256": message.sha256.hex(),
                        "captured_ms": message.captured_ms,
                        "trigger": message.trigger.value,
                        "url": f"/api/v1/snapshots/{message.sha256.hex()}.jpg",
                    }
                fix = _newest_fix(message)
                # Late backfill must not move the marker back in time, and a fix from the
                # future (a wrong clock, a GPS week rollover) must not freeze it there.
                believable = (
                    fix is not None and fix.time_ms <= item.received_ms + FUTURE_TOLERANCE_MS
                )
                if (
                    fix is not None
                    and believable
                    and (state.fix is None or fix.time_ms >= state.fix.time_ms)
                ):
                    state.fix, state.fix_seq = fix, item.seq
                changed[item.device_id] = state
            docs = [s.to_json() for s in changed.values()]
        self._hub.publish(docs)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                s.to_json() for s in sorted(self._terminals.values(), key=lambda s: s.device_id)
            ]
