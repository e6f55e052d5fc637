"""The worked examples of docs/metrics.md §5, number for number, through both computations."""

from __future__ import annotations

import math

from server.duty.batch import DeviceData, shift_segments
from server.duty.geo import Circle
from server.duty.incremental import DutyTracker
from server.duty.rules import ShiftTally, State, tally_of
from server.store import EvidenceRow, FixRow

LAT0, LON0 = 22.5333, 114.0550
POST = Circle(LAT0, LON0, 50.0)
START = 1_790_020_800  # 20:00:00 local time is not needed: seconds are seconds
END = START + 600


def at(hhmmss: str) -> int:
    """Epoch second of a time on the example's evening, 20:00:00 being START."""
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return START + (h - 20) * 3600 + m * 60 + s


def north(metres: float) -> float:
    return LAT0 + metres / 111_194.92664455873


def east(metres: float) -> float:
    return LON0 + metres / (111_194.92664455873 * math.cos(math.radians(LAT0)))


class Log:
    def __init__(self) -> None:
        self.fixes: list[FixRow] = []
        self.evidence: list[EvidenceRow] = []
        self.seq = 0

    def fix(
        self, second: int, *, metres_north: float = 0.0, acc: float = 8.0, delay_s: int = 0
    ) -> None:
        self.seq += 1
        ms = second * 1000
        self.fixes.append((ms, self.seq, 0, north(metres_north), LON0, acc, 0, ms + delay_s * 1000))

    def frame(self, second: int, *, off: bool = False) -> None:
        self.evidence.append((second * 1000, int(off)))


def both(log: Log) -> ShiftTally:
    batch = shift_segments(START, END, POST, DeviceData.from_rows(log.fixes, log.evidence))
    tracker = DutyTracker()
    tracker.add_shift("s", "d", START, END, POST)
    for row in reversed(log.fixes):
        tracker.add_fix("d", *row)
    for sent_ms, off in log.evidence:
        tracker.add_evidence("d", sent_ms, off=bool(off))
    assert tracker.segments("s") == batch
    return tally_of("s", START, END, batch)


def test_a_walk_to_a_shop_and_a_flat_battery() -> None:
    log = Log()
    for t in range(at("19:59:30"), at("20:03:05"), 5):
        log.fix(t)
    for t in range(at("20:03:05"), at("20:05:00") + 1, 5):
        log.fix(t, metres_north=200)
    for t in range(at("20:08:00"), at("20:10:00"), 5):
        log.fix(t)
    tally = both(log)
    assert (tally.on_post_s, tally.off_post_s, tally.offline_s) == (305, 265, 30)
    assert round(tally.on_duty_rate * 100, 1) == 50.8
    assert round(tally.usage_rate * 100, 1) == 95.0
    assert tally.late_s(START) == 0 and tally.early_leave_s(END) == 0


def example_b() -> Log:
    log = Log()
    # 70 m from the centre with accuracy 30 m: 70 <= 50 + 30, on the post.
    log.fix(at("20:00:00"), metres_north=70, acc=30)
    log.frame(at("20:00:00"))
    for minute in range(1, 6):
        log.fix(at(f"20:0{minute}:00"), metres_north=10)
        log.frame(at(f"20:0{minute}:00"))  # the heartbeat
    log.frame(at("20:06:00"), off=True)  # switched off, in an orderly way
    return log


def test_b_standing_still_then_switched_off() -> None:
    tally = both(example_b())
    assert (tally.on_post_s, tally.offline_s) == (360, 240)
    assert tally.on_duty_rate == 0.6
    assert tally.early_leave_s(END) == 240


def test_c_offline_recording_revises_the_past() -> None:
    full = example_b()
    # The link drops just after 20:02:00: only what came before is stored at first.
    live = Log()
    live.fixes = [f for f in full.fixes if f[0] <= at("20:02:00") * 1000]
    live.evidence = [e for e in full.evidence if e[0] <= at("20:02:00") * 1000]
    before = both(live)
    assert (before.on_post_s, before.on_post_backfilled_s) == (270, 0)
    # At 20:20 the rest arrives: fixes of 20:03, 20:04 and 20:05 more than 120 s late.
    backfill = Log()
    backfill.fixes = live.fixes + [
        (ms, seq, idx, lat, lon, acc, flags, at("20:20:00") * 1000)
        for ms, seq, idx, lat, lon, acc, flags, _ in full.fixes
        if ms > at("20:02:00") * 1000
    ]
    backfill.evidence = full.evidence
    after = both(backfill)
    assert (after.on_post_s, after.on_post_backfilled_s) == (360, 180)


def test_no_terminal_means_offline_throughout() -> None:
    tally = both(Log())
    assert tally.offline_s == 600 and tally.on_duty_rate == 0.0
    assert tally.late_s(START) == 600


def test_unusable_and_future_fixes() -> None:
    log = Log()
    log.fix(START, acc=150)  # alive, but says nothing about the post
    tally = both(log)
    assert (tally.no_fix_s, tally.offline_s) == (150, 450)
    flagged = Log()
    flagged.fixes = [(START * 1000, 1, 0, LAT0, LON0, 5.0, 1, START * 1000)]  # FUTURE_TIME
    assert both(flagged).offline_s == 600
    assert State.ON_POST not in {s.state for s in shift_segments(
        START, END, POST, DeviceData.from_rows(flagged.fixes, [])
    )}
