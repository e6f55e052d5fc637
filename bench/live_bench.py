#!/usr/bin/env python3
"""Benchmark of the live state's spatial index: ``LiveState.nearest`` among 50,000 terminals.

A district of about 80 km² (a square around Futian, 22.54N 114.05E) with 50,000 terminals
spread uniformly, every one online, on a shift and with a fresh fix — the worst case for the
dispatch panel, since none is filtered out before the distance test.

1. ``nearest`` at random centres for the radii of the walking circles (84, 252, 420, 600 m),
   median and p99 µs per query: with the API's default ``limit=50``, with dispatch's proposal
   cap of 200, and with no effective limit (every terminal in the circle made a candidate).
2. Reference in the same run: a brute-force vectorised NumPy haversine over all 50,000
   positions, the in-circle ones selected and sorted (what the index saves).
3. ``apply`` per fix (µs) with the index kept up to date, in ingest batches of 100 Position
   frames, terminals walking a few metres (some crossing cells), plus ``GridIndex.put`` alone.

Run: ``.venv/bin/python bench/live_bench.py`` (about 30 s; ``--terminals 5000`` for a quick
look).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_info import cpu_model

from protocol import Fix, Position
from server.ingest import Accepted
from server.live import Hub, LiveState
from server.live_index import M_PER_DEG, GridIndex, haversine_np

LAT0, LON0 = 22.54, 114.05
NOW_MS = 1_790_000_000_000
RADII_M = (84, 252, 420, 600)
T = TypeVar("T")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[T], object], args: Sequence[T]) -> list[float]:
    """µs of ``fn(arg)`` for each of ``args``."""
    out = []
    for arg in args:
        t = time.perf_counter_ns()
        fn(arg)
        out.append((time.perf_counter_ns() - t) / 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminals", type=int, default=50_000)
    parser.add_argument("--area-km2", type=float, default=80.0)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    side_m = math.sqrt(args.area_km2) * 1000
    m_lon = M_PER_DEG * math.cos(math.radians(LAT0))
    n = args.terminals
    lats = LAT0 + rng.uniform(-side_m / 2, side_m / 2, n) / M_PER_DEG
    lons = LON0 + rng.uniform(-side_m / 2, side_m / 2, n) / m_lon
    devices = [f"t{k:06d}" for k in range(n)]

    live = LiveState(Hub(), clock=lambda: NOW_MS / 1000)
    live.set_duty({d: (f"s-{d}", "post", "on_post") for d in devices})
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        live.apply(
            [
                Accepted(
                    devices[k],
                    1,
                    Position(Fix(NOW_MS - 2000, float(lats[k]), float(lons[k]), 5.0, 1.2)),
                    NOW_MS - 1000,
                )
                for k in range(start, min(n, start + 1000))
            ]
        )
    load_s = time.perf_counter() - t0

    # Centres away from the edges, so every circle is full of terminals.
    margin = (side_m / 2 - max(RADII_M)) * 0.95
    centres = [
        (
            LAT0 + float(rng.uniform(-margin, margin)) / M_PER_DEG,
            LON0 + float(rng.uniform(-margin, margin)) / m_lon,
        )
        for _ in range(args.queries)
    ]

    rows = []
    for radius in RADII_M:
        for limit in (50, 200, n):
            found: list[int] = []

            def query(
                c: tuple[float, float], radius: int = radius, limit: int = limit, found=found
            ) -> None:
                found.append(len(live.nearest(c[0], c[1], radius, limit=limit)))

            us = timed(query, centres)
            rows.append((radius, limit, statistics.median(us), percentile(us, 0.99), found))

    # Reference: every distance, vectorised.
    brute: dict[int, list[float]] = {}
    for radius in RADII_M:

        def scan(c: tuple[float, float], radius: int = radius) -> None:
            d = haversine_np(c[0], c[1], lats, lons)
            inside = np.flatnonzero(d <= radius)
            inside[np.argsort(d[inside])]

        brute[radius] = timed(scan, centres[:500])

    # apply: terminals walk 2–30 m; in batches of 100 frames, one fix each.
    batches = []
    seq = 2
    step_lat = rng.uniform(-30, 30, (200, 100)) / M_PER_DEG
    step_lon = rng.uniform(-30, 30, (200, 100)) / m_lon
    for b in range(200):
        picks = rng.integers(0, n, 100)
        batch = []
        for j, k in enumerate(picks.tolist()):
            lats[k] += step_lat[b, j]
            lons[k] += step_lon[b, j]
            fix = Fix(NOW_MS - 1000 + b, float(lats[k]), float(lons[k]), 5.0, 1.2)
            batch.append(Accepted(devices[k], seq, Position(fix), NOW_MS))
        seq += 1
        batches.append(batch)
    apply_us = [us / 100 for us in timed(live.apply, batches)]

    index = GridIndex(250.0)
    for k in range(n):
        index.put(devices[k], float(lats[k]), float(lons[k]))
    moves = [
        (devices[k], float(lats[k] + dl), float(lons[k] + dn))
        for k, dl, dn in zip(
            rng.integers(0, n, 20_000).tolist(),
            (rng.uniform(-30, 30, 20_000) / M_PER_DEG).tolist(),
            (rng.uniform(-30, 30, 20_000) / m_lon).tolist(),
            strict=True,
        )
    ]
    put_us = timed(lambda m: index.put(*m), moves)

    print(
        f"Machine: {cpu_model()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"{n:,} terminals over {args.area_km2:g} km² around ({LAT0}, {LON0}), grid cells 250 m; "
        f"{len(centres)} queries per row; loaded in {load_s:.1f} s"
    )
    print()
    print(
        "| radius | limit | in result (mean) | median µs | p99 µs | brute-force NumPy median µs |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for radius, limit, med, p99, found in rows:
        lim = str(limit) if limit < n else "none"
        ref = statistics.median(brute[radius])
        print(
            f"| {radius} m | {lim} | {statistics.mean(found):.0f} | {med:.0f} | {p99:.0f} "
            f"| {ref:.0f} |"
        )
    print()
    print("| per fix | median µs | p99 µs |")
    print("| --- | ---: | ---: |")
    print(
        f"| `LiveState.apply`, batches of 100 Position frames | "
        f"{statistics.median(apply_us):.1f} | {percentile(apply_us, 0.99):.1f} |"
    )
    print(
        f"| `GridIndex.put` alone | {statistics.median(put_us):.2f} | "
        f"{percentile(put_us, 0.99):.2f} |"
    )
    ref_all = [us for v in brute.values() for us in v]
    print()
    print(
        f"Brute force over all {n:,} (any radius): median {statistics.median(ref_all):.0f} µs, "
        f"p99 {percentile(ref_all, 0.99):.0f} µs"
    )


if __name__ == "__main__":
    main()
