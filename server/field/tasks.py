"""Tasks, run: publish one to every terminal of its target, note acknowledgements, send again
when a send failed or a terminal comes back, note expiry.

A task goes out as one ``Task`` command per terminal, so each terminal's reading is
acknowledged on its own (``TaskAck``). The broker keeps a queued command for ``ttl_s``
(MQTT 5 message expiry), but a terminal that was away may come back with a new session and
nothing queued; so an unacknowledged task is sent again when its terminal is heard from
``RESEND_AFTER_MS`` after the last send. A send the broker link refused
(``yijing.mqtt.LinkError``: ``NotConnected``) is retried by ``tick`` until the task expires.

What may still need sending is kept in memory (``_due``: device → task → state), rebuilt from
the store at start-up, so a batch from a terminal with nothing pending costs one dict lookup.
The lock guards that index and the resends; the first sends of a new task, possibly many, go
out without it, so ingest never waits behind a district-wide publication.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol import Message, Task, TaskAck
from yijing.mqtt import LinkError

from ..ingest import Accepted
from .model import (
    EVENT_TARGETS_MAX,
    RESEND_AFTER_MS,
    SYSTEM,
    FieldTask,
    Step,
    Subject,
    TargetKind,
    TaskTarget,
    terminal_actor,
)
from .store import FieldStore
from .targets import Holder

#: ``send(device_id, message, expiry_s)`` publishes one command; raises ``LinkError`` when the
#: broker link cannot take it.
Send = Callable[[str, Message, int], None]
#: ``emit(topic, doc, unit_id)`` publishes an event to the live feed; never raises.
Emit = Callable[[str, dict[str, Any], str | None], None]


@dataclass
class _Due:
    """A target not yet acknowledged, of a task not yet expired."""

    expires_ms: int
    last_sent_ms: int | None  # the latest send the broker took
    needs_send: bool  # never sent, or the latest attempt failed: ``tick`` sends it
    failed: bool  # the store says send_failed (so a new failure is not audited again)


def _message(task: FieldTask) -> Task:
    return Task(
        task_id=task.task_id,
        title=task.title,
        sent_ms=task.created_ms,
        expires_ms=task.expires_ms,
        text=task.text,
        priority=task.priority,
        lat=task.lat,
        lon=task.lon,
    )


class TaskDesk:
    def __init__(
        self,
        store: FieldStore,
        send: Send,
        emit: Emit,
        now_ms: Callable[[], int],
        log: logging.Logger,
    ) -> None:
        self._store = store
        self._send = send
        self._emit = emit
        self._now_ms = now_ms
        self._log = log
        self._lock = threading.RLock()
        self._open: dict[str, int] = store.unexpired_tasks()  # task_id → expires_ms
        self._due: dict[str, dict[str, _Due]] = {}
        for task_id, device, expires, last, needs in store.watched_targets():
            self._due.setdefault(device, {})[task_id] = _Due(expires, last, needs, needs)

    @property
    def watching(self) -> bool:
        """Is any target waiting for an acknowledgement? (ingest's fast path)"""
        return bool(self._due)

    def event(self, task: FieldTask) -> None:
        self._emit(
            "task", task.to_json(self._now_ms(), max_targets=EVENT_TARGETS_MAX), task.unit_id
        )

    # --- publishing ---------------------------------------------------------------------------

    def publish(
        self,
        *,
        title: str,
        text: str,
        priority: int,
        target_kind: TargetKind,
        target: str,
        unit_id: str | None,
        ttl_s: int,
        actor: str,
        lat: float | None,
        lon: float | None,
        reached: Sequence[Holder],
    ) -> FieldTask:
        """Record the task for ``reached`` (recorded before anything is sent: an
        acknowledgement can arrive within milliseconds), then send it to each terminal."""
        now = self._now_ms()
        task = FieldTask(
            task_id=f"tk-{now:x}-{secrets.token_hex(3)}",
            title=title,
            text=text,
            priority=priority,
            target_kind=target_kind,
            target=target,
            unit_id=unit_id,
            created_ms=now,
            created_by=actor,
            expires_ms=now + ttl_s * 1000,
            lat=lat,
            lon=lon,
            targets=tuple(
                TaskTarget(h.device_id, h.unit_id, h.volunteer_id, h.name) for h in reached
            ),
        )
        detail = f"{target_kind.value} {target}: {task.total} terminals"
        published = Step(now, actor, Subject.TASK, task.task_id, "published", detail=detail)
        self._store.add_task(task, [published])
        with self._lock:
            self._open[task.task_id] = task.expires_ms
            for t in task.targets:
                self._due.setdefault(t.device_id, {})[task.task_id] = _Due(
                    task.expires_ms, None, False, False
                )
        self._first_sends(task)
        found = self.task(task.task_id)
        assert found is not None
        self.event(found)
        return found

    def _first_sends(self, task: FieldTask) -> None:
        message = _message(task)
        expiry_s = max(1, math.ceil((task.expires_ms - task.created_ms) / 1000))
        sent: list[tuple[str, str, int]] = []
        failed: list[tuple[str, str]] = []
        steps: list[Step] = []
        down: str | None = None
        try:
            for t in task.targets:
                if down is None:
                    try:
                        self._send(t.device_id, message, expiry_s)
                        sent.append((task.task_id, t.device_id, self._now_ms()))
                        continue
                    except LinkError as exc:
                        down = str(exc) or type(exc).__name__
                # The link is down: the rest would fail the same way; tick tries again.
                failed.append((task.task_id, t.device_id))
                steps.append(self._failed_step(task.task_id, t.device_id, down))
        finally:
            # Also after an unexpected error: what was not sent is retried by tick.
            tried = {d for _, d, _ in sent} | {d for _, d in failed}
            untried = [
                (task.task_id, t.device_id) for t in task.targets if t.device_id not in tried
            ]
            if sent:
                steps.insert(
                    0,
                    Step(
                        self._now_ms(), SYSTEM, Subject.TASK, task.task_id, "sent",
                        detail=f"{len(sent)} of {task.total}",
                    ),
                )  # fmt: skip
            self._store.record_sends(sent, failed, steps)
            with self._lock:
                self._after_sends(sent, failed, untried)

    def _failed_step(self, task_id: str, device: str, why: str) -> Step:
        return Step(self._now_ms(), SYSTEM, Subject.TASK, task_id, "send_failed", device, why)

    def _after_sends(
        self,
        sent: Iterable[tuple[str, str, int]],
        failed: Iterable[tuple[str, str]],
        untried: Iterable[tuple[str, str]] = (),
    ) -> None:
        for tid, device, at in sent:
            due = self._due.get(device, {}).get(tid)
            if due is not None:  # None: acknowledged meanwhile
                due.last_sent_ms, due.needs_send, due.failed = at, False, False
        for tid, device in failed:
            due = self._due.get(device, {}).get(tid)
            if due is not None:
                due.needs_send, due.failed = True, True
        for tid, device in untried:
            due = self._due.get(device, {}).get(tid)
            if due is not None:
                due.needs_send = True

    # --- what terminals say -------------------------------------------------------------------

    def apply_acks(self, acks: Sequence[Accepted]) -> None:
        """The first acknowledgement of each (task, terminal) counts; acknowledgements of
        unknown tasks, or from terminals the task did not go to, are ignored."""
        changed: set[str] = set()
        for a in acks:
            ack = a.message
            assert isinstance(ack, TaskAck)
            # Read when the terminal says, but never after the server had the answer.
            acked_ms = min(ack.time_ms, a.received_ms)
            step = Step(
                a.received_ms, terminal_actor(a.device_id), Subject.TASK, ack.task_id, "acked",
                a.device_id, f"read at {acked_ms}",
            )  # fmt: skip
            if self._store.ack(ack.task_id, a.device_id, acked_ms, step):
                changed.add(ack.task_id)
                with self._lock:
                    waiting = self._due.get(a.device_id)
                    if waiting is not None:
                        waiting.pop(ack.task_id, None)
                        if not waiting:
                            del self._due[a.device_id]
        for task in self._store.tasks_by_id(sorted(changed)):
            self.event(task)

    def heard_from(self, batch: Sequence[Accepted]) -> None:
        """Send again each unacknowledged, unexpired task whose terminal is heard from at
        least ``RESEND_AFTER_MS`` after the task's last send to it."""
        latest: dict[str, int] = {}
        for a in batch:
            if a.device_id in self._due and a.received_ms > latest.get(a.device_id, -1):
                latest[a.device_id] = a.received_ms
        if not latest:
            return
        with self._lock:
            again = [
                (task_id, device, heard)
                for device, heard in latest.items()
                for task_id, due in self._due.get(device, {}).items()
                if not due.needs_send
                and due.last_sent_ms is not None
                and heard - due.last_sent_ms >= RESEND_AFTER_MS
                and heard < due.expires_ms
            ]
            if again:
                self._send_again(again, "resent")

    def _send_again(self, items: Sequence[tuple[str, str, int]], step_name: str) -> None:
        """Send (task, device) again (under the lock); stop at the first refusal: the link is
        down, and the rest would fail the same way."""
        tasks = {t.task_id: t for t in self._store.tasks_by_id(sorted({i[0] for i in items}))}
        now = self._now_ms()
        sent: list[tuple[str, str, int]] = []
        failed: list[tuple[str, str]] = []
        steps: list[Step] = []
        for task_id, device, heard in items:
            task = tasks.get(task_id)
            if task is None or task.expires_ms <= now:
                continue
            expiry_s = max(1, math.ceil((task.expires_ms - now) / 1000))
            try:
                self._send(device, _message(task), expiry_s)
            except LinkError as exc:
                due = self._due[device][task_id]
                if not due.failed:
                    failed.append((task_id, device))
                    steps.append(self._failed_step(task_id, device, str(exc) or "link down"))
                due.needs_send = True
                break
            sent.append((task_id, device, now))
            detail = f"heard from at {heard}" if step_name == "resent" else "retry"
            steps.append(Step(now, SYSTEM, Subject.TASK, task_id, step_name, device, detail))
        self._store.record_sends(sent, failed, steps)
        self._after_sends(sent, failed)
        if failed or step_name == "sent":
            for task in self._store.tasks_by_id(
                sorted({s[0] for s in sent} | {f[0] for f in failed})
            ):
                self.event(task)

    # --- time ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Note expired tasks; retry sends the broker link refused."""
        now = self._now_ms()
        with self._lock:
            expired = sorted(t for t, exp in self._open.items() if exp <= now)
            retry = [
                (task_id, device, now)
                for device, waiting in self._due.items()
                for task_id, due in waiting.items()
                if due.needs_send and due.expires_ms > now
            ]
            if retry:
                self._send_again(retry, "sent")
            if not expired:
                return
            tasks = self._store.tasks_by_id(expired)
            steps = [
                Step(now, SYSTEM, Subject.TASK, t.task_id, "expired",
                     detail=f"{t.acked} of {t.total} acknowledged")
                for t in tasks
            ]  # fmt: skip
            self._store.mark_expired(expired, now, steps)
            gone = set(expired)
            for t in expired:
                del self._open[t]
            for device in list(self._due):
                waiting = self._due[device]
                for t in gone & waiting.keys():
                    del waiting[t]
                if not waiting:
                    del self._due[device]
        for task in tasks:
            self.event(task)

    # --- reading ------------------------------------------------------------------------------

    def task(self, task_id: str) -> FieldTask | None:
        found = self._store.tasks_by_id([task_id])
        return found[0] if found else None

    def tasks(
        self, *, units: Collection[str] | None, expired: bool | None, limit: int
    ) -> list[FieldTask]:
        ids = self._store.task_ids(units=units, expired=expired, now_ms=self._now_ms(), limit=limit)
        return self._store.tasks_by_id(ids)
