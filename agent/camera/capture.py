"""The one place that owns ``cv2.VideoCapture``: frames from a camera, a stream or a file.

``source`` is one of:

- an ``int`` (or a string of digits): a V4L2 device index, opened with ``cv2.CAP_V4L2``;
- ``/dev/videoN`` (or a udev link under ``/dev/v4l/``): a V4L2 device path;
- a URL (``rtsp://``, ``http://``, ``https://``...): a network stream through FFmpeg;
- anything else: a video file. With ``loop=True`` the file starts again when it ends (demos);
  without, ``read`` returns None once it has ended (``state`` is ``ENDED``).

``read(now_ms)`` is synchronous and never raises. When the open or a read fails the capture is
released and opened again no sooner than a capped, jittered delay (``yijing.mqtt.Backoff``)
later, measured on the ``now_ms`` the caller passes (so tests drive time). OpenCV's
``cv2.error``, ``OSError`` and ``ValueError`` are converted here, once, to
``SourceUnavailable`` (kept in ``last_error``, logged once per message). A source that cannot
work raises ``SourceConfigError`` from the constructor.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from agent.sources.errors import SourceConfigError, SourceUnavailable
from yijing.mqtt import Backoff

_CV_ERRORS = (cv2.error, OSError, ValueError)

Opener = Callable[[str | int, int], Any]  # (source, apiPreference) -> a cv2.VideoCapture-alike


class CameraState(enum.StrEnum):
    STOPPED = "stopped"  # not opened yet, or closed
    CONNECTING = "connecting"  # waiting to (re)open
    STREAMING = "streaming"  # the last read returned a frame
    ENDED = "ended"  # a file without loop=True reached its end


class SourceKind(enum.StrEnum):
    DEVICE = "device"
    URL = "url"
    FILE = "file"


@dataclass
class CameraStats:
    opens: int = 0
    open_failures: int = 0
    read_failures: int = 0
    frames: int = 0
    loops: int = 0  # times a looping file started again


def _classify(source: str | int) -> tuple[SourceKind, str | int]:
    if isinstance(source, bool):
        raise SourceConfigError(f"camera source {source!r}: expected an index, path or URL")
    if isinstance(source, int):
        if source < 0:
            raise SourceConfigError(f"camera index {source} is negative")
        return SourceKind.DEVICE, source
    if not isinstance(source, str) or not source.strip():
        raise SourceConfigError(f"camera source {source!r}: expected an index, path or URL")
    if source.isdigit():
        return SourceKind.DEVICE, int(source)
    if source.startswith(("/dev/video", "/dev/v4l/")):
        return SourceKind.DEVICE, source
    if "://" in source:
        return SourceKind.URL, source
    return SourceKind.FILE, source


def _default_opener(source: str | int, api: int) -> Any:
    return cv2.VideoCapture(source, api)


class Camera:
    """Frames from one video source; see the module docstring."""

    def __init__(
        self,
        *,
        source: str | int | os.PathLike[str],
        loop: bool = False,
        backoff: Backoff | None = None,
        opener: Opener = _default_opener,
        logger: logging.Logger | None = None,
    ) -> None:
        raw: str | int = os.fspath(source) if isinstance(source, os.PathLike) else source
        self.kind, self._target = _classify(raw)
        self.source = raw
        self.loop = loop
        self._api = {
            SourceKind.DEVICE: cv2.CAP_V4L2,
            SourceKind.URL: cv2.CAP_FFMPEG,
            SourceKind.FILE: cv2.CAP_ANY,
        }[self.kind]
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._opener = opener
        self._log = logger or logging.getLogger("yijing.agent.camera")
        self._cap: Any = None
        self._next_open_ms: int | None = None  # None: open at the next read
        self._logged: set[str] = set()
        self._frames_since_open = 0
        self.state = CameraState.STOPPED
        self.last_error: SourceUnavailable | None = None
        self.stats = CameraStats()

    # --- reading ---------------------------------------------------------------------------------

    def read(self, now_ms: int) -> np.ndarray | None:
        """The next frame (BGR, uint8, H×W×3), or None. Never raises."""
        if self.state is CameraState.ENDED:
            return None
        if self._cap is None:
            if self._next_open_ms is not None and now_ms < self._next_open_ms:
                return None
            if not self._open(now_ms):
                return None
        frame = self._grab()
        if frame is None and self.kind is SourceKind.FILE and self.loop and self.stats.frames:
            # The end of a file: rewind (reopen when the container cannot seek).
            self.stats.loops += 1
            if not self._rewind():
                self._release()
                if self._open(now_ms):
                    frame = self._grab()
            else:
                frame = self._grab()
        if frame is not None:
            self.stats.frames += 1
            self.state = CameraState.STREAMING
            self._backoff.failures = 0  # a working source starts the next backoff afresh
            return frame
        if self.kind is SourceKind.FILE and not self.loop and self._frames_since_open:
            self._release()
            self.state = CameraState.ENDED
            return None
        self.stats.read_failures += 1
        self._fail(now_ms, SourceUnavailable(f"{self.source}: read returned no frame"))
        return None

    # --- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the capture; a later ``read`` opens it again."""
        self._release()
        self._next_open_ms = None
        self.state = CameraState.STOPPED

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------------

    def _open(self, now_ms: int) -> bool:
        self.state = CameraState.CONNECTING
        if self.kind is SourceKind.FILE and not os.path.isfile(str(self._target)):
            # Checked here: OpenCV would only print to stderr and return a closed capture.
            self.stats.open_failures += 1
            self._fail(now_ms, SourceUnavailable(f"{self.source}: no such file"))
            return False
        try:
            cap = self._opener(self._target, self._api)
            opened = bool(cap.isOpened())
        except _CV_ERRORS as exc:
            self.stats.open_failures += 1
            self._fail(now_ms, SourceUnavailable(f"{self.source}: open failed: {exc}"))
            return False
        if not opened:
            with contextlib.suppress(*_CV_ERRORS, AttributeError):
                cap.release()
            self.stats.open_failures += 1
            self._fail(now_ms, SourceUnavailable(f"{self.source}: could not be opened"))
            return False
        self._cap = cap
        self._frames_since_open = 0
        self.stats.opens += 1
        self._log.info("camera %s opened", self.source)
        return True

    def _grab(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        try:
            ok, frame = self._cap.read()
        except _CV_ERRORS as exc:
            self.last_error = SourceUnavailable(f"{self.source}: read failed: {exc}")
            return None
        if not ok or frame is None or getattr(frame, "size", 0) == 0:
            return None
        self._frames_since_open += 1
        return np.asarray(frame)

    def _rewind(self) -> bool:
        try:
            return bool(self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0))
        except _CV_ERRORS:
            return False

    def _release(self) -> None:
        if self._cap is not None:
            with contextlib.suppress(*_CV_ERRORS, AttributeError):
                self._cap.release()
        self._cap = None
        self._frames_since_open = 0

    def _fail(self, now_ms: int, error: SourceUnavailable) -> None:
        self._release()
        self.last_error = error
        self.state = CameraState.CONNECTING
        delay_ms = int(self._backoff.next_delay() * 1000)
        self._next_open_ms = now_ms + delay_ms
        message = str(error)
        if message not in self._logged:
            self._logged.add(message)
            self._log.warning("camera: %s; retrying", message)
