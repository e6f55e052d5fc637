"""The incremental and the batch computations agree, second by second, with each other and
with a literal reading of docs/metrics.md — whatever the order, duplication and delay of the
data (issue #6: "identical results to the second"), and for a shift of several devices, a
terminal and phones, with its phone-only seconds (§7, issue #10)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.duty.batch import DeviceData, shift_segments
from server.duty.geo import Circle, Corridor, Fence, Polygon
from server.duty.incremental import DutyTracker
from server.duty.rules import Segment, ShiftDevice, State, phone_only, tally_of
from server.fixpack import pack, unpack
from server.store import EvidenceRow, FixRow

from . import oracle

LAT0, LON0 = 22.5333, 114.0550
DEG_M = 1 / 111_195  # degrees of latitude per metre
T0 = 1_790_000_000  # epoch seconds


def fences() -> st.SearchStrategy[Fence]:
    circle = st.builds(
        lambda r: Circle(LAT0, LON0, r), st.floats(5, 120, allow_nan=False)
    )
    polygon = st.just(
        Polygon(
            (
                (LAT0 - 60 * DEG_M, LON0 - 80 * DEG_M),
                (LAT0 + 70 * DEG_M, LON0 - 50 * DEG_M),
                (LAT0 + 20 * DEG_M, LON0 + 90 * DEG_M),
                (LAT0 - 40 * DEG_M, LON0 + 30 * DEG_M),
            )
        )
    )
    corridor = st.builds(
        lambda w: Corridor(
            ((LAT0 - 100 * DEG_M, LON0 - 100 * DEG_M), (LAT0, LON0), (LAT0 + 80 * DEG_M, LON0)),
            w,
        ),
        st.floats(3, 40, allow_nan=False),
    )
    return st.one_of(circle, polygon, corridor)


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[int, int, Fence, list[FixRow], list[EvidenceRow], int]:
    start = T0 + draw(st.integers(0, 50))
    end = start + draw(st.integers(1, 700))
    fence = draw(fences())
    n = draw(st.integers(0, 60))
    fixes: list[FixRow] = []
    for seq in range(1, n + 1):
        t_ms = draw(st.integers((start - 320) * 1000, (end + 20) * 1000))
        # Positions near the fences' edges, so on/off decisions are exercised.
        dlat = draw(st.floats(-150, 150, allow_nan=False)) * DEG_M
        dlon = draw(st.floats(-150, 150, allow_nan=False)) * DEG_M
        acc = draw(st.one_of(st.none(), st.floats(0, 160, allow_nan=False)))
        flags = draw(st.sampled_from([0, 0, 0, 0, 1]))
        delay = draw(st.sampled_from([0, 1_000, 119_000, 121_000, 600_000]))
        idx = draw(st.integers(0, 2))
        fixes.append((t_ms, seq, idx, LAT0 + dlat, LON0 + dlon, acc, flags, t_ms + delay))
    evidence: list[EvidenceRow] = []
    for _ in range(draw(st.integers(0, 20))):
        sent = draw(st.integers((start - 320) * 1000, (end + 20) * 1000))
        evidence.append((sent, draw(st.sampled_from([0, 0, 0, 1]))))
    seed = draw(st.integers(0, 2**32))
    return start, end, fence, fixes, evidence, seed


def per_second(segments: list[Segment]) -> list[State]:
    out: list[State] = []
    for seg in segments:
        out.extend([seg.state] * (seg.end_s - seg.start_s))
    return out


def feed_shuffled(
    tracker: DutyTracker, fixes: list[FixRow], evidence: list[EvidenceRow], seed: int
) -> None:
    """Every row, some twice, in a random order: arrivals out of order, duplicated, late."""
    rng = random.Random(seed)
    items: list[tuple[str, tuple[object, ...]]] = [("fix", f) for f in fixes]
    items += [("ev", e) for e in evidence]
    items += [rng.choice(items) for _ in range(len(items) // 3)] if items else []
    rng.shuffle(items)
    for kind, row in items:
        if kind == "fix":
            t_ms, seq, idx, lat, lon, acc, flags, received = row
            tracker.add_fix(
                "d1", t_ms, seq, idx, lat, lon, acc, flags, received  # type: ignore[arg-type]
            )
        else:
            sent, off = row
            tracker.add_evidence("d1", sent, off=bool(off))  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_batch_incremental_and_definition_agree_to_the_second(
    scenario: tuple[int, int, Fence, list[FixRow], list[EvidenceRow], int],
) -> None:
    start, end, fence, fixes, evidence, seed = scenario
    expected = oracle.states(start, end, fence, fixes, evidence)

    batch = shift_segments(start, end, fence, DeviceData.from_rows(fixes, evidence))
    assert per_second(batch) == expected

    tracker = DutyTracker()
    tracker.add_shift("s1", "d1", start, end, fence)
    feed_shuffled(tracker, fixes, evidence, seed)
    assert tracker.segments("s1") == batch
    # The running counts, kept by differences only, equal the batch tally.
    counts = tracker.counts("s1")
    assert counts is not None
    assert counts == {s: expected.count(s) for s in State}
    assert tracker.tally("s1") == tally_of("s1", start, end, batch)
    # "So far" at any second: the running counts less the seconds still to come.
    now = start + seed % (end - start + 1)
    assert tracker.elapsed_counts("s1", now) == {
        s: expected[: now - start].count(s) for s in State
    }

    # Loading from stored rows at start-up gives the same.
    loaded = DutyTracker()
    loaded.add_shift("s1", "d1", start, end, fence, fixes=fixes, evidence=evidence)
    assert loaded.segments("s1") == batch
    assert loaded.counts("s1") == counts

    # Registered first, then some data arrives live, then the stored rows are merged in from
    # the store's packed array (the server's start-up order): overlap is harmless.
    half = len(fixes) // 2
    packed = DutyTracker()
    packed.add_shift("s1", "d1", start, end, fence)
    feed_shuffled(packed, fixes[:half], evidence[len(evidence) // 2 :], seed)
    packed.load_array("s1", unpack(pack(fixes)), evidence)
    assert packed.segments("s1") == batch
    assert packed.counts("s1") == counts
    # …and each second's winner is kept, so a later, lesser fix of that second changes nothing.
    for row in fixes:
        packed.add_fix("d1", *row)
    assert packed.segments("s1") == batch


def test_segments_tile_the_shift_and_alternate() -> None:
    fence = Circle(LAT0, LON0, 50)
    fixes: list[FixRow] = [
        (T0 * 1000 + 5000 * k, k + 1, 0, LAT0, LON0, 5.0, 0, T0 * 1000 + 5000 * k)
        for k in range(20)
    ]
    segs = shift_segments(T0, T0 + 600, fence, DeviceData.from_rows(fixes, []))
    assert segs[0].start_s == T0 and segs[-1].end_s == T0 + 600
    assert all(a.end_s == b.start_s and a.state != b.state for a, b in itertools.pairwise(segs))
    assert [s.state for s in segs] == [State.ON_POST, State.OFFLINE]
    assert segs[0].end_s == T0 + 95 + 150  # last fix at +95 s, alive and placed 150 s more


# --- several devices: a terminal and phones (docs/metrics.md §7) -------------------------------

#: Device ids out of rank order on purpose: the recorded one ("m") sorts between the phones.
DEVICE_IDS = ("m", "a", "z")
Rows = dict[str, tuple[list[FixRow], list[EvidenceRow]]]


@dataclass(frozen=True)
class Multi:
    start: int
    end: int
    fence: Fence
    devices: tuple[ShiftDevice, ...]
    rows: Rows
    seed: int


@st.composite
def multi_scenarios(draw: st.DrawFn) -> Multi:
    start = T0 + draw(st.integers(0, 50))
    end = start + draw(st.integers(1, 500))
    fence = draw(fences())
    n = draw(st.integers(1, 3))
    devices = []
    for k, device_id in enumerate(DEVICE_IDS[:n]):
        # The first is the recorded one (a terminal, or a phone), counted throughout; the
        # others are phones held for one or two windows, or throughout.
        phone = draw(st.booleans()) if k == 0 else True
        held = None
        if k > 0 and draw(st.booleans()):
            cuts = sorted(
                draw(
                    st.lists(
                        st.integers((start - 320) * 1000, (end + 20) * 1000),
                        min_size=2,
                        max_size=4,
                        unique=True,
                    )
                )
            )
            held = tuple(zip(cuts[::2], cuts[1::2], strict=False))
        devices.append(ShiftDevice(device_id, phone=phone, held_ms=held))
    rows: Rows = {}
    for dev in devices:
        fixes: list[FixRow] = []
        for seq in range(1, draw(st.integers(0, 30)) + 1):
            t_ms = draw(st.integers((start - 320) * 1000, (end + 20) * 1000))
            dlat = draw(st.floats(-150, 150, allow_nan=False)) * DEG_M
            dlon = draw(st.floats(-150, 150, allow_nan=False)) * DEG_M
            acc = draw(st.one_of(st.none(), st.floats(0, 160, allow_nan=False)))
            flags = draw(st.sampled_from([0, 0, 0, 0, 1]))
            delay = draw(st.sampled_from([0, 1_000, 121_000, 600_000]))
            idx = draw(st.integers(0, 2))
            fixes.append((t_ms, seq, idx, LAT0 + dlat, LON0 + dlon, acc, flags, t_ms + delay))
        evidence: list[EvidenceRow] = []
        for _ in range(draw(st.integers(0, 10))):
            sent = draw(st.integers((start - 320) * 1000, (end + 20) * 1000))
            evidence.append((sent, draw(st.sampled_from([0, 0, 0, 1]))))
        rows[dev.device_id] = (fixes, evidence)
    # Ties across devices: the same (time, seq, idx) as another device's fix, elsewhere.
    if n > 1:
        for _ in range(draw(st.integers(0, 4))):
            a, b = draw(st.permutations([d.device_id for d in devices]))[:2]
            if rows[a][0]:
                f = draw(st.sampled_from(rows[a][0]))
                if all(g[1] != f[1] for g in rows[b][0]):  # (device, seq) is stored once
                    dlat = draw(st.floats(-150, 150, allow_nan=False)) * DEG_M
                    rows[b][0].append((f[0], f[1], f[2], LAT0 + dlat, f[4], f[5], 0, f[7]))
    return Multi(start, end, fence, tuple(devices), rows, draw(st.integers(0, 2**32)))


def feed_devices(tracker: DutyTracker, rows: Rows, seed: int) -> None:
    """Every device's rows, some twice, interleaved in a random order."""
    rng = random.Random(seed)
    items: list[tuple[str, str, tuple[object, ...]]] = []
    for device, (fixes, evidence) in rows.items():
        items += [(device, "fix", f) for f in fixes] + [(device, "ev", e) for e in evidence]
    items += [rng.choice(items) for _ in range(len(items) // 3)] if items else []
    rng.shuffle(items)
    for device, kind, row in items:
        if kind == "fix":
            tracker.add_fix(device, *row)  # type: ignore[arg-type]
        else:
            sent, off = row
            tracker.add_evidence(device, sent, off=bool(off))  # type: ignore[arg-type]


def batch_of(m: Multi, devices: Sequence[ShiftDevice]) -> list[Segment]:
    if not devices:
        return [Segment(m.start, m.end, State.OFFLINE)]
    parts = [
        DeviceData.from_rows(*m.rows[d.device_id]).during(d.held_ms)
        for d in sorted(devices, key=lambda d: d.device_id)
    ]
    return shift_segments(m.start, m.end, m.fence, DeviceData.merge(parts))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(multi_scenarios())
def test_several_devices_agree_with_the_definition_to_the_second(m: Multi) -> None:
    held = {d.device_id: d.held_ms for d in m.devices}
    signed_devices = [d for d in m.devices if not d.phone]
    has_phone = len(signed_devices) < len(m.devices)
    expected = oracle.states_of(m.start, m.end, m.fence, m.rows, held)
    expected_signed = oracle.states_of(
        m.start, m.end, m.fence, {d.device_id: m.rows[d.device_id] for d in signed_devices}
    )
    expected_phone = oracle.phone_only_seconds(expected, expected_signed) if has_phone else 0

    batch = batch_of(m, m.devices)
    assert per_second(batch) == expected
    signed = batch_of(m, signed_devices)
    assert per_second(signed) == expected_signed
    assert sum(b - a for a, b in phone_only(batch, signed if has_phone else None)) == (
        expected_phone
    )

    tracker = DutyTracker()
    tracker.add_shift("s1", m.devices, m.start, m.end, m.fence)
    feed_devices(tracker, m.rows, m.seed)
    assert tracker.segments("s1") == batch
    assert tracker.signed_segments("s1") == (signed if has_phone else None)
    assert tracker.phone_on_post_s("s1") == expected_phone
    assert tracker.counts("s1") == {s: expected.count(s) for s in State}
    now = m.start + m.seed % (m.end - m.start + 1)
    assert tracker.elapsed_counts("s1", now) == {
        s: expected[: now - m.start].count(s) for s in State
    }
    if now < m.end:
        on = (State.ON_POST, State.ON_POST_BACKFILLED)
        i = now - m.start
        assert tracker.on_phone_at("s1", now) == (
            has_phone and expected[i] in on and expected_signed[i] not in on
        )

    # Loaded from stored rows per device, and registered then merged from packed arrays.
    loaded = DutyTracker()
    loaded.add_shift(
        "s1",
        m.devices,
        m.start,
        m.end,
        m.fence,
        fixes={d: r[0] for d, r in m.rows.items()},
        evidence={d: r[1] for d, r in m.rows.items()},
    )
    assert loaded.segments("s1") == batch
    assert loaded.phone_on_post_s("s1") == expected_phone
    packed = DutyTracker()
    packed.add_shift("s1", m.devices, m.start, m.end, m.fence)
    feed_devices(packed, {d: (r[0][: len(r[0]) // 2], []) for d, r in m.rows.items()}, m.seed)
    for device, (fixes, evidence) in m.rows.items():
        packed.load_array("s1", unpack(pack(fixes)), evidence, device_id=device)
    assert packed.segments("s1") == batch
    assert packed.signed_segments("s1") == (signed if has_phone else None)
    assert packed.counts("s1") == tracker.counts("s1")
