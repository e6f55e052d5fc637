from __future__ import annotations

from pathlib import Path

import pytest

from .video import write_video

FRAMES = 1000
WIDTH, HEIGHT = 256, 144


@pytest.fixture(scope="package")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 frames, 256×144, MJPG in an .avi (see ``video.py`` for what they show)."""
    path = tmp_path_factory.mktemp("camera") / "patrol.avi"
    return write_video(path, frames=FRAMES, width=WIDTH, height=HEIGHT)
