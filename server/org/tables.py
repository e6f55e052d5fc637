"""The organisation's SQL and its rules, on one connection inside the caller's transaction.

``OrgStore`` owns the connection, the lock and the transactions; ``Tables`` (this module's
``TreeTables`` plus ``server.org.schedule``) is what runs inside them, so one REST write and a
200,000-row import go through the same checks. Every
refusal is an ``OrgError`` naming the field; a refusal caused by *other* records (children
still attached, an overlapping shift) is an ``OrgConflict``, which the REST API answers 409.

The unit tree keeps a materialised path (``/city/district/station/``) per unit: a subtree is
one range scan on the path index, ``path >= P AND path < P'`` where ``P'`` is ``P`` with its
final ``/`` raised to ``0`` (the next byte). A range, not ``LIKE``, because ids may contain
``_``, which ``LIKE`` reads as a wildcard.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from ..duty.geo import fence_from_json, fence_to_json
from .model import (
    PARENT_LEVELS,
    OrgError,
    Post,
    PostKind,
    PostMode,
    Terminal,
    TerminalKind,
    Unit,
    UnitLevel,
    Volunteer,
    VolunteerKind,
)


class OrgConflict(OrgError):
    """Refused because of other records: a unit with children, an overlapping shift, …"""


_UNIT = "unit_id, name, level, parent_id"
_VOLUNTEER = "volunteer_id, name, unit_id, kind, phone"
_TERMINAL = "device_id, unit_id, kind, holder"
_POST = "post_id, name, kind, unit_id, fence, mode"
#: ``unit_id IN (…)`` with one parameter however many units: a JSON array through json_each
#: (a district's subtree can hold more units than SQLite allows bound variables).
IN_UNITS = "IN (SELECT value FROM json_each(?))"


def _unit(r: Sequence[Any]) -> Unit:
    return Unit(r[0], r[1], UnitLevel(r[2]), r[3])


def _volunteer(r: Sequence[Any]) -> Volunteer:
    return Volunteer(r[0], r[1], r[2], VolunteerKind(r[3]), r[4])


def _terminal(r: Sequence[Any]) -> Terminal:
    return Terminal(r[0], r[1], TerminalKind(r[2]), r[3])


def _post(r: Sequence[Any]) -> Post:
    return Post(r[0], r[1], PostKind(r[2]), r[3], fence_from_json(json.loads(r[4])), PostMode(r[5]))


@functools.cache
def _upsert_sql(table: str, columns: str) -> str:
    # ON CONFLICT DO UPDATE, not INSERT OR REPLACE: REPLACE deletes the row first, which
    # foreign keys pointing at it would see.
    names = [c.strip() for c in columns.split(",")]
    updates = ", ".join(f"{c}=excluded.{c}" for c in names[1:])
    return (
        f"INSERT INTO {table}({columns}) VALUES ({','.join('?' * len(names))}) "
        f"ON CONFLICT({names[0]}) DO UPDATE SET {updates}"
    )


def path_range(path: str) -> tuple[str, str]:
    return path, path[:-1] + "0"


def units_param(units: Collection[str]) -> str:
    return json.dumps(sorted(units))


class TreeTables:
    """Units, volunteers, terminals and posts; ``server.org.schedule.Tables`` adds the rest."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _one(self, sql: str, params: Sequence[object] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
        return row

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, params).fetchall())

    def _upsert(self, table: str, columns: str, values: Sequence[object]) -> None:
        self.conn.execute(_upsert_sql(table, columns), values)

    def _exists(self, table: str, key: str, value: str) -> bool:
        return self._one(f"SELECT 1 FROM {table} WHERE {key}=?", (value,)) is not None

    def _count(self, sql: str, params: Sequence[object]) -> int:
        row = self._one(sql, params)
        return int(row[0]) if row else 0

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: on any exception, this step's writes are undone (and the
        exception goes on), the outer transaction's stay."""
        self.conn.execute("SAVEPOINT step")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO step")
            self.conn.execute("RELEASE step")
            raise
        self.conn.execute("RELEASE step")

    # --- units ---------------------------------------------------------------------------------

    def unit(self, unit_id: str) -> Unit | None:
        row = self._one(f"SELECT {_UNIT} FROM units WHERE unit_id=?", (unit_id,))
        return _unit(row) if row else None

    def units(self, *, units: Collection[str] | None = None) -> list[Unit]:
        # By path: every parent comes before its children, so a listing re-imports as it is.
        if units is None:
            return [_unit(r) for r in self._all(f"SELECT {_UNIT} FROM units ORDER BY path")]
        rows = self._all(
            f"SELECT {_UNIT} FROM units WHERE unit_id {IN_UNITS} ORDER BY path",
            (units_param(units),),
        )
        return [_unit(r) for r in rows]

    def _path(self, unit_id: str) -> str | None:
        row = self._one("SELECT path FROM units WHERE unit_id=?", (unit_id,))
        return str(row[0]) if row else None

    def subtree(self, unit_id: str) -> set[str]:
        path = self._path(unit_id)
        if path is None:
            return set()
        rows = self._all("SELECT unit_id FROM units WHERE path>=? AND path<?", path_range(path))
        return {str(r[0]) for r in rows}

    def ancestors(self, unit_id: str) -> list[str]:
        path = self._path(unit_id)
        return path.strip("/").split("/")[:-1] if path else []

    def children(self, unit_id: str) -> list[Unit]:
        rows = self._all(
            f"SELECT {_UNIT} FROM units WHERE parent_id=? ORDER BY unit_id", (unit_id,)
        )
        return [_unit(r) for r in rows]

    def within(self, unit_id: str, root: str) -> bool:
        """Is ``unit_id`` ``root`` or below it?"""
        path, root_path = self._path(unit_id), self._path(root)
        return path is not None and root_path is not None and path.startswith(root_path)

    def _require_unit(self, name: str, unit_id: str) -> None:
        if self._path(unit_id) is None:
            raise OrgError(name, f"no unit {unit_id!r}")

    def put_unit(self, unit: Unit) -> bool:
        old = self._one("SELECT level, path FROM units WHERE unit_id=?", (unit.unit_id,))
        old_path = str(old[1]) if old else None
        if unit.parent_id is None:
            path = f"/{unit.unit_id}/"
        else:
            parent = self._one("SELECT level, path FROM units WHERE unit_id=?", (unit.parent_id,))
            if parent is None:
                raise OrgError("parent_id", f"no unit {unit.parent_id!r}")
            parent_level, parent_path = UnitLevel(parent[0]), str(parent[1])
            if parent_level not in PARENT_LEVELS[unit.level]:
                allowed = ", ".join(sorted(str(lv) for lv in PARENT_LEVELS[unit.level] if lv))
                raise OrgError(
                    "parent_id",
                    f"a {unit.level} cannot be under a {parent_level} "
                    f"({unit.parent_id!r}); it goes under: {allowed}",
                )
            if old_path is not None and parent_path.startswith(old_path):
                raise OrgError(
                    "parent_id",
                    f"{unit.parent_id!r} is inside {unit.unit_id!r}'s own subtree: "
                    "moving it there would make a cycle",
                )
            path = parent_path + unit.unit_id + "/"
        if old is not None and UnitLevel(old[0]) is not unit.level:
            for child_id, child_level in self._all(
                "SELECT unit_id, level FROM units WHERE parent_id=? ORDER BY unit_id",
                (unit.unit_id,),
            ):
                if unit.level not in PARENT_LEVELS[UnitLevel(child_level)]:
                    raise OrgError(
                        "level",
                        f"its child {child_id!r} is a {child_level}, which cannot be under "
                        f"a {unit.level}",
                    )
        self.conn.execute(
            "INSERT INTO units(unit_id, name, level, parent_id, path) VALUES (?,?,?,?,?) "
            "ON CONFLICT(unit_id) DO UPDATE SET name=excluded.name, level=excluded.level, "
            "parent_id=excluded.parent_id, path=excluded.path",
            (unit.unit_id, unit.name, unit.level.value, unit.parent_id, path),
        )
        if old_path is not None and old_path != path:
            # Move the descendants with it: swap the old prefix of their paths for the new one.
            self.conn.execute(
                "UPDATE units SET path=? || substr(path, ?) WHERE path>? AND path<?",
                (path, len(old_path) + 1, *path_range(old_path)),
            )
        return old is None

    def delete_unit(self, unit_id: str) -> bool:
        if self._path(unit_id) is None:
            return False
        attached = [
            f"{n} {what}"
            for what, sql in (
                ("child units", "SELECT count(*) FROM units WHERE parent_id=?"),
                ("volunteers", "SELECT count(*) FROM volunteers WHERE unit_id=?"),
                ("terminals", "SELECT count(*) FROM terminals WHERE unit_id=?"),
                ("posts", "SELECT count(*) FROM posts WHERE unit_id=?"),
            )
            if (n := self._count(sql, (unit_id,)))
        ]
        if attached:
            raise OrgConflict(
                "unit_id", f"{unit_id!r} still has {', '.join(attached)}: move or delete them first"
            )
        self.conn.execute("DELETE FROM units WHERE unit_id=?", (unit_id,))
        return True

    # --- volunteers ----------------------------------------------------------------------------

    def volunteer(self, volunteer_id: str) -> Volunteer | None:
        row = self._one(
            f"SELECT {_VOLUNTEER} FROM volunteers WHERE volunteer_id=?", (volunteer_id,)
        )
        return _volunteer(row) if row else None

    def volunteers(self, *, units: Collection[str] | None = None) -> list[Volunteer]:
        if units is None:
            rows = self._all(f"SELECT {_VOLUNTEER} FROM volunteers ORDER BY volunteer_id")
        else:
            rows = self._all(
                f"SELECT {_VOLUNTEER} FROM volunteers WHERE unit_id {IN_UNITS} "
                "ORDER BY volunteer_id",
                (units_param(units),),
            )
        return [_volunteer(r) for r in rows]

    def _require_volunteer(self, name: str, volunteer_id: str) -> None:
        if not self._one("SELECT 1 FROM volunteers WHERE volunteer_id=?", (volunteer_id,)):
            raise OrgError(name, f"no volunteer {volunteer_id!r}")

    def put_volunteer(self, volunteer: Volunteer) -> bool:
        self._require_unit("unit_id", volunteer.unit_id)
        created = not self._exists("volunteers", "volunteer_id", volunteer.volunteer_id)
        self._upsert(
            "volunteers",
            _VOLUNTEER,
            (
                volunteer.volunteer_id,
                volunteer.name,
                volunteer.unit_id,
                volunteer.kind.value,
                volunteer.phone,
            ),
        )
        return created

    def delete_volunteer(self, volunteer_id: str) -> bool:
        if self.volunteer(volunteer_id) is None:
            return False
        held = [t.device_id for t in self.held_by(volunteer_id)]
        shifts = self._count("SELECT count(*) FROM shifts WHERE volunteer_id=?", (volunteer_id,))
        rosters = [
            str(r[0])
            for r in self._all(
                "SELECT DISTINCT roster_id FROM rosters, json_each(rosters.members) "
                "WHERE json_each.value=? ORDER BY roster_id",
                (volunteer_id,),
            )
        ]
        reasons = []
        if held:
            reasons.append(
                f"holds terminal{'s' if len(held) > 1 else ''} {', '.join(map(repr, held))}"
            )
        if shifts:
            reasons.append(f"has {shifts} shifts")
        if rosters:
            reasons.append(f"is on rosters {', '.join(rosters)}")
        if reasons:
            raise OrgConflict("volunteer_id", f"{volunteer_id!r} {'; '.join(reasons)}")
        self.conn.execute("DELETE FROM volunteers WHERE volunteer_id=?", (volunteer_id,))
        return True

    # --- terminals and who holds them ----------------------------------------------------------

    def terminal(self, device_id: str) -> Terminal | None:
        row = self._one(f"SELECT {_TERMINAL} FROM terminals WHERE device_id=?", (device_id,))
        return _terminal(row) if row else None

    def terminals(self, *, units: Collection[str] | None = None) -> list[Terminal]:
        if units is None:
            rows = self._all(f"SELECT {_TERMINAL} FROM terminals ORDER BY device_id")
        else:
            rows = self._all(
                f"SELECT {_TERMINAL} FROM terminals WHERE unit_id {IN_UNITS} ORDER BY device_id",
                (units_param(units),),
            )
        return [_terminal(r) for r in rows]

    def held_by(self, volunteer_id: str) -> list[Terminal]:
        """The terminals the volunteer holds now: at most one phone and one other terminal,
        the other first."""
        rows = self._all(
            f"SELECT {_TERMINAL} FROM terminals WHERE holder=? ORDER BY kind=?, device_id",
            (volunteer_id, TerminalKind.PHONE.value),
        )
        return [_terminal(r) for r in rows]

    def terminal_of(self, volunteer_id: str) -> str | None:
        """The terminal a new shift records (``Shift.device_id``): the volunteer's signed
        terminal if they hold one, else their phone (docs/metrics.md, "Phones and trust")."""
        held = self.held_by(volunteer_id)
        return held[0].device_id if held else None

    def phone_holdings(
        self, volunteer_ids: Collection[str], since_ms: int, until_ms: int
    ) -> list[tuple[str, str, int, int | None]]:
        """``(device_id, volunteer_id, from_ms, to_ms)`` of every holding of a PHONE-kind
        terminal by one of ``volunteer_ids`` that overlaps ``[since_ms, until_ms)``, by
        volunteer then time; ``to_ms`` None: held now. One query however many volunteers (the
        duty engine asks for every shift near now at once)."""
        rows = self._all(
            "SELECT h.device_id, h.volunteer_id, h.from_ms, h.to_ms FROM holdings h "
            "JOIN terminals t ON t.device_id = h.device_id "
            f"WHERE h.volunteer_id {IN_UNITS} AND t.kind=? "
            "AND h.from_ms<? AND (h.to_ms IS NULL OR h.to_ms>?) "
            "ORDER BY h.volunteer_id, h.from_ms, h.id",
            (units_param(volunteer_ids), TerminalKind.PHONE.value, until_ms, since_ms),
        )
        return [
            (str(r[0]), str(r[1]), int(r[2]), None if r[3] is None else int(r[3])) for r in rows
        ]

    def phones(self, device_ids: Collection[str]) -> set[str]:
        """Which of ``device_ids`` are PHONE-kind terminals (one query for many)."""
        rows = self._all(
            f"SELECT device_id FROM terminals WHERE device_id {IN_UNITS} AND kind=?",
            (units_param(device_ids), TerminalKind.PHONE.value),
        )
        return {str(r[0]) for r in rows}

    def holdings(self, device_id: str) -> list[tuple[str, int, int | None]]:
        rows = self._all(
            "SELECT volunteer_id, from_ms, to_ms FROM holdings WHERE device_id=? "
            "ORDER BY from_ms, id",
            (device_id,),
        )
        return [(str(r[0]), int(r[1]), None if r[2] is None else int(r[2])) for r in rows]

    def put_terminal(self, terminal: Terminal, *, at_ms: int) -> bool:
        if isinstance(at_ms, bool) or not isinstance(at_ms, int) or at_ms < 0:
            raise OrgError("at_ms", f"{at_ms!r} is not a time in epoch milliseconds")
        self._require_unit("unit_id", terminal.unit_id)
        if terminal.holder is not None:
            self._require_volunteer("holder", terminal.holder)
            # At most one phone and one other terminal per person: a shift records "the"
            # terminal of its volunteer, and counts the phone beside it (docs/metrics.md,
            # "Phones and trust"). Two of a class would leave either choice arbitrary.
            phone = terminal.kind is TerminalKind.PHONE
            for other in self.held_by(terminal.holder):
                if other.device_id != terminal.device_id and (
                    (other.kind is TerminalKind.PHONE) == phone
                ):
                    what = "phone" if phone else "terminal"
                    raise OrgConflict(
                        "holder",
                        f"{terminal.holder!r} already holds {what} {other.device_id!r} "
                        "(a volunteer holds at most one phone and one other terminal)",
                    )
        old = self.terminal(terminal.device_id)
        current = self._one(
            "SELECT id, from_ms FROM holdings WHERE device_id=? AND to_ms IS NULL",
            (terminal.device_id,),
        )
        handed_over = old is None or old.holder != terminal.holder
        if handed_over and current is not None and at_ms < current[1]:
            raise OrgError("at_ms", f"{at_ms} is before the current holding began ({current[1]})")
        self._upsert(
            "terminals",
            _TERMINAL,
            (terminal.device_id, terminal.unit_id, terminal.kind.value, terminal.holder),
        )
        if handed_over:
            if current is not None and at_ms == current[1]:
                # Handed on within the same millisecond: it was never really held.
                self.conn.execute("DELETE FROM holdings WHERE id=?", (current[0],))
            elif current is not None:
                self.conn.execute("UPDATE holdings SET to_ms=? WHERE id=?", (at_ms, current[0]))
            if terminal.holder is not None:
                self.conn.execute(
                    "INSERT INTO holdings(device_id, volunteer_id, from_ms) VALUES (?,?,?)",
                    (terminal.device_id, terminal.holder, at_ms),
                )
        return old is None

    def delete_terminal(self, device_id: str) -> bool:
        if self.terminal(device_id) is None:
            return False
        n = self._count("SELECT count(*) FROM shifts WHERE device_id=?", (device_id,))
        if n:
            # Those shifts' on-duty rates are computed from this terminal's data.
            raise OrgConflict("device_id", f"{device_id!r} is recorded on {n} shifts")
        self.conn.execute("DELETE FROM holdings WHERE device_id=?", (device_id,))
        self.conn.execute("DELETE FROM terminals WHERE device_id=?", (device_id,))
        return True

    # --- posts ---------------------------------------------------------------------------------

    def post(self, post_id: str) -> Post | None:
        row = self._one(f"SELECT {_POST} FROM posts WHERE post_id=?", (post_id,))
        return _post(row) if row else None

    def posts(self, *, units: Collection[str] | None = None) -> list[Post]:
        if units is None:
            rows = self._all(f"SELECT {_POST} FROM posts ORDER BY post_id")
        else:
            rows = self._all(
                f"SELECT {_POST} FROM posts WHERE unit_id {IN_UNITS} ORDER BY post_id",
                (units_param(units),),
            )
        return [_post(r) for r in rows]

    def put_post(self, post: Post) -> bool:
        self._require_unit("unit_id", post.unit_id)
        created = not self._exists("posts", "post_id", post.post_id)
        self._upsert(
            "posts",
            _POST,
            (
                post.post_id,
                post.name,
                post.kind.value,
                post.unit_id,
                json.dumps(fence_to_json(post.fence)),
                post.mode.value,
            ),
        )
        return created

    def delete_post(self, post_id: str) -> bool:
        if self.post(post_id) is None:
            return False
        shifts = self._count("SELECT count(*) FROM shifts WHERE post_id=?", (post_id,))
        rosters = self._count("SELECT count(*) FROM rosters WHERE post_id=?", (post_id,))
        if shifts or rosters:
            raise OrgConflict("post_id", f"{post_id!r} has {shifts} shifts and {rosters} rosters")
        self.conn.execute("DELETE FROM posts WHERE post_id=?", (post_id,))
        return True

    def unit_of_post(self, post_id: str) -> str | None:
        row = self._one("SELECT unit_id FROM posts WHERE post_id=?", (post_id,))
        return str(row[0]) if row else None
