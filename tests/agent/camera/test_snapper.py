"""1,000 frames of a real MJPG file through Camera and two Snappers (generous and tight)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from agent.camera import Camera, SnapInfo, Snapper, SnapPolicy
from protocol import Fix, InvalidField, Snapshot, SnapshotTrigger
from protocol.messages import MAX_JPEG_BYTES

from .conftest import FRAMES
from .video import BLURRED, DARK, SCENE_FRAMES

T0 = 1_790_000_000_000
BAD = set(DARK) | set(BLURRED)
CUTS = range(SCENE_FRAMES, FRAMES, SCENE_FRAMES)

# Generous: one frame a second, the budget never binds; tests the triggers.
LOOSE = SnapPolicy(periodic_s=20, min_interval_s=5, forced_min_interval_s=1, bytes_per_hour=10**7)
# Tight: one frame every 5 s (1,000 frames = 83 min), so the one-hour window slides and binds.
TIGHT = SnapPolicy(
    periodic_s=30, min_interval_s=5, bytes_per_hour=500_000, scene_changes_per_hour=0
)
FORCED = {
    355: ("request", "req-dark"),  # a dark frame, taken because it was asked for
    520: ("request", "req-a"),
    521: ("request", "req-b"),
    655: ("event", "alarm"),  # a blurred frame, taken for the event
}
# The tight run also gets a request every 25 frames: forced snapshots count against the budget,
# which makes it bind.
BULK = range(13, FRAMES, 25)


@dataclass
class Run:
    policy: SnapPolicy
    step_ms: int
    bulk: bool = False
    snapper: Snapper = field(init=False)
    snaps: list[tuple[int, Snapshot, SnapInfo]] = field(default_factory=list)  # (frame index,..)

    def __post_init__(self) -> None:
        self.snapper = Snapper(self.policy)

    def offer(self, i: int, frame: np.ndarray) -> None:
        if i in FORCED:
            kind, name = FORCED[i]
            (self.snapper.request if kind == "request" else self.snapper.event)(name)
        if self.bulk and i in BULK:
            self.snapper.request(f"bulk-{i}")
        now = T0 + i * self.step_ms
        fix = Fix(time_ms=now, lat=31.2304, lon=121.4737)
        snap = self.snapper.offer(frame, now, fix)
        if snap is not None:
            assert self.snapper.last is not None
            self.snaps.append((i, snap, self.snapper.last))

    def at(self, *triggers: SnapshotTrigger) -> list[int]:
        return [i for i, s, _ in self.snaps if s.trigger in triggers]


@pytest.fixture(scope="module")
def runs(video: Path) -> tuple[Run, Run]:
    loose, tight = Run(LOOSE, 1000), Run(TIGHT, 5000, bulk=True)
    camera = Camera(source=video)
    for i in range(FRAMES):
        frame = camera.read(i)
        assert frame is not None, f"frame {i}"
        loose.offer(i, frame)
        tight.offer(i, frame)
    assert camera.read(FRAMES) is None
    return loose, tight


AUTO = (SnapshotTrigger.PERIODIC, SnapshotTrigger.SCENE_CHANGE)


@pytest.mark.parametrize("which", [0, 1], ids=["loose", "tight"])
def test_every_snapshot_is_within_its_target_and_valid(runs: tuple[Run, Run], which: int) -> None:
    run = runs[which]
    assert len(run.snaps) > 20
    for _, snap, info in run.snaps:
        assert len(snap.jpeg) == info.size <= info.target_bytes <= MAX_JPEG_BYTES
        assert snap.jpeg[:2] == b"\xff\xd8"
        assert snap.sha256 == hashlib.sha256(snap.jpeg).digest()
        assert (snap.width, snap.height) == (info.width, info.height)
        assert snap.fix is not None and snap.fix.time_ms == snap.captured_ms
        assert Snapshot.from_wire(snap.to_wire()) == snap


@pytest.mark.parametrize("which", [0, 1], ids=["loose", "tight"])
def test_automatic_snapshots_skip_dark_and_blurred_frames(
    runs: tuple[Run, Run], which: int
) -> None:
    run = runs[which]
    assert not set(run.at(*AUTO)) & BAD
    assert run.snapper.stats.skipped["dark"] > 0
    assert run.snapper.stats.skipped["blurred"] > 0


@pytest.mark.parametrize("which", [0, 1], ids=["loose", "tight"])
def test_forced_snapshots_are_taken_even_on_bad_frames(runs: tuple[Run, Run], which: int) -> None:
    run = runs[which]
    forced = {
        i: (s, info)
        for i, s, info in run.snaps
        if s.trigger not in AUTO and not (s.request_id or "").startswith("bulk-")
    }
    assert sorted(forced) == [355, 520, 521, 655]
    assert forced[355][0].trigger is SnapshotTrigger.REQUEST
    assert [forced[i][0].request_id for i in (355, 520, 521)] == ["req-dark", "req-a", "req-b"]
    assert forced[655][0].trigger is SnapshotTrigger.EVENT
    assert forced[655][0].request_id is None and forced[655][1].event_kind == "alarm"
    if run.bulk:
        bulk = [i for i, s, _ in run.snaps if (s.request_id or "").startswith("bulk-")]
        assert bulk == list(BULK)
    assert run.snapper.pending == 0


def test_scene_cuts_produce_scene_change_snapshots(runs: tuple[Run, Run]) -> None:
    loose = runs[0]
    scene = loose.at(SnapshotTrigger.SCENE_CHANGE)
    for cut in CUTS:  # within the 5 s rate limit of the cut
        assert any(cut <= i <= cut + 5 for i in scene), f"no scene_change after the cut at {cut}"
    # Nothing else: the first frame, the cuts, and the lights coming back on after the dark
    # stretch (the request at 355 made a dark frame the reference).
    expected = {0, DARK.stop}
    assert {i for i in scene if not any(c <= i <= c + 5 for c in CUTS)} == expected


def test_periodic_snapshots_come_at_the_interval(runs: tuple[Run, Run]) -> None:
    loose = runs[0]
    frames = [i for i, _, _ in loose.snaps]
    periodic = set(loose.at(SnapshotTrigger.PERIODIC))
    assert len(periodic) > 20
    for before, after in itertools.pairwise(frames):
        if after in periodic:
            assert after - before >= 20  # never early
        if not BAD & set(range(before + 1, after + 1)):
            # with good frames: on time, and nothing waits longer than the interval
            assert after - before == 20 if after in periodic else after - before <= 20
    gaps = [b - a for a, b in itertools.pairwise(frames)]
    assert max(gaps) <= 20 + len(DARK)


def test_the_tight_hourly_budget_is_never_exceeded_by_automatic_snapshots(
    runs: tuple[Run, Run],
) -> None:
    tight = runs[1]
    assert tight.snapper.stats.skipped["over_budget"] > 0  # the budget did bind
    times = [(s.captured_ms, len(s.jpeg)) for _, s, _ in tight.snaps]
    for _, snap, _ in tight.snaps:
        if snap.trigger in AUTO:
            window = sum(
                n for t, n in times if snap.captured_ms - 3_600_000 < t <= snap.captured_ms
            )
            assert window <= TIGHT.bytes_per_hour
    # and it slides: snapshots resume in the last part of the run, after the first hour
    assert any(i * 5 > 3600 + 600 for i in tight.at(*AUTO))
    assert tight.snapper.used_bytes(T0 + FRAMES * 5000) <= TIGHT.bytes_per_hour + 4 * (
        TIGHT.target_bytes
    )


def test_target_is_the_hourly_budget_shared_over_the_planned_snapshots() -> None:
    assert SnapPolicy().planned_per_hour == 12 + 12
    assert SnapPolicy().target_bytes == 2_000_000 // 24
    assert TIGHT.target_bytes == 500_000 // 120
    assert SnapPolicy(bytes_per_hour=10**9).target_bytes == MAX_JPEG_BYTES
    with pytest.raises(ValueError):
        SnapPolicy(scene_threshold=0)
    with pytest.raises(ValueError):
        SnapPolicy(bytes_per_hour=100)


def test_a_forced_snapshot_waits_for_the_rate_limit_and_bad_ids_are_refused() -> None:
    snapper = Snapper(SnapPolicy(forced_min_interval_s=2))
    frame = np.random.default_rng(1).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    first = snapper.offer(frame, T0)
    assert first is not None and first.trigger is SnapshotTrigger.SCENE_CHANGE
    snapper.request("r1")
    assert snapper.offer(frame, T0 + 1000) is None and snapper.pending == 1
    later = snapper.offer(frame, T0 + 2000)
    assert later is not None and later.request_id == "r1" and snapper.pending == 0
    with pytest.raises(ValueError):
        snapper.request("no spaces allowed")


def test_corrupted_jpeg_or_wrong_sha256_is_refused_naming_the_field(
    runs: tuple[Run, Run],
) -> None:
    snap = runs[0].snaps[0][1]
    body = bytearray(snap.jpeg)
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(InvalidField) as exc:
        dataclasses.replace(snap, jpeg=bytes(body))
    assert exc.value.field == "sha256"
    with pytest.raises(InvalidField) as exc:
        dataclasses.replace(snap, sha256=hashlib.sha256(b"other").digest())
    assert exc.value.field == "sha256"
    no_soi = b"\x00\x00" + snap.jpeg[2:]
    with pytest.raises(InvalidField) as exc:
        dataclasses.replace(snap, jpeg=no_soi, sha256=hashlib.sha256(no_soi).digest())
    assert exc.value.field == "jpeg"
