"""Duty of shifts with phones (issue #10, docs/metrics.md §7), through the real stores.

A volunteer holds a terminal and a phone; the phone's fixes are stored like a terminal's, under
the phone's own device id, unsigned. A shift counts all its devices as one set — the phone
only while held — and says how many of its on-post seconds rest on the phone alone. Every
case is computed twice, by ``DutyService.recompute`` (batch, from the store) and by the live
tracker (fed by ``on_stored`` in shuffled order, with duplicates), and the two must agree.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from protocol import Fix
from server.duty.geo import Circle
from server.duty.rules import ShiftDevice, ShiftResult, State, Trust
from server.duty.service import DutyService
from server.org.model import (
    Post,
    PostKind,
    Shift,
    Terminal,
    TerminalKind,
    Unit,
    UnitLevel,
    Volunteer,
)
from server.org.store import OrgStore
from server.sqlite_store import SqliteStore
from server.store import IncomingFrame

LAT0, LON0 = 22.5333, 114.0550
START_MS = 1_790_020_800_000  # "20:00:00" of the examples
END_MS = START_MS + 600_000
ISSUED_MS = START_MS - 86_400_000
PHONE_TYPE = 0x80  # an OwnTracks report (server.phones.frames): no device signature
TERMINAL_TYPE = 0x02


def at(hhmmss: str) -> int:
    """Epoch ms of a time of the example's evening, 20:00:00 being START_MS."""
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return START_MS + ((h - 20) * 3600 + m * 60 + s) * 1000


def north(metres: float) -> float:
    return LAT0 + metres / 111_194.92664455873


@dataclass
class Device:
    """Frames of one device, as its ingest would store them."""

    device_id: str
    phone: bool
    frames: list[IncomingFrame] = field(default_factory=list)

    def fix(self, t_ms: int, *, metres_north: float = 0.0, acc: float = 8.0) -> None:
        # A phone's stored seq is derived from its report's time (server.phones.frames).
        seq = t_ms * 4 if self.phone else len(self.frames) + 1
        self.frames.append(
            IncomingFrame(
                device_id=self.device_id,
                seq=seq,
                key_id=0 if self.phone else 1,
                type_code=PHONE_TYPE if self.phone else TERMINAL_TYPE,
                sent_ms=t_ms,
                received_ms=t_ms + 300,
                payload=f"{self.device_id}:{seq}".encode(),
                digest=bytes(32),
                fixes=(Fix(time_ms=t_ms, lat=north(metres_north), lon=LON0, accuracy_m=acc),),
            )
        )

    def every(self, first: str, last: str, step_s: int, **kw: float) -> None:
        for t in range(at(first), at(last) + 1, step_s * 1000):
            self.fix(t, **kw)

    def switch_off(self, t_ms: int) -> None:
        seq = len(self.frames) + 1
        self.frames.append(
            IncomingFrame(
                self.device_id, seq, 1, 0x03, t_ms, t_ms + 300, b"off%d" % seq, bytes(32),
                offline=True,
            )
        )  # fmt: skip


@dataclass
class World:
    org: OrgStore
    store: SqliteStore
    now_s: list[float]

    def duty(self) -> DutyService:
        return DutyService(self.store, self.org, clock=lambda: self.now_s[0])

    def shift(self, shift_id: str, volunteer: str, **kw: object) -> Shift:
        shift = self.org.make_shift(shift_id, volunteer, "p1", START_MS, END_MS, **kw)
        self.org.put_shift(shift)
        return shift


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    org = OrgStore(tmp_path / "org.db")
    store = SqliteStore(tmp_path / "yijing.db")
    for unit in (
        Unit("sz", "深圳市", UnitLevel.CITY),
        Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"),
        Unit("s1", "福田派出所", UnitLevel.STATION, "ft"),
    ):
        org.put_unit(unit)
    for vid, name in (("v1", "张三"), ("v2", "李四")):
        org.put_volunteer(Volunteer(vid, name, "s1"))
    org.put_terminal(Terminal("t-1", "s1", holder="v1"), at_ms=ISSUED_MS)
    org.put_terminal(Terminal("ph-v1", "s1", TerminalKind.PHONE, holder="v1"), at_ms=ISSUED_MS)
    org.put_terminal(Terminal("ph-v2", "s1", TerminalKind.PHONE, holder="v2"), at_ms=ISSUED_MS)
    org.put_post(Post("p1", "华强北路口", PostKind.DUTY_POINT, "s1", Circle(LAT0, LON0, 50)))
    yield World(org, store, [END_MS / 1000 + 60])
    store.close()
    org.close()


def both(world: World, shift: Shift, devices: list[Device], seed: int = 7) -> ShiftResult:
    """Store the devices' frames, recompute the shift (batch), and run it live twice — loaded
    from the store at start-up, and fed frame by frame through ``on_stored`` in a shuffled
    order with duplicates — and require one answer from all three."""
    frames = [f for d in devices for f in d.frames]
    world.store.store_frames(frames)
    batch = world.duty().recompute(shift)

    started = world.duty()
    assert started.refresh() >= 1
    assert started.live_result(shift.shift_id) == batch

    # Live from an empty store: the shift is tracked first, then every frame arrives.
    empty = SqliteStore(world.store.path.parent / f"empty-{shift.shift_id}-{seed}.db")
    live = DutyService(empty, world.org, clock=lambda: world.now_s[0])
    live.refresh()
    rng = random.Random(seed)
    arrivals = frames + [rng.choice(frames) for _ in range(len(frames) // 3)]
    rng.shuffle(arrivals)
    for k in range(0, len(arrivals), 17):
        live.tracker.on_stored(arrivals[k : k + 17])
    assert live.live_result(shift.shift_id) == batch
    empty.close()
    return batch


def on_seconds(result: ShiftResult) -> int:
    return result.tally.on_post_s


# --- mixed, phone only, signed -----------------------------------------------------------------


def test_a_terminal_switched_off_halfway_and_the_phone_after_it_is_mixed(world: World) -> None:
    """docs/metrics.md §7, example D."""
    shift = world.shift("A", "v1")
    assert shift.device_id == "t-1"  # the signed terminal, not the phone
    terminal, phone = Device("t-1", False), Device("ph-v1", True)
    terminal.every("19:59:30", "20:04:55", 5)
    terminal.switch_off(at("20:05:00"))
    phone.every("20:05:00", "20:09:50", 10)
    r = both(world, shift, [terminal, phone])
    assert r.devices == ("t-1", "ph-v1") and r.phones == ("ph-v1",) and r.phone
    assert r.tally.on_duty_rate == pytest.approx(1.0)
    assert r.phone_on_post_s == 300
    assert r.phone_only() == [(at("20:05:00") // 1000, END_MS // 1000)]
    assert r.trust is Trust.MIXED and r.trust == "mixed"
    assert r.phone_only_rate == pytest.approx(0.5)
    # The terminal's own timeline, by which its usage is measured: on until the switch-off.
    assert r.signed_segments is not None
    assert [(s.state, s.end_s - s.start_s) for s in r.signed_segments] == [
        (State.ON_POST, 300),
        (State.OFFLINE, 300),
    ]
    assert r.terminal_segments == r.signed_segments
    assert (r.terminal_alive_s, r.usage_rate, r.tally.usage_rate) == (300, 0.5, 1.0)
    # Terminal usage stays per device: the phone does not switch the terminal on.
    assert world.duty().terminal_usage("t-1", [(START_MS // 1000, END_MS // 1000)]) == (300, 600)


def test_a_shift_of_phone_fixes_only_rests_on_the_phone(world: World) -> None:
    shift = world.shift("B", "v2")
    assert shift.device_id == "ph-v2"  # v2 holds no terminal: the phone is recorded
    phone = Device("ph-v2", True)
    phone.every("19:59:50", "20:09:50", 10)
    r = both(world, shift, [phone])
    assert r.devices == ("ph-v2",) and r.phones == ("ph-v2",)
    assert on_seconds(r) == 600 and r.phone_on_post_s == 600
    assert r.trust is Trust.PHONE
    assert r.terminal_segments == r.segments  # the recorded terminal is the phone
    assert r.usage_rate == 1.0


def test_a_shift_without_a_terminal_counts_from_the_phone_held(world: World) -> None:
    shift = world.shift("C", "v2", device_id=None)
    phone = Device("ph-v2", True)
    phone.every("20:02:00", "20:09:50", 10)
    r = both(world, shift, [phone])
    assert r.device_id is None and r.devices == ("ph-v2",)
    assert on_seconds(r) == 480 and r.phone_on_post_s == 480 and r.trust is Trust.PHONE
    assert r.usage_rate == 0.0  # no recorded terminal: no terminal time (metrics.md §7)


def test_terminal_and_phone_both_on_post_rest_on_the_terminal(world: World) -> None:
    shift = world.shift("A", "v1")
    terminal, phone = Device("t-1", False), Device("ph-v1", True)
    terminal.every("19:59:30", "20:09:55", 5)
    phone.every("19:59:33", "20:09:53", 10)  # in between the terminal's fixes
    r = both(world, shift, [terminal, phone])
    assert on_seconds(r) == 600
    assert r.phone_on_post_s == 0 and r.phone_only() == []
    assert r.trust is Trust.SIGNED


def test_a_phone_elsewhere_moves_seconds_off_but_never_below_zero(world: World) -> None:
    """The phone's fixes, newer than the terminal's within each 5 s, are off the post: the
    merged timeline loses on-post seconds; none of them rests on the phone (§7, per second)."""
    shift = world.shift("A", "v1")
    terminal, phone = Device("t-1", False), Device("ph-v1", True)
    terminal.every("19:59:30", "20:09:55", 5)
    phone.every("19:59:32", "20:09:52", 5, metres_north=300.0)
    r = both(world, shift, [terminal, phone])
    assert 0 < on_seconds(r) < 600
    assert r.phone_on_post_s == 0 and r.trust is Trust.SIGNED


def test_a_shift_with_no_phone_is_signed_and_reported_as_before(world: World) -> None:
    world.org.put_terminal(Terminal("ph-v1", "s1", TerminalKind.PHONE), at_ms=ISSUED_MS + 1)
    shift = world.shift("A", "v1")
    terminal = Device("t-1", False)
    terminal.every("19:59:30", "20:04:55", 5)
    r = both(world, shift, [terminal])
    assert r.devices == ("t-1",) and r.phones == () and not r.phone
    assert r.signed_segments is None and r.phone_on_post_s == 0 and r.trust is Trust.SIGNED
    assert on_seconds(r) == 445  # the last fix, 20:04:55, places them 150 s more


# --- order, duplicates, hand-overs ---------------------------------------------------------------


def test_out_of_order_and_duplicate_phone_fixes_are_harmless(world: World) -> None:
    shift = world.shift("B", "v2")
    in_order = Device("ph-v2", True)
    in_order.every("19:59:50", "20:06:00", 10)
    in_order.every("20:06:05", "20:09:55", 5, metres_north=120.0, acc=30.0)
    expected = world.duty().recompute(shift)  # nothing stored yet: offline
    assert on_seconds(expected) == 0
    shuffled = Device("ph-v2", True, list(reversed(in_order.frames)))
    shuffled.frames += shuffled.frames[::3]  # resent reports (same seq, same bytes)
    for seed in (1, 2, 3):
        r = both(world, shift, [shuffled], seed=seed)
        # Stored once per (device, seq): the second and third rounds change nothing.
        # On post to the first fix 120 m away (accuracy 30 m, radius 50 m), off after it.
        assert on_seconds(r) == 365 and r.phone_on_post_s == on_seconds(r)
        assert r.tally.off_post_s == 235


def test_a_phone_handed_over_mid_shift_counts_only_while_held(world: World) -> None:
    world.now_s[0] = at("20:03:00") / 1000
    a = world.shift("A", "v1")
    b = world.shift("B", "v2", device_id=None)
    live = world.duty()
    live.refresh()
    # v1's terminal is switched off at 20:02; their phone reports on the post all along,
    # and at 20:05 goes to v2 (who gave back their own phone).
    world.org.put_terminal(Terminal("ph-v2", "s1", TerminalKind.PHONE), at_ms=at("20:04:00"))
    world.org.put_terminal(
        Terminal("ph-v1", "s1", TerminalKind.PHONE, holder="v2"), at_ms=at("20:05:00")
    )
    assert world.org.phones_held("v1", START_MS, END_MS) == ["ph-v1"]
    assert world.org.phones_held("v2", START_MS, END_MS) == ["ph-v2", "ph-v1"]
    assert world.org.phones_held("v2", START_MS, at("20:05:00")) == ["ph-v2"]
    terminal, phone = Device("t-1", False), Device("ph-v1", True)
    terminal.every("19:59:30", "20:01:55", 5)
    terminal.switch_off(at("20:02:00"))
    phone.every("19:59:40", "20:09:50", 10)
    world.now_s[0] = END_MS / 1000 + 60

    ra = both(world, a, [terminal, phone])
    # The phone's last fix while v1 held it (20:04:50) keeps v1 alive and placed 150 s more.
    assert [(s.state, s.end_s - s.start_s) for s in ra.segments] == [
        (State.ON_POST, 440),
        (State.OFFLINE, 160),
    ]
    assert ra.phone_on_post_s == 440 - 120 and ra.trust is Trust.MIXED
    rb = world.duty().recompute(b)
    # v2's shift: their own phone (silent) until 20:04, v1's phone from 20:05.
    assert rb.devices == ("ph-v2", "ph-v1")
    assert rb.phones == ("ph-v2", "ph-v1")
    assert [(s.state, s.end_s - s.start_s) for s in rb.segments] == [
        (State.OFFLINE, 300),
        (State.ON_POST, 300),
    ]
    assert rb.trust is Trust.PHONE

    # The live shift tracked before the hand-over: the next refresh re-tracks it with the
    # phone's holding closed, and it agrees with the recomputation.
    for frame in terminal.frames + phone.frames:
        live.tracker.on_stored([frame])
    live.refresh()
    assert live.live_result("A") == ra
    assert live.live_result("B") == rb


def test_devices_are_looked_up_once_per_refresh(world: World) -> None:
    calls: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> object:
            calls.append(name)
            return getattr(world.org, name)

    for k in range(20):
        world.org.put_volunteer(Volunteer(f"x{k}", f"义警{k}", "s1"))
        world.org.put_terminal(
            Terminal(f"ph-x{k}", "s1", TerminalKind.PHONE, holder=f"x{k}"), at_ms=ISSUED_MS
        )
        world.shift(f"X{k}", f"x{k}")
    world.now_s[0] = at("20:05:00") / 1000
    duty = DutyService(world.store, Counting(), clock=lambda: world.now_s[0])  # type: ignore[arg-type]
    assert duty.refresh() == 20
    assert calls.count("phone_holdings") == 1 and calls.count("phones") == 1
    calls.clear()
    assert duty.refresh() == 20  # nothing changed: nothing re-tracked
    assert calls.count("phone_holdings") == 1 and "post" not in calls
    assert len(duty.recompute_many([s for s in world.org.shifts()])) == 20
    assert calls.count("phone_holdings") == 2


# --- live ---------------------------------------------------------------------------------------


def test_duty_now_names_the_devices_and_whether_it_rests_on_the_phone(world: World) -> None:
    shift = world.shift("A", "v1")
    terminal, phone = Device("t-1", False), Device("ph-v1", True)
    terminal.every("19:59:30", "20:04:55", 5)
    terminal.switch_off(at("20:05:00"))
    phone.every("20:05:00", "20:09:50", 10)
    world.store.store_frames(terminal.frames + phone.frames)
    duty = world.duty()
    world.now_s[0] = at("20:03:00") / 1000
    duty.refresh()
    (entry,) = duty.now()
    assert entry["devices"] == ["t-1", "ph-v1"] and entry["phone"] is True
    assert (entry["state"], entry["on_phone"]) == ("on_post", False)
    world.now_s[0] = at("20:07:00") / 1000
    (entry,) = duty.now()
    assert (entry["state"], entry["on_phone"]) == ("on_post", True)
    assert entry["on_duty_rate_so_far"] == pytest.approx(1.0)
    live = duty.live_result(shift.shift_id)
    assert live is not None and live.phone_on_post_s == 120 and live.trust is Trust.MIXED


def test_shift_devices_validate_their_fields() -> None:
    with pytest.raises(ValueError, match="device_id"):
        ShiftDevice("")
    with pytest.raises(ValueError, match="held_ms"):
        ShiftDevice("ph-1", phone=True, held_ms=((5, 5),))
    d = ShiftDevice("ph-1", phone=True, held_ms=((10, 20), (30, 40)))
    assert [t for t in range(0, 50, 5) if d.covers(t)] == [10, 15, 30, 35]


def test_a_result_cannot_claim_more_phone_seconds_than_on_post(world: World) -> None:
    shift = world.shift("B", "v2")
    phone = Device("ph-v2", True)
    phone.every("20:00:00", "20:00:30", 10)
    world.store.store_frames(phone.frames)
    r = world.duty().recompute(shift)
    with pytest.raises(ValueError, match="phone_on_post_s"):
        replace(r, phone_on_post_s=on_seconds(r) + 1)
    with pytest.raises(ValueError, match="signed_segments"):
        replace(r, signed_segments=None)
    assert math.isclose(r.phone_only_rate, on_seconds(r) / 600)
