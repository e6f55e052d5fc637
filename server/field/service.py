"""Field reports, run: tasks (任务发布), clues (线索举报) and SOS alerts.

``on_accepted`` runs on the ingest thread with every batch of newly stored frames: it must be
cheap for the batches it has nothing to do with (nearly all: positions), so it sorts by exact
message type first and returns. It never raises: a failure is logged, and ingest, which has
already acknowledged the frames, goes on; ``replay`` at start-up re-applies what a crash may
have cut short. Web threads publish tasks, handle clues and acknowledge alerts; ``tick`` (the
lead's one-second loop) expires tasks and retries sends.

Every change is written first (the record and its audit row, one transaction), then told to
the live state (``LiveView.set_sos``) and the feed (``HubView.publish_event``). An SOS reaches
the feed from ``on_accepted`` itself, not from a later tick: the officer's page must show it
within a second of the frame reaching the server.

Applying a frame twice changes nothing: a clue is keyed (device, clue id), a photo attaches
only to a clue without one, the first acknowledgement of a task wins, and each SOS frame
(device, seq) is counted by at most one alert.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from protocol import Clue, Event, EventKind, ProtocolError, Snapshot, SnapshotTrigger, TaskAck
from protocol import decode as decode_frame

from ..ingest import Accepted
from ..store import SnapshotMeta
from .errors import AlreadyDone, BadRequest, NotFound
from .model import (
    DEFAULT_PRIORITY,
    DEFAULT_TTL_S,
    MAX_TTL_S,
    MIN_TTL_S,
    NOTE_MAX,
    TEXT_MAX,
    TITLE_MAX,
    Alert,
    AlertState,
    ClueReport,
    ClueState,
    FieldTask,
    Step,
    Subject,
    TargetKind,
    check_place,
    check_text,
    fix_doc,
    terminal_actor,
)
from .store import FieldStore
from .targets import OrgView, holder, resolve
from .tasks import Send, TaskDesk

#: The message types ``on_accepted`` looks at; every other frame costs one set lookup.
_MINE = frozenset({Event, Snapshot, TaskAck, Clue})
#: Their TYPE codes, for ``replay``.
#: Frames replayed whole. Clue photos are replayed from the pictures' metadata instead: the
#: day's snapshot frames hold every JPEG, which start-up must not read.
REPLAY_TYPES = (Event.TYPE, TaskAck.TYPE, Clue.TYPE)
_REPLAY_CHUNK = 500
MAX_LIST = 500


class LiveView(Protocol):
    """What field reports ask of the live state (``server.live.LiveState`` has it)."""

    def get(self, device_id: str, /) -> dict[str, Any] | None: ...

    def set_sos(self, device_id: str, raised_ms: int | None, /) -> None: ...


class HubView(Protocol):
    """The live feed's event lane (``server.live.Hub``)."""

    def publish_event(self, topic: str, data: dict[str, Any], unit_id: str | None, /) -> None: ...


class FrameSource(Protocol):
    """Stored frames for ``replay`` (``server.store.Store``)."""

    def frames_received(
        self, type_codes: Collection[int], since_ms: int, /
    ) -> list[tuple[str, int, int, bytes]]: ...

    def snapshots_received(self, trigger: str, since_ms: int, /) -> list[SnapshotMeta]: ...


def _newer(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if a is None or b is None:
        return a if b is None else b
    return b if b["time_ms"] >= a["time_ms"] else a


def parse_clue_key(key: str) -> tuple[str, str]:
    """``<device_id>:<clue_id>`` → (device_id, clue_id); ``NotFound`` for anything else."""
    device, sep, clue_id = key.partition(":")
    if not sep or not device or not clue_id:
        raise NotFound(f"no clue {key!r} (ids are <device_id>:<clue_id>)")
    return device, clue_id


class FieldReports:
    def __init__(
        self,
        *,
        path: Path,
        live: LiveView,
        org: OrgView,
        store: FrameSource,
        hub: HubView,
        send: Send,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        """``send(device_id, message, expiry_s)`` publishes one command and raises
        ``yijing.mqtt.LinkError`` (``NotConnected``) when the broker cannot take it.
        ``clock`` is in seconds. Open alerts set the live SOS again at once (``start``)."""
        self._store = FieldStore(path)
        self._live = live
        self._org = org
        self._frames = store
        self._hub = hub
        self._clock = clock
        self._log = logger or logging.getLogger("yijing.field")
        # Clue and alert decisions (read, decide, write) happen one at a time.
        self._lock = threading.RLock()
        self._tasks = TaskDesk(self._store, send, self._emit, self._now_ms, self._log)
        self.start()

    def start(self) -> None:
        """Tell the live state of every open alert (again): after a restart the map must
        show each terminal still in SOS. Harmless to call twice."""
        for alert in self._store.alerts(units=None, state=AlertState.OPEN, limit=2**31):
            self._set_sos(alert.device_id, alert.raised_ms)

    def close(self) -> None:
        self._store.close()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _emit(self, topic: str, doc: dict[str, Any], unit_id: str | None) -> None:
        try:
            self._hub.publish_event(topic, doc, unit_id)
        except Exception:  # the feed's failure must not undo a recorded change
            self._log.exception("field: %s event not published", topic)

    def _set_sos(self, device_id: str, raised_ms: int | None) -> None:
        try:
            self._live.set_sos(device_id, raised_ms)
        except Exception:
            self._log.exception("field: live SOS of %s not set to %s", device_id, raised_ms)

    def _live_doc(self, device_id: str) -> dict[str, Any] | None:
        try:
            return self._live.get(device_id)
        except Exception:
            self._log.exception("field: live state of %s unavailable", device_id)
            return None

    # --- tasks --------------------------------------------------------------------------------

    def publish_task(
        self,
        *,
        title: str,
        target_kind: str,
        target: str,
        actor: str,
        text: str = "",
        priority: int = DEFAULT_PRIORITY,
        ttl_s: int = DEFAULT_TTL_S,
        lat: float | None = None,
        lon: float | None = None,
        units: Collection[str] | None = None,
        unit_id: str | None = None,
    ) -> FieldTask:
        """Publish a task to every terminal of the target inside ``units`` (the caller's;
        None: all) and send it. A unit target's task belongs to that unit; a post-kind
        target's to ``unit_id`` (the caller's scope; None: only unscoped people see it).

        Raises ``BadRequest`` naming the field, ``NobodyReached`` when no terminal would get
        it. A send the broker link refuses does not fail the task: tick sends it later.
        """
        check_text("title", title, TITLE_MAX)
        check_text("text", text, TEXT_MAX, required=False)
        check_text("actor", actor, 200)
        if isinstance(priority, bool) or not isinstance(priority, int) or priority not in (1, 2, 3):
            raise BadRequest("priority", f"{priority!r} is not 1, 2 or 3")
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int):
            raise BadRequest("ttl_s", f"{ttl_s!r} is not a whole number of seconds")
        if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise BadRequest("ttl_s", f"{ttl_s} is outside [{MIN_TTL_S}, {MAX_TTL_S}]")
        check_place(lat, lon)
        try:
            kind = TargetKind(target_kind)
        except ValueError:
            raise BadRequest("target_kind", f"{target_kind!r}: one of unit, post_kind") from None
        check_text("target", target, 64)
        reached = resolve(self._org, kind, target, units=units, now_ms=self._now_ms())
        task = self._tasks.publish(
            title=title,
            text=text,
            priority=priority,
            target_kind=kind,
            target=target,
            unit_id=target if kind is TargetKind.UNIT else unit_id,
            ttl_s=ttl_s,
            actor=actor,
            lat=None if lat is None else float(lat),
            lon=None if lon is None else float(lon),
            reached=reached,
        )
        self._log.info(
            "task %s by %s to %s %s: %d terminals", task.task_id, actor, kind, target, task.total
        )
        return task

    def task(self, task_id: str) -> FieldTask | None:
        return self._tasks.task(task_id)

    def tasks(
        self,
        *,
        units: Collection[str] | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[FieldTask]:
        """Tasks of ``units`` (None: all), newest first; ``state`` "active", "expired" or
        None (both)."""
        states: dict[str | None, bool | None] = {
            None: None,
            "all": None,
            "active": False,
            "expired": True,
        }
        if state not in states:
            raise BadRequest("state", f"{state!r}: one of active, expired, all")
        expired = states[state]
        return self._tasks.tasks(units=units, expired=expired, limit=_limit(limit))

    def task_json(self, task: FieldTask) -> dict[str, Any]:
        return task.to_json(self._now_ms())

    def steps(self, subject: Subject, subject_id: str) -> list[Step]:
        """The audit of one task ("task", id), clue ("clue", key) or alert ("alert", id)."""
        return self._store.steps(subject, subject_id)

    # --- clues --------------------------------------------------------------------------------

    def clue(self, key: str) -> ClueReport | None:
        try:
            device, clue_id = parse_clue_key(key)
        except NotFound:
            return None
        return self._store.clue(device, clue_id)

    def clues(
        self,
        *,
        units: Collection[str] | None = None,
        state: ClueState | None = None,
        limit: int = 100,
    ) -> list[ClueReport]:
        return self._store.clues(units=units, state=state, limit=_limit(limit))

    def handle_clue(self, key: str, *, actor: str, note: str | None = None) -> ClueReport:
        """Mark a clue handled. ``NotFound``; ``AlreadyDone`` if someone already did."""
        check_text("actor", actor, 200)
        if note is not None:
            check_text("note", note, NOTE_MAX, required=False)
        device, clue_id = parse_clue_key(key)
        with self._lock:
            clue = self._store.clue(device, clue_id)
            if clue is None:
                raise NotFound(f"no clue {key!r}")
            if clue.state is ClueState.HANDLED:
                raise AlreadyDone(f"clue {key} was handled by {clue.handled_by}")
            now = self._now_ms()
            done = replace(
                clue, state=ClueState.HANDLED, handled_by=actor, handled_ms=now, note=note
            )
            self._store.handle_clue(
                done, Step(now, actor, Subject.CLUE, key, "handled", device, note)
            )
            self._emit("clue", done.to_json(), done.unit_id)
        return done

    # --- alerts -------------------------------------------------------------------------------

    def alert(self, alert_id: str) -> Alert | None:
        return self._store.alert(alert_id)

    def alerts(
        self,
        *,
        units: Collection[str] | None = None,
        state: AlertState | None = AlertState.OPEN,
        limit: int = 100,
    ) -> list[Alert]:
        return self._store.alerts(units=units, state=state, limit=_limit(limit))

    def alert_json(self, alert: Alert) -> dict[str, Any]:
        """The alert's document, with the terminal's latest picture from the live state."""
        live = self._live_doc(alert.device_id)
        return alert.to_json(live.get("snapshot") if live is not None else None)

    def ack_alert(self, alert_id: str, *, actor: str, note: str | None = None) -> Alert:
        """Acknowledge an open alert: the terminal's SOS ends on the map. ``NotFound``;
        ``AlreadyDone`` if someone already did."""
        check_text("actor", actor, 200)
        if note is not None:
            check_text("note", note, NOTE_MAX, required=False)
        with self._lock:
            alert = self._store.alert(alert_id)
            if alert is None:
                raise NotFound(f"no alert {alert_id!r}")
            if alert.state is AlertState.ACKED:
                raise AlreadyDone(f"alert {alert_id} was acknowledged by {alert.acked_by}")
            now = self._now_ms()
            acked = replace(alert, state=AlertState.ACKED, acked_by=actor, acked_ms=now, note=note)
            step = Step(now, actor, Subject.ALERT, alert_id, "acked", alert.device_id, note)
            self._store.put_alert(acked, None, [step])
            self._set_sos(alert.device_id, None)
            self._emit("alert", self.alert_json(acked), acked.unit_id)
        return acked

    # --- what terminals send ------------------------------------------------------------------

    def on_accepted(self, batch: Sequence[Accepted]) -> None:
        """Apply newly stored frames (on the ingest thread). Never raises."""
        try:
            self._apply(batch, resend=True)
        except Exception:
            self._log.exception("field: a batch of %d frames not applied", len(batch))

    def replay(self, since_ms: int) -> int:
        """Re-apply the stored frames of our types received at or after ``since_ms`` (at
        start-up: what ingest stored while this service was down or cut short). Changes
        nothing already applied, sends nothing. Returns how many frames were read."""
        rows = self._frames.frames_received(REPLAY_TYPES, since_ms)
        batch: list[Accepted] = []
        for device, seq, received_ms, payload in rows:
            try:
                message = decode_frame(payload).envelope.message
            except ProtocolError as exc:  # stored frames were verified; this is damage
                self._log.error("field: stored frame %s/%d unreadable: %s", device, seq, exc)
                continue
            batch.append(Accepted(device, seq, message, received_ms))
        for start in range(0, len(batch), _REPLAY_CHUNK):
            self._apply(batch[start : start + _REPLAY_CHUNK], resend=False)
        photos = self._frames.snapshots_received(SnapshotTrigger.CLUE.value, since_ms)
        for p in photos:
            if p.request_id is None:
                continue
            try:
                self._photo(p.device_id, p.request_id, p.sha256, p.received_ms)
            except Exception:
                self._log.exception("field: photo %s/%d not applied", p.device_id, p.seq)
        return len(batch) + len(photos)

    def tick(self) -> None:
        """Expire tasks, retry refused sends (the lead's one-second loop). Never raises."""
        try:
            self._tasks.tick()
        except Exception:
            self._log.exception("field: tick failed")

    def _apply(self, batch: Sequence[Accepted], *, resend: bool) -> None:
        sos: list[Accepted] = []
        clues: list[Accepted] = []
        photos: list[Accepted] = []
        acks: list[Accepted] = []
        for a in batch:
            m = a.message
            if type(m) not in _MINE:
                continue
            if isinstance(m, Event):
                if m.kind is EventKind.SOS:
                    sos.append(a)
            elif isinstance(m, Snapshot):
                if m.trigger is SnapshotTrigger.CLUE and m.request_id is not None:
                    photos.append(a)
            elif isinstance(m, TaskAck):
                acks.append(a)
            elif isinstance(m, Clue):
                clues.append(a)
        # Each part on its own: a failure in one must not cost an SOS its alert.
        for part, items in (
            (self._sos, sos),
            (self._clue, clues),
            (self._photo_frame, photos),
        ):
            for a in items:
                try:
                    part(a)
                except Exception:
                    self._log.exception("field: frame %s/%d not applied", a.device_id, a.seq)
        if acks:
            try:
                self._tasks.apply_acks(acks)
            except Exception:
                self._log.exception("field: %d task acknowledgements not applied", len(acks))
        if resend and self._tasks.watching:
            try:
                self._tasks.heard_from(batch)
            except Exception:
                self._log.exception("field: tasks not sent again")

    def _sos(self, a: Accepted) -> None:
        event = a.message
        assert isinstance(event, Event)
        device = a.device_id
        with self._lock:
            if self._store.frame_counted(device, a.seq):
                return
            if event.fix is not None:
                fix: Mapping[str, Any] | None = fix_doc(event.fix)
            else:
                live = self._live_doc(device)
                fix = live.get("fix") if live is not None else None
            actor = terminal_actor(device)
            current = self._store.open_alert(device)
            if current is None:
                who = holder(self._org, device)
                alert = Alert(
                    alert_id=f"al-{a.received_ms:x}-{secrets.token_hex(3)}",
                    device_id=device,
                    # The server's clock, as every time here: a terminal's may be wrong.
                    raised_ms=a.received_ms,
                    last_ms=a.received_ms,
                    unit_id=who.unit_id,
                    volunteer_id=who.volunteer_id,
                    name=who.name,
                    fix=fix,
                )
                step = Step(
                    a.received_ms, actor, Subject.ALERT, alert.alert_id, "raised", device,
                    f"pressed at {event.time_ms}",
                )  # fmt: skip
            else:
                alert = replace(
                    current,
                    count=current.count + 1,
                    last_ms=max(current.last_ms, a.received_ms),
                    fix=_newer(current.fix, fix),
                )
                step = Step(
                    a.received_ms, actor, Subject.ALERT, alert.alert_id, "repeated", device,
                    f"count {alert.count}, pressed at {event.time_ms}",
                )  # fmt: skip
            self._store.put_alert(alert, (device, a.seq), [step])
            if current is None:
                self._set_sos(device, alert.raised_ms)
                self._log.warning("SOS from %s (%s): alert %s", device, alert.name, alert.alert_id)
            self._emit("alert", self.alert_json(alert), alert.unit_id)

    def _clue(self, a: Accepted) -> None:
        m = a.message
        assert isinstance(m, Clue)
        who = holder(self._org, a.device_id)
        clue = ClueReport(
            device_id=a.device_id,
            clue_id=m.clue_id,
            time_ms=m.time_ms,
            received_ms=a.received_ms,
            text=m.text,
            category=m.category,
            unit_id=who.unit_id,
            volunteer_id=who.volunteer_id,
            name=who.name,
            lat=m.fix.lat if m.fix is not None else None,
            lon=m.fix.lon if m.fix is not None else None,
        )
        step = Step(
            a.received_ms, terminal_actor(a.device_id), Subject.CLUE, clue.key, "reported",
            a.device_id, m.category.value,
        )  # fmt: skip
        with self._lock:
            stored = self._store.add_clue(clue, [step])
            if stored is not None:
                self._emit("clue", stored.to_json(), stored.unit_id)

    def _photo_frame(self, a: Accepted) -> None:
        m = a.message
        assert isinstance(m, Snapshot) and m.request_id is not None
        self._photo(a.device_id, m.request_id, m.sha256.hex(), a.received_ms)

    def _photo(self, device_id: str, clue_id: str, sha: str, received_ms: int) -> None:
        key = f"{device_id}:{clue_id}"
        step = Step(
            received_ms, terminal_actor(device_id), Subject.CLUE, key, "photo", device_id, sha
        )
        with self._lock:
            clue = self._store.attach_photo(device_id, clue_id, sha, received_ms, step)
            if clue is not None:
                self._emit("clue", clue.to_json(), clue.unit_id)


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise BadRequest("limit", f"{limit!r} is not a whole number in [1, {MAX_LIST}]")
    return limit
