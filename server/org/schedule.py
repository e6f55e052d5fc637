"""Shifts and rosters, and the record-generic operations, on top of ``TreeTables``.

``Tables`` is what ``OrgStore`` runs inside its transactions (``server.org.tables`` says why the
SQL is apart from the store). A shift belongs to its post's unit; so does a roster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import date
from typing import Any

from .codec import Kind, Record, id_of, kind_of
from .model import (
    MAX_SHIFT_MS,
    OrgError,
    Post,
    Roster,
    Rotation,
    Shift,
    ShiftRole,
    Terminal,
    Unit,
    Volunteer,
)
from .rosters import check_roster, roster_shifts
from .tables import IN_UNITS, OrgConflict, TreeTables, units_param

_SHIFT = "shift_id, volunteer_id, post_id, start_ms, end_ms, device_id, role, roster_id"
_ROSTER = (
    "roster_id, post_id, members, start_local, end_local, weekdays, rotation, anchor_week, tz, name"
)


def _shift(r: Sequence[Any]) -> Shift:
    return Shift(r[0], r[1], r[2], r[3], r[4], r[5], ShiftRole(r[6]), r[7])


def _roster(r: Sequence[Any]) -> Roster:
    return Roster(
        roster_id=r[0],
        post_id=r[1],
        members=tuple(json.loads(r[2])),
        start=r[3],
        end=r[4],
        weekdays=tuple(json.loads(r[5])),
        rotation=Rotation(r[6]),
        anchor_week=r[7],
        tz=r[8],
        name=r[9],
    )


class Tables(TreeTables):
    # --- shifts --------------------------------------------------------------------------------

    def shift(self, shift_id: str) -> Shift | None:
        row = self._one(f"SELECT {_SHIFT} FROM shifts WHERE shift_id=?", (shift_id,))
        return _shift(row) if row else None

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
        where: list[str] = []
        params: list[object] = []
        if since_ms is not None:
            # A shift lasts at most MAX_SHIFT_MS, so one that ends after since_ms started after
            # since_ms - MAX_SHIFT_MS: that bound lets the start_ms index do the work.
            where.append("end_ms>? AND start_ms>?")
            params += [since_ms, since_ms - MAX_SHIFT_MS]
        if until_ms is not None:
            where.append("start_ms<?")
            params.append(until_ms)
        if units is not None:
            where.append(f"post_id IN (SELECT post_id FROM posts WHERE unit_id {IN_UNITS})")
            params.append(units_param(units))
        if volunteer_id is not None:
            where.append("volunteer_id=?")
            params.append(volunteer_id)
        if device_id is not None:
            where.append("device_id=?")
            params.append(device_id)
        sql = f"SELECT {_SHIFT} FROM shifts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_ms, shift_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_shift(r) for r in self._all(sql, params)]

    def with_terminal(self, shift: Shift) -> Shift:
        """``shift`` with the terminal filled in: the one already recorded on the stored shift
        (same id, same volunteer), or else the one the volunteer holds now. For callers that
        were not told a terminal (a CSV cell left empty, a REST body without ``device_id``);
        re-sending a shift must not rewrite which terminal its past was measured by."""
        old = self.shift(shift.shift_id)
        if old is not None and old.volunteer_id == shift.volunteer_id:
            return replace(shift, device_id=old.device_id)
        return replace(shift, device_id=self.terminal_of(shift.volunteer_id))

    def put_shift(self, shift: Shift) -> bool:
        self._require_volunteer("volunteer_id", shift.volunteer_id)
        if self.unit_of_post(shift.post_id) is None:
            raise OrgError("post_id", f"no post {shift.post_id!r}")
        if shift.device_id is not None and self.terminal(shift.device_id) is None:
            raise OrgError("device_id", f"no terminal {shift.device_id!r}")
        other = self._one(
            "SELECT shift_id, post_id FROM shifts WHERE volunteer_id=? AND shift_id<>? "
            "AND start_ms<? AND end_ms>? AND start_ms>? ORDER BY start_ms LIMIT 1",
            (
                shift.volunteer_id,
                shift.shift_id,
                shift.end_ms,
                shift.start_ms,
                shift.start_ms - MAX_SHIFT_MS,
            ),
        )
        if other is not None:
            # docs/metrics.md: one person cannot be on two posts at once.
            raise OrgConflict(
                "start_ms",
                f"{shift.volunteer_id!r} is already on shift {other[0]!r} (post {other[1]!r}) "
                "at that time",
            )
        created = not self._exists("shifts", "shift_id", shift.shift_id)
        self._upsert(
            "shifts",
            _SHIFT,
            (
                shift.shift_id,
                shift.volunteer_id,
                shift.post_id,
                shift.start_ms,
                shift.end_ms,
                shift.device_id,
                shift.role.value,
                shift.roster_id,
            ),
        )
        return created

    def delete_shift(self, shift_id: str) -> bool:
        return self.conn.execute("DELETE FROM shifts WHERE shift_id=?", (shift_id,)).rowcount > 0

    # --- rosters -------------------------------------------------------------------------------

    def roster(self, roster_id: str) -> Roster | None:
        row = self._one(f"SELECT {_ROSTER} FROM rosters WHERE roster_id=?", (roster_id,))
        return _roster(row) if row else None

    def rosters(self, *, units: Collection[str] | None = None) -> list[Roster]:
        if units is None:
            rows = self._all(f"SELECT {_ROSTER} FROM rosters ORDER BY roster_id")
        else:
            rows = self._all(
                f"SELECT {_ROSTER} FROM rosters WHERE post_id IN "
                f"(SELECT post_id FROM posts WHERE unit_id {IN_UNITS}) ORDER BY roster_id",
                (units_param(units),),
            )
        return [_roster(r) for r in rows]

    def put_roster(self, roster: Roster) -> bool:
        check_roster(roster)
        if self.unit_of_post(roster.post_id) is None:
            raise OrgError("post_id", f"no post {roster.post_id!r}")
        for member in roster.members:
            self._require_volunteer("members", member)
        created = not self._exists("rosters", "roster_id", roster.roster_id)
        self._upsert(
            "rosters",
            _ROSTER,
            (
                roster.roster_id,
                roster.post_id,
                json.dumps(list(roster.members)),
                roster.start,
                roster.end,
                json.dumps(list(roster.weekdays)),
                roster.rotation.value,
                roster.anchor_week,
                roster.tz,
                roster.name,
            ),
        )
        return created

    def delete_roster(self, roster_id: str) -> bool:
        # Its shifts stay: they happened (or are planned); their roster_id says where from.
        return self.conn.execute("DELETE FROM rosters WHERE roster_id=?", (roster_id,)).rowcount > 0

    def generate(self, roster_id: str, first_day: date, last_day: date) -> list[Shift]:
        roster = self.roster(roster_id)
        if roster is None:
            raise OrgError("roster_id", f"no roster {roster_id!r}")
        created = []
        for shift in roster_shifts(roster, first_day, last_day, self.terminal_of):
            old = self.shift(shift.shift_id)
            if old is not None:
                # Same duty: skip. The terminal is not compared: it was fixed when the shift
                # was first made, and a hand-over since must not make a re-run fail.
                if _duty(old) == _duty(shift):
                    continue
                raise OrgConflict(
                    "shift_id",
                    f"{shift.shift_id!r} exists with another post, time or role: "
                    "delete it to generate it again",
                )
            self.put_shift(shift)
            created.append(shift)
        return created

    # --- any record ----------------------------------------------------------------------------

    def owner(self, record: Record) -> str | None:
        """The unit a record belongs to (a shift and a roster: their post's); None if unknown."""
        if isinstance(record, Unit):
            return record.unit_id
        if isinstance(record, Shift | Roster):
            return self.unit_of_post(record.post_id)
        return record.unit_id

    def write_units(self, record: Record) -> list[str | None]:
        """The units that writing ``record`` touches, for scope checks: the unit the stored
        record belongs to, and where the new one goes if that differs. For a unit, where it
        goes is its parent; ``None`` stands for the top of the tree (a new or moved city)."""
        old = self.get(kind_of(record), id_of(record))
        touched: list[str | None] = []
        if old is not None:
            touched.append(self.owner(old))
        if isinstance(record, Unit):
            if not isinstance(old, Unit) or old.parent_id != record.parent_id:
                touched.append(record.parent_id)
        else:
            new = self.owner(record)
            if new is not None and (not touched or touched[0] != new):
                touched.append(new)
        return touched

    def get(self, kind: Kind, record_id: str) -> Record | None:
        getter: Callable[[str], Record | None] = {
            Kind.UNITS: self.unit,
            Kind.VOLUNTEERS: self.volunteer,
            Kind.TERMINALS: self.terminal,
            Kind.POSTS: self.post,
            Kind.SHIFTS: self.shift,
            Kind.ROSTERS: self.roster,
        }[kind]
        return getter(record_id)

    def put(self, record: Record, *, at_ms: int) -> bool:
        """Insert or update any record (``at_ms``: when a terminal changes hands)."""
        if isinstance(record, Unit):
            return self.put_unit(record)
        if isinstance(record, Volunteer):
            return self.put_volunteer(record)
        if isinstance(record, Terminal):
            return self.put_terminal(record, at_ms=at_ms)
        if isinstance(record, Post):
            return self.put_post(record)
        if isinstance(record, Shift):
            return self.put_shift(record)
        return self.put_roster(record)

    def delete(self, kind: Kind, record_id: str) -> bool:
        deleter = {
            Kind.UNITS: self.delete_unit,
            Kind.VOLUNTEERS: self.delete_volunteer,
            Kind.TERMINALS: self.delete_terminal,
            Kind.POSTS: self.delete_post,
            Kind.SHIFTS: self.delete_shift,
            Kind.ROSTERS: self.delete_roster,
        }[kind]
        return deleter(record_id)

    def records(self, kind: Kind, *, units: Collection[str] | None = None) -> list[Record]:
        listers: dict[Kind, Callable[..., Sequence[Record]]] = {
            Kind.UNITS: self.units,
            Kind.VOLUNTEERS: self.volunteers,
            Kind.TERMINALS: self.terminals,
            Kind.POSTS: self.posts,
            Kind.SHIFTS: self.shifts,
            Kind.ROSTERS: self.rosters,
        }
        return list(listers[kind](units=units))


def _duty(shift: Shift) -> tuple[object, ...]:
    return (
        shift.volunteer_id,
        shift.post_id,
        shift.start_ms,
        shift.end_ms,
        shift.role,
        shift.roster_id,
    )
