"""Incidents, dispatches and their audit trail on disk: ``dispatch.db``, apart from the frames.

Apart, because a dispatch is the officer's record of who was sent where, with its own life;
and a bug here must never lock the table ingest writes fixes to. ``incidents`` and
``dispatches`` hold each record's current state (rewritten on every change); ``steps`` is
the audit trail, append-only: triggers refuse any UPDATE or DELETE, so a step once written
stays as it was written.

Every change the service makes is one ``save`` call: the new rows and their audit steps in
one transaction, so the state and its explanation never disagree, even after a crash.

One connection, shared by the ingest thread, the ticker and the web threads, behind a lock.
sqlite3 errors become ``server.errors.StoreError`` here and nowhere else.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from protocol import IncidentKind

from ..evidence_db import EvidenceDb
from .model import Dispatch, DispatchState, Incident, Step


def _v1(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    db.table("incidents").create(
        {
            "incident_id": str,
            "kind": str,
            "priority": int,
            "lat": float,
            "lon": float,
            "note": str,
            "unit_id": str,
            "state": str,
            "created_ms": int,
            "created_by": str,
            "closed_ms": int,
            "closed_by": str,
            "auto_escalate": int,
            "circle": int,
            "round_ms": int,
            "exhausted": int,
        },
        pk="incident_id",
        not_null={"kind", "priority", "lat", "lon", "state", "created_ms", "created_by"},
    )
    db.table("incidents").create_index(["state", "created_ms"])
    db.table("dispatches").create(
        {
            "dispatch_id": str,
            "incident_id": str,
            "device_id": str,
            "sent_ms": int,
            "expires_ms": int,
            "state": str,
            "volunteer_id": str,
            "name": str,
            "circle": int,
            "distance_m": float,
            "eta_s": float,
            "delivered_ms": int,
            "accepted_ms": int,
            "declined_ms": int,
            "on_scene_ms": int,
            "expired_ms": int,
            "closed_ms": int,
            "cancelled_ms": int,
            "reason": str,
            "last_sent_ms": int,
            "pending": int,
            "resent_ms": int,
        },
        pk="dispatch_id",
        not_null={"incident_id", "device_id", "sent_ms", "expires_ms", "state", "pending"},
        foreign_keys=[("incident_id", "incidents", "incident_id")],
    )
    db.table("dispatches").create_index(["incident_id", "sent_ms"])
    db.table("dispatches").create_index(["pending"])
    conn.execute(
        "CREATE TABLE steps (step_no INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, "
        "actor TEXT NOT NULL, incident_id TEXT NOT NULL REFERENCES incidents(incident_id), "
        "dispatch_id TEXT, step TEXT NOT NULL, detail TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX steps_incident ON steps(incident_id, step_no)")
    for verb in ("UPDATE", "DELETE"):
        conn.execute(
            f"CREATE TRIGGER steps_no_{verb.lower()} BEFORE {verb} ON steps "
            "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
        )


MIGRATIONS = [_v1]

_INCIDENT_COLUMNS = (
    "incident_id",
    "kind",
    "priority",
    "lat",
    "lon",
    "note",
    "unit_id",
    "state",
    "created_ms",
    "created_by",
    "closed_ms",
    "closed_by",
    "auto_escalate",
    "circle",
    "round_ms",
    "exhausted",
)
_DISPATCH_COLUMNS = (
    "dispatch_id",
    "incident_id",
    "device_id",
    "sent_ms",
    "expires_ms",
    "state",
    "volunteer_id",
    "name",
    "circle",
    "distance_m",
    "eta_s",
    "delivered_ms",
    "accepted_ms",
    "declined_ms",
    "on_scene_ms",
    "expired_ms",
    "closed_ms",
    "cancelled_ms",
    "reason",
    "last_sent_ms",
    "pending",
    "resent_ms",
)
_STEP_COLUMNS = ("at_ms", "actor", "incident_id", "step", "dispatch_id", "detail")
_BOOLS = {"auto_escalate", "exhausted", "pending"}


def _upsert(table: str, columns: Sequence[str]) -> str:
    # An upsert, not INSERT OR REPLACE: REPLACE deletes the row first, which the foreign key
    # from dispatches (and steps) to incidents refuses.
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{c}=excluded.{c}" for c in columns[1:])
    return (
        f"INSERT INTO {table}({names}) VALUES ({marks}) "
        f"ON CONFLICT({columns[0]}) DO UPDATE SET {updates}"
    )


_SAVE_INCIDENT = _upsert("incidents", _INCIDENT_COLUMNS)
_SAVE_DISPATCH = _upsert("dispatches", _DISPATCH_COLUMNS)
_ADD_STEP = f"INSERT INTO steps({', '.join(_STEP_COLUMNS)}) VALUES (?,?,?,?,?,?)"


def _row(record: object, columns: Sequence[str]) -> tuple[Any, ...]:
    values = []
    for c in columns:
        v = getattr(record, c)
        values.append(int(v) if c in _BOOLS else v)
    return tuple(values)


def _incident(row: Sequence[Any]) -> Incident:
    doc = dict(zip(_INCIDENT_COLUMNS, row, strict=True))
    doc["kind"] = IncidentKind(doc["kind"])
    doc["note"] = doc["note"] or ""
    for b in ("auto_escalate", "exhausted"):
        doc[b] = bool(doc[b])
    return Incident(**doc)


def _dispatch(row: Sequence[Any]) -> Dispatch:
    doc = dict(zip(_DISPATCH_COLUMNS, row, strict=True))
    doc["state"] = DispatchState(doc["state"])
    doc["pending"] = bool(doc["pending"])
    return Dispatch(**doc)


class DispatchStore(EvidenceDb):
    def __init__(self, path: Path) -> None:
        super().__init__(path, MIGRATIONS, name="dispatch store")

    # --- the one write ------------------------------------------------------------------------

    def save(
        self,
        *,
        incidents: Iterable[Incident] = (),
        dispatches: Iterable[Dispatch] = (),
        steps: Iterable[Step] = (),
    ) -> None:
        """New or changed records and their audit steps, in one transaction."""
        incidents, dispatches, steps = list(incidents), list(dispatches), list(steps)
        what = f"save {len(incidents)} incidents, {len(dispatches)} dispatches, {len(steps)} steps"
        with self._transaction(what) as conn:
            conn.executemany(_SAVE_INCIDENT, [_row(i, _INCIDENT_COLUMNS) for i in incidents])
            conn.executemany(_SAVE_DISPATCH, [_row(d, _DISPATCH_COLUMNS) for d in dispatches])
            conn.executemany(_ADD_STEP, [_row(s, _STEP_COLUMNS) for s in steps])

    # --- reads --------------------------------------------------------------------------------

    def open_incidents(self) -> list[Incident]:
        cols = ", ".join(_INCIDENT_COLUMNS)
        rows = self._read(f"SELECT {cols} FROM incidents WHERE state='open' ORDER BY created_ms")
        return [_incident(r) for r in rows]

    def incident(self, incident_id: str) -> Incident | None:
        cols = ", ".join(_INCIDENT_COLUMNS)
        rows = self._read(f"SELECT {cols} FROM incidents WHERE incident_id=?", (incident_id,))
        return _incident(rows[0]) if rows else None

    def incidents(
        self, *, state: str | None, units: Collection[str] | None, limit: int
    ) -> list[Incident]:
        """Incidents in ``state`` (None: any) of ``units`` (None: any, even without a unit),
        newest first."""
        cols = ", ".join(_INCIDENT_COLUMNS)
        where, params = ("state=?", [state]) if state is not None else ("1", [])
        in_units, p2 = "1", []
        if units is not None:
            in_units, p2 = (
                "unit_id IN (SELECT value FROM json_each(?))",
                [json.dumps(sorted(units))],
            )
        rows = self._read(
            f"SELECT {cols} FROM incidents WHERE {where} AND {in_units} "
            "ORDER BY created_ms DESC, rowid DESC LIMIT ?",
            [*params, *p2, limit],
        )
        return [_incident(r) for r in rows]

    def dispatches_of(self, incident_ids: Collection[str]) -> list[Dispatch]:
        """The dispatches of these incidents, in sending order."""
        cols = ", ".join(_DISPATCH_COLUMNS)
        rows = self._read(
            f"SELECT {cols} FROM dispatches WHERE incident_id IN "
            "(SELECT value FROM json_each(?)) ORDER BY sent_ms, rowid",
            (json.dumps(sorted(incident_ids)),),
        )
        return [_dispatch(r) for r in rows]

    def pending_cancels(self) -> list[Dispatch]:
        """Cancelled or closed dispatches whose DispatchCancel the broker has not taken yet
        (any incident)."""
        cols = ", ".join(_DISPATCH_COLUMNS)
        rows = self._read(
            f"SELECT {cols} FROM dispatches WHERE pending=1 AND state IN (?, ?) ORDER BY sent_ms",
            (DispatchState.CANCELLED.value, DispatchState.CLOSED.value),
        )
        return [_dispatch(r) for r in rows]

    def steps(self, incident_id: str) -> list[Step]:
        """An incident's audit trail, oldest first."""
        cols = ", ".join(_STEP_COLUMNS)
        rows = self._read(
            f"SELECT {cols} FROM steps WHERE incident_id=? ORDER BY step_no", (incident_id,)
        )
        return [Step(**dict(zip(_STEP_COLUMNS, r, strict=True))) for r in rows]

    def noted(self, steps: Collection[str], incident_ids: Collection[str]) -> set[tuple[str, str]]:
        """(dispatch_id, detail) of the steps of these kinds already written for these
        incidents: what makes re-applying the same late answer write nothing."""
        rows = self._read(
            "SELECT dispatch_id, detail FROM steps WHERE step IN (SELECT value FROM json_each(?)) "
            "AND incident_id IN (SELECT value FROM json_each(?)) AND dispatch_id IS NOT NULL",
            (json.dumps(sorted(steps)), json.dumps(sorted(incident_ids))),
        )
        return {(r[0], r[1]) for r in rows}

    def dispatch(self, dispatch_id: str) -> Dispatch | None:
        cols = ", ".join(_DISPATCH_COLUMNS)
        rows = self._read(f"SELECT {cols} FROM dispatches WHERE dispatch_id=?", (dispatch_id,))
        return _dispatch(rows[0]) if rows else None
