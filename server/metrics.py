"""Prometheus metrics: read at scrape time from the live objects, nothing on the hot path.

``server_registry`` builds a ``CollectorRegistry`` of its own (never prometheus_client's
global one, so tests and several servers in one process do not collide) holding one custom
collector. Each scrape reads ``IngestStats``, the ingest queue, ``LiveState`` and ``Hub`` as
they are at that moment; ingest keeps counting plain integers as it always did.

Series stay few on purpose: rejections are labelled by ``reason`` only (``BadMac: mac``,
``Stale: sent_ms``, …), never by terminal — 50,000 terminals would be 50,000 series per
reason. Per-terminal refusals are in the store (``rejections``) for inspectors.

==========================================  =======  ==========================================
metric                                      type     meaning
==========================================  =======  ==========================================
yijing_ingest_frames_received_total         counter  uplink frames taken off the queue
yijing_ingest_frames_stored_total           counter  new frames committed to the store
yijing_ingest_duplicates_total              counter  frames already stored (acked again)
yijing_ingest_conflicts_total               counter  a stored (device, seq) with other bytes
yijing_ingest_rejected_total{reason}        counter  frames refused (MAC, revoked, stale, …)
yijing_ingest_future_fixes_total            counter  fixes timed ahead of the server's clock
yijing_ingest_acks_sent_total               counter  ``StoredAck``s published
yijing_ingest_ack_failures_total            counter  ``StoredAck``s the broker did not take
yijing_ingest_batches_total                 counter  store transactions
yijing_ingest_queue_depth                   gauge    frames received, waiting for ingest (lag)
yijing_terminals{status}                    gauge    terminals on the live map, by status
yijing_terminals_online                     gauge    terminals not ``offline``
yijing_live_watchers                        gauge    open live-map WebSockets
==========================================  =======  ==========================================

With the process collector (``process=True``): ``process_resident_memory_bytes``,
``process_cpu_seconds_total``, ``process_open_fds``, … of this server process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .ingest import IngestStats
from .live import STATUSES, Hub, LiveState

K = TypeVar("K")

#: Every metric of ours starts with this.
PREFIX = "yijing"

#: One ingest's counters, or a callable giving every ingest's in this process (summed).
StatsSource = IngestStats | Callable[[], Iterable[IngestStats]]


def _copy(counter: Mapping[K, int]) -> dict[K, int]:
    """A copy of a counter the ingest thread may be growing. ``dict(d)`` of a dict (or a
    ``Counter``, which keeps dict's iteration) copies under the GIL in one step; retried in
    case an interpreter without that guarantee sees it change size."""
    for _ in range(5):
        try:
            return dict(counter)
        except RuntimeError:  # pragma: no cover - "dictionary changed size during iteration"
            continue
    return {}


class _Totals:
    """The sum of every source's ``IngestStats`` as one scrape sees them."""

    __slots__ = (
        "ack_failures",
        "acks_sent",
        "batches",
        "conflicts",
        "duplicates",
        "future_fixes",
        "received",
        "rejected",
        "stored",
    )

    def __init__(self, stats: Iterable[IngestStats]) -> None:
        self.received = self.stored = self.duplicates = self.conflicts = 0
        self.acks_sent = self.ack_failures = self.batches = self.future_fixes = 0
        self.rejected: Counter[str] = Counter()
        for s in stats:
            self.received += s.received
            self.stored += s.stored
            self.duplicates += s.duplicates
            self.conflicts += s.conflicts
            self.acks_sent += s.acks_sent
            self.ack_failures += s.ack_failures
            self.batches += s.batches
            self.future_fixes += sum(_copy(s.future_fixes).values())
            for (_device, reason), n in _copy(s.rejected).items():
                self.rejected[reason] += n  # the device is dropped here, on purpose


#: (``_Totals`` attribute, metric name without prefix and ``_total``, help)
_COUNTERS = (
    ("received", "frames_received", "Uplink frames taken off the ingest queue."),
    ("stored", "frames_stored", "New frames committed to the store."),
    ("duplicates", "duplicates", "Frames already stored (acknowledged again, not stored)."),
    ("conflicts", "conflicts", "Frames whose (device, seq) was stored with other bytes."),
    ("future_fixes", "future_fixes", "Fixes timed ahead of the server's clock (stored, flagged)."),
    ("acks_sent", "acks_sent", "StoredAck messages published to terminals."),
    ("ack_failures", "ack_failures", "StoredAck messages the broker link did not take."),
    ("batches", "batches", "Store transactions (batches of frames)."),
)


class ServerCollector(Collector):
    """Reads the server's live objects at each scrape."""

    def __init__(
        self,
        stats: StatsSource,
        *,
        live: LiveState | None = None,
        hub: Hub | None = None,
        queue_depth: Callable[[], int] | None = None,
        status_counts: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self._stats = stats
        self._live = live
        self._hub = hub
        self._queue_depth = queue_depth
        self._status_counts = status_counts

    def _ingest_stats(self) -> Iterable[IngestStats]:
        return (self._stats,) if isinstance(self._stats, IngestStats) else self._stats()

    def _statuses(self) -> Counter[str]:
        if self._status_counts is not None:
            return Counter(dict(self._status_counts()))
        assert self._live is not None
        # A sorted copy of every doc, under the live lock: about 0.3 s for 50,000 terminals,
        # during which ingest's ``apply`` waits. Pass ``status_counts`` (a counting method of
        # LiveState, about 15 ms for 50,000) wherever there is one.
        return Counter(str(doc.get("status")) for doc in self._live.snapshot())

    def describe(self) -> Iterator[Metric]:
        # Names only, for the registry's duplicate check; no scrape-time reading.
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(_Totals(self._ingest_stats()))

    def _families(self, t: _Totals | None) -> Iterator[Metric]:
        for attr, name, doc in _COUNTERS:
            family = CounterMetricFamily(f"{PREFIX}_ingest_{name}", doc)
            if t is not None:
                family.add_metric([], getattr(t, attr))
            yield family
        rejected = CounterMetricFamily(
            f"{PREFIX}_ingest_rejected",
            "Frames refused, by reason (error: field). Per terminal: the store's rejections.",
            labels=["reason"],
        )
        if t is not None:
            for reason, n in sorted(t.rejected.items()):
                rejected.add_metric([reason], n)
        yield rejected
        if self._queue_depth is not None:
            depth = GaugeMetricFamily(
                f"{PREFIX}_ingest_queue_depth",
                "Frames received from the broker and waiting for the ingest thread (lag).",
            )
            if t is not None:
                depth.add_metric([], self._queue_depth())
            yield depth
        if self._live is not None or self._status_counts is not None:
            by_status = GaugeMetricFamily(
                f"{PREFIX}_terminals",
                "Terminals on the live map, by status (sos, dispatched, offline, on_post, …).",
                labels=["status"],
            )
            online = GaugeMetricFamily(
                f"{PREFIX}_terminals_online", "Terminals on the live map not offline."
            )
            if t is not None:
                counts = self._statuses()
                for status in sorted(STATUSES | set(counts)):
                    by_status.add_metric([status], counts.get(status, 0))
                online.add_metric([], sum(n for s, n in counts.items() if s != "offline"))
            yield by_status
            yield online
        if self._hub is not None:
            watchers = GaugeMetricFamily(
                f"{PREFIX}_live_watchers", "Open live-map WebSocket connections."
            )
            if t is not None:
                watchers.add_metric([], self._hub.watchers)
            yield watchers


def server_registry(
    stats: StatsSource,
    *,
    live: LiveState | None = None,
    hub: Hub | None = None,
    queue_depth: Callable[[], int] | None = None,
    status_counts: Callable[[], Mapping[str, int]] | None = None,
    process: bool = True,
) -> CollectorRegistry:
    """A registry of this server's metrics (and, with ``process``, this process's memory,
    CPU and file descriptors). ``queue_depth``: frames waiting for ingest, e.g.
    ``ingest.queue_depth``; ``status_counts``: terminals by status, if ``LiveState`` has a
    counting method (otherwise the statuses are counted from ``live.snapshot()``)."""
    registry = CollectorRegistry()
    registry.register(
        ServerCollector(
            stats, live=live, hub=hub, queue_depth=queue_depth, status_counts=status_counts
        )
    )
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry
