"""Ingest in worker processes: ``yijing server --workers N``.

One server process stores about 2,000 fixes a second: its MQTT thread and its ingest thread
share Python's GIL, so it never uses more than about one core (docs/benchmarks.md). With
``--workers N`` the server starts N processes that each do what the ingest thread does —
receive, verify, store in batches, acknowledge — and share the uplink through one MQTT 5
shared subscription (``$share/yijing/yj/1/up/+/+``, MQTT 5 §4.8.2: the broker gives each
message to one member of the group).

What stays in the main process, because there must be exactly one of it: the live state and
its WebSocket feed, the duty tracker, dispatch, field reports and spot checks, and the web.
Each worker sends the main process, over a pipe, what its ``Ingest`` would have told them in
process — the frames newly stored (for the duty tracker) and the accepted messages (for the
live map and the services) — in the order it stored them, plus its counters every second.
A frame reaches the main process only after the worker's commit, exactly as in process; two
frames of one terminal may be stored by two workers in either order, which the live state
and the duty tracker already handle (late data never moves the marker back, duty works on
sets).

A worker that dies is started again (its unacknowledged frames are resent by the terminals;
what it stored is deduplicated). A worker whose parent dies sees its pipe close and exits.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, cast

from protocol import ServerEndpoint, topics
from provisioning import load_or_create_server_identity
from yijing.mqtt import TlsFiles
from yijing.uplink import UplinkClients, uplink_clients

from .backends import open_store
from .ingest import Accepted, Ingest, IngestStats
from .keyring import StoreKeyRing
from .snapshots import SnapshotFiles
from .store import IncomingFrame

log = logging.getLogger("yijing.ingest_workers")

#: How often a worker reports its counters and queue depth.
STATS_EVERY_S = 1.0
#: A worker that died is started again after this long (and not more often).
RESTART_AFTER_S = 1.0


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs; picklable (workers are spawned, not forked)."""

    index: int
    data_dir: Path
    store_url: str | None
    broker_host: str
    broker_port: int
    tls: TlsFiles | None
    batch_max: int
    batch_wait_s: float
    log_level: int
    #: "mosquitto": the uplink arrives through Mosquitto's C client (yijing.mqtt_csub) and
    #: the acks leave through libmosquitto (yijing.mqtt_cpub); "paho": paho does both.
    mqtt_engine: str = "paho"


def worker_main(config: WorkerConfig, conn: Connection) -> None:
    """The worker process: its own store connection, key ring, MQTT link and ingest thread."""
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    store = open_store(config.store_url, config.data_dir)
    identity = load_or_create_server_identity(config.data_dir / "server-key.json")
    send_lock = threading.Lock()

    def forward(kind: str, payload: object) -> None:
        with send_lock:
            conn.send((kind, payload))

    clients_box: list[UplinkClients] = []  # made after ingest, which they feed

    def publish(out: Any) -> None:  # a StoredAck, QoS 0 as in process (server.app)
        clients_box[0].acks.publish(out.topic, out.payload, qos=0)

    # What a batch stored and what it accepted go to the main process as one message: one
    # pickle, in which the fixes the two share are written once.
    stored: list[IncomingFrame] = []

    def on_accepted(batch: list[Accepted]) -> None:
        forward("batch", (stored[:], batch))
        stored.clear()

    ingest = Ingest(
        store,
        StoreKeyRing(store),
        ServerEndpoint(signing_key=identity.signing_key, key_id=identity.key_id),
        publish=publish,
        # Ingest calls on_stored, then on_accepted with every newly stored frame (and wills).
        on_accepted=on_accepted,
        on_stored=stored.extend,
        snapshot_files=SnapshotFiles(config.data_dir / "snapshots"),
        batch_max=config.batch_max,
        batch_wait_s=config.batch_wait_s,
    )
    clients = uplink_clients(
        engine=config.mqtt_engine,
        client_id=f"yijing-ingest-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}",
        host=config.broker_host,
        port=config.broker_port,
        protocol="5",
        tls=config.tls,
        topic_filter=topics.shared("yijing", topics.UPLINK_FILTER),
        submit=ingest.submit,
        submit_many=ingest.submit_many,
        logger=log.getChild(f"worker{config.index}"),
    )
    clients_box.append(clients)
    stop = threading.Event()

    def watch_parent() -> None:
        # "stop" from the parent, or EOF: the parent is gone (killed with -9, say), and a
        # worker must not ingest on for nobody.
        with contextlib.suppress(EOFError, OSError):
            while conn.recv() != "stop":
                pass
        stop.set()

    threading.Thread(target=watch_parent, name="parent", daemon=True).start()
    ingest.start()
    clients.start()
    try:
        while not stop.wait(STATS_EVERY_S):
            forward("stats", (ingest.stats, ingest.queue_depth()))
    except (BrokenPipeError, OSError):
        pass
    finally:
        clients.stop()
        ingest.stop()
        store.close()


def merge_stats(into: IngestStats, parts: list[IngestStats]) -> None:
    """Set ``into`` (the object the web and /metrics read) to the sum of the workers'."""
    for f in fields(IngestStats):
        values = [getattr(p, f.name) for p in parts]
        if isinstance(getattr(into, f.name), Counter):
            total: Counter[Any] = Counter()
            for value in values:
                total.update(value)
            setattr(into, f.name, total)
        else:
            setattr(into, f.name, sum(values))


class IngestWorkers:
    """The main process's side: start, feed the hooks, sum the counters, restart, stop."""

    def __init__(
        self,
        configs: list[WorkerConfig],
        *,
        on_stored: Callable[[list[IncomingFrame]], None],
        on_accepted: Callable[[list[Accepted]], None],
        stats: IngestStats,
    ) -> None:
        self._configs = configs
        self._on_stored = on_stored
        self._on_accepted = on_accepted
        self.stats = stats
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: dict[int, Any] = {}
        self._conns: dict[int, Connection] = {}
        self._reported: dict[int, IngestStats] = {}
        self._depths: dict[int, int] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.pid is not None]

    def queue_depth(self) -> int:
        return sum(self._depths.values())

    def _spawn(self, config: WorkerConfig) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=worker_main, args=(config, child), name=f"yijing-ingest-{config.index}"
        )
        proc.daemon = True
        proc.start()
        child.close()
        self._procs[config.index] = proc
        self._conns[config.index] = parent

    def start(self) -> None:
        for config in self._configs:
            self._spawn(config)
        self._thread = threading.Thread(target=self._run, name="ingest-workers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        died: dict[int, float] = {}
        while not self._stopping.is_set():
            by_conn = {conn: index for index, conn in self._conns.items()}
            for ready in wait(list(by_conn), timeout=0.5):
                conn = cast(Connection, ready)
                index = by_conn[conn]
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    died[index] = time.monotonic()
                    del self._conns[index]
                    continue
                self._dispatch(index, kind, payload)
            for index, when in list(died.items()):
                if self._stopping.is_set() or time.monotonic() - when < RESTART_AFTER_S:
                    continue
                del died[index]
                self._procs[index].join(1)
                log.error("ingest worker %d died (exit %s); starting it again", index,
                          self._procs[index].exitcode)  # fmt: skip
                self.restarts += 1
                self._spawn(self._configs[index])

    def _dispatch(self, index: int, kind: str, payload: Any) -> None:
        # The same contract as in process: hooks must not stop ingest (server.ingest).
        try:
            if kind == "batch":
                stored, accepted = payload
                if stored:
                    self._on_stored(stored)
                if accepted:
                    self._on_accepted(accepted)
            elif kind == "stats":
                self._reported[index], self._depths[index] = payload
                merge_stats(self.stats, list(self._reported.values()))
        except Exception:
            log.exception("handling %s from ingest worker %d failed", kind, index)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for conn in self._conns.values():
            with contextlib.suppress(OSError):  # already gone (BrokenPipeError is an OSError)
                conn.send("stop")
        deadline = time.monotonic() + timeout
        for proc in self._procs.values():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
        if self._thread is not None:
            self._thread.join(2)
        for conn in self._conns.values():
            conn.close()
