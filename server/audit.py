"""The audit trail of people's actions: who watched the live feed, looked at a terminal's track
or pictures, dispatched, ran a spot check, exported a report, changed the organisation.

Append-only and hash-chained: each entry's ``hash`` is SHA-256 over the previous entry's hash
and the entry's own fields (``entry_hash``), so editing, inserting or deleting any entry
breaks every hash after it, and ``verify`` names the first broken one. SQLite triggers refuse
UPDATE and DELETE through the database; the chain is what catches an edit made around them
(another tool, a hex editor). Cutting entries off the end leaves a valid shorter chain: the
head hash that ``yijing audit verify`` prints is what an inspector writes down to detect that.

An entry is written when access has been granted and before the request runs, so it records
attempts too (a dispatch that then fails validation): the services' own audits (dispatch
steps, spot checks) record what actually happened.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .evidence_db import EvidenceDb

GENESIS = "0" * 64


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE entries (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, "
        "actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, "
        "detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL)"
    )
    for verb in ("UPDATE", "DELETE"):
        conn.execute(
            f"CREATE TRIGGER entries_no_{verb.lower()} BEFORE {verb} ON entries "
            "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
        )


MIGRATIONS = [_v1]


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    at_ms: int
    actor: str
    action: str
    subject: str
    detail: str
    prev: str
    hash: str

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "at_ms": self.at_ms,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "detail": self.detail,
            "hash": self.hash,
        }


def entry_hash(
    prev: str, seq: int, at_ms: int, actor: str, action: str, subject: str, detail: str
) -> str:
    """SHA-256 over the previous hash and the entry's fields as canonical JSON."""
    body = json.dumps(
        [seq, at_ms, actor, action, subject, detail], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(prev.encode() + body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Verification:
    entries: int
    head: str  # the last good entry's hash (GENESIS for an empty trail)
    broken_at: int | None  # the first entry whose hash or link does not hold
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


class AuditLog(EvidenceDb):
    def __init__(self, path: Path) -> None:
        super().__init__(path, MIGRATIONS, name="audit trail")

    def append(
        self, *, at_ms: int, actor: str, action: str, subject: str = "", detail: str = ""
    ) -> Entry:
        with self._transaction(f"audit {action}") as conn:
            row = conn.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
            digest = entry_hash(prev, seq, at_ms, actor, action, subject, detail)
            conn.execute(
                "INSERT INTO entries VALUES (?,?,?,?,?,?,?,?)",
                (seq, at_ms, actor, action, subject, detail, prev, digest),
            )
        return Entry(seq, at_ms, actor, action, subject, detail, prev, digest)

    def entries(self, *, since_seq: int = 0, limit: int = 1000) -> list[Entry]:
        rows = self._read(
            "SELECT seq, at_ms, actor, action, subject, detail, prev, hash FROM entries "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (since_seq, limit),
        )
        return [Entry(*r) for r in rows]

    def _all(self, batch: int = 10_000) -> Iterator[Entry]:
        last = 0
        while chunk := self.entries(since_seq=last, limit=batch):
            yield from chunk
            last = chunk[-1].seq

    def verify(self) -> Verification:
        """Walk the whole chain; the first entry out of sequence, wrongly linked or whose
        hash does not match its fields is where it broke."""
        prev, count = GENESIS, 0
        for e in self._all():
            if e.seq != count + 1:
                return Verification(count, prev, count + 1, f"entry {count + 1} is missing")
            if e.prev != prev:
                return Verification(count, prev, e.seq, "does not link to the entry before it")
            expected = entry_hash(prev, e.seq, e.at_ms, e.actor, e.action, e.subject, e.detail)
            if e.hash != expected:
                return Verification(count, prev, e.seq, "its fields do not match its hash")
            prev, count = e.hash, count + 1
        return Verification(count, prev, None)
