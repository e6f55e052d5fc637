"""The edge agent's main loop: sample, record, send, and forget only what the server stored.

Threads: the MQTT link runs its own (``yijing.mqtt``) and hands everything it receives to a
queue; this loop, on one thread, owns the outbox and all decisions. So the database needs no
locks and every state change happens in one place.

In flight: what was published but not yet acknowledged, with when and on which connection. An
item is sent again when its ack is ``ack_timeout_s`` late, and everything sent on an earlier
connection is sent again after a reconnect: MQTT QoS 1 alone is not trusted (paho keeps its
session in memory only, and brokers may drop queued messages). The server deduplicates, so
resending is always safe.

Clock: fixes carry the receiver's GNSS time. Each GNSS fix also measures the terminal's clock
against it; the skew goes to the server in every heartbeat, and the server, whose own clock is
the reference, never takes a timestamp from the future at face value.

Dispatch, tasks and clues (the volunteer's side): a ``DispatchCommand`` rings until answered,
cancelled (``DispatchCancel``) or expired; once accepted it stays ``current_dispatch`` so the
volunteer can say ``arrived()``. A ``Task`` is kept in ``tasks`` until read (``ack_task``) or
expired. ``report_clue`` sends a ``Clue`` and, with a photo, a ``Snapshot`` (trigger clue).

Threads: every method that changes state or touches the outbox is for the agent's thread only
(listeners, actions handed to ``submit``). Another thread (a local screen, the MCU bridge) uses
``submit`` to fire and forget, or ``call`` to wait for the answer. Other threads may read
``active_dispatch``, ``current_dispatch``, ``tasks`` and ``latest_fix`` at any time: each is
replaced whole, never changed in place, so a reader always sees one consistent value.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from protocol import (
    ConfigPush,
    DeviceEndpoint,
    DispatchCancel,
    DispatchCommand,
    DispatchResponse,
    Envelope,
    Event,
    EventKind,
    Fix,
    FixSource,
    IncidentKind,
    Presence,
    PresenceKind,
    ProtocolError,
    ResponseStatus,
    RollCall,
    RollCallAnswer,
    StoredAck,
    Task,
    TaskAck,
)
from provisioning import Enrolment
from yijing.mqtt import Backoff, MqttLink, NotConnected, Will

from .clues import build_clue
from .errors import AgentNotRunning, OutboxError
from .keys import KeyArchive, mark_used, open_archive
from .outbox import Lane, Outbox
from .policy import Reporter, ReportingPolicy
from .tls import tls_files

MB = 1024 * 1024
#: Snapshot frames on the wire at once. A picture ahead of an SOS in the TCP stream delays it
#: by its own transmission time; one at a time bounds that delay to one picture
#: (docs/benchmarks.md, "Slow link").
SNAPSHOTS_IN_FLIGHT = 1
#: How long an accepted dispatch stays on screen (for "arrived") after it was accepted, if its
#: own expiry is sooner: ``expires_ms`` bounds the time to answer, not the walk there.
ON_THE_WAY_S = 1800

T = TypeVar("T")


class PositionSource(Protocol):
    def read(self, now_ms: int) -> Fix | None: ...


@dataclass
class AgentStats:
    published: int = 0
    resent: int = 0
    acked: int = 0
    rejected_downlink: int = 0
    expired_dispatches: int = 0
    expired_tasks: int = 0
    commands: list[Envelope] = field(default_factory=list)


class Agent:
    def __init__(
        self,
        enrolment: Enrolment,
        data_dir: Path,
        *,
        source: PositionSource,
        policy: ReportingPolicy | None = None,
        window: int = 64,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        ident = enrolment.identity
        self.device_id = ident.device_id
        self.policy = policy or ReportingPolicy()
        self.window = window  # most frames unacknowledged on the wire at once
        self._clock = clock
        self._log = logger or logging.getLogger(f"yijing.agent.{ident.device_id}")
        self._source = source
        self._reporter = Reporter(self.policy)
        self.latest_fix: Fix | None = None
        self.clock_skew_ms: int | None = None
        archive = open_archive(data_dir, ident)
        self.endpoint = DeviceEndpoint(
            device_id=ident.device_id,
            key_id=ident.key_id,
            mac_key=ident.mac_key,
            signing_key=ident.signing_key,
            server_key=enrolment.server_key,
            units=ident.units,
            previous_mac_keys=archive.previous(ident.key_id),
        )
        self._sign_off_old_key(enrolment, data_dir, archive)
        self.outbox = Outbox(
            data_dir / "outbox.db",
            self.endpoint,
            clock_ms=self._now_ms,
            budget_bytes=int(self.policy.disk_budget_mb * MB),
        )
        # What other threads hand this loop: MQTT traffic ("msg", "up") and calls ("call").
        self._inbox: queue.SimpleQueue[tuple[str, str, bytes] | Callable[[], object]] = (
            queue.SimpleQueue()
        )
        # seq -> (when sent, which connection it went out on, lane)
        self._inflight: dict[int, tuple[float, int, Lane]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread: threading.Thread | None = None
        self._next_heartbeat = 0.0
        self._dispatches_seen: set[str] = set()
        self._tasks_seen: set[str] = set()
        #: The dispatch ringing now (not yet accepted or declined).
        self.active_dispatch: DispatchCommand | None = None
        #: The dispatch accepted, until cancelled or ``ON_THE_WAY_S`` after accepting (or its
        #: expiry, if later): what "arrived" answers. ``on_scene_ms``: when arrival was said.
        self.current_dispatch: DispatchCommand | None = None
        self.accepted_ms: int | None = None
        self.on_scene_ms: int | None = None
        #: The last cancel that stopped a dispatch on this terminal, and when it came.
        self.last_cancel: tuple[DispatchCancel, int] | None = None
        #: Published tasks not yet read nor expired, by task id (replaced whole on each change).
        self.tasks: dict[str, Task] = {}
        #: Called on the agent's thread when a fresh dispatch arrives (the shoulder light
        #: flashes, the screen shows it).
        self.dispatch_listeners: list[Callable[[DispatchCommand], None]] = []
        #: Called on the agent's thread with (dispatch id, reason) when a dispatch shown on
        #: this terminal stops: cancelled by the station ("cancelled: ...") or expired.
        self.cancel_listeners: list[Callable[[str, str], None]] = []
        #: Called on the agent's thread when a fresh task arrives.
        self.task_listeners: list[Callable[[Task], None]] = []
        #: Called on the agent's thread after an event is recorded (the camera snaps an SOS).
        self.event_listeners: list[Callable[[EventKind], None]] = []
        #: Called on the agent's thread with each dispatch answer sent (accepted, on scene).
        self.answer_listeners: list[Callable[[ResponseStatus], None]] = []
        #: Called with a request id when the station asks for a picture (a spot check).
        self.snapshot_requests: list[Callable[[str], None]] = []
        self.stats = AgentStats()
        self._seen_errors: set[str] = set()
        broker = enrolment.broker
        will = self.endpoint.will(sent_ms=self._now_ms())
        self.link = MqttLink(
            client_id=ident.device_id,  # one stable id: a reconnect takes over the old session
            host=broker.host,
            port=broker.port,
            protocol=broker.protocol,
            subscriptions=[(f, 1) for f in self.endpoint.subscriptions],
            on_message=lambda topic, payload: self._inbox.put(("msg", topic, payload)),
            on_connect=lambda: self._inbox.put(("up", str(self.link.connects), b"")),
            will=Will(will.topic, will.payload),
            # Keep the broker session a day so commands sent while the 4G link is down wait.
            session_expiry_s=86_400,
            # An mqtts:// bundle: the terminal's certificate is its broker identity (the
            # broker takes the user name from it), so the ACL confines it to its own topics.
            tls=tls_files(enrolment, data_dir),
            backoff=backoff,
            logger=self._log.getChild("mqtt"),
        )

    def _sign_off_old_key(self, enrolment: Enrolment, data_dir: Path, archive: KeyArchive) -> None:
        """After a key rotation: a checkpoint, signed with the old key, over the frames the old
        key sealed, before anything is sealed under the new one (see ``agent.keys``)."""
        ident = enrolment.identity
        old = archive.last_key_id
        if old is not None and old != ident.key_id and old in archive.keys:
            mac_key, signing_key = archive.keys[old]
            old_endpoint = DeviceEndpoint(
                device_id=ident.device_id,
                key_id=old,
                mac_key=mac_key,
                signing_key=signing_key,
                server_key=enrolment.server_key,
                units=ident.units,
            )
            outbox = Outbox(data_dir / "outbox.db", old_endpoint, clock_ms=self._now_ms)
            try:
                outbox.flush_checkpoint()
            finally:
                outbox.close()
            self._log.info("key rotated from generation %d to %d", old, ident.key_id)
        mark_used(data_dir, archive, ident.key_id)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def now_ms(self) -> int:
        """The agent's clock, ms since the epoch."""
        return self._now_ms()

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
        self.link.stop(with_will=True)  # the station sees "offline" at once, not at a timeout
        self.outbox.close()

    def run(self) -> None:
        self._loop_thread = threading.current_thread()  # for call(): the loop's own thread
        next_sample = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_sample:
                self._guarded(self.sample)
                # Receivers report once a second; sampling faster only finds the same fix.
                next_sample = now + min(1.0, self.policy.interval_moving_s)
            if self.link.connected and now >= self._next_heartbeat:
                self._guarded(self.heartbeat)
                self._next_heartbeat = now + self.policy.heartbeat_s
            self.pump()
            # A heartbeat due while the link is down waits for the link ("up" in the inbox
            # wakes this loop); counting it here would make the wait 0 and spin a core.
            due = min(next_sample, self._next_heartbeat) if self.link.connected else next_sample
            wait = max(0.0, due - self._clock())
            self._drain_inbox(min(wait, 0.2))
            self.prune()
        self.outbox.flush_checkpoint()
        self.pump()

    # --- what the terminal knows and says ------------------------------------------------------

    def sample(self) -> Fix | None:
        """Read the position source; record the fix if the reporting policy wants it."""
        fix = self._source.read(self._now_ms())
        if fix is None:
            return None
        self.latest_fix = fix
        if fix.source is FixSource.GNSS:
            self.clock_skew_ms = self._now_ms() - fix.time_ms
        if self._reporter.should_record(fix):
            self.outbox.record_fix(fix)
            self._reporter.recorded(fix)
        return fix

    def heartbeat(self) -> None:
        self.outbox.put(
            Presence(kind=PresenceKind.HEARTBEAT, fix=None, clock_skew_ms=self.clock_skew_ms)
        )

    def raise_event(
        self, kind: EventKind, *, value: int | None = None, detail: str | None = None
    ) -> int:
        """An event (SOS, button, tamper, battery) with the current position, sent at once."""
        fix = self.latest_fix
        if fix is not None:
            self.outbox.record_fix(fix)  # the track shows where it happened, whatever the policy
            self._reporter.recorded(fix)
        event = Event(kind=kind, time_ms=self._now_ms(), value=value, fix=fix, detail=detail)
        seq = self.outbox.put(event)
        for listener in self.event_listeners:
            listener(kind)
        return seq

    def check_in(self, shift_id: str) -> int:
        return self._shift(PresenceKind.CHECK_IN, shift_id)

    def check_out(self, shift_id: str) -> int:
        return self._shift(PresenceKind.CHECK_OUT, shift_id)

    def _shift(self, kind: PresenceKind, shift_id: str) -> int:
        presence = Presence(
            kind=kind, shift_id=shift_id, fix=self.latest_fix, clock_skew_ms=self.clock_skew_ms
        )
        return self.outbox.put(presence)

    def _guarded(self, action: Callable[[], object]) -> None:
        """Run one step; a refusal is logged (once per kind) and the loop goes on.

        A terminal without a real-time clock reads 1970 at boot, which the protocol refuses
        until NTP or GNSS time arrives; a full disk fails the outbox. Neither may stop the
        loop that delivers what is already stored.
        """
        try:
            action()
        except (ProtocolError, OutboxError) as exc:
            key = f"{type(exc).__name__}:{getattr(exc, 'field', '')}"
            self._log_once(key, "not recorded: %s", exc)

    def _log_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._seen_errors:
            self._seen_errors.add(key)
            self._log.warning(message, *args)

    # --- sending -------------------------------------------------------------------------------

    def pump(self) -> None:
        """Publish what is due: new frames up to the window, and frames whose ack is late."""
        if not self.link.connected:
            return
        now = self._clock()
        timeout = self.policy.ack_timeout_s
        late = {s for s, (t, _, _) in self._inflight.items() if now - t >= timeout}
        for seq in late:
            del self._inflight[seq]
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        connection = self.link.connects
        # Lazily: each frame goes on the wire as soon as it is sealed, so after a day offline
        # the newest fix is not kept waiting while the rest of the window is sealed.
        pictures = sum(1 for _, _, lane in self._inflight.values() if lane is Lane.SNAPSHOT)
        items = self.outbox.iter_items(
            room,
            exclude=set(self._inflight),
            lane_room={Lane.SNAPSHOT: SNAPSHOTS_IN_FLIGHT - pictures},
        )
        try:
            for item in items:
                try:
                    self.link.publish(item.topic, item.payload, qos=1)
                except NotConnected:
                    return  # what was sealed stays in the outbox, to go out on reconnect
                self._inflight[item.seq] = (now, connection, item.lane)
                self.stats.published += 1
                if item.seq in late:
                    self.stats.resent += 1
        except (ProtocolError, OutboxError) as exc:
            self._log_once(f"pump:{type(exc).__name__}", "cannot prepare frames: %s", exc)
        finally:
            items.close()

    def submit(self, action: Callable[[], object]) -> None:
        """Run ``action`` on the agent's thread, which owns the outbox (thread-safe).

        For other threads: the MCU bridge (SOS pressed), a local UI (dispatch accepted).
        """
        self._inbox.put(action)

    def call(self, action: Callable[[], T], timeout: float = 5.0) -> T:
        """Run ``action`` on the agent's thread and return its result (thread-safe).

        Its exception, if any, is raised here. ``AgentNotRunning`` if the loop has not run it
        within ``timeout`` s (the action may still run later). On the agent's thread itself
        the action runs at once.
        """
        if threading.current_thread() is self._loop_thread:
            return action()
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return  # the caller gave up: do not act on a stale request
            try:
                future.set_result(action())
            except Exception as exc:  # handed to the caller, who decides what it means
                future.set_exception(exc)

        self._inbox.put(run)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise AgentNotRunning(f"the agent loop did not answer within {timeout} s") from None

    def _drain_inbox(self, timeout: float) -> None:
        try:
            entry = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if callable(entry):
                self._guarded(entry)
            else:
                self._handle(*entry)
            try:
                entry = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, kind: str, topic: str, payload: bytes) -> None:
        if kind == "up":
            # A new connection: what went out on an older one may be lost with it; send again,
            # and say at once that we are here.
            connection = int(topic)
            stale = [s for s, (_, c, _) in self._inflight.items() if c < connection]
            for seq in stale:
                del self._inflight[seq]
            self._next_heartbeat = self._clock()
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
            self.apply_config(message)
        elif isinstance(message, DispatchCommand):
            self._dispatched(message)
        elif isinstance(message, DispatchCancel):
            self._cancelled(message)
        elif isinstance(message, Task):
            self._task(message)
        elif isinstance(message, RollCall):
            self._roll_call(message)
        else:
            self.stats.commands.append(envelope)

    # --- dispatch ----------------------------------------------------------------------------

    def _dispatched(self, command: DispatchCommand) -> None:
        """A dispatch arrived: say it was delivered and ring, unless it is stale or a repeat.

        The expiry is the agent's to enforce: a broker may deliver a queued command hours
        late (the terminal was off), and a stale dispatch must never ring.
        """
        if command.dispatch_id in self._dispatches_seen:
            return  # QoS 1 redelivery, or the server resending: answered already
        self._dispatches_seen.add(command.dispatch_id)
        if self._now_ms() >= command.expires_ms:
            self.stats.expired_dispatches += 1
            self._log.info("dispatch %s arrived expired; not shown", command.dispatch_id)
            return
        self.active_dispatch = command
        self._respond(command, ResponseStatus.DELIVERED)
        for listener in self.dispatch_listeners:
            listener(command)

    def _roll_call(self, call: RollCall) -> None:
        """A spot check: answer at once with the freshest fix, and a picture if asked."""
        if self._now_ms() >= call.deadline_ms:
            self._log.info("roll call %s arrived after its deadline", call.rollcall_id)
            return
        fix = self.latest_fix
        self._guarded(
            lambda: self.outbox.put(
                RollCallAnswer(rollcall_id=call.rollcall_id, time_ms=self._now_ms(), fix=fix)
            )
        )
        if call.want_snapshot:
            for listener in self.snapshot_requests:
                listener(call.rollcall_id)

    def answer_dispatch(self, status: ResponseStatus, *, reason: str | None = None) -> bool:
        """The volunteer accepted or declined the ringing dispatch (button, screen)."""
        command = self.active_dispatch
        if command is None or self._now_ms() >= command.expires_ms:
            self.active_dispatch = None
            return False
        self._respond(command, status, reason=reason)
        if status in (ResponseStatus.ACCEPTED, ResponseStatus.DECLINED):
            self.active_dispatch = None
        if status is ResponseStatus.ACCEPTED:
            self.current_dispatch = command
            self.accepted_ms = self._now_ms()
            self.on_scene_ms = None
        return True

    def arrived(self) -> bool:
        """The volunteer is at the place of the accepted dispatch: answer ``on_scene``, once.

        False if no dispatch is accepted (none, cancelled, given up) or arrival was said.
        """
        self.prune()
        command = self.current_dispatch
        if command is None or self.on_scene_ms is not None:
            return False
        self._respond(command, ResponseStatus.ON_SCENE)
        self.on_scene_ms = self._now_ms()
        return True

    def _cancelled(self, cancel: DispatchCancel) -> None:
        """The station called a dispatch off. Remembered even if it never arrived here, so a
        command delivered late (the broker's queue, a resend) never rings."""
        self._dispatches_seen.add(cancel.dispatch_id)
        stopped = False
        active = self.active_dispatch
        if active is not None and active.dispatch_id == cancel.dispatch_id:
            self.active_dispatch = None
            stopped = True
        current = self.current_dispatch
        if current is not None and current.dispatch_id == cancel.dispatch_id:
            self.current_dispatch = None
            stopped = True
        if stopped:
            self.last_cancel = (cancel, self._now_ms())
            reason = f"cancelled: {cancel.reason}" if cancel.reason else "cancelled"
            for listener in self.cancel_listeners:
                listener(cancel.dispatch_id, reason)

    def prune(self) -> None:
        """Forget what has expired: a ringing dispatch, an accepted one given up, old tasks."""
        now = self._now_ms()
        active = self.active_dispatch
        if active is not None and now >= active.expires_ms:
            self.active_dispatch = None
            for listener in self.cancel_listeners:
                listener(active.dispatch_id, "expired")
        current = self.current_dispatch
        if current is not None:
            keep_until = max(current.expires_ms, (self.accepted_ms or 0) + ON_THE_WAY_S * 1000)
            if now >= keep_until:
                self.current_dispatch = None
        if any(now >= t.expires_ms for t in self.tasks.values()):
            self.tasks = {k: t for k, t in self.tasks.items() if now < t.expires_ms}

    # --- tasks and clues -----------------------------------------------------------------------

    def _task(self, task: Task) -> None:
        """A published task: kept to be read, unless it is a repeat or already expired."""
        if task.task_id in self._tasks_seen:
            return  # QoS 1 redelivery, or the server resending before our ack arrived
        self._tasks_seen.add(task.task_id)
        if self._now_ms() >= task.expires_ms:
            self.stats.expired_tasks += 1
            self._log.info("task %s arrived expired; not shown", task.task_id)
            return
        self.tasks = {**self.tasks, task.task_id: task}  # replaced whole: readers see no tear
        for listener in self.task_listeners:
            listener(task)

    def ack_task(self, task_id: str) -> bool:
        """The volunteer read the task: send ``TaskAck`` and stop showing it."""
        self.prune()
        if task_id not in self.tasks:
            return False
        self.outbox.put(TaskAck(task_id=task_id, time_ms=self._now_ms()))
        self.tasks = {k: t for k, t in self.tasks.items() if k != task_id}
        return True

    def report_clue(
        self,
        text: str,
        category: IncidentKind = IncidentKind.OTHER,
        photo_jpeg: bytes | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> str:
        """Send a clue with the latest position, and its photo if any; return the clue id.

        The photo must be a JPEG of at most ``MAX_JPEG_BYTES``; its size is read from the
        JPEG unless given. ``ReportError`` (nothing sent) if it is not usable.
        """
        clue, snapshot = build_clue(
            text,
            category,
            fix=self.latest_fix,
            now_ms=self._now_ms(),
            photo_jpeg=photo_jpeg,
            width=width,
            height=height,
        )
        # The text goes ahead in the urgent lane; the picture waits its turn in the picture lane
        # (and, like every picture, is what the disk budget evicts first).
        self.outbox.put(clue)
        if snapshot is not None:
            self.outbox.record_snapshot(snapshot)
        return clue.clue_id

    def _respond(
        self, command: DispatchCommand, status: ResponseStatus, *, reason: str | None = None
    ) -> None:
        fix = self.latest_fix
        response = DispatchResponse(
            dispatch_id=command.dispatch_id,
            status=status,
            time_ms=self._now_ms(),
            fix=fix,
            reason=reason,
        )
        self._guarded(lambda: self.outbox.put(response))
        for listener in self.answer_listeners:
            listener(status)

    def apply_config(self, push: ConfigPush) -> None:
        self.policy = self.policy.updated(push)
        self._reporter.policy = self.policy
        self.outbox.budget_bytes = int(self.policy.disk_budget_mb * MB)
        self._log.info("config version %s applied: %s", push.version, self.policy)
