"""Spot checks on disk: their own SQLite file (WAL), apart from the frame store.

Apart, because a check is the inspector's record, not the terminal's: it has its own life
(retention, export) and a spot-check bug must never lock the table ingest writes fixes to.
Only facts are stored (sent, answer received, picture received); results are computed when
read (``server.spotcheck.model.judge``), so nothing needs rewriting when a deadline passes.

One connection, shared by the ingest thread (answers) and the web threads (checks, reads),
behind a lock. sqlite3 errors become ``server.errors.StoreError`` here and nowhere else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import sqlite_utils

from ..evidence_db import EvidenceDb, among
from .model import AnswerFix, SpotCheck, Target


def _v1(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    db.table("checks").create(
        {
            "check_id": str,
            "unit_id": str,
            "created_ms": int,
            "created_by": str,
            "deadline_ms": int,
            "want_snapshot": int,
        },
        pk="check_id",
        not_null={"unit_id", "created_ms", "created_by", "deadline_ms", "want_snapshot"},
    )
    db.table("checks").create_index(["created_ms"])
    db.table("checks").create_index(["unit_id", "created_ms"])
    db.table("targets").create(
        {
            "rollcall_id": str,
            "check_id": str,
            "n": int,
            "device_id": str,
            "unit_id": str,
            "volunteer_id": str,
            "shift_id": str,
            "sent_ms": int,
            "error": str,
            "answer_ms": int,
            "fix_time_ms": int,
            "lat": float,
            "lon": float,
            "accuracy_m": float,
            "snapshot_ms": int,
            "snapshot_sha256": str,
        },
        pk="rollcall_id",
        not_null={"check_id", "n", "device_id", "unit_id", "sent_ms"},
        foreign_keys=[("check_id", "checks", "check_id")],
    )
    db.table("targets").create_index(["check_id", "n"], unique=True)
    # requests(device): the anti-gaming flag; answer_stats(units): reports.
    db.table("targets").create_index(["device_id", "sent_ms"])
    db.table("targets").create_index(["unit_id", "sent_ms"])


MIGRATIONS = [_v1]

_TARGET_COLUMNS = (
    "t.rollcall_id, t.device_id, t.unit_id, t.sent_ms, t.volunteer_id, t.shift_id, t.error, "
    "t.answer_ms, t.fix_time_ms, t.lat, t.lon, t.accuracy_m, t.snapshot_ms, t.snapshot_sha256"
)
_CHECK_COLUMNS = "c.check_id, c.unit_id, c.created_ms, c.created_by, c.deadline_ms, c.want_snapshot"


def _target(row: Sequence[Any]) -> Target:
    (rid, device, unit, sent, volunteer, shift, error, answer_ms, fix_ms, lat, lon, acc) = row[:12]
    fix = None
    if fix_ms is not None:
        fix = AnswerFix(lat=lat, lon=lon, time_ms=fix_ms, accuracy_m=acc)
    return Target(
        rollcall_id=rid,
        device_id=device,
        unit_id=unit,
        sent_ms=sent,
        volunteer_id=volunteer,
        shift_id=shift,
        error=error,
        answer_ms=answer_ms,
        fix=fix,
        snapshot_ms=row[12],
        snapshot_sha256=row[13],
    )


def _check(row: Sequence[Any], targets: Sequence[Target] = ()) -> SpotCheck:
    check_id, unit, created, by, deadline, want = row
    return SpotCheck(check_id, unit, created, by, deadline, bool(want), tuple(targets))


def _window(column: str, since_ms: int | None, until_ms: int | None) -> tuple[str, list[object]]:
    """``since_ms <= column < until_ms``, either end open when None."""
    return f"{column} >= ? AND {column} < ?", [
        since_ms if since_ms is not None else -(2**62),
        until_ms if until_ms is not None else 2**62,
    ]


class SpotCheckStore(EvidenceDb):
    def __init__(self, path: Path) -> None:
        super().__init__(path, MIGRATIONS, name="spot-check store")

    def _writing(self, what: str) -> AbstractContextManager[sqlite3.Connection]:
        return self._transaction(what)

    # --- writes -----------------------------------------------------------------------------

    def add(self, check: SpotCheck) -> None:
        """A new check and its targets, in one transaction."""
        with self._writing(f"record spot check {check.check_id}") as conn:
            conn.execute(
                "INSERT INTO checks(check_id, unit_id, created_ms, created_by, deadline_ms, "
                "want_snapshot) VALUES (?,?,?,?,?,?)",
                (
                    check.check_id,
                    check.unit_id,
                    check.created_ms,
                    check.created_by,
                    check.deadline_ms,
                    int(check.want_snapshot),
                ),
            )
            conn.executemany(
                "INSERT INTO targets(rollcall_id, check_id, n, device_id, unit_id, volunteer_id, "
                "shift_id, sent_ms, error) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        t.rollcall_id,
                        check.check_id,
                        n,
                        t.device_id,
                        t.unit_id,
                        t.volunteer_id,
                        t.shift_id,
                        t.sent_ms,
                        t.error,
                    )
                    for n, t in enumerate(check.targets, start=1)
                ],
            )

    def mark_not_sent(self, errors: Mapping[str, str]) -> None:
        """Roll calls the broker link refused, with why (rollcall_id → error text)."""
        if not errors:
            return
        with self._writing("mark roll calls not sent") as conn:
            conn.executemany(
                "UPDATE targets SET error=? WHERE rollcall_id=?",
                [(error, rid) for rid, error in errors.items()],
            )

    def record(
        self,
        *,
        answers: Mapping[str, tuple[int, AnswerFix | None]],
        snapshots: Mapping[str, tuple[int, str]],
    ) -> None:
        """Answers (rollcall_id → received_ms, fix) and pictures (→ received_ms, sha256 hex)
        to keep, in one transaction. Which to keep is the service's decision."""
        if not answers and not snapshots:
            return
        with self._writing(f"record {len(answers)} answers, {len(snapshots)} pictures") as conn:
            conn.executemany(
                "UPDATE targets SET answer_ms=?, fix_time_ms=?, lat=?, lon=?, accuracy_m=? "
                "WHERE rollcall_id=?",
                [
                    (
                        received_ms,
                        fix.time_ms if fix else None,
                        fix.lat if fix else None,
                        fix.lon if fix else None,
                        fix.accuracy_m if fix else None,
                        rid,
                    )
                    for rid, (received_ms, fix) in answers.items()
                ],
            )
            conn.executemany(
                "UPDATE targets SET snapshot_ms=?, snapshot_sha256=? WHERE rollcall_id=?",
                [(received_ms, sha, rid) for rid, (received_ms, sha) in snapshots.items()],
            )

    # --- reads ------------------------------------------------------------------------------

    def targets(self, rollcall_ids: Collection[str]) -> dict[str, Target]:
        """The targets with these roll call ids (unknown ids are left out)."""
        where, params = among("t.rollcall_id", rollcall_ids)
        rows = self._read(f"SELECT {_TARGET_COLUMNS} FROM targets t WHERE {where}", params)
        return {t.rollcall_id: t for t in map(_target, rows)}

    def check(self, check_id: str) -> SpotCheck | None:
        found = self.checks_by_id([check_id])
        return found[0] if found else None

    def checks_by_id(self, check_ids: Sequence[str]) -> list[SpotCheck]:
        """These checks with their targets, in the order given (unknown ids left out)."""
        where, params = among("c.check_id", check_ids)
        heads = self._read(f"SELECT {_CHECK_COLUMNS} FROM checks c WHERE {where}", params)
        where, params = among("t.check_id", check_ids)
        rows = self._read(
            f"SELECT t.check_id, {_TARGET_COLUMNS} FROM targets t WHERE {where} "
            "ORDER BY t.check_id, t.n",
            params,
        )
        by_check: dict[str, list[Target]] = {}
        for row in rows:
            by_check.setdefault(row[0], []).append(_target(row[1:]))
        checks = {h[0]: _check(h, by_check.get(h[0], ())) for h in heads}
        return [checks[c] for c in check_ids if c in checks]

    def history(
        self,
        *,
        units: Collection[str] | None,
        since_ms: int | None,
        until_ms: int | None,
        limit: int,
    ) -> list[SpotCheck]:
        """Checks made for one of ``units`` (None: any) in ``[since_ms, until_ms)``, newest
        first, with their targets."""
        in_units, p1 = among("c.unit_id", units)
        window, p2 = _window("c.created_ms", since_ms, until_ms)
        # rowid (insertion order) breaks ties between checks made in the same millisecond.
        ids = self._read(
            f"SELECT c.check_id FROM checks c WHERE {in_units} AND {window} "
            "ORDER BY c.created_ms DESC, c.rowid DESC LIMIT ?",
            [*p1, *p2, limit],
        )
        return self.checks_by_id([r[0] for r in ids])

    def sent_targets(
        self,
        *,
        units: Collection[str] | None = None,
        device_id: str | None = None,
        since_ms: int | None,
        until_ms: int | None,
    ) -> list[tuple[Target, int, bool]]:
        """Targets whose roll call went out in ``[since_ms, until_ms)``, of terminals of
        ``units`` (None: any) and of ``device_id`` (None: any), each with its check's
        deadline and want_snapshot, in sending order."""
        in_units, p1 = among("t.unit_id", units)
        window, p2 = _window("t.sent_ms", since_ms, until_ms)
        device = "t.device_id = ?" if device_id is not None else "1"
        p3: list[object] = [device_id] if device_id is not None else []
        rows = self._read(
            f"SELECT {_TARGET_COLUMNS}, c.deadline_ms, c.want_snapshot FROM targets t "
            f"JOIN checks c ON c.check_id = t.check_id "
            f"WHERE t.error IS NULL AND {in_units} AND {window} AND {device} "
            "ORDER BY t.sent_ms, t.rowid",
            [*p1, *p2, *p3],
        )
        return [(_target(r[:14]), int(r[14]), bool(r[15])) for r in rows]
