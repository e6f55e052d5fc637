from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent.camera import Camera, CameraState
from agent.camera.capture import SourceKind
from agent.sources.errors import SourceConfigError, SourceUnavailable
from yijing.mqtt import Backoff

from .conftest import FRAMES, HEIGHT, WIDTH


def no_jitter() -> Backoff:
    return Backoff(base=0.5, cap=4.0, rng=lambda: 1.0)


def test_reads_every_frame_of_a_file_then_ends(video: Path) -> None:
    cam = Camera(source=video)
    frames = [cam.read(i) for i in range(FRAMES)]
    assert all(f is not None and f.shape == (HEIGHT, WIDTH, 3) for f in frames)
    assert cam.state is CameraState.STREAMING
    assert cam.read(FRAMES) is None
    assert cam.state is CameraState.ENDED
    assert cam.read(FRAMES + 1) is None
    assert cam.stats.opens == 1 and cam.stats.frames == FRAMES


def test_a_looping_file_starts_again(video: Path) -> None:
    with Camera(source=str(video), loop=True) as cam:
        first = cam.read(0)
        for i in range(1, FRAMES):
            assert cam.read(i) is not None
        again = cam.read(FRAMES)
        assert first is not None and again is not None
        assert cam.stats.loops == 1 and cam.state is CameraState.STREAMING
        assert cv2.absdiff(first, again).mean() < 1.0  # the first frame again


def test_missing_file_returns_none_and_reopens_when_it_appears(
    video: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "later.avi"
    cam = Camera(source=path, backoff=no_jitter())
    with caplog.at_level(logging.WARNING, "yijing.agent.camera"):
        assert cam.read(0) is None
        assert cam.read(100) is None  # inside the backoff: not even tried
        assert cam.read(600) is None  # tried again: still missing
    assert cam.state is CameraState.CONNECTING
    assert isinstance(cam.last_error, SourceUnavailable)
    assert cam.stats.open_failures == 2
    assert len([r for r in caplog.records if "no such file" in r.getMessage()]) == 1
    shutil.copy(video, path)
    assert cam.read(700) is None  # the second delay is 1 s: not before 1600
    frame = cam.read(1600)
    assert frame is not None and frame.shape == (HEIGHT, WIDTH, 3)
    assert cam.state is CameraState.STREAMING and cam.stats.opens == 1


def test_a_file_that_is_not_a_video_does_not_raise(tmp_path: Path) -> None:
    path = tmp_path / "junk.avi"
    path.write_bytes(b"not a video at all" * 100)
    cam = Camera(source=path, backoff=no_jitter())
    assert cam.read(0) is None
    assert cam.state is CameraState.CONNECTING
    assert isinstance(cam.last_error, SourceUnavailable)


def test_missing_device_does_not_raise() -> None:
    cam = Camera(source="/dev/video97", backoff=no_jitter())
    assert cam.kind is SourceKind.DEVICE
    assert cam.read(0) is None
    assert cam.state is CameraState.CONNECTING
    assert isinstance(cam.last_error, SourceUnavailable)


class FlakyCapture:
    """A cv2.VideoCapture stand-in: opens, then fails reads, then raises cv2.error."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.released = False

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, Any]:
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def release(self) -> None:
        self.released = True


def test_foreign_errors_become_source_unavailable_and_the_stream_is_reopened() -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    caps: list[FlakyCapture] = []
    calls: list[tuple[object, int]] = []

    def opener(source: str | int, api: int) -> FlakyCapture:
        calls.append((source, api))
        if len(calls) == 2:
            raise cv2.error("boom")
        cap = FlakyCapture([(True, frame), cv2.error("read broke"), (True, frame)])
        caps.append(cap)
        return cap

    cam = Camera(source="rtsp://cam.local/stream", backoff=no_jitter(), opener=opener)
    assert cam.kind is SourceKind.URL
    assert cam.read(0) is not None
    assert cam.read(1) is None  # cv2.error on read: released, retry after 0.5 s
    assert caps[0].released and isinstance(cam.last_error, SourceUnavailable)
    assert cam.read(400) is None and len(calls) == 1
    assert cam.read(600) is None  # the open raises cv2.error: retry after 1 s
    assert cam.read(1700) is not None
    assert calls == [("rtsp://cam.local/stream", cv2.CAP_FFMPEG)] * 3


@pytest.mark.parametrize(
    ("source", "kind", "target"),
    [
        (0, SourceKind.DEVICE, 0),
        ("2", SourceKind.DEVICE, 2),
        ("/dev/video0", SourceKind.DEVICE, "/dev/video0"),
        ("http://10.0.0.2/mjpg", SourceKind.URL, "http://10.0.0.2/mjpg"),
        ("demo.mp4", SourceKind.FILE, "demo.mp4"),
    ],
)
def test_sources_are_classified(source: str | int, kind: SourceKind, target: object) -> None:
    cam = Camera(source=source)
    assert cam.kind is kind and cam._target == target


@pytest.mark.parametrize("source", [-1, "", "  ", True])
def test_sources_that_cannot_work_are_refused(source: Any) -> None:
    with pytest.raises(SourceConfigError):
        Camera(source=source)
