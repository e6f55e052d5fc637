"""A synthetic patrol video for the camera tests and the bench: written with cv2.VideoWriter.

Scenes of ``SCENE_FRAMES`` frames each (a cut at every multiple), each a textured background
at its own brightness with a moving disc and sensor noise; a dark stretch (lights off) and a
blurred stretch (lens fogged) inside scenes, away from the cuts.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SCENE_FRAMES = 100
SCENE_LEVELS = (70, 190, 110, 220, 60, 160, 90, 200, 120, 180)
DARK = range(330, 360)
BLURRED = range(630, 660)


def frame_at(i: int, width: int, height: int, noise: list[np.ndarray]) -> np.ndarray:
    scene = (i // SCENE_FRAMES) % len(SCENE_LEVELS)
    level = SCENE_LEVELS[scene]
    ramp = np.linspace(-30, 30, width, dtype=np.float32)
    img = np.empty((height, width, 3), np.float32)
    img[:] = (level + ramp)[None, :, None]
    srng = np.random.default_rng(scene)  # the scene's fixed furniture
    for _ in range(6):
        x, y = int(srng.integers(0, width - 20)), int(srng.integers(0, height - 20))
        w, h = int(srng.integers(8, width // 4)), int(srng.integers(8, height // 4))
        colour = tuple(float(c) for c in srng.integers(0, 256, 3))
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
    cx = int((i * 3) % width)
    cy = int(height / 2 + height / 4 * np.sin(i / 10))
    cv2.circle(img, (cx, cy), max(4, height // 12), (255.0, 255.0, 255.0), -1)
    img += noise[i % len(noise)]
    if i in DARK:
        img *= 0.08
    if i in BLURRED:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=max(4.0, width / 40))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_video(path: Path, *, frames: int, width: int, height: int, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter could not open {path}")
    rng = np.random.default_rng(5)
    noise = [rng.standard_normal((height, width, 3), dtype=np.float32) * 12 for _ in range(7)]
    try:
        for i in range(frames):
            writer.write(frame_at(i, width, height, noise))
    finally:
        writer.release()
    return path
