"""A network camera for real: OpenCV (through FFmpeg) reading a video served over HTTP, as a
body cam exposing a stream would be read. RTSP takes the same path in OpenCV; no RTSP server
is available here to test it against."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.camera.capture import Camera

from .video import write_video

pytestmark = pytest.mark.e2e


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[str]:
    write_video(tmp_path / "cam.avi", frames=40, width=320, height=180)
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cam.avi"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_frames_are_read_from_an_http_stream(stream: str) -> None:
    camera = Camera(source=stream)
    try:
        frames = []
        deadline = time.monotonic() + 20
        while len(frames) < 40 and time.monotonic() < deadline:
            frame = camera.read(int(time.time() * 1000))
            if frame is not None:
                frames.append(frame)
        assert camera.kind == "url"
        assert len(frames) == 40
        assert {f.shape for f in frames} == {(180, 320, 3)}
    finally:
        camera.close()


def test_an_unreachable_stream_gives_no_frame_and_no_exception() -> None:
    camera = Camera(source="http://127.0.0.1:9/none.avi")
    try:
        assert camera.read(int(time.time() * 1000)) is None
        assert camera.last_error is not None
    finally:
        camera.close()
