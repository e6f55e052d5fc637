"""The organisation store: units, volunteers, terminals, posts, shifts and rosters in SQLite.

Its own file (``data_dir/org.db``), apart from the telemetry store: the organisation is small,
edited by people and read by everyone, while ``yijing.db`` takes a write batch every 20 ms; two
files keep an admin's import from queueing behind ingest and the other way round.

One connection, one lock (re-entrant, so a read from inside ``batch`` does not deadlock), WAL
and ``synchronous=FULL``: an admin's edit is rare and must not vanish in a power cut. sqlite3
errors become ``StoreError`` here and nowhere else. The rules (tree levels, cycles, overlaps,
who holds which terminal) live in ``server.org.tables``; this class runs them in transactions.

Every method that takes ``units`` keeps only records belonging to those units (a shift and a
roster belong to their post's unit); ``None`` means all.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from yijing.sqlite import SchemaError, migrate, open_database, transaction

from ..errors import StoreError
from .codec import Kind, Record, id_of, kind_of
from .model import OrgError, Post, Roster, Shift, Terminal, Unit, Volunteer
from .schedule import Tables
from .tables import OrgConflict

__all__ = ["MIGRATIONS", "OrgConflict", "OrgError", "OrgStore"]

T = TypeVar("T")


def _v1(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    db.table("units").create(
        {"unit_id": str, "name": str, "level": str, "parent_id": str, "path": str},
        pk="unit_id",
        not_null=["name", "level", "path"],
        foreign_keys=[("parent_id", "units", "unit_id")],
    )
    db.table("units").create_index(["path"], unique=True)
    db.table("units").create_index(["parent_id"])
    db.table("volunteers").create(
        {"volunteer_id": str, "name": str, "unit_id": str, "kind": str, "phone": str},
        pk="volunteer_id",
        not_null=["name", "unit_id", "kind", "phone"],
        foreign_keys=[("unit_id", "units", "unit_id")],
    )
    db.table("volunteers").create_index(["unit_id"])
    db.table("terminals").create(
        {"device_id": str, "unit_id": str, "kind": str, "holder": str},
        pk="device_id",
        not_null=["unit_id", "kind"],
        foreign_keys=[("unit_id", "units", "unit_id"), ("holder", "volunteers", "volunteer_id")],
    )
    db.table("terminals").create_index(["unit_id"])
    # One terminal per person (NULLs are distinct in a SQLite unique index); _v2 relaxes it.
    db.table("terminals").create_index(["holder"], unique=True)
    # No foreign key to volunteers: a closed holding is history and outlives the volunteer.
    db.table("holdings").create(
        {"id": int, "device_id": str, "volunteer_id": str, "from_ms": int, "to_ms": int},
        pk="id",
        not_null=["device_id", "volunteer_id", "from_ms"],
        foreign_keys=[("device_id", "terminals", "device_id")],
    )
    db.table("holdings").create_index(["device_id", "from_ms"])
    db.table("holdings").create_index(["volunteer_id", "from_ms"])
    db.table("posts").create(
        {"post_id": str, "name": str, "kind": str, "unit_id": str, "fence": str, "mode": str},
        pk="post_id",
        not_null=["name", "kind", "unit_id", "fence", "mode"],
        foreign_keys=[("unit_id", "units", "unit_id")],
    )
    db.table("posts").create_index(["unit_id"])
    db.table("shifts").create(
        {
            "shift_id": str,
            "volunteer_id": str,
            "post_id": str,
            "start_ms": int,
            "end_ms": int,
            "device_id": str,
            "role": str,
            "roster_id": str,
        },
        pk="shift_id",
        not_null=["volunteer_id", "post_id", "start_ms", "end_ms", "role"],
        foreign_keys=[
            ("volunteer_id", "volunteers", "volunteer_id"),
            ("post_id", "posts", "post_id"),
            ("device_id", "terminals", "device_id"),
        ],
    )
    # Window queries bound start_ms on both sides (tables.Tables.shifts says why).
    db.table("shifts").create_index(["start_ms"])
    db.table("shifts").create_index(["volunteer_id", "start_ms"])
    db.table("shifts").create_index(["device_id", "start_ms"])
    db.table("shifts").create_index(["post_id", "start_ms"])
    db.table("rosters").create(
        {
            "roster_id": str,
            "post_id": str,
            "members": str,  # JSON list, in rotation order
            "start_local": str,
            "end_local": str,
            "weekdays": str,  # JSON list
            "rotation": str,
            "anchor_week": str,
            "tz": str,
            "name": str,
        },
        pk="roster_id",
        not_null=["post_id", "members", "start_local", "end_local", "weekdays", "rotation"],
        foreign_keys=[("post_id", "posts", "post_id")],
    )
    db.table("rosters").create_index(["post_id"])


def _v2(conn: sqlite3.Connection) -> None:
    # Issue #10: a volunteer may hold one phone beside one other terminal (docs/metrics.md,
    # "Phones and trust"). The index keeps one of each class per holder, as put_terminal does.
    conn.execute("DROP INDEX IF EXISTS idx_terminals_holder")
    conn.execute(
        "CREATE UNIQUE INDEX idx_terminals_holder_class ON terminals(holder, kind = 'phone')"
    )


MIGRATIONS = [_v1, _v2]


class OrgStore:
    def __init__(self, path: Path) -> None:
        try:
            self._conn = open_database(path, synchronous="FULL")
            migrate(self._conn, MIGRATIONS)
        except (sqlite3.Error, SchemaError) as exc:
            raise StoreError(f"cannot open organisation store {path}: {exc}") from exc
        self._tables = Tables(self._conn)
        self._lock = threading.RLock()
        self.path = path
        #: Bumped by every write in this process: readers that cache (the live map's who
        #: holds which terminal) rebuild only when it moved.
        self.generation = 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _read(self, fn: Callable[[Tables], T]) -> T:
        with self._lock:
            try:
                return fn(self._tables)
            except sqlite3.Error as exc:
                raise StoreError(f"organisation read failed: {exc}") from exc

    def _write(self, what: str, fn: Callable[[Tables], T]) -> T:
        with self._lock:
            self.generation += 1
            with transaction(self._conn, StoreError, what):
                return fn(self._tables)

    @contextlib.contextmanager
    def batch(self, what: str) -> Iterator[Tables]:
        """One transaction for many writes (an import): committed when the block ends, rolled
        back if it raises. Use the ``Tables`` it gives, not this store, inside the block."""
        with self._lock:
            self.generation += 1
            with transaction(self._conn, StoreError, what):
                yield self._tables

    # --- units ---------------------------------------------------------------------------------

    def put_unit(self, unit: Unit) -> bool:
        """Insert or update; True if it was new. Refuses an unknown parent, a parent of a level
        ``model.PARENT_LEVELS`` does not allow, and a move into the unit's own subtree."""
        return self._write(f"put unit {unit.unit_id}", lambda t: t.put_unit(unit))

    def unit(self, unit_id: str) -> Unit | None:
        return self._read(lambda t: t.unit(unit_id))

    def units(self, *, units: Collection[str] | None = None) -> list[Unit]:
        """All units (or those in ``units``), parents before their children."""
        return self._read(lambda t: t.units(units=units))

    def delete_unit(self, unit_id: str) -> bool:
        """False if there was none; refuses (``OrgConflict``) while anything is attached."""
        return self._write(f"delete unit {unit_id}", lambda t: t.delete_unit(unit_id))

    def subtree(self, unit_id: str) -> set[str]:
        """The unit and every unit below it (empty for an unknown unit)."""
        return self._read(lambda t: t.subtree(unit_id))

    def ancestors(self, unit_id: str) -> list[str]:
        """The units above ``unit_id``, root first, the unit itself excluded."""
        return self._read(lambda t: t.ancestors(unit_id))

    def children(self, unit_id: str) -> list[Unit]:
        return self._read(lambda t: t.children(unit_id))

    def within(self, unit_id: str, root: str) -> bool:
        """Is ``unit_id`` ``root`` itself or below it?"""
        return self._read(lambda t: t.within(unit_id, root))

    # --- volunteers ----------------------------------------------------------------------------

    def put_volunteer(self, volunteer: Volunteer) -> bool:
        return self._write(
            f"put volunteer {volunteer.volunteer_id}", lambda t: t.put_volunteer(volunteer)
        )

    def volunteer(self, volunteer_id: str) -> Volunteer | None:
        return self._read(lambda t: t.volunteer(volunteer_id))

    def volunteers(self, *, units: Collection[str] | None = None) -> list[Volunteer]:
        return self._read(lambda t: t.volunteers(units=units))

    def delete_volunteer(self, volunteer_id: str) -> bool:
        """Refuses while the volunteer holds a terminal, has shifts or is on a roster."""
        return self._write(
            f"delete volunteer {volunteer_id}", lambda t: t.delete_volunteer(volunteer_id)
        )

    # --- terminals -----------------------------------------------------------------------------

    def put_terminal(self, terminal: Terminal, *, at_ms: int) -> bool:
        """Insert or update. When the holder changes, the holding so far ends at ``at_ms`` and
        the new holder's begins; a volunteer holds at most one phone and one other terminal
        (``OrgConflict`` on ``holder`` naming the one already held)."""
        return self._write(
            f"put terminal {terminal.device_id}", lambda t: t.put_terminal(terminal, at_ms=at_ms)
        )

    def terminal(self, device_id: str) -> Terminal | None:
        return self._read(lambda t: t.terminal(device_id))

    def terminals(self, *, units: Collection[str] | None = None) -> list[Terminal]:
        return self._read(lambda t: t.terminals(units=units))

    def delete_terminal(self, device_id: str) -> bool:
        """Refuses while shifts record the terminal; its holdings go with it."""
        return self._write(f"delete terminal {device_id}", lambda t: t.delete_terminal(device_id))

    def holdings(self, device_id: str) -> list[tuple[str, int, int | None]]:
        """``(volunteer_id, from_ms, to_ms)`` oldest first; ``to_ms`` None: held now."""
        return self._read(lambda t: t.holdings(device_id))

    def terminal_of(self, volunteer_id: str) -> str | None:
        """The terminal the volunteer holds now: the non-phone one if any, else the phone."""
        return self._read(lambda t: t.terminal_of(volunteer_id))

    def held_by(self, volunteer_id: str) -> list[Terminal]:
        """The terminals the volunteer holds now (at most a phone and one other, that first)."""
        return self._read(lambda t: t.held_by(volunteer_id))

    def phones_held(self, volunteer_id: str, since_ms: int, until_ms: int) -> list[str]:
        """Device ids of the PHONE-kind terminals the volunteer held at any moment in
        ``[since_ms, until_ms)``, from the holdings (hand-overs), in the order first held."""
        held = self.phone_holdings([volunteer_id], since_ms, until_ms)
        return list(dict.fromkeys(device for device, _, _, _ in held))

    def phone_holdings(
        self, volunteer_ids: Collection[str], since_ms: int, until_ms: int
    ) -> list[tuple[str, str, int, int | None]]:
        """``(device_id, volunteer_id, from_ms, to_ms)`` of the holdings of phones by any of
        ``volunteer_ids`` overlapping ``[since_ms, until_ms)``, in one query (the duty engine's
        refresh asks for every shift near now at once); ``to_ms`` None: held now."""
        return self._read(lambda t: t.phone_holdings(volunteer_ids, since_ms, until_ms))

    def phones(self, device_ids: Collection[str]) -> set[str]:
        """Which of ``device_ids`` are PHONE-kind terminals, in one query."""
        return self._read(lambda t: t.phones(device_ids))

    # --- posts ---------------------------------------------------------------------------------

    def put_post(self, post: Post) -> bool:
        return self._write(f"put post {post.post_id}", lambda t: t.put_post(post))

    def post(self, post_id: str) -> Post | None:
        return self._read(lambda t: t.post(post_id))

    def posts(self, *, units: Collection[str] | None = None) -> list[Post]:
        return self._read(lambda t: t.posts(units=units))

    def delete_post(self, post_id: str) -> bool:
        """Refuses while shifts or rosters use the post."""
        return self._write(f"delete post {post_id}", lambda t: t.delete_post(post_id))

    # --- shifts --------------------------------------------------------------------------------

    def put_shift(self, shift: Shift) -> bool:
        """Insert or update as given (``device_id`` None stays None: see ``make_shift``).
        Refuses an unknown volunteer, post or terminal, and a shift overlapping another of the
        same volunteer (``OrgConflict`` on ``start_ms`` naming the other shift)."""
        return self._write(f"put shift {shift.shift_id}", lambda t: t.put_shift(shift))

    def make_shift(
        self,
        shift_id: str,
        volunteer_id: str,
        post_id: str,
        start_ms: int,
        end_ms: int,
        **kw: Any,
    ) -> Shift:
        """A ``Shift`` (not stored) with ``device_id`` the terminal the volunteer holds now,
        unless ``kw`` gives one."""
        if "device_id" not in kw:
            kw["device_id"] = self.terminal_of(volunteer_id)
        return Shift(shift_id, volunteer_id, post_id, start_ms, end_ms, **kw)

    def with_terminal(self, shift: Shift) -> Shift:
        """``shift`` with ``device_id`` filled in for a caller that was not told one: the
        terminal already recorded on the stored shift of the same id and volunteer, else the
        one the volunteer holds now (``Tables.with_terminal``)."""
        return self._read(lambda t: t.with_terminal(shift))

    def shift(self, shift_id: str) -> Shift | None:
        return self._read(lambda t: t.shift(shift_id))

    def shifts(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        units: Collection[str] | None = None,
        volunteer_id: str | None = None,
        device_id: str | None = None,
        limit: int | None = None,
    ) -> list[Shift]:
        """Shifts overlapping ``[since_ms, until_ms)`` (either end open when None), by start."""
        return self._read(
            lambda t: t.shifts(
                since_ms=since_ms,
                until_ms=until_ms,
                units=units,
                volunteer_id=volunteer_id,
                device_id=device_id,
                limit=limit,
            )
        )

    def delete_shift(self, shift_id: str) -> bool:
        return self._write(f"delete shift {shift_id}", lambda t: t.delete_shift(shift_id))

    def unit_of_shift(self, shift: Shift) -> str:
        """The unit of the shift's post."""
        unit = self._read(lambda t: t.unit_of_post(shift.post_id))
        if unit is None:
            raise OrgError("post_id", f"no post {shift.post_id!r}")
        return unit

    # --- rosters -------------------------------------------------------------------------------

    def put_roster(self, roster: Roster) -> bool:
        """Refuses an unknown post or member, time zone or anchor date."""
        return self._write(f"put roster {roster.roster_id}", lambda t: t.put_roster(roster))

    def roster(self, roster_id: str) -> Roster | None:
        return self._read(lambda t: t.roster(roster_id))

    def rosters(self, *, units: Collection[str] | None = None) -> list[Roster]:
        return self._read(lambda t: t.rosters(units=units))

    def delete_roster(self, roster_id: str) -> bool:
        """The roster only: shifts it generated stay."""
        return self._write(f"delete roster {roster_id}", lambda t: t.delete_roster(roster_id))

    def generate(self, roster_id: str, first_day: date, last_day: date) -> list[Shift]:
        """Make the roster's shifts for the days ``first_day``..``last_day`` (both included;
        ``server.org.rosters`` has the rules) in one transaction, and return those it created.
        Shifts that already exist as generated are skipped; one that exists with other times
        or another post refuses the whole run (``OrgConflict``), as does any overlap."""
        return self._write(
            f"generate roster {roster_id}", lambda t: t.generate(roster_id, first_day, last_day)
        )

    # --- any kind of record --------------------------------------------------------------------

    def get(self, kind: Kind | str, record_id: str) -> Record | None:
        return self._read(lambda t: t.get(Kind(kind), record_id))

    def records(self, kind: Kind | str, *, units: Collection[str] | None = None) -> list[Record]:
        return self._read(lambda t: t.records(Kind(kind), units=units))

    def put(self, record: Record, *, at_ms: int) -> bool:
        """Any record (``at_ms``: when a terminal changes hands); True if it was new."""
        what = f"put {kind_of(record)} {id_of(record)}"
        return self._write(what, lambda t: t.put(record, at_ms=at_ms))

    def delete(self, kind: Kind | str, record_id: str) -> bool:
        return self._write(f"delete {kind} {record_id}", lambda t: t.delete(Kind(kind), record_id))

    def owner(self, record: Record) -> str | None:
        """The unit a record belongs to (a shift's and a roster's: their post's)."""
        return self._read(lambda t: t.owner(record))

    def write_units(self, record: Record) -> list[str | None]:
        """The units a write of ``record`` touches (scope checks; ``Tables.write_units``)."""
        return self._read(lambda t: t.write_units(record))
