#!/usr/bin/env python3
"""The server's ingest path on one core, without a broker: µs per frame, total and per phase.

What ``Ingest.process`` does per batch, timed in-process: verify (``UplinkVerifier.receive``:
topic, frame decode, HMAC, message validation; then ``Ingest._admit``), frame
(``Ingest._frame``), store (one ``store.store_frames`` transaction: SQLite WAL with
``synchronous=FULL``, or PostgreSQL), ack (one ``StoredAck`` per terminal, MAC'd, handed to a
no-op publish), and the per-batch revocation refresh.

1. A temporary data folder (SQLite) or a fresh PostgreSQL database the script creates and
   drops (``--store postgresql://postgres@127.0.0.1:5432/yj_pathbench``); ``--terminals``
   terminals registered with the store's ``add_device`` and a random MAC key each, as
   ``bench/ingest_bench.py``'s ``enrol()`` does.
2. Every frame sealed up front, as ``bench/ingest_bench.py``'s publisher does: one single-fix
   ``Position`` per frame, round-robin over the terminals, seq increasing per terminal,
   ``sent_ms`` = now.
3. ``--warmup`` batches, then ``--batches`` batches of ``--batch`` frames timed whole
   (``perf_counter`` wall, ``process_time`` CPU), then as many again with each phase wrapped in
   a timer (the wrappers cost ~0.1 µs a call; "other" is the instrumented total less the
   phases: the loop in ``process``, stats, the live-feed lists). The store grows as it runs,
   as a server's does. Figures are the median batch's µs per frame (the mean in brackets):
   a shared machine's noise moves the mean more than the median.

Not included: the broker and the MQTT thread, and what ``on_accepted`` (the live map) and
``on_stored`` (live duty figures) do with a batch; both are no-ops here, like ``publish``.

Output: one table on stdout. ``--profile FILE`` also writes a cProfile of the timed batches
(``python -m pstats FILE``); for py-spy run the script under ``py-spy record``.

Run: ``.venv/bin/python bench/ingest_path_bench.py`` (SQLite) or
``.venv/bin/python bench/ingest_path_bench.py --store postgresql://postgres@127.0.0.1:5432/yj_pathbench``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import math
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from machine_info import cpu_model

from protocol import DeviceEndpoint, Fix, Outgoing, Position, ServerEndpoint
from server.backends import open_store
from server.ingest import Ingest
from server.keyring import StoreKeyRing
from server.store import Device, DeviceKey, IncomingFrame, Outcome, Store

LAT0, LON0 = 22.54, 114.05
Batch = list[tuple[str, bytes, int]]


# --- the store ------------------------------------------------------------------------------------


@contextlib.contextmanager
def pg_database(url: str) -> Iterator[str]:
    """Create the database ``url`` names (it must not exist), yield ``url``, drop it."""
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(url)
    name = str(info.get("dbname") or "")
    if not name or name == "postgres":
        raise SystemExit("--store: name a database of its own, e.g. .../yj_pathbench")
    admin_url = psycopg.conninfo.make_conninfo("", **{**info, "dbname": "postgres"})
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone():
            raise SystemExit(f"database {name} exists already: drop it or name another")
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def fresh_store(url: str | None) -> Iterator[Store]:
    with tempfile.TemporaryDirectory(prefix="yj-pathbench-") as tmp:
        cm = pg_database(url) if url else contextlib.nullcontext(None)
        with cm as pg_url:
            store = open_store(pg_url, Path(tmp))
            try:
                yield store
            finally:
                store.close()


def enrol(store: Store, n: int) -> list[DeviceEndpoint]:
    """``n`` terminals in the store (random MAC keys), and each one's sealing endpoint."""
    signing = Ed25519PrivateKey.generate()  # a Position is MAC'd only; checkpoints are signed
    public = signing.public_key().public_bytes_raw()
    now = int(time.time() * 1000)
    endpoints = []
    for k in range(n):
        device, mac = f"bt-{k:06d}", secrets.token_bytes(32)
        store.add_device(Device(device, "", (), now), DeviceKey(device, 1, mac, public))
        endpoints.append(
            DeviceEndpoint(device_id=device, key_id=1, mac_key=mac, signing_key=signing,
                           server_key=signing.public_key())
        )  # fmt: skip
    return endpoints


def seal_batches(endpoints: list[DeviceEndpoint], batches: int, size: int) -> list[Batch]:
    """Single-fix Position frames, round-robin over the terminals, seq 1, 2, … per terminal."""
    t = len(endpoints)
    now = int(time.time() * 1000)
    out: list[Batch] = []
    for b in range(batches):
        batch: Batch = []
        for j in range(size):
            i = b * size + j
            d = i % t
            at = now + i // 10  # ten fixes a millisecond: sealed a moment apart
            lat, lon = LAT0 + (d % 100) * 5e-4, LON0 + (d // 100 % 100) * 5e-4
            fix = Fix(time_ms=at, lat=lat, lon=lon, accuracy_m=5.0, speed_mps=1.2)
            sealed = endpoints[d].seal(Position(fix=fix), seq=i // t + 1, sent_ms=at)
            batch.append((sealed.topic, sealed.payload, at + 20))
        out.append(batch)
    return out


# --- timing ---------------------------------------------------------------------------------------


class Phases:
    """Accumulated seconds per phase: wall (``perf_counter``) and, for the per-batch phases,
    CPU (``process_time``, a system call: too dear to take per frame)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def add(self, name: str, wall: float, cpu: float | None = None) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + wall
        if cpu is not None:
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu


def per_call(phases: Phases, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    clock = time.perf_counter
    wall = phases.wall
    wall.setdefault(name, 0.0)

    def timed(*args: Any) -> Any:
        a = clock()
        try:
            return fn(*args)
        finally:
            wall[name] += clock() - a

    return timed


def per_batch(phases: Phases, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        a, c = time.perf_counter(), time.process_time()
        try:
            return fn(*args)
        finally:
            phases.add(name, time.perf_counter() - a, time.process_time() - c)

    return timed


class TimedStore:
    """The store, with ``store_frames`` timed; everything else passed through."""

    def __init__(self, store: Store, phases: Phases) -> None:
        self._store = store
        self._timed = per_batch(phases, "store", store.store_frames)

    def store_frames(self, frames: Sequence[IncomingFrame]) -> list[Outcome]:
        return list(self._timed(frames))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def instrument(ingest: Ingest, phases: Phases) -> None:
    """Wrap each phase of ``ingest`` (instance attributes shadow the methods)."""
    v = ingest._verifier
    v.receive = per_call(phases, "verify: receive", v.receive)  # type: ignore[method-assign]
    ingest._admit = per_call(phases, "verify: admit", ingest._admit)  # type: ignore[method-assign]
    ingest._frame = per_call(phases, "frame", ingest._frame)  # type: ignore[method-assign]
    ingest._store = TimedStore(ingest._store, phases)
    ingest._acknowledge = per_batch(phases, "ack", ingest._acknowledge)  # type: ignore[method-assign]
    kr = ingest._keyring
    kr.refresh_revocations = per_batch(phases, "revocations", kr.refresh_revocations)  # type: ignore[method-assign]


def run(
    ingest: Ingest, batches: list[Batch], phases: Phases | None = None
) -> list[dict[str, float]]:
    """Process the batches; per batch, µs per frame: ``total``/``total cpu`` and, with
    ``phases``, each phase (``NAME`` wall, ``NAME cpu`` where taken)."""
    out = []
    for batch in batches:
        before = (dict(phases.wall), dict(phases.cpu)) if phases else ({}, {})
        a, c = time.perf_counter(), time.process_time()
        ingest.process(batch)
        wall, cpu = time.perf_counter() - a, time.process_time() - c
        k = 1e6 / len(batch)
        row = {"total": wall * k, "total cpu": cpu * k}
        if phases is not None:
            for name, v in phases.wall.items():
                row[name] = (v - before[0].get(name, 0.0)) * k
            for name, v in phases.cpu.items():
                row[f"{name} cpu"] = (v - before[1].get(name, 0.0)) * k
        out.append(row)
    return out


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows) if rows and key in rows[0] else math.nan


def mean(rows: list[dict[str, float]], key: str) -> float:
    return statistics.fmean(r[key] for r in rows) if rows and key in rows[0] else math.nan


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--store",
        default=None,
        help="postgresql://user@host:port/NEWDB (created and dropped); default: SQLite",
    )
    ap.add_argument("--terminals", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=20, help="timed batches (per pass)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile", default=None, help="write a cProfile of the timed pass here")
    args = ap.parse_args()

    with fresh_store(args.store) as store:
        a = time.perf_counter()
        endpoints = enrol(store, args.terminals)
        enrol_s = time.perf_counter() - a
        total = args.warmup + 2 * args.batches
        a = time.perf_counter()
        batches = seal_batches(endpoints, total, args.batch)
        seal_s = time.perf_counter() - a
        published: list[int] = [0]

        def publish(out: Outgoing) -> None:
            published[0] += 1

        keyring = StoreKeyRing(store)
        ingest = Ingest(store, keyring, ServerEndpoint(signing_key=Ed25519PrivateKey.generate(),
                        key_id=1), publish=publish)  # fmt: skip
        warm, plain, timed = (batches[: args.warmup],
                              batches[args.warmup : args.warmup + args.batches],
                              batches[args.warmup + args.batches :])  # fmt: skip
        run(ingest, warm)
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        plain_rows = run(ingest, plain)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        phases = Phases()
        instrument(ingest, phases)
        timed_rows = run(ingest, timed, phases)
        stats = ingest.stats
        assert stats.stored == len(batches) * args.batch, stats
        assert stats.duplicates == stats.conflicts == 0 and not stats.rejected, stats
        assert store.frame_count() == stats.stored

    kind = "PostgreSQL" if args.store else "SQLite (WAL, synchronous=FULL)"
    print(f"# ingest path: {kind}; Python {platform.python_version()}; {cpu_model()}")
    print(f"# {args.terminals} terminals (enrolled in {enrol_s:.1f} s), batches of {args.batch} "
          f"single-fix Position frames ({len(batches)} sealed in {seal_s:.1f} s: "
          f"{seal_s / len(batches) / args.batch * 1e6:.1f} µs each), {args.warmup} warm-up, "
          f"{args.batches} timed per pass; {published[0]} acks published")  # fmt: skip
    print("# µs per frame, the median batch (mean in brackets)")
    print()
    print("| phase | wall µs/frame | CPU µs/frame |")
    print("|---|---:|---:|")

    def cell(rows: list[dict[str, float]], key: str) -> str:
        m = median(rows, key)
        return "–" if math.isnan(m) else f"{m:.1f} ({mean(rows, key):.1f})"

    print(f"| **total** (plain pass) | **{cell(plain_rows, 'total')}** "
          f"| **{cell(plain_rows, 'total cpu')}** |")  # fmt: skip
    frames_s = 1e6 / median(plain_rows, "total")
    print(f"| frames/s (plain pass, median batch) | {frames_s:,.0f} | "
          f"{1e6 / median(plain_rows, 'total cpu'):,.0f} |")  # fmt: skip
    print(f"| total (instrumented pass) | {cell(timed_rows, 'total')} "
          f"| {cell(timed_rows, 'total cpu')} |")  # fmt: skip
    order = ["verify: receive", "verify: admit", "frame", "store", "ack", "revocations"]
    for row in timed_rows:
        row["other"] = row["total"] - sum(row.get(name, 0.0) for name in order)
    for name in [*order, "other"]:
        print(f"| {name} | {cell(timed_rows, name)} | {cell(timed_rows, name + ' cpu')} |")

if __name__ == "__main__":
    main()
