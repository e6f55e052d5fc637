"""A small organisation, a clock and a broker stand-in for the spot-check tests."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from protocol import Fix, RollCall, RollCallAnswer, Snapshot, SnapshotTrigger
from server.ingest import Accepted
from server.org.model import Shift, Terminal, Unit, UnitLevel
from server.spotcheck.service import SpotChecks
from yijing.mqtt import NotConnected

T0 = 1_763_900_000_000  # whole seconds: shifts start and end on them
NOW_MS = T0 + 3_600_000  # the clock's start: an hour into the shifts


class FakeOrg:
    """In memory, the calls ``server.spotcheck.service.OrgView`` names, with the same
    meanings: shifts overlapping ``[since_ms, until_ms)``, ``units`` by the post's unit."""

    def __init__(self) -> None:
        self.units: dict[str, Unit] = {}
        self.terminals: dict[str, Terminal] = {}
        self.post_units: dict[str, str] = {}
        self.all_shifts: list[Shift] = []

    def add_unit(self, unit_id: str, level: UnitLevel, parent: str | None = None) -> None:
        self.units[unit_id] = Unit(unit_id, unit_id.upper(), level, parent)

    def shifts(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        units: Collection[str] | None = None,
        volunteer_id: str | None = None,
        device_id: str | None = None,
    ) -> list[Shift]:
        return [
            s
            for s in self.all_shifts
            if (until_ms is None or s.start_ms < until_ms)
            and (since_ms is None or s.end_ms > since_ms)
            and (units is None or self.post_units[s.post_id] in units)
            and (volunteer_id is None or s.volunteer_id == volunteer_id)
            and (device_id is None or s.device_id == device_id)
        ]

    def subtree(self, unit_id: str) -> set[str]:
        if unit_id not in self.units:
            return set()  # as OrgStore: an unknown unit has no subtree
        found = {unit_id}
        grew = True
        while grew:
            more = {u for u, unit in self.units.items() if unit.parent_id in found} - found
            found |= more
            grew = bool(more)
        return found

    def unit(self, unit_id: str) -> Unit | None:
        return self.units.get(unit_id)

    def terminal(self, device_id: str) -> Terminal | None:
        return self.terminals.get(device_id)


def futian() -> FakeOrg:
    """sz → futian → {s1 → g1, s2}. Terminals ft-1, ft-2 (s1), ft-3 (g1), ft-9 (s2).

    On duty now: v-1 with ft-1 at a post of s1, v-3 with ft-3 at a post of g1, v-9 with
    ft-9 in s2; v-4 on duty in s1 without a terminal; ft-2 is held by v-2, off duty.
    """
    org = FakeOrg()
    org.add_unit("sz", UnitLevel.CITY)
    org.add_unit("futian", UnitLevel.DISTRICT, "sz")
    org.add_unit("s1", UnitLevel.STATION, "futian")
    org.add_unit("g1", UnitLevel.GRID, "s1")
    org.add_unit("s2", UnitLevel.STATION, "futian")
    for device, unit, holder in (
        ("ft-1", "s1", "v-1"),
        ("ft-2", "s1", "v-2"),
        ("ft-3", "g1", "v-3"),
        ("ft-9", "s2", "v-9"),
    ):
        org.terminals[device] = Terminal(device, unit, holder=holder)
    org.post_units.update({"p-s1": "s1", "p-g1": "g1", "p-s2": "s2"})
    start, end = T0, T0 + 8 * 3_600_000
    org.all_shifts += [
        Shift("sh-1", "v-1", "p-s1", start, end, device_id="ft-1"),
        Shift("sh-3", "v-3", "p-g1", start, end, device_id="ft-3"),
        Shift("sh-9", "v-9", "p-s2", start, end, device_id="ft-9"),
        Shift("sh-4", "v-4", "p-s1", start, end, device_id=None),
        # ft-2's shift ended before now: not on duty.
        Shift("sh-2", "v-2", "p-s1", start - 3_600_000, start, device_id="ft-2"),
    ]
    return org


class Clock:
    def __init__(self, ms: int = NOW_MS) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@dataclass
class Broker:
    """Records what would be published; devices in ``down`` make ``send`` raise."""

    sent: list[tuple[str, RollCall]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)

    def send(self, device: str, call: RollCall) -> None:
        if device in self.down:
            raise NotConnected("yijing-server: not connected to 127.0.0.1:1883")
        self.sent.append((device, call))

    def call_to(self, device: str) -> RollCall:
        [call] = [c for d, c in self.sent if d == device]
        return call


def make_service(
    tmp_path: Path, org: FakeOrg | None = None, *, seed: int = 7
) -> tuple[SpotChecks, Clock, Broker]:
    clock, broker = Clock(), Broker()
    service = SpotChecks(
        path=tmp_path / "spotchecks.db",
        org=org or futian(),
        send=broker.send,
        clock=clock,
        rng=random.Random(seed),
    )
    return service, clock, broker


def fix_at(time_ms: int, lat: float = 22.5431, lon: float = 114.0579) -> Fix:
    return Fix(time_ms=time_ms, lat=lat, lon=lon, accuracy_m=6.0)


def answer(
    device: str, rollcall_id: str, received_ms: int, fix: Fix | None, *, seq: int = 1
) -> Accepted:
    message = RollCallAnswer(rollcall_id=rollcall_id, time_ms=received_ms - 200, fix=fix)
    return Accepted(device, seq, message, received_ms)


def picture(device: str, request_id: str | None, received_ms: int, *, seq: int = 2) -> Accepted:
    jpeg = b"\xff\xd8" + random.Random(received_ms).randbytes(64)
    message = Snapshot(
        captured_ms=received_ms - 500,
        trigger=SnapshotTrigger.REQUEST,
        width=320,
        height=180,
        sha256=hashlib.sha256(jpeg).digest(),
        jpeg=jpeg,
        request_id=request_id,
    )
    return Accepted(device, seq, message, received_ms)
