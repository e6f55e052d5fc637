#!/usr/bin/env python3
"""Benchmark of the duty engine: recomputing a station-day, and the incremental cost per fix.

A station-day (issue #6): 1,200 terminals, one 8-hour shift each, a fix every 5 s (≈ 6.9
million fixes) and a heartbeat frame every 60 s, written into a real SQLite store (the
server's schema). Volunteers walk in and out of a 60 m circle post, and drop out for a while.

1. **Batch recomputation** (``server.duty.batch``), every shift, split three ways: reading the
   rows from SQLite (``Store.fix_rows`` / ``evidence_rows``), turning them into arrays
   (``DeviceData.from_rows``), and computing the timeline (``shift_segments``). Reference in the
   same run: a bare ``SELECT`` of the same columns with ``sqlite3`` — the floor any reader of
   this store pays.
2. **Incremental path** (``server.duty.incremental``): the fixes of a sample of terminals fed one
   at a time to a ``DutyTracker``, in time order (live) and shuffled (backfill, duplicates);
   µs per fix. Reference in the same run: ``SqliteStore.store_frames`` of the same fixes in
   frames of 100 (what ingest pays to store them, per fix).

Run: ``.venv/bin/python bench/duty_bench.py`` (about 3 minutes; ``--terminals 100`` for a
quick look); results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_info import cpu_model

from protocol import Fix, FixSource
from server.duty.batch import DeviceData, shift_segments
from server.duty.geo import Circle
from server.duty.incremental import DutyTracker
from server.sqlite_store import SqliteStore
from server.store import IncomingFrame

LAT0, LON0 = 22.5333, 114.0550
M = 1 / 111_195
START_S = 1_790_000_000


def walk(rng: random.Random, n: int, interval_s: int) -> list[tuple[float, float, float]]:
    """Positions of one volunteer: mostly on a 60 m post, now and then a stroll away."""
    out = []
    x = y = 0.0
    away = 0
    for _ in range(n):
        if away == 0 and rng.random() < 0.002:
            away = rng.randint(20, 200)
        if away:
            away -= 1
            x, y = x + rng.uniform(-8, 12), y + rng.uniform(-8, 12)
        else:
            x, y = x * 0.9 + rng.uniform(-3, 3), y * 0.9 + rng.uniform(-3, 3)
        out.append((LAT0 + y * M, LON0 + x * M / math.cos(math.radians(LAT0)), 5.0))
    return out


def build(path: Path, terminals: int, hours: float, interval_s: int, seed: int) -> int:
    store = SqliteStore(path)
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    rng = random.Random(seed)
    n = int(hours * 3600 / interval_s)
    total = 0
    for d in range(terminals):
        device = f"t{d:05d}"
        pts = walk(rng, n, interval_s)
        gone_from = rng.randrange(n) if rng.random() < 0.3 else n  # 30 % drop out a while
        gone_to = min(n, gone_from + rng.randint(50, 600))
        rows = []
        frames = []
        batches: set[int] = set()
        for k, (lat, lon, acc) in enumerate(pts):
            if gone_from <= k < gone_to:
                continue
            t_ms = (START_S - 60 + k * interval_s) * 1000 + rng.randrange(1000)
            seq = k // 100 + 1  # a PositionBatch of 100 fixes, sealed when its first is taken
            if seq not in batches:
                batches.add(seq)
                frames.append((device, seq, 1, 2, t_ms, t_ms + 300, b"", b"", 0, None))
            rows.append((device, seq, k % 100, t_ms, lat, lon, acc, 1.0, 0.0, 10.0, 9, "gnss",
                         t_ms + 300, 0))
            if k % (60 // interval_s) == 0:
                seq_hb = 10_000_000 + k
                frames.append((device, seq_hb, 1, 3, t_ms, t_ms + 200, b"", b"", 0, None))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO positions(device_id, seq, idx, time_ms, lat, lon, accuracy_m, speed_mps,"
            " course_deg, alt_m, satellites, source, received_ms, flags) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.executemany(
            "INSERT OR IGNORE INTO frames(device_id, seq, key_id, type, sent_ms, received_ms, "
            "payload, digest, offline, skew_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
            frames,
        )
        conn.execute("COMMIT")
        total += len(rows)
    conn.close()
    return total


def batch(path: Path, terminals: int, hours: float) -> dict[str, float]:
    """Three passes over every shift: rows (``fix_rows``), packs built (cold cache), packs read
    (warm cache). Each pass split into read / convert / compute seconds."""
    store = SqliteStore(path)
    fence = Circle(LAT0, LON0, 60.0)
    end_s = START_S + int(hours * 3600)
    since, until = (START_S - 150) * 1000, end_s * 1000
    out: dict[str, float] = {}
    first: list[object] | None = None
    for label in ("rows", "cold", "warm"):
        t_read = t_conv = t_comp = 0.0
        fixes = 0
        on = 0
        timelines = []
        for d in range(terminals):
            device = f"t{d:05d}"
            a = time.perf_counter()
            ev = store.evidence_rows(device, since, until)
            if label == "rows":
                rows = store.fix_rows(device, since, until)
                b = time.perf_counter()
                data = DeviceData.from_rows(rows, ev)
            else:
                arr = store.fix_array(device, since, until)
                b = time.perf_counter()
                data = DeviceData.from_array(arr, ev)
            c = time.perf_counter()
            segs = shift_segments(START_S, end_s, fence, data)
            e = time.perf_counter()
            t_read += b - a
            t_conv += c - b
            t_comp += e - c
            fixes += data.fix_ms.size
            on += sum(s.end_s - s.start_s for s in segs if s.state >= 3)
            timelines.append(segs)
        if first is None:
            first = timelines
        assert timelines == first  # the three paths give the same timelines
        out.update(
            {f"{label}_read": t_read, f"{label}_convert": t_conv, f"{label}_compute": t_comp}
        )
        out["fixes"] = fixes
        out["on_rate"] = on / (terminals * (end_s - START_S))
    store.close()
    conn = sqlite3.connect(path)
    a = time.perf_counter()
    raw = 0
    for d in range(terminals):
        raw += len(
            conn.execute(
                "SELECT time_ms, seq, idx, lat, lon, accuracy_m, flags, received_ms FROM positions"
                " WHERE device_id=? AND time_ms>=? AND time_ms<? ORDER BY time_ms, seq, idx",
                (f"t{d:05d}", since, until),
            ).fetchall()
        )
    out["raw_select"] = time.perf_counter() - a
    conn.close()
    assert raw == out["fixes"]
    return out


def incremental(path: Path, sample: int, hours: float, seed: int) -> dict[str, float]:
    store = SqliteStore(path)
    fence = Circle(LAT0, LON0, 60.0)
    end_s = START_S + int(hours * 3600)
    rows_by = {
        f"t{d:05d}": store.fix_rows(f"t{d:05d}", (START_S - 150) * 1000, end_s * 1000)
        for d in range(sample)
    }
    store.close()
    out: dict[str, float] = {}
    for label, shuffle in (("in_order", False), ("shuffled", True)):
        tracker = DutyTracker()
        for device in rows_by:
            tracker.add_shift(device, device, START_S, end_s, fence)
        items = [(device, r) for device, rows in rows_by.items() for r in rows]
        if shuffle:
            items += random.Random(seed).sample(items, len(items) // 10)  # duplicates
            random.Random(seed).shuffle(items)
        else:
            items.sort(key=lambda x: x[1][0])
        add = tracker.add_fix
        a = time.perf_counter()
        for device, r in items:
            add(device, *r)
        out[label] = (time.perf_counter() - a) / len(items) * 1e6
        out[f"{label}_n"] = len(items)
    # Reference: storing the same fixes through the store, frames of 100 (ingest's own cost).
    with tempfile.TemporaryDirectory() as tmp:
        ref = SqliteStore(Path(tmp) / "ref.db")
        frames = []
        n = 0
        for device, rows in rows_by.items():
            for k in range(0, len(rows), 100):
                chunk = rows[k : k + 100]
                fixes = tuple(
                    Fix(time_ms=r[0], lat=r[3], lon=r[4], accuracy_m=r[5], source=FixSource.GNSS)
                    for r in chunk
                )
                n += len(fixes)
                frames.append(
                    IncomingFrame(device, k // 100 + 1, 1, 2, chunk[0][0], chunk[0][0], b"x" * 900,
                                  b"d" * 16, fixes=fixes)
                )
        a = time.perf_counter()
        for k in range(0, len(frames), 50):
            ref.store_frames(frames[k : k + 50])
        out["store_ref"] = (time.perf_counter() - a) / n * 1e6
        ref.close()
    return out


def build_org(data: Path, terminals: int, hours: float) -> str:
    """One station with a post, a volunteer holding a terminal and a shift per terminal."""
    from server.org.model import Post, PostKind, Terminal, Unit, UnitLevel, Volunteer
    from server.org.store import OrgStore

    org = OrgStore(data / "org.db")
    try:
        org.put_unit(Unit("sz", "深圳市", UnitLevel.CITY))
        org.put_unit(Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"))
        org.put_unit(Unit("st", "福田派出所", UnitLevel.STATION, "ft"))
        for d in range(terminals):
            device = f"t{d:05d}"
            org.put_volunteer(Volunteer(f"v{d:05d}", f"义警{d}", "st"))
            org.put_terminal(Terminal(device, "st", holder=f"v{d:05d}"), at_ms=START_S * 1000)
            org.put_post(Post(f"p{d:05d}", f"岗{d}", PostKind.DUTY_POINT, "st",
                              Circle(LAT0, LON0, 60.0)))
            org.put_shift(org.make_shift(f"s{d:05d}", f"v{d:05d}", f"p{d:05d}", START_S * 1000,
                                         (START_S + int(hours * 3600)) * 1000))
    finally:
        org.close()
    return "st"


def report(data: Path, unit: str) -> tuple[float, int, float]:
    """The inspector's path: ``yijing report`` for the station and the shifts' day."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from server.reports.period import Period
    from yijing.report_cli import open_reports

    day = datetime.fromtimestamp(START_S, ZoneInfo("Asia/Shanghai")).date()
    with open_reports(data) as reports:
        a = time.perf_counter()
        rep = reports.unit_report(unit, Period(day, day))
        seconds = time.perf_counter() - a
    return seconds, rep.totals.shifts, rep.totals.on_duty_rate or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminals", type=int, default=1200)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--sample", type=int, default=60, help="terminals for the incremental run")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    print(
        f"# duty bench — {cpu_model()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "yijing.db"
        a = time.perf_counter()
        total = build(path, args.terminals, args.hours, args.interval, args.seed)
        print(f"built {args.terminals} terminals × {args.hours} h: {total:,} fixes "
              f"in {time.perf_counter() - a:.0f} s ({path.stat().st_size / 1e6:.0f} MB)")
        r = batch(path, args.terminals, args.hours)
        f = r["fixes"]
        print(f"\n## batch recomputation of the station-day ({f:,.0f} fixes)")
        print("| pass | read s | convert s | compute s | whole s | fixes/s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        names = {
            "rows": "rows (`fix_rows`)",
            "cold": "packs, cold (built from rows, cached)",
            "warm": "packs, warm (`fix_packs` cache)",
        }
        for label, name in names.items():
            parts = [r[f"{label}_{k}"] for k in ("read", "convert", "compute")]
            whole = sum(parts)
            cells = " | ".join(f"{x:.2f}" for x in parts)
            print(f"| {name} | {cells} | {whole:.2f} | {f / whole:,.0f} |")
        print(f"| reference: bare sqlite3 SELECT of the rows | {r['raw_select']:.2f} | | | "
              f"{r['raw_select']:.2f} | {f / r['raw_select']:,.0f} |")
        print(f"station on-duty rate {r['on_rate']:.3f}")
        unit = build_org(Path(tmp), args.terminals, args.hours)
        seconds, shifts, rate = report(Path(tmp), unit)
        print("\n## the inspector's report of the station-day (`Reports.unit_report`)")
        print(f"{shifts} shifts, {f:,.0f} fixes in {seconds:.2f} s = {f / seconds:,.0f} fixes/s "
              f"(recomputation, flags, spot checks, roll-up); on-duty rate {rate:.3f}")
        inc = incremental(path, args.sample, args.hours, args.seed)
        print(f"\n## incremental path ({args.sample} terminals)")
        print("| feed | fixes | µs per fix |")
        print("| --- | ---: | ---: |")
        print(f"| in time order | {inc['in_order_n']:,.0f} | {inc['in_order']:.1f} |")
        print(f"| shuffled, 10 % duplicates | {inc['shuffled_n']:,.0f} | {inc['shuffled']:.1f} |")
        print(f"| reference: SqliteStore.store_frames, frames of 100 | | {inc['store_ref']:.1f} |")


if __name__ == "__main__":
    main()
