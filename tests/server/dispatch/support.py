"""Small stand-ins for the dispatch tests: the live state, the hub, the broker, the clock.

``FakeLive`` implements only the calls ``server.dispatch.proposals.LiveView`` names, with the
meanings the contract gives them (straight-line metres from the latest fix; offline, SOS,
engaged and off-duty terminals left out as asked), so the real ``server.live.LiveState`` can
replace it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import DispatchResponse, Fix, Message, Position, ResponseStatus
from server.dispatch.model import DispatchConfig
from server.dispatch.service import Dispatcher
from server.ingest import Accepted
from server.org.model import Unit, UnitLevel
from yijing.mqtt import NotConnected

NOW_MS = 1_763_903_600_000
#: The incident's place.
LAT, LON = 22.5431, 114.0579
M_PER_DEG = 6_371_008.8 * math.pi / 180


def north(metres: float) -> tuple[float, float]:
    """The point ``metres`` due north of the incident."""
    return LAT + metres / M_PER_DEG, LON


class Clock:
    def __init__(self, ms: int = NOW_MS) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@dataclass
class FakeCandidate:
    device_id: str
    distance_m: float
    doc: dict[str, Any]


class FakeLive:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.docs: dict[str, dict[str, Any]] = {}
        self.engaged_calls: list[tuple[str, str | None]] = []

    def add(
        self,
        device: str,
        metres: float | None,
        *,
        unit: str = "s1",
        online: bool = True,
        on_duty: bool = True,
        sos: bool = False,
    ) -> None:
        fix = None
        if metres is not None:
            lat, lon = north(metres)
            fix = {"time_ms": self.clock.ms, "lat": lat, "lon": lon, "accuracy_m": 5.0}
        self.docs[device] = {
            "device": device,
            "online": online,
            "last_seen_ms": self.clock.ms,
            "fix": fix,
            "status": "offline" if not online else "sos" if sos else "on_post",
            "unit_id": unit,
            "volunteer": {"volunteer_id": f"v-{device}", "name": f"Name {device}"},
            "duty": {"shift_id": f"sh-{device}", "post_id": f"p-{unit}", "state": "on_post"}
            if on_duty
            else None,
            "dispatch_id": None,
            "sos_ms": self.clock.ms if sos else None,
        }

    def refresh(self) -> None:
        """Every terminal reports a fix now (the fake's fixes otherwise go stale)."""
        for doc in self.docs.values():
            if doc["fix"] is not None:
                doc["fix"]["time_ms"] = self.clock.ms

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
    ) -> list[FakeCandidate]:
        from server.duty.flag_model import distance_m

        found = []
        for device, doc in self.docs.items():
            fix = doc["fix"]
            if fix is None or not doc["online"] or doc["sos_ms"] is not None:
                continue
            if exclude_engaged and doc["dispatch_id"] is not None:
                continue
            if on_duty_only and doc["duty"] is None:
                continue
            if units is not None and doc["unit_id"] not in units:
                continue
            if self.clock.ms - fix["time_ms"] > max_fix_age_s * 1000:
                continue
            d = distance_m(lat, lon, fix["lat"], fix["lon"])
            if d <= radius_m:
                found.append(FakeCandidate(device, d, dict(doc)))
        return sorted(found, key=lambda c: c.distance_m)[:limit]

    def get(self, device_id: str) -> dict[str, Any] | None:
        doc = self.docs.get(device_id)
        return dict(doc) if doc is not None else None

    def set_engaged(self, device_id: str, dispatch_id: str | None) -> None:
        self.engaged_calls.append((device_id, dispatch_id))
        if device_id in self.docs:
            self.docs[device_id]["dispatch_id"] = dispatch_id


@dataclass
class FakeHub:
    events: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)

    def publish_event(self, topic: str, data: dict[str, Any], unit_id: str | None) -> None:
        self.events.append((topic, data, unit_id))


@dataclass
class Broker:
    """Records what would be published; while ``down``, ``send`` raises NotConnected."""

    sent: list[tuple[str, Message, int]] = field(default_factory=list)
    down: bool = False

    def send(self, device: str, message: Message, expiry_s: int) -> None:
        if self.down:
            raise NotConnected("yijing-server: not connected to 127.0.0.1:1883")
        self.sent.append((device, message, expiry_s))

    def to(self, device: str) -> list[Message]:
        return [m for d, m, _ in self.sent if d == device]


class FakeOrg:
    """sz → {s1 → g1, s2}."""

    def __init__(self) -> None:
        self.units = {
            "sz": Unit("sz", "SZ", UnitLevel.CITY),
            "s1": Unit("s1", "S1", UnitLevel.STATION, "sz"),
            "g1": Unit("g1", "G1", UnitLevel.GRID, "s1"),
            "s2": Unit("s2", "S2", UnitLevel.STATION, "sz"),
        }

    def unit(self, unit_id: str) -> Unit | None:
        return self.units.get(unit_id)

    def subtree(self, unit_id: str) -> set[str]:
        if unit_id not in self.units:
            return set()
        found = {unit_id}
        while True:
            more = {u for u, x in self.units.items() if x.parent_id in found} - found
            if not more:
                return found
            found |= more


@dataclass
class FakeFrames:
    """``Store.frames_received`` over a list of (device, seq, received_ms, payload)."""

    frames: list[tuple[str, int, int, int, bytes]] = field(default_factory=list)

    def frames_received(
        self, type_codes: Collection[int], since_ms: int
    ) -> list[tuple[str, int, int, bytes]]:
        return [(d, s, r, p) for d, s, r, t, p in self.frames if t in type_codes and r >= since_ms]


@dataclass
class World:
    clock: Clock
    live: FakeLive
    hub: FakeHub
    broker: Broker
    org: FakeOrg
    frames: FakeFrames
    path: Path
    config: DispatchConfig

    def dispatcher(self) -> Dispatcher:
        return Dispatcher(
            path=self.path,
            live=self.live,
            org=self.org,
            store=self.frames,
            hub=self.hub,
            send=self.broker.send,
            clock=self.clock,
            config=self.config,
        )


def world(tmp_path: Path, config: DispatchConfig | None = None) -> World:
    """Terminals a (30 m), b (50 m), c (150 m), d (180 m), e (300 m), f (400 m) north of the
    incident, all of s1, on duty and online."""
    clock = Clock()
    live = FakeLive(clock)
    for device, metres in (("a", 30), ("b", 50), ("c", 150), ("d", 180), ("e", 300), ("f", 400)):
        live.add(device, metres)
    return World(
        clock,
        live,
        FakeHub(),
        Broker(),
        FakeOrg(),
        FakeFrames(),
        tmp_path / "dispatch.db",
        config or DispatchConfig(),
    )


def response(
    device: str,
    dispatch_id: str,
    status: str,
    received_ms: int,
    *,
    time_ms: int | None = None,
    seq: int = 1,
    fix: Fix | None = None,
) -> Accepted:
    message = DispatchResponse(
        dispatch_id=dispatch_id,
        status=ResponseStatus(status),
        time_ms=received_ms - 100 if time_ms is None else time_ms,
        fix=fix,
    )
    return Accepted(device, seq, message, received_ms)


def position(
    device: str, metres: float, time_ms: int, *, accuracy_m: float = 5.0, seq: int = 50
) -> Accepted:
    lat, lon = north(metres)
    fix = Fix(time_ms=time_ms, lat=lat, lon=lon, accuracy_m=accuracy_m)
    return Accepted(device, seq, Position(fix=fix), time_ms + 200)
