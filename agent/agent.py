"""The edge agent's main loop: sample, store, send, and forget only what the server stored.

Threads: the MQTT link runs its own (``yijing.mqtt``) and hands everything it receives to a
queue; this loop, on one thread, owns the outbox and all decisions. So the database needs no
locks and every state change happens in one place.

In flight: what was published but not yet acknowledged, with when. An item is sent again when
its ack is ``ack_timeout_s`` late, and everything in flight is sent again after a reconnect:
MQTT QoS 1 alone is not trusted (paho keeps its session in memory only, and brokers may drop
queued messages). The server deduplicates, so resending is always safe.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from protocol import (
    ConfigPush,
    DeviceEndpoint,
    Envelope,
    Fix,
    Position,
    Presence,
    PresenceKind,
    ProtocolError,
    Setting,
    StoredAck,
)
from provisioning import Enrolment
from yijing.mqtt import Backoff, MqttLink, NotConnected, Will

from .errors import OutboxError
from .outbox import Outbox


class PositionSource(Protocol):
    def read(self, now_ms: int) -> Fix | None: ...


@dataclass(frozen=True, kw_only=True)
class AgentSettings:
    report_interval_s: float = 5.0
    heartbeat_s: float = 60.0
    ack_timeout_s: float = 20.0
    window: int = 64  # most frames unacknowledged on the wire at once


@dataclass
class AgentStats:
    published: int = 0
    resent: int = 0
    acked: int = 0
    rejected_downlink: int = 0
    commands: list[Envelope] = field(default_factory=list)


class Agent:
    def __init__(
        self,
        enrolment: Enrolment,
        data_dir: Path,
        *,
        source: PositionSource,
        settings: AgentSettings | None = None,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        ident = enrolment.identity
        self.device_id = ident.device_id
        self.settings = settings or AgentSettings()
        self._clock = clock
        self._log = logger or logging.getLogger(f"yijing.agent.{ident.device_id}")
        self._source = source
        self.endpoint = DeviceEndpoint(
            device_id=ident.device_id,
            key_id=ident.key_id,
            mac_key=ident.mac_key,
            signing_key=ident.signing_key,
            server_key=enrolment.server_key,
            units=ident.units,
        )
        self.outbox = Outbox(data_dir / "outbox.db", self.endpoint, clock_ms=self._now_ms)
        self._inbox: queue.SimpleQueue[tuple[str, str, bytes]] = queue.SimpleQueue()
        # seq -> (when sent, which connection it went out on)
        self._inflight: dict[int, tuple[float, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = AgentStats()
        self._seen_errors: set[str] = set()
        broker = enrolment.broker
        self.link = MqttLink(
            client_id=ident.device_id,
            host=broker.host,
            port=broker.port,
            protocol=broker.protocol,
            subscriptions=[(f, 1) for f in self.endpoint.subscriptions],
            on_message=lambda topic, payload: self._inbox.put(("msg", topic, payload)),
            on_connect=lambda: self._inbox.put(("up", str(self.link.connects), b"")),
            will=Will(*self._will()),
            # Keep the broker session a day so commands sent while the 4G link is down wait.
            session_expiry_s=86_400,
            backoff=backoff,
            logger=self._log.getChild("mqtt"),
        )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _will(self) -> tuple[str, bytes]:
        out = self.endpoint.will(sent_ms=self._now_ms())
        return out.topic, out.payload

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.link.start()
        self._thread = threading.Thread(
            target=self.run, name=f"agent-{self.device_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.link.stop()
        self.outbox.close()

    def run(self) -> None:
        next_report = next_heartbeat = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_report:
                self._guarded(self.report_position)
                next_report = max(next_report + self.settings.report_interval_s, now)
            if now >= next_heartbeat:
                self._guarded(lambda: self.outbox.put(Presence(kind=PresenceKind.HEARTBEAT)))
                next_heartbeat = now + self.settings.heartbeat_s
            self.pump()
            wait = max(0.0, min(next_report, next_heartbeat) - self._clock())
            self._drain_inbox(min(wait, 0.2))
        self.outbox.flush_checkpoint()
        self.pump()

    # --- work ----------------------------------------------------------------------------------

    def _guarded(self, action: Callable[[], object]) -> None:
        """Run one sampling step; a refusal is logged (once per kind) and the loop goes on.

        A terminal without a real-time clock reads 1970 at boot, which the protocol refuses
        until NTP or GNSS time arrives; a full disk fails the outbox. Neither may stop the
        loop that delivers what is already stored.
        """
        try:
            action()
        except (ProtocolError, OutboxError) as exc:
            self._log_once(
                f"{type(exc).__name__}:{getattr(exc, 'field', '')}", "not recorded: %s", exc
            )

    def _log_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._seen_errors:
            self._seen_errors.add(key)
            self._log.warning(message, *args)

    def report_position(self) -> int | None:
        fix = self._source.read(self._now_ms())
        if fix is None:
            return None
        return self.outbox.put(Position(fix=fix))

    def pump(self) -> None:
        """Publish what is due: new items up to the window, and items whose ack is late."""
        if not self.link.connected:
            return
        now = self._clock()
        timeout = self.settings.ack_timeout_s
        late = [s for s, (t, _) in self._inflight.items() if now - t >= timeout]
        for seq in late:
            del self._inflight[seq]
        room = self.settings.window - len(self._inflight)
        if room <= 0:
            return
        connection = self.link.connects
        for item in self.outbox.next_items(room, exclude=self._inflight.keys()):
            try:
                self.link.publish(item.topic, item.payload, qos=1)
            except NotConnected:
                return
            self._inflight[item.seq] = (now, connection)
            self.stats.published += 1
            if item.seq in late:
                self.stats.resent += 1  # an ack that never came; a reconnect resends silently

    def _drain_inbox(self, timeout: float) -> None:
        try:
            kind, topic, payload = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._handle(kind, topic, payload)
            try:
                kind, topic, payload = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, kind: str, topic: str, payload: bytes) -> None:
        if kind == "up":
            # A new connection: what went out on an older one may be lost with it; send again.
            connection = int(topic)
            stale = [s for s, (_, c) in self._inflight.items() if c < connection]
            for seq in stale:
                del self._inflight[seq]
            return
        try:
            envelope = self.endpoint.receive(topic, payload)
        except ProtocolError as exc:
            self.stats.rejected_downlink += 1  # count every one, log each kind once
            self._log_once(
                f"down:{type(exc).__name__}:{exc.field}", "rejected downlink on %s: %s", topic, exc
            )
            return
        message = envelope.message
        if isinstance(message, StoredAck):
            self.stats.acked += self.outbox.acknowledge(message)
            for first, last in message.ranges:
                for seq in [s for s in self._inflight if first <= s <= last]:
                    del self._inflight[seq]
        elif isinstance(message, ConfigPush):
            self._apply_config(message)
        else:
            self.stats.commands.append(envelope)

    def _apply_config(self, push: ConfigPush) -> None:
        values = push.as_dict()
        changes: dict[str, Any] = {}
        if Setting.INTERVAL_MOVING_S in values:
            changes["report_interval_s"] = values[Setting.INTERVAL_MOVING_S]
        if Setting.HEARTBEAT_S in values:
            changes["heartbeat_s"] = values[Setting.HEARTBEAT_S]
        if Setting.ACK_TIMEOUT_S in values:
            changes["ack_timeout_s"] = values[Setting.ACK_TIMEOUT_S]
        self.settings = replace(self.settings, **changes)
        self._log.info("config version %s applied: %s", push.version, changes)
