"""Live state of every terminal, and its fan-out to WebSocket watchers.

Ingest (its own thread) calls ``LiveState.apply``; the asyncio side, the dispatch service and
the field reports call the ``set_*`` methods, ``tick``, ``nearest`` and the readers. One lock
guards the terminals and the spatial index (``server.live_index``), and every change is handed
to the ``Hub`` while that lock is held, so two threads cannot publish one terminal's docs in
the wrong order.

The ``Hub`` fans changes out to watchers scoped to a set of units. Each watcher keeps the newest
doc per terminal (a slow browser gets the newest position of each terminal, not an
ever-growing queue of old ones) and sends them at most every ``min_interval_s``; events
(incidents, alerts, …) are queued in full and sent first, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from protocol import Fix, Position, PositionBatch, Presence, PresenceKind, Snapshot
from protocol.messages import Message

from .ingest import Accepted
from .live_index import GridIndex
from .store import FUTURE_TOLERANCE_MS, Store

#: A terminal silent this long is shown offline; a fix this old is no longer "where it is".
STALE_MS = 150_000
#: At or above this speed a terminal with a fresh fix is "moving".
MOVING_MPS = 0.5
STATUSES = frozenset(
    {"sos", "dispatched", "offline", "on_post", "off_post", "moving", "still", "nofix"}
)

Volunteer = tuple[str, str]  # (volunteer_id, name)
Duty = tuple[str, str, str]  # (shift_id, post_id, duty engine's state name)


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
    unit_id: str | None = None
    #: The organisation's terminal kind (``handheld``, …, ``phone``); None: not listed.
    kind: str | None = None
    volunteer: Volunteer | None = None
    duty: Duty | None = None
    dispatch_id: str | None = None
    sos_ms: int | None = None
    status: str = "offline"  # as last published; ``tick`` compares against it
    due_ms: int | None = None  # when ``tick`` must look at this terminal again
    # The doc as of the last change, shared with the watchers (read-only); rebuilt when the
    # status has moved on with time.
    doc: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def status_at(self, now_ms: int) -> str:
        """The status precedence of the contract, first match wins."""
        if self.sos_ms is not None:
            return "sos"
        if self.dispatch_id is not None:
            return "dispatched"
        if not self.online or now_ms - self.last_seen_ms > STALE_MS:
            return "offline"
        if self.duty is not None:
            return "on_post" if self.duty[2].startswith("on_post") else "off_post"
        if self.fix is not None and now_ms - self.fix.time_ms <= STALE_MS:
            speed = self.fix.speed_mps
            return "moving" if speed is not None and speed >= MOVING_MPS else "still"
        return "nofix"

    def next_change_ms(self, now_ms: int) -> int | None:
        """The first instant after ``now_ms`` when the status may change with time alone."""
        times = []
        if self.online:
            times.append(self.last_seen_ms + STALE_MS + 1)
        if self.fix is not None:
            times.append(self.fix.time_ms + STALE_MS + 1)
        later = [t for t in times if t > now_ms]
        return min(later) if later else None

    def to_json(self, now_ms: int | None = None) -> TerminalDoc:
        """The doc of the WebSocket and ``/api/v1/terminals``; status at ``now_ms`` (None:
        as last published)."""
        doc = TerminalDoc({
            "device": self.device_id,
            "online": self.online,
            "last_seen_ms": self.last_seen_ms,
            "battery_pct": self.battery_pct,
            "clock_skew_ms": self.clock_skew_ms,
            "snapshot": self.snapshot,
            "fix": None,  # always present: API clients need not test for the key
            "status": self.status if now_ms is None else self.status_at(now_ms),
            "unit_id": self.unit_id,
            "kind": self.kind,
            # A phone app signs nothing: its positions are the phone's word (metrics.md).
            "signed": self.kind != "phone",
            "volunteer": None,
            "duty": None,
            "dispatch_id": self.dispatch_id,
            "sos_ms": self.sos_ms,
        })
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
        if self.volunteer is not None:
            doc["volunteer"] = {"volunteer_id": self.volunteer[0], "name": self.volunteer[1]}
        if self.duty is not None:
            shift_id, post_id, state = self.duty
            doc["duty"] = {"shift_id": shift_id, "post_id": post_id, "state": state}
        return doc


class TerminalDoc(dict[str, Any]):
    """A terminal's doc as published: read-only once handed to the hub (every watcher gets the
    same object), so its JSON is encoded once however many officers watch — encoding each doc
    per watcher was the feed's largest cost with several (docs/benchmarks.md)."""

    __slots__ = ("_text",)

    def text(self) -> str:
        try:
            return self._text
        except AttributeError:
            self._text: str = json.dumps(self)
            return self._text


@dataclass(frozen=True)
class Candidate:
    """A terminal near a point: straight-line metres from its latest fix, and its doc."""

    device_id: str
    distance_m: float
    doc: dict[str, Any]

    def __post_init__(self) -> None:
        if not self.device_id:
            raise ValueError("candidate without a device id")
        if not (self.distance_m >= 0 and math.isfinite(self.distance_m)):
            raise ValueError(f"{self.device_id}: distance {self.distance_m} m")


def _newest_fix(message: Message) -> Fix | None:
    if isinstance(message, Position):
        return message.fix
    if isinstance(message, PositionBatch):
        return max(message.fixes, key=lambda f: f.time_ms)
    fix = getattr(message, "fix", None)
    return fix if isinstance(fix, Fix) else None


# --- fan-out -------------------------------------------------------------------------------------

#: At most this often a watcher gets terminal updates. A fix waits half of it on average under
#: a steady stream (none after a quiet spell): 0.1 s keeps the map live within the 250 ms a
#: duty officer perceives as "now", and the bytes per second do not depend on it — each
#: terminal's newest doc is sent once per interval either way.
UPDATE_INTERVAL_S = 0.1

Kind = Literal["event", "update"]


class Hub:
    """Fan-out of state changes and events from any thread to asyncio watchers.

    Nothing is delivered before ``bind``: watchers live on the event loop, which the web app
    binds at start-up."""

    def __init__(
        self,
        *,
        min_interval_s: float = UPDATE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not min_interval_s >= 0:
            raise ValueError(f"min_interval_s must be ≥ 0, not {min_interval_s}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers: set[Watcher] = set()
        self._min_interval_s = min_interval_s
        self._clock = clock

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def watch(self, units: frozenset[str] | None = None) -> Watcher:
        """A watcher of the terminals and events of ``units`` (None: everything)."""
        watcher = Watcher(units, min_interval_s=self._min_interval_s, clock=self._clock)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def publish(self, states: list[dict[str, Any]]) -> None:
        """Terminal docs changed (thread-safe); each watcher keeps the newest per device."""
        if self._loop is None or not states:
            return
        self._call(self._fanout, states)

    def publish_event(self, topic: str, data: dict[str, Any], unit_id: str | None) -> None:
        """An event for the watchers of ``unit_id`` (thread-safe); never coalesced or dropped."""
        if self._loop is None:
            return
        self._call(self._fanout_event, {"topic": topic, "data": data}, unit_id)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        # A closed loop (shutting down) has nobody watching, and ingest's hook must not fail
        # for it.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn, *args)

    def _fanout(self, states: list[dict[str, Any]]) -> None:
        for watcher in list(self._watchers):
            watcher.offer(states)

    def _fanout_event(self, event: dict[str, Any], unit_id: str | None) -> None:
        for watcher in list(self._watchers):
            watcher.offer_event(event, unit_id)


class Watcher:
    """One subscriber's queue, on the event loop's thread."""

    def __init__(
        self,
        units: frozenset[str] | None = None,
        *,
        min_interval_s: float = UPDATE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.units = units
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._pending: dict[str, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._sent_at = -math.inf
        self._ready = asyncio.Event()

    def sees(self, unit_id: str | None) -> bool:
        # A terminal or event of no unit belongs to nobody's scope: only the unscoped see it.
        return self.units is None or (unit_id is not None and unit_id in self.units)

    def offer(self, states: list[dict[str, Any]]) -> None:
        added = False
        for state in states:
            if self.sees(state.get("unit_id")):
                self._pending[state["device"]] = state
                added = True
        if added:
            self._ready.set()

    def offer_event(self, event: dict[str, Any], unit_id: str | None) -> None:
        if self.sees(unit_id):
            self._events.append(event)
            self._ready.set()

    async def next(self) -> tuple[Kind, list[dict[str, Any]]]:
        """``("event", [{"topic", "data"}, …])`` as soon as there are events, else
        ``("update", [docs])``, the newest per terminal, at most every ``min_interval_s``.
        Cancelling it loses nothing."""
        while True:
            if self._events:
                events, self._events = self._events, []
                return "event", events
            if self._pending:
                wait = self._sent_at + self._min_interval_s - self._clock()
                if wait > 0:
                    self._ready.clear()
                    try:
                        # Woken early by news: an event goes out without waiting.
                        await asyncio.wait_for(self._ready.wait(), wait)
                        continue
                    except TimeoutError:
                        pass
                states, self._pending = list(self._pending.values()), {}
                self._sent_at = self._clock()
                return "update", states
            self._ready.clear()
            await self._ready.wait()


# --- the state ---------------------------------------------------------------------------------


class LiveState:
    def __init__(
        self, hub: Hub, *, clock: Callable[[], float] = time.time, cell_m: float = 250.0
    ) -> None:
        self._hub = hub
        self._clock = clock
        self._lock = threading.Lock()
        self._terminals: dict[str, TerminalState] = {}
        self._index = GridIndex(cell_m)
        self._units: dict[str, str] = {}
        self._volunteers: dict[str, Volunteer] = {}
        self._kinds: dict[str, str] = {}
        self._duty: dict[str, Duty] = {}
        self._due: list[tuple[int, str]] = []  # heap of (due_ms, device) for ``tick``

    def status_counts(self) -> dict[str, int]:
        """Terminals by status now, for /metrics: counted under the lock without copying
        anyone's document (a copy of 50,000 took 290 ms a scrape, with ingest waiting)."""
        now_ms = self._now_ms()
        with self._lock:
            return dict(Counter(s.status_at(now_ms) for s in self._terminals.values()))

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # All the underscored helpers below run with the lock held.

    def _state(self, device: str) -> TerminalState:
        state = self._terminals.get(device)
        if state is None:
            state = TerminalState(
                device,
                unit_id=self._units.get(device),
                kind=self._kinds.get(device),
                volunteer=self._volunteers.get(device),
                duty=self._duty.get(device),
            )
            self._terminals[device] = state
        return state

    def _schedule(self, state: TerminalState, now_ms: int) -> None:
        # At most one live heap entry per terminal: a later deadline waits for the earlier
        # entry to pop and re-schedule, so the heap stays the size of the fleet.
        due = state.next_change_ms(now_ms)
        if due is not None and (state.due_ms is None or due < state.due_ms):
            state.due_ms = due
            heapq.heappush(self._due, (due, state.device_id))

    @staticmethod
    def _current(state: TerminalState, now_ms: int) -> dict[str, Any]:
        doc = state.doc
        if doc is None or doc["status"] != state.status_at(now_ms):
            doc = state.doc = state.to_json(now_ms)
        return doc

    def _publish(self, states: Iterable[TerminalState], now_ms: int) -> list[dict[str, Any]]:
        """Every change of a terminal ends here (with the lock held): the cached doc is
        rebuilt, the status recorded for ``tick``, and the doc handed to the hub."""
        docs: list[dict[str, Any]] = []
        for state in states:
            doc = state.doc = state.to_json(now_ms)
            state.status = doc["status"]
            self._schedule(state, now_ms)
            docs.append(doc)
        # Under the lock: the hub only queues, and two threads cannot swap a terminal's docs.
        self._hub.publish(docs)
        return docs

    def load(self, store: Store) -> None:
        """Rebuild from the store after a restart: known devices, their newest fix."""
        latest = store.latest_fixes()
        now_ms = self._now_ms()
        with self._lock:
            # Phones have no registered key, only fixes: they come back from those.
            devices = {d.device_id for d in store.devices()} | set(latest)
            for device_id in sorted(devices):
                state = self._state(device_id)
                point = latest.get(device_id)
                if point is not None:
                    state.fix, state.fix_seq = point.fix, point.seq
                    state.last_seen_ms = point.received_ms
                    self._index.put(state.device_id, point.fix.lat, point.fix.lon)
                state.doc = state.to_json(now_ms)
                state.status = state.doc["status"]
                self._schedule(state, now_ms)

    def apply(self, batch: list[Accepted]) -> None:
        changed: dict[str, TerminalState] = {}
        now_ms = self._now_ms()
        with self._lock:
            for item in batch:
                state = self._state(item.device_id)
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
                    self._index.put(state.device_id, fix.lat, fix.lon)
                changed[item.device_id] = state
            self._publish(changed.values(), now_ms)

    def set_directory(
        self,
        units: Mapping[str, str],
        volunteers: Mapping[str, tuple[str, str]],
        kinds: Mapping[str, str] | None = None,
    ) -> None:
        """Who holds which terminal, the terminal's unit and kind (device id → …); replaces
        all three. A listed terminal not seen yet (a phone just enrolled) is added."""
        now_ms = self._now_ms()
        with self._lock:
            self._units = dict(units)
            self._volunteers = {d: (v[0], v[1]) for d, v in volunteers.items()}
            self._kinds = dict(kinds or {})
            for device, listed in self._kinds.items():
                if listed == "phone":  # phones are known from enrolment, not from the store
                    self._state(device)
            changed = []
            for state in self._terminals.values():
                unit_id = self._units.get(state.device_id)
                volunteer = self._volunteers.get(state.device_id)
                kind = self._kinds.get(state.device_id)
                if (unit_id, volunteer, kind) != (state.unit_id, state.volunteer, state.kind):
                    state.unit_id, state.volunteer, state.kind = unit_id, volunteer, kind
                    changed.append(state)
            self._publish(changed, now_ms)

    def set_duty(self, duty: Mapping[str, tuple[str, str, str]]) -> None:
        """device id → (shift_id, post_id, state) of every terminal on a shift now; replaces
        the whole map (a terminal missing from it is off duty)."""
        now_ms = self._now_ms()
        with self._lock:
            self._duty = {d: (v[0], v[1], v[2]) for d, v in duty.items()}
            changed = []
            for state in self._terminals.values():
                entry = self._duty.get(state.device_id)
                if entry != state.duty:
                    state.duty = entry
                    changed.append(state)
            self._publish(changed, now_ms)

    def set_engaged(self, device_id: str, dispatch_id: str | None) -> None:
        """The dispatch the terminal is busy with (None: free again)."""
        now_ms = self._now_ms()
        with self._lock:
            state = self._state(device_id)
            if state.dispatch_id != dispatch_id:
                state.dispatch_id = dispatch_id
                self._publish([state], now_ms)

    def set_sos(self, device_id: str, raised_ms: int | None) -> None:
        """An open SOS alert of the terminal since ``raised_ms`` (None: acknowledged)."""
        now_ms = self._now_ms()
        with self._lock:
            state = self._state(device_id)
            if state.sos_ms != raised_ms:
                state.sos_ms = raised_ms
                self._publish([state], now_ms)

    def tick(self) -> int:
        """Publish the terminals whose status changed with time alone (gone silent, fix gone
        stale) since they were last published; how many."""
        now_ms = self._now_ms()
        with self._lock:
            changed = []
            while self._due and self._due[0][0] <= now_ms:
                due, device = heapq.heappop(self._due)
                state = self._terminals.get(device)
                if state is None or state.due_ms != due:
                    continue  # superseded by an earlier entry
                state.due_ms = None
                if state.status_at(now_ms) != state.status:
                    changed.append(state)
                else:
                    self._schedule(state, now_ms)
            return len(self._publish(changed, now_ms))

    def get(self, device_id: str) -> dict[str, Any] | None:
        now_ms = self._now_ms()
        with self._lock:
            state = self._terminals.get(device_id)
            return None if state is None else dict(self._current(state, now_ms))

    def snapshot(self, units: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Every terminal's doc by device id (``units``: only those of these units)."""
        now_ms = self._now_ms()
        wanted = None if units is None else frozenset(units)
        with self._lock:
            return [
                dict(self._current(s, now_ms))
                for s in sorted(self._terminals.values(), key=lambda s: s.device_id)
                if wanted is None or s.unit_id in wanted
            ]

    def nearest(
        self,
        lat: float,
        lon: float,
        radius_m: float,
        *,
        limit: int = 50,
        units: Collection[str] | None = None,
        on_duty_only: bool = True,
        exclude_engaged: bool = True,
        max_fix_age_s: float = 150,
    ) -> list[Candidate]:
        """Terminals whose latest fix is within ``radius_m`` (straight line), nearest first,
        at most ``limit``. Never offline or in SOS ones, nor fixes older than
        ``max_fix_age_s``; engaged ones and those on no shift unless asked."""
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"({lat}, {lon}) is not a position")
        if not radius_m >= 0:
            raise ValueError(f"radius_m must be ≥ 0, not {radius_m}")
        if limit < 1:
            raise ValueError(f"limit must be ≥ 1, not {limit}")
        wanted = None if units is None else frozenset(units)
        now_ms = self._now_ms()
        oldest_fix_ms = now_ms - max_fix_age_s * 1000
        out: list[Candidate] = []
        with self._lock:
            terminals = self._terminals
            for device, distance in self._index.within(lat, lon, radius_m):
                s = terminals[device]
                if (
                    s.fix is None
                    or s.fix.time_ms < oldest_fix_ms
                    or not s.online
                    or now_ms - s.last_seen_ms > STALE_MS
                    or s.sos_ms is not None
                    or (exclude_engaged and s.dispatch_id is not None)
                    or (on_duty_only and s.duty is None)
                    or (wanted is not None and s.unit_id not in wanted)
                ):
                    continue
                doc = s.doc  # _current, inlined: this loop is the query's cost
                if doc is None or doc["status"] != s.status_at(now_ms):
                    doc = s.doc = s.to_json(now_ms)
                out.append(Candidate(device, distance, dict(doc)))
                if len(out) >= limit:
                    break
        return out
