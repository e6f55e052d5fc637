"""Tasks, clues and alerts on disk: their own SQLite file (WAL), apart from the frame store.

Apart, because these are the officers' records of what was asked and answered, with their
own life (an audit that is kept), and a bug here must never lock the table ingest writes to.
Every write is one transaction holding the change **and** its audit rows (``steps``), so the
audit can never miss a change nor record one that did not happen. ``steps`` is append-only:
triggers refuse UPDATE and DELETE.

Which change to make is the service's decision (``server.field.service``), under its lock;
the store only writes and reads. One connection, shared by the ingest thread, the tick and
the web threads, behind a lock. sqlite3 errors become ``server.errors.StoreError`` here and
nowhere else.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from protocol import IncidentKind

from ..evidence_db import EvidenceDb, among
from .model import (
    Alert,
    AlertState,
    ClueReport,
    ClueState,
    FieldTask,
    Step,
    Subject,
    TargetKind,
    TaskTarget,
)


def _v1(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    db.table("tasks").create(
        {
            "task_id": str,
            "title": str,
            "text": str,
            "priority": int,
            "target_kind": str,
            "target": str,
            "unit_id": str,
            "created_ms": int,
            "created_by": str,
            "expires_ms": int,
            "lat": float,
            "lon": float,
            # When the tick noted the expiry (NULL: not yet): tasks still to watch are those
            # with NULL here, also after a restart.
            "expired_ms": int,
        },
        pk="task_id",
        not_null={"title", "text", "priority", "target_kind", "target", "created_ms"},
    )
    db.table("tasks").create_index(["created_ms"])
    db.table("tasks").create_index(["unit_id", "created_ms"])
    db.table("task_targets").create(
        {
            "task_id": str,
            "device_id": str,
            "n": int,
            "unit_id": str,
            "volunteer_id": str,
            "name": str,
            "sent_ms": int,
            "last_sent_ms": int,
            "send_failed": int,
            "acked_ms": int,
        },
        pk=("task_id", "device_id"),
        not_null={"n", "send_failed"},
        foreign_keys=[("task_id", "tasks", "task_id")],
    )
    db.table("clues").create(
        {
            "device_id": str,
            "clue_id": str,
            "time_ms": int,
            "received_ms": int,
            "text": str,
            "category": str,
            "unit_id": str,
            "volunteer_id": str,
            "name": str,
            "lat": float,
            "lon": float,
            "photo_sha256": str,
            "state": str,
            "handled_by": str,
            "handled_ms": int,
            "note": str,
        },
        pk=("device_id", "clue_id"),
        not_null={"time_ms", "received_ms", "text", "category", "state"},
    )
    db.table("clues").create_index(["received_ms"])
    # A clue's photo that arrived before the clue itself (the picture lane can overtake it).
    db.table("clue_photos").create(
        {"device_id": str, "clue_id": str, "sha256": str, "received_ms": int},
        pk=("device_id", "clue_id"),
        not_null={"sha256", "received_ms"},
    )
    db.table("alerts").create(
        {
            "alert_id": str,
            "device_id": str,
            "raised_ms": int,
            "last_ms": int,
            "count": int,
            "unit_id": str,
            "volunteer_id": str,
            "name": str,
            "fix": str,  # JSON, ``model.fix_doc`` shape
            "state": str,
            "acked_by": str,
            "acked_ms": int,
            "note": str,
        },
        pk="alert_id",
        not_null={"device_id", "raised_ms", "last_ms", "count", "state"},
    )
    db.table("alerts").create_index(["device_id", "state"])
    db.table("alerts").create_index(["state", "raised_ms"])
    # Which SOS frames an alert has counted: a frame applied twice (replay after a crash)
    # must not count twice.
    db.table("alert_frames").create(
        {"device_id": str, "seq": int, "alert_id": str},
        pk=("device_id", "seq"),
        not_null={"alert_id"},
        foreign_keys=[("alert_id", "alerts", "alert_id")],
    )
    db.table("steps").create(
        {
            "id": int,
            "at_ms": int,
            "actor": str,
            "subject": str,
            "subject_id": str,
            "device_id": str,
            "step": str,
            "detail": str,
        },
        pk="id",
        not_null={"at_ms", "actor", "subject", "subject_id", "step"},
    )
    db.table("steps").create_index(["subject", "subject_id", "id"])
    for action in ("UPDATE", "DELETE"):
        conn.execute(
            f"CREATE TRIGGER steps_no_{action.lower()} BEFORE {action} ON steps "
            "BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END"
        )


MIGRATIONS = [_v1]

_TASK = (
    "task_id, title, text, priority, target_kind, target, unit_id, created_ms, created_by, "
    "expires_ms, lat, lon"
)
_TARGET = "device_id, unit_id, volunteer_id, name, sent_ms, last_sent_ms, send_failed, acked_ms"
_CLUE = (
    "device_id, clue_id, time_ms, received_ms, text, category, unit_id, volunteer_id, name, "
    "lat, lon, photo_sha256, state, handled_by, handled_ms, note"
)
_ALERT = (
    "alert_id, device_id, raised_ms, last_ms, count, unit_id, volunteer_id, name, fix, state, "
    "acked_by, acked_ms, note"
)


def _target(row: Sequence[Any]) -> TaskTarget:
    device, unit, volunteer, name, sent, last, failed, acked = row
    return TaskTarget(device, unit, volunteer, name, sent, last, bool(failed), acked)


def _task(row: Sequence[Any], targets: Sequence[TaskTarget]) -> FieldTask:
    (task_id, title, text, prio, kind, target, unit, created, by, expires, lat, lon) = row
    return FieldTask(
        task_id, title, text, prio, TargetKind(kind), target, unit, created, by, expires,
        lat, lon, tuple(targets),
    )  # fmt: skip


def _clue(row: Sequence[Any]) -> ClueReport:
    (device, clue_id, time_ms, received, text, category, unit, volunteer, name) = row[:9]
    lat, lon, photo, state, handled_by, handled_ms, note = row[9:]
    return ClueReport(
        device, clue_id, time_ms, received, text, IncidentKind(category), unit, volunteer,
        name, lat, lon, photo, ClueState(state), handled_by, handled_ms, note,
    )  # fmt: skip


def _alert(row: Sequence[Any]) -> Alert:
    (alert_id, device, raised, last, count, unit, volunteer, name, fix) = row[:9]
    state, acked_by, acked_ms, note = row[9:]
    return Alert(
        alert_id, device, raised, last, count, unit, volunteer, name,
        json.loads(fix) if fix is not None else None,
        AlertState(state), acked_by, acked_ms, note,
    )  # fmt: skip


def _step_row(s: Step) -> tuple[object, ...]:
    return (s.at_ms, s.actor, s.subject.value, s.subject_id, s.device_id, s.step, s.detail)


class FieldStore(EvidenceDb):
    def __init__(self, path: Path) -> None:
        super().__init__(path, MIGRATIONS, name="field-report store")

    @contextmanager
    def _writing(self, what: str, steps: Iterable[Step]) -> Iterator[sqlite3.Connection]:
        """One transaction: the caller's change, then the audit rows of it."""
        with self._transaction(what) as conn:
            yield conn
            conn.executemany(
                "INSERT INTO steps(at_ms, actor, subject, subject_id, device_id, step, detail) "
                "VALUES (?,?,?,?,?,?,?)",
                [_step_row(s) for s in steps],
            )

    # --- tasks ------------------------------------------------------------------------------

    def add_task(self, task: FieldTask, steps: Iterable[Step]) -> None:
        with self._writing(f"record task {task.task_id}", steps) as conn:
            conn.execute(
                f"INSERT INTO tasks({_TASK}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    task.task_id, task.title, task.text, task.priority, task.target_kind.value,
                    task.target, task.unit_id, task.created_ms, task.created_by,
                    task.expires_ms, task.lat, task.lon,
                ),
            )  # fmt: skip
            conn.executemany(
                f"INSERT INTO task_targets(task_id, n, {_TARGET}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        task.task_id, n, t.device_id, t.unit_id, t.volunteer_id, t.name,
                        t.sent_ms, t.last_sent_ms, int(t.send_failed), t.acked_ms,
                    )
                    for n, t in enumerate(task.targets, start=1)
                ],
            )  # fmt: skip

    def record_sends(
        self,
        sent: Sequence[tuple[str, str, int]],
        failed: Sequence[tuple[str, str]],
        steps: Iterable[Step],
    ) -> None:
        """Sends the broker took ((task_id, device_id, at_ms)) and refused ((task_id,
        device_id)), with their audit rows."""
        if not sent and not failed:
            return
        with self._writing(f"record {len(sent)} task sends, {len(failed)} failed", steps) as c:
            c.executemany(
                "UPDATE task_targets SET sent_ms=coalesce(sent_ms, ?), last_sent_ms=?, "
                "send_failed=0 WHERE task_id=? AND device_id=?",
                [(at, at, task_id, device) for task_id, device, at in sent],
            )
            c.executemany(
                "UPDATE task_targets SET send_failed=1 WHERE task_id=? AND device_id=?",
                failed,
            )

    def ack(self, task_id: str, device_id: str, acked_ms: int, step: Step) -> bool:
        """Record the first acknowledgement; False (and no audit row) for a repeat, an unknown
        task or a device the task did not go to."""
        changed = False
        with self._writing(f"record ack of {task_id} by {device_id}", ()) as conn:
            cur = conn.execute(
                "UPDATE task_targets SET acked_ms=? "
                "WHERE task_id=? AND device_id=? AND acked_ms IS NULL",
                (acked_ms, task_id, device_id),
            )
            if cur.rowcount:
                changed = True
                conn.execute(
                    "INSERT INTO steps(at_ms, actor, subject, subject_id, device_id, step, "
                    "detail) VALUES (?,?,?,?,?,?,?)",
                    _step_row(step),
                )
        return changed

    def mark_expired(self, task_ids: Collection[str], at_ms: int, steps: Iterable[Step]) -> None:
        if not task_ids:
            return
        with self._writing(f"mark {len(task_ids)} tasks expired", steps) as conn:
            conn.executemany(
                "UPDATE tasks SET expired_ms=? WHERE task_id=? AND expired_ms IS NULL",
                [(at_ms, t) for t in task_ids],
            )

    def tasks_by_id(self, task_ids: Sequence[str]) -> list[FieldTask]:
        """These tasks with their targets, in the order given (unknown ids left out)."""
        where, params = among("task_id", task_ids)
        heads = self._read(f"SELECT {_TASK} FROM tasks WHERE {where}", params)
        rows = self._read(
            f"SELECT task_id, {_TARGET} FROM task_targets WHERE {where} ORDER BY task_id, n",
            params,
        )
        by_task: dict[str, list[TaskTarget]] = {}
        for row in rows:
            by_task.setdefault(row[0], []).append(_target(row[1:]))
        found = {h[0]: _task(h, by_task.get(h[0], ())) for h in heads}
        return [found[t] for t in task_ids if t in found]

    def task_ids(
        self, *, units: Collection[str] | None, expired: bool | None, now_ms: int, limit: int
    ) -> list[str]:
        """Tasks of ``units`` (None: any), newest first; ``expired`` True/False keeps only
        expired/active ones as of ``now_ms``."""
        in_units, params = among("unit_id", units)
        state = {None: "1", True: "expires_ms <= ?", False: "expires_ms > ?"}[expired]
        extra: list[object] = [] if expired is None else [now_ms]
        rows = self._read(
            f"SELECT task_id FROM tasks WHERE {in_units} AND {state} "
            "ORDER BY created_ms DESC, rowid DESC LIMIT ?",
            [*params, *extra, limit],
        )
        return [r[0] for r in rows]

    def watched_targets(self) -> list[tuple[str, str, int, int | None, bool]]:
        """``(task_id, device_id, expires_ms, last_sent_ms, needs_send)`` of each target not
        yet acknowledged, of tasks whose expiry is not yet noted (the service's index of what
        may need sending again, rebuilt at start-up)."""
        rows = self._read(
            "SELECT t.task_id, t.device_id, k.expires_ms, t.last_sent_ms, "
            "t.send_failed OR t.sent_ms IS NULL FROM task_targets t "
            "JOIN tasks k ON k.task_id = t.task_id "
            "WHERE k.expired_ms IS NULL AND t.acked_ms IS NULL"
        )
        return [(r[0], r[1], int(r[2]), r[3], bool(r[4])) for r in rows]

    def unexpired_tasks(self) -> dict[str, int]:
        """task_id → expires_ms of tasks whose expiry is not yet noted."""
        rows = self._read("SELECT task_id, expires_ms FROM tasks WHERE expired_ms IS NULL")
        return {r[0]: int(r[1]) for r in rows}

    def steps(self, subject: Subject, subject_id: str) -> list[Step]:
        rows = self._read(
            "SELECT at_ms, actor, subject, subject_id, step, device_id, detail FROM steps "
            "WHERE subject=? AND subject_id=? ORDER BY id",
            (subject.value, subject_id),
        )
        return [Step(r[0], r[1], Subject(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    # --- clues ------------------------------------------------------------------------------

    def add_clue(self, clue: ClueReport, steps: Iterable[Step]) -> ClueReport | None:
        """Insert a new clue, taking a photo that came before it; None if it is known."""
        key = (clue.device_id, clue.clue_id)
        with self._writing(f"record clue {clue.key}", ()) as conn:
            if conn.execute("SELECT 1 FROM clues WHERE device_id=? AND clue_id=?", key).fetchone():
                return None
            photo = conn.execute(
                "SELECT sha256 FROM clue_photos WHERE device_id=? AND clue_id=?", key
            ).fetchone()
            conn.execute(
                f"INSERT INTO clues({_CLUE}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    clue.device_id, clue.clue_id, clue.time_ms, clue.received_ms, clue.text,
                    clue.category.value, clue.unit_id, clue.volunteer_id, clue.name, clue.lat,
                    clue.lon, photo[0] if photo else clue.photo_sha256, clue.state.value,
                    clue.handled_by, clue.handled_ms, clue.note,
                ),
            )  # fmt: skip
            conn.execute("DELETE FROM clue_photos WHERE device_id=? AND clue_id=?", key)
            conn.executemany(
                "INSERT INTO steps(at_ms, actor, subject, subject_id, device_id, step, detail) "
                "VALUES (?,?,?,?,?,?,?)",
                [_step_row(s) for s in steps],
            )
            row = conn.execute(f"SELECT {_CLUE} FROM clues WHERE device_id=? AND clue_id=?", key)
            return _clue(row.fetchone())

    def attach_photo(
        self, device_id: str, clue_id: str, sha256: str, received_ms: int, step: Step
    ) -> ClueReport | None:
        """The clue with its photo, if the clue is known and had none (else None: a photo
        before its clue is kept until the clue comes; a second photo is ignored)."""
        key = (device_id, clue_id)
        with self._writing(f"record photo of clue {device_id}:{clue_id}", ()) as conn:
            row = conn.execute(
                "SELECT photo_sha256 FROM clues WHERE device_id=? AND clue_id=?", key
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT OR IGNORE INTO clue_photos(device_id, clue_id, sha256, received_ms) "
                    "VALUES (?,?,?,?)",
                    (device_id, clue_id, sha256, received_ms),
                )
                return None
            if row[0] is not None:
                return None
            conn.execute(
                "UPDATE clues SET photo_sha256=? WHERE device_id=? AND clue_id=?",
                (sha256, device_id, clue_id),
            )
            conn.execute(
                "INSERT INTO steps(at_ms, actor, subject, subject_id, device_id, step, detail) "
                "VALUES (?,?,?,?,?,?,?)",
                _step_row(step),
            )
            found = conn.execute(f"SELECT {_CLUE} FROM clues WHERE device_id=? AND clue_id=?", key)
            return _clue(found.fetchone())

    def handle_clue(self, clue: ClueReport, step: Step) -> None:
        """Write the clue's handling (state, by, when, note) as the service decided it."""
        with self._writing(f"handle clue {clue.key}", [step]) as conn:
            conn.execute(
                "UPDATE clues SET state=?, handled_by=?, handled_ms=?, note=? "
                "WHERE device_id=? AND clue_id=?",
                (
                    clue.state.value, clue.handled_by, clue.handled_ms, clue.note,
                    clue.device_id, clue.clue_id,
                ),
            )  # fmt: skip

    def clue(self, device_id: str, clue_id: str) -> ClueReport | None:
        rows = self._read(
            f"SELECT {_CLUE} FROM clues WHERE device_id=? AND clue_id=?", (device_id, clue_id)
        )
        return _clue(rows[0]) if rows else None

    def clues(
        self, *, units: Collection[str] | None, state: ClueState | None, limit: int
    ) -> list[ClueReport]:
        """Clues of ``units`` (None: any), newest first, of ``state`` (None: any)."""
        in_units, params = among("unit_id", units)
        where = "state = ?" if state is not None else "1"
        extra: list[object] = [state.value] if state is not None else []
        rows = self._read(
            f"SELECT {_CLUE} FROM clues WHERE {in_units} AND {where} "
            "ORDER BY received_ms DESC, rowid DESC LIMIT ?",
            [*params, *extra, limit],
        )
        return [_clue(r) for r in rows]

    # --- alerts -----------------------------------------------------------------------------

    def frame_counted(self, device_id: str, seq: int) -> bool:
        rows = self._read(
            "SELECT 1 FROM alert_frames WHERE device_id=? AND seq=?", (device_id, seq)
        )
        return bool(rows)

    def put_alert(self, alert: Alert, frame: tuple[str, int] | None, steps: Iterable[Step]) -> None:
        """Insert or replace the alert as the service decided it, counting ``frame`` (the SOS
        frame (device_id, seq) that made this change, if one did)."""
        with self._writing(f"record alert {alert.alert_id}", steps) as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO alerts({_ALERT}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    alert.alert_id, alert.device_id, alert.raised_ms, alert.last_ms,
                    alert.count, alert.unit_id, alert.volunteer_id, alert.name,
                    json.dumps(dict(alert.fix)) if alert.fix is not None else None,
                    alert.state.value, alert.acked_by, alert.acked_ms, alert.note,
                ),
            )  # fmt: skip
            if frame is not None:
                conn.execute(
                    "INSERT INTO alert_frames(device_id, seq, alert_id) VALUES (?,?,?)",
                    (*frame, alert.alert_id),
                )

    def alert(self, alert_id: str) -> Alert | None:
        rows = self._read(f"SELECT {_ALERT} FROM alerts WHERE alert_id=?", (alert_id,))
        return _alert(rows[0]) if rows else None

    def open_alert(self, device_id: str) -> Alert | None:
        rows = self._read(
            f"SELECT {_ALERT} FROM alerts WHERE device_id=? AND state=? "
            "ORDER BY raised_ms DESC LIMIT 1",
            (device_id, AlertState.OPEN.value),
        )
        return _alert(rows[0]) if rows else None

    def alerts(
        self, *, units: Collection[str] | None, state: AlertState | None, limit: int
    ) -> list[Alert]:
        """Alerts of ``units`` (None: any), newest first, of ``state`` (None: any)."""
        in_units, params = among("unit_id", units)
        where = "state = ?" if state is not None else "1"
        extra: list[object] = [state.value] if state is not None else []
        rows = self._read(
            f"SELECT {_ALERT} FROM alerts WHERE {in_units} AND {where} "
            "ORDER BY raised_ms DESC, rowid DESC LIMIT ?",
            [*params, *extra, limit],
        )
        return [_alert(r) for r in rows]
