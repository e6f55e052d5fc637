#!/usr/bin/env python3
"""Benchmark of the agent's camera path: capture + quality checks + JPEG within the byte target.

For each frame size (default 640×360 and 1280×720) a synthetic patrol video is written with
``cv2.VideoWriter`` (MJPG in an .avi: textured background, moving shapes, text, sensor noise,
a scene cut every 40 frames) to a temporary directory. Then every frame is read through
``agent.camera.Camera`` (real OpenCV decoding of the file), checked with ``quality_checks`` and
encoded with ``encode_within`` at the per-snapshot target of the ``SnapPolicy``
(default: 2,000,000 bytes/hour over 24 planned snapshots = 83,333 bytes). Reported per size:
milliseconds per snapshot (capture, checks, encode, total: median, p95, max), bytes per
snapshot, the JPEG quality and width chosen, and the JPEG encodes per snapshot (the search).

Run: ``.venv/bin/python bench/camera_bench.py`` (about 10 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from machine_info import cpu_model

from agent.camera import Camera, SnapPolicy, encode_within, quality_checks
from agent.camera import encode as encode_module


def write_video(path: Path, width: int, height: int, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    if not writer.isOpened():
        raise SystemExit(f"cv2.VideoWriter could not open {path}")
    rng = np.random.default_rng(5)
    noise = [rng.normal(0, 8, (height, width, 3)).astype(np.float32) for _ in range(5)]
    try:
        for i in range(frames):
            srng = np.random.default_rng(i // 40)  # a scene cut every 40 frames
            img = np.empty((height, width, 3), np.float32)
            img[:] = srng.integers(40, 200, 3).astype(np.float32)
            for _ in range(25):
                x, y = int(srng.integers(0, width)), int(srng.integers(0, height))
                w, h = int(srng.integers(10, width // 3)), int(srng.integers(10, height // 3))
                colour = tuple(float(c) for c in srng.integers(0, 256, 3))
                cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
            for k in range(3):
                cx = int((i * (4 + k) * width / 640) % width)
                cy = int(height * (0.3 + 0.2 * k + 0.1 * np.sin(i / (5 + k))))
                cv2.circle(img, (cx, cy), height // 14, (240.0, 240.0 - 80 * k, 60.0 * k), -1)
            img += noise[i % len(noise)]
            out = np.clip(img, 0, 255).astype(np.uint8)
            scale = height / 360
            cv2.putText(
                out,
                f"CAM-07 frame {i:05d}",
                (int(12 * scale), int(30 * scale)),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (255, 255, 255),
                2,
            )
            writer.write(out)
    finally:
        writer.release()


class CountingEncode:
    """Counts cv2.imencode calls made by encode_within (the cost of the quality search)."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = encode_module._encode

    def __enter__(self) -> CountingEncode:
        def counted(image: np.ndarray, quality: int) -> bytes:
            self.calls += 1
            return self._real(image, quality)

        encode_module._encode = counted
        return self

    def __exit__(self, *exc: object) -> None:
        encode_module._encode = self._real


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_size(work: Path, width: int, height: int, frames: int, target: int) -> list[str]:
    path = work / f"bench-{width}x{height}.avi"
    write_video(path, width, height, frames)
    camera = Camera(source=path)
    cap_ms, check_ms, enc_ms, total_ms, sizes, encodes = [], [], [], [], [], []
    qualities: Counter[int] = Counter()
    widths: Counter[int] = Counter()
    camera.read(0)  # the open and first decode, not timed
    for i in range(1, frames):
        t0 = time.perf_counter()
        frame = camera.read(i)
        t1 = time.perf_counter()
        if frame is None:
            raise SystemExit(f"frame {i} of {path} could not be read")
        quality_checks(frame)
        t2 = time.perf_counter()
        with CountingEncode() as counter:
            encoded = encode_within(frame, max_bytes=target)
        t3 = time.perf_counter()
        cap_ms.append((t1 - t0) * 1e3)
        check_ms.append((t2 - t1) * 1e3)
        enc_ms.append((t3 - t2) * 1e3)
        total_ms.append((t3 - t0) * 1e3)
        sizes.append(len(encoded.jpeg))
        encodes.append(counter.calls)
        qualities[encoded.quality] += 1
        widths[encoded.width] += 1
        assert len(encoded.jpeg) <= target

    def ms(values: list[float]) -> str:
        return (
            f"median {statistics.median(values):6.1f}  p95 {pct(values, 0.95):6.1f}  "
            f"max {max(values):6.1f}"
        )

    common = ", ".join(f"q{q}×{n}" for q, n in qualities.most_common(4))
    return [
        f"{width}×{height}: {frames - 1} snapshots, target {target:,} bytes",
        f"  capture ms   {ms(cap_ms)}",
        f"  checks ms    {ms(check_ms)}",
        f"  encode ms    {ms(enc_ms)}",
        f"  total ms     {ms(total_ms)}",
        f"  bytes        median {statistics.median(sizes):,.0f}  min {min(sizes):,}  "
        f"max {max(sizes):,}",
        f"  quality      median {statistics.median(list(qualities.elements())):.0f} "
        f"(most common: {common}); width {min(widths)}–{max(widths)}",
        f"  encodes/snap median {statistics.median(encodes):.0f}  max {max(encodes)}",
    ]


def machine() -> list[str]:
    cpu = cpu_model()
    return [
        f"platform   {platform.platform()}",
        f"cpu        {cpu}; {os.cpu_count()} logical CPUs",
        f"python     {sys.version.split()[0]}; OpenCV {cv2.__version__}; numpy {np.__version__}",
        f"opencv threads {cv2.getNumThreads()}",
    ]


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    try:
        return int(w), int(h)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=[(640, 360), (1280, 720)],
        metavar="WxH",
        help="frame sizes (default: 640x360 1280x720)",
    )
    parser.add_argument(
        "--frames", type=int, default=121, help="frames per video (default: %(default)s)"
    )
    parser.add_argument(
        "--bytes-per-hour",
        type=int,
        default=SnapPolicy().bytes_per_hour,
        help="hourly snapshot budget; the target is shared over the planned snapshots of the "
        "default policy (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    policy = SnapPolicy(bytes_per_hour=args.bytes_per_hour)
    print("camera bench:", " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]))
    print("\n".join(machine()))
    print(
        f"policy     {policy.bytes_per_hour:,} bytes/h over {policy.planned_per_hour} planned "
        f"snapshots/h -> target {policy.target_bytes:,} bytes"
    )
    with tempfile.TemporaryDirectory(prefix="camera-bench-") as tmp:
        for width, height in args.sizes:
            print("\n".join(bench_size(Path(tmp), width, height, args.frames, policy.target_bytes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
