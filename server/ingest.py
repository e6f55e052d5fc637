"""Ingest: verify, deduplicate, store in batches, then acknowledge, then tell the live feed.

The MQTT thread only enqueues ``(topic, payload, received_ms)``; one ingest thread drains the
queue in batches (up to ``batch_max`` frames or ``batch_wait_s`` of waiting), verifies each
frame, stores the whole batch in one transaction, and only after the commit publishes one
``StoredAck`` per terminal. A crash before the commit loses nothing: the terminal still holds
every unacknowledged frame and sends it again.

Bad frames never stop the batch: each is rejected alone, counted per (device, reason), and
logged once per reason.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from protocol import (
    REPLAY_WINDOW_MS,
    Checkpoint,
    Fix,
    Outgoing,
    Position,
    PositionBatch,
    Presence,
    PresenceKind,
    ProtocolError,
    Revoked,
    ServerEndpoint,
    Snapshot,
    Stale,
    UplinkVerifier,
    Verified,
)
from protocol.messages import Message
from yijing.mqtt import LinkError

from .errors import StoreError
from .keyring import StoreKeyRing
from .snapshots import SnapshotFiles
from .store import FUTURE_TOLERANCE_MS, FixFlag, IncomingFrame, Outcome, SnapshotMeta, Store

T = TypeVar("T")


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    acks_sent: int = 0
    ack_failures: int = 0
    batches: int = 0
    #: Fixes whose time was ahead of the server's clock, per device (stored, flagged).
    future_fixes: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the live feed learns from one stored frame."""

    device_id: str
    seq: int
    message: Message
    received_ms: int

    def __reduce__(self) -> tuple[type[Accepted], tuple[object, ...]]:
        # Pickled by ingest workers for every frame: see IncomingFrame.__reduce__.
        return (Accepted, (self.device_id, self.seq, self.message, self.received_ms))


def take_batch(
    source: queue.SimpleQueue[T | None], batch_max: int, wait_s: float
) -> tuple[list[T], bool]:
    """Wait for one item, then take more until ``batch_max`` or ``wait_s`` has passed:
    ``(batch, stop)``, ``stop`` when the ``None`` that ends the thread was taken (the batch
    before it still to be done)."""
    first = source.get()
    if first is None:
        return [], True
    batch = [first]
    deadline = time.monotonic() + wait_s
    while len(batch) < batch_max:
        remaining = deadline - time.monotonic()
        try:
            item = source.get(timeout=remaining) if remaining > 0 else source.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False


def _party(topic: str) -> str:
    """The device a (possibly malformed) uplink topic names, for counting rejections."""
    parts = topic.split("/")
    return parts[3][:64] if len(parts) == 5 else "?"


_FUTURE_TIME = int(FixFlag.FUTURE_TIME)
_FLAGGED_ONE, _UNFLAGGED_ONE = (_FUTURE_TIME,), (0,)


def _fixes(message: Message) -> tuple[Fix, ...]:
    """The fixes that go into the track: those of Position and PositionBatch only.

    A fix attached to an event, a presence or a snapshot stays in its frame (and reaches the
    live map): the agent records that same fix in its track too, so storing it again would
    count one moment twice in the duty metrics.
    """
    if isinstance(message, Position):
        return (message.fix,)
    if isinstance(message, PositionBatch):
        return message.fixes
    return ()


class Ingest:
    def __init__(
        self,
        store: Store,
        keyring: StoreKeyRing,
        endpoint: ServerEndpoint,
        *,
        publish: Callable[[Outgoing], None],
        on_accepted: Callable[[list[Accepted]], None] = lambda batch: None,
        on_stored: Callable[[list[IncomingFrame]], None] = lambda frames: None,
        snapshot_files: SnapshotFiles | None = None,
        batch_max: int = 1000,
        batch_wait_s: float = 0.02,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._verifier = UplinkVerifier(keyring)
        self._endpoint = endpoint
        self._publish = publish
        self._on_accepted = on_accepted
        self._on_stored = on_stored
        self._files = snapshot_files
        self._batch_max = batch_max
        self._batch_wait_s = batch_wait_s
        self._clock = clock
        self._log = logger or logging.getLogger("yijing.ingest")
        self._queue: queue.SimpleQueue[tuple[str, bytes, int] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._logged_reasons: set[str] = set()
        self.stats = IngestStats()

    # --- threads ----------------------------------------------------------------------------

    def submit(self, topic: str, payload: bytes) -> None:
        """Called on the MQTT thread: only enqueue."""
        self._queue.put((topic, payload, int(self._clock() * 1000)))

    def submit_many(self, messages: list[tuple[str, bytes]]) -> None:
        """Called on a receiver thread with one read's worth of messages: only enqueue."""
        received_ms = int(self._clock() * 1000)
        put = self._queue.put
        for topic, payload in messages:
            put((topic, payload, received_ms))

    def queue_depth(self) -> int:
        """Frames received and not yet taken by the ingest thread (the lag, for /metrics)."""
        return self._queue.qsize()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch, stop = take_batch(self._queue, self._batch_max, self._batch_wait_s)
            if not batch:
                return
            try:
                self.process(batch)
            except StoreError as exc:
                # Nothing was acknowledged, so the terminals will resend; say it loudly.
                self._log.error("batch of %d not stored: %s", len(batch), exc)
            except Exception:
                # A bug must not end the ingest thread (and with it all ingest): what was not
                # acknowledged is resent and lands in another batch.
                self._log.exception("batch of %d failed", len(batch))
            if stop:
                return

    # --- the work ------------------------------------------------------------------------------

    def _reject(self, topic: str, exc: ProtocolError, batch: Counter[tuple[str, str]]) -> None:
        device = _party(topic)
        reason = f"{type(exc).__name__}: {exc.field}"
        self.stats.rejected[(device, reason)] += 1
        batch[(device, reason)] += 1
        if reason not in self._logged_reasons:
            self._logged_reasons.add(reason)
            self._log.warning("rejected frame on %s: %s (further ones counted only)", topic, exc)

    def process(self, batch: list[tuple[str, bytes, int]]) -> list[Accepted]:
        """Verify, store and acknowledge one batch; return what was newly stored."""
        self.stats.received += len(batch)
        self.stats.batches += 1
        verified: list[tuple[Verified, int]] = []
        # The live feed in arrival order: a will (offline) from a dropped connection followed
        # by a frame from the new one must leave the terminal online. Entries are either a
        # will, ready to show, or the index of a verified frame, shown if newly stored.
        arrivals: list[Accepted | int] = []
        rejected: Counter[tuple[str, str]] = Counter()
        try:
            self._keyring.refresh_revocations()
        except StoreError as exc:  # keep the revocations already known; try again next batch
            self._log.error("revocations not refreshed: %s", exc)
        receive, admit = self._verifier.receive, self._admit
        for topic, payload, received_ms in batch:
            try:
                v = receive(topic, payload)
                admit(v, received_ms)
            except ProtocolError as exc:
                self._reject(topic, exc, rejected)
                continue
            if v.envelope.seq == 0:  # the offline will: status only, never stored or acked
                arrivals.append(Accepted(v.envelope.party, 0, v.envelope.message, received_ms))
            else:
                arrivals.append(len(verified))
                verified.append((v, received_ms))
        frames = [self._frame(v, received_ms) for v, received_ms in verified]
        self._write_snapshot_files(verified)
        outcomes = self._store.store_frames(frames) if frames else []
        to_ack: dict[tuple[str, int], list[int]] = defaultdict(list)
        new: dict[int, Accepted] = {}
        is_new, is_duplicate = Outcome.NEW, Outcome.DUPLICATE
        for i, ((v, received_ms), frame, outcome) in enumerate(
            zip(verified, frames, outcomes, strict=True)
        ):
            env = v.envelope
            if outcome is is_new:
                new[i] = Accepted(env.party, env.seq, env.message, received_ms)
            elif outcome is is_duplicate:
                self.stats.duplicates += 1
            else:
                self.stats.conflicts += 1
                self._log.warning(
                    "%s seq %d arrived with different bytes; kept the first", env.party, env.seq
                )
            # Conflicts are acknowledged too: the first copy is durable, and an endless resend
            # would help nobody. The conflict counter is what an inspector sees.
            to_ack[(env.party, frame.key_id)].append(env.seq)
        self.stats.stored += len(new)
        self._acknowledge(to_ack)
        if rejected:
            self._count_rejections(batch[0][2], rejected)
        stored = [frames[i] for i in new]
        if stored:
            try:
                self._on_stored(stored)
            except Exception:  # the live duty figures must never stop ingest
                self._log.exception("on_stored failed for a batch of %d frames", len(stored))
        feed = [
            a if isinstance(a, Accepted) else new[a]
            for a in arrivals
            if isinstance(a, Accepted) or a in new
        ]
        if feed:
            self._on_accepted(feed)
        return list(new.values())

    def _admit(self, v: Verified, received_ms: int) -> None:
        """After authenticity, policy: a genuine frame may still be one to refuse. Checked
        after the MAC, so a forgery is counted as a forgery, not as a revoked terminal."""
        env = v.envelope
        revoked_ms = self._keyring.revoked_at(env.party)
        if revoked_ms is not None:
            raise Revoked("party", f"{env.party} was revoked at {revoked_ms} ms")
        # The will (seq 0) is sealed when the connection opens and sent by the broker when it
        # dies, which may be weeks later; it is status only, never stored, so no window.
        if env.seq != 0 and env.sent_ms < received_ms - REPLAY_WINDOW_MS:
            days = (received_ms - env.sent_ms) // 86_400_000
            raise Stale("sent_ms", f"sealed {days} days before it arrived (replay window 30)")

    def _count_rejections(self, received_ms: int, rejected: Counter[tuple[str, str]]) -> None:
        """Kept per device and day (signature failures are an anti-gaming flag), after the
        acks: a failure here loses a count, never an acknowledgement."""
        day = time.strftime("%Y-%m-%d", time.gmtime(received_ms / 1000))
        try:
            self._store.add_rejections(day, rejected)
        except StoreError as exc:
            self._log.error("rejections not counted in the store: %s", exc)

    def _write_snapshot_files(self, verified: list[tuple[Verified, int]]) -> None:
        """JPEGs go to their content-addressed files before the transaction that records them:
        a crash in between leaves an orphan file (retention removes it), never a row without
        its file."""
        files = self._files
        if files is None:
            return
        for v, _ in verified:
            message = v.envelope.message
            if isinstance(message, Snapshot):
                try:
                    files.put(message.sha256.hex(), message.jpeg)
                except OSError as exc:  # a full disk: nothing is acked, the terminal resends
                    raise StoreError(f"cannot write snapshot file: {exc}") from exc

    def _frame(self, v: Verified, received_ms: int) -> IncomingFrame:
        env = v.envelope
        message = env.message
        fixes = _fixes(message)
        flags: tuple[int, ...] = ()
        if fixes:
            horizon = received_ms + FUTURE_TOLERANCE_MS
            if len(fixes) == 1:  # a Position, most frames: no list to build
                flags = _FLAGGED_ONE if fixes[0].time_ms > horizon else _UNFLAGGED_ONE
            else:
                flags = tuple([_FUTURE_TIME if f.time_ms > horizon else 0 for f in fixes])
            future = len(flags) - flags.count(0)
            if future:
                self.stats.future_fixes[env.party] += future
        checkpoint = (
            (message.first_seq, message.last_seq) if isinstance(message, Checkpoint) else None
        )
        snapshot = None
        if isinstance(message, Snapshot):
            snapshot = SnapshotMeta(
                device_id=env.party,
                seq=env.seq,
                sha256=message.sha256.hex(),
                captured_ms=message.captured_ms,
                trigger=message.trigger.value,
                width=message.width,
                height=message.height,
                size=len(message.jpeg),
                received_ms=received_ms,
                request_id=message.request_id,
                lat=message.fix.lat if message.fix else None,
                lon=message.fix.lon if message.fix else None,
            )
        presence = message if isinstance(message, Presence) else None
        return IncomingFrame(
            offline=presence is not None and presence.kind is PresenceKind.OFFLINE,
            skew_ms=presence.clock_skew_ms if presence is not None else None,
            device_id=env.party,
            seq=env.seq,
            key_id=env.key_id,
            type_code=message.TYPE,
            sent_ms=env.sent_ms,
            received_ms=received_ms,
            payload=v.payload,
            digest=v.digest,
            fixes=fixes,
            fix_flags=flags,
            checkpoint_range=checkpoint,
            snapshot=snapshot,
        )

    def _acknowledge(self, to_ack: dict[tuple[str, int], list[int]]) -> None:
        now_ms = int(self._clock() * 1000)
        for (device, key_id), seqs in to_ack.items():
            mac_key = self._keyring.mac_key(device, key_id)
            if mac_key is None:  # pragma: no cover - verified a moment ago with this key
                continue
            # Usually one ack; more when a terminal's resends left more gaps in this batch
            # than one StoredAck may carry ranges.
            for out in self._endpoint.acks(
                device, seqs, mac_key=mac_key, key_id=key_id, sent_ms=now_ms
            ):
                try:
                    self._publish(out)
                    self.stats.acks_sent += 1
                except LinkError as exc:  # the terminal resends; the duplicate is acked again
                    self.stats.ack_failures += 1
                    self._log.info("ack to %s not sent (%s); it will resend", device, exc)
