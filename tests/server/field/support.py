"""A small organisation (the real store), a clock, and stand-ins for the live state, the feed
and the broker, for the field-report tests."""

from __future__ import annotations

import atexit
import hashlib
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import (
    Clue,
    Event,
    EventKind,
    Fix,
    IncidentKind,
    Message,
    Position,
    Snapshot,
    SnapshotTrigger,
    TaskAck,
    decode,
)
from server.duty.geo import Circle
from server.field.service import FieldReports
from server.ingest import Accepted
from server.org.model import Post, PostKind, Shift, Terminal, Unit, UnitLevel, Volunteer
from server.org.store import OrgStore
from server.store import SnapshotMeta
from yijing.mqtt import NotConnected

T0 = 1_763_900_000_000  # whole seconds: shifts start and end on them
NOW_MS = T0 + 3_600_000  # the clock's start: an hour into the shifts


_TEMPLATE: list[Path] = []


def make_org(path: Path) -> OrgStore:
    """The organisation below in a store at ``path``: built once (each write is an fsync),
    then copied for every test."""
    if not _TEMPLATE:
        folder = tempfile.mkdtemp(prefix="yijing-field-org-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template = Path(folder) / "org.db"
        _build_org(template).close()  # closing checkpoints the WAL into the file
        _TEMPLATE.append(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE[0], path)
    return OrgStore(path)


def _build_org(path: Path) -> OrgStore:
    """sz → ft → {ft-s1 → {ft-s1-g1, ft-s1-t1}, ft-s2}.

    Terminals: t-1 (g1, Li), t-2 (s1, Wang), t-3 (s2, Zhao), t-4 (t1, Chen), t-5 (s1, nobody).
    On shifts now: Li at the bar (strict-order area, g1), Zhao at the school gate (duty
    point, s2), Chen at the station door (duty point, s1). Wang's shift at the door ended an
    hour ago.
    """
    org = OrgStore(path)
    for unit in (
        Unit("sz", "深圳市", UnitLevel.CITY),
        Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"),
        Unit("ft-s1", "福田派出所", UnitLevel.STATION, "ft"),
        Unit("ft-s1-g1", "一级网格", UnitLevel.GRID, "ft-s1"),
        Unit("ft-s1-t1", "巡逻队", UnitLevel.TEAM, "ft-s1"),
        Unit("ft-s2", "沙头派出所", UnitLevel.STATION, "ft"),
    ):
        org.put_unit(unit)
    for volunteer_id, name, unit_id in (
        ("li", "Li Lei", "ft-s1-g1"),
        ("wang", "Wang Fang", "ft-s1"),
        ("zhao", "Zhao Min", "ft-s2"),
        ("chen", "Chen Jie", "ft-s1-t1"),
    ):
        org.put_volunteer(Volunteer(volunteer_id, name, unit_id))
    long_ago = T0 - 86_400_000
    for device, unit_id, holder in (
        ("t-1", "ft-s1-g1", "li"),
        ("t-2", "ft-s1", "wang"),
        ("t-3", "ft-s2", "zhao"),
        ("t-4", "ft-s1-t1", "chen"),
        ("t-5", "ft-s1", None),
    ):
        org.put_terminal(Terminal(device, unit_id, holder=holder), at_ms=long_ago)
    here = Circle(22.5431, 114.0579, 80)
    org.put_post(Post("bar", "酒吧街", PostKind.STRICT_ORDER_AREA, "ft-s1-g1", here))
    org.put_post(Post("gate", "校门", PostKind.DUTY_POINT, "ft-s2", here))
    org.put_post(Post("door", "所门口", PostKind.DUTY_POINT, "ft-s1", here))
    end = T0 + 8 * 3_600_000
    org.put_shift(Shift("sh-li", "li", "bar", T0, end, device_id="t-1"))
    org.put_shift(Shift("sh-zhao", "zhao", "gate", T0, end, device_id="t-3"))
    org.put_shift(Shift("sh-chen", "chen", "door", T0, end, device_id="t-4"))
    org.put_shift(Shift("sh-wang", "wang", "door", T0 - 3_600_000, T0, device_id="t-2"))
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
    """Records what would be published; ``down`` makes every send raise."""

    sent: list[tuple[str, Message, int]] = field(default_factory=list)
    down: bool = False

    def send(self, device: str, message: Message, expiry_s: int) -> None:
        if self.down:
            raise NotConnected("yijing-server: not connected to 127.0.0.1:1883")
        self.sent.append((device, message, expiry_s))

    def to(self, device: str) -> list[Message]:
        return [m for d, m, _ in self.sent if d == device]


@dataclass
class FakeLive:
    """``LiveState.get`` / ``set_sos`` as the contract has them."""

    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    sos_calls: list[tuple[str, int | None]] = field(default_factory=list)

    def get(self, device_id: str) -> dict[str, Any] | None:
        return self.docs.get(device_id)

    def set_sos(self, device_id: str, raised_ms: int | None) -> None:
        self.sos_calls.append((device_id, raised_ms))

    @property
    def sos(self) -> dict[str, int | None]:
        """Each device's SOS as the calls left it."""
        return dict(self.sos_calls)


@dataclass
class FakeHub:
    events: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)

    def publish_event(self, topic: str, data: dict[str, Any], unit_id: str | None) -> None:
        self.events.append((topic, data, unit_id))

    def topic(self, name: str) -> list[dict[str, Any]]:
        return [d for t, d, _ in self.events if t == name]


@dataclass
class Frames:
    """``Store.frames_received`` and ``snapshots_received`` over a list of (device, seq,
    received_ms, payload)."""

    rows: list[tuple[str, int, int, bytes]] = field(default_factory=list)

    def frames_received(self, type_codes: Any, since_ms: int) -> list[tuple[str, int, int, bytes]]:
        return [
            r
            for r in self.rows
            if r[2] >= since_ms and decode(r[3]).envelope.message.TYPE in type_codes
        ]

    def snapshots_received(self, trigger: str, since_ms: int) -> list[SnapshotMeta]:
        found = []
        for device, seq, received_ms, payload in self.rows:
            m = decode(payload).envelope.message
            if isinstance(m, Snapshot) and m.trigger.value == trigger and received_ms >= since_ms:
                found.append(
                    SnapshotMeta(
                        device, seq, m.sha256.hex(), m.captured_ms, m.trigger.value, m.width,
                        m.height, len(m.jpeg), received_ms, m.request_id, None, None,
                    )
                )
        return found


@dataclass
class World:
    service: FieldReports
    clock: Clock
    broker: Broker
    live: FakeLive
    hub: FakeHub
    frames: Frames
    org: OrgStore
    path: Path

    def reopen(self) -> FieldReports:
        """A new service on the same field.db (a restart), with a fresh live state."""
        self.service.close()
        self.live = FakeLive()
        self.hub = FakeHub()
        self.service = FieldReports(
            path=self.path,
            live=self.live,
            org=self.org,
            store=self.frames,
            hub=self.hub,
            send=self.broker.send,
            clock=self.clock,
        )
        return self.service


def make_world(tmp_path: Path) -> World:
    clock, broker, live, hub, frames = Clock(), Broker(), FakeLive(), FakeHub(), Frames()
    org = make_org(tmp_path / "org.db")
    path = tmp_path / "field.db"
    service = FieldReports(
        path=path, live=live, org=org, store=frames, hub=hub, send=broker.send, clock=clock
    )
    return World(service, clock, broker, live, hub, frames, org, path)


def fix_at(time_ms: int, lat: float = 22.5431, lon: float = 114.0579) -> Fix:
    return Fix(time_ms=time_ms, lat=lat, lon=lon, accuracy_m=6.0)


def sos(device: str, seq: int, received_ms: int, fix: Fix | None = None) -> Accepted:
    return Accepted(device, seq, Event(EventKind.SOS, received_ms - 300, fix=fix), received_ms)


def position(device: str, seq: int, received_ms: int) -> Accepted:
    return Accepted(device, seq, Position(fix_at(received_ms - 100)), received_ms)


def ack(
    device: str, task_id: str, seq: int, received_ms: int, read_ms: int | None = None
) -> Accepted:
    message = TaskAck(task_id=task_id, time_ms=read_ms if read_ms is not None else received_ms - 50)
    return Accepted(device, seq, message, received_ms)


def clue(
    device: str, clue_id: str, seq: int, received_ms: int, *, text: str = "可疑人员徘徊"
) -> Accepted:
    message = Clue(
        clue_id=clue_id,
        time_ms=received_ms - 1000,
        text=text,
        category=IncidentKind.THEFT,
        fix=fix_at(received_ms - 2000),
    )
    return Accepted(device, seq, message, received_ms)


def photo(
    device: str,
    request_id: str | None,
    seq: int,
    received_ms: int,
    trigger: SnapshotTrigger = SnapshotTrigger.CLUE,
) -> Accepted:
    jpeg = b"\xff\xd8" + random.Random(received_ms).randbytes(64)
    message = Snapshot(
        captured_ms=received_ms - 500,
        trigger=trigger,
        width=320,
        height=180,
        sha256=hashlib.sha256(jpeg).digest(),
        jpeg=jpeg,
        request_id=request_id,
    )
    return Accepted(device, seq, message, received_ms)
