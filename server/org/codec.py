"""The organisation's records as JSON: one place for the REST API, the imports and the tests.

``to_json(record)`` gives a plain dict (enums as their values, a fence as
``server.duty.geo.fence_to_json``); ``from_json(kind, doc, id=...)`` builds the record back and
refuses, with an ``OrgError`` naming the field, anything that is not exactly a record: unknown
fields (a typo such as ``parent`` for ``parent_id`` must not pass silently), wrong types, an id
in the body that differs from the id it is stored under. Fence errors come out as
``OrgError("fence.<field>", …)`` too, so callers catch one exception.

A post without a ``mode`` is a patrol post when its fence is a corridor (a route can only be
patrolled) and a fixed post otherwise.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any, TypeVar

from ..duty.geo import Corridor, FenceError, fence_from_json, fence_to_json
from .model import (
    OrgError,
    Post,
    PostKind,
    PostMode,
    Roster,
    Rotation,
    Shift,
    ShiftRole,
    Terminal,
    TerminalKind,
    Unit,
    UnitLevel,
    Volunteer,
    VolunteerKind,
)

Record = Unit | Volunteer | Terminal | Post | Shift | Roster


class Kind(enum.StrEnum):
    """The kinds of record, named as in the URLs (``/api/v1/org/{kind}``)."""

    UNITS = "units"
    VOLUNTEERS = "volunteers"
    TERMINALS = "terminals"
    POSTS = "posts"
    SHIFTS = "shifts"
    ROSTERS = "rosters"


#: Each kind's id field.
ID_FIELD = {
    Kind.UNITS: "unit_id",
    Kind.VOLUNTEERS: "volunteer_id",
    Kind.TERMINALS: "device_id",
    Kind.POSTS: "post_id",
    Kind.SHIFTS: "shift_id",
    Kind.ROSTERS: "roster_id",
}
_KIND_OF_TYPE: dict[type, Kind] = {
    Unit: Kind.UNITS,
    Volunteer: Kind.VOLUNTEERS,
    Terminal: Kind.TERMINALS,
    Post: Kind.POSTS,
    Shift: Kind.SHIFTS,
    Roster: Kind.ROSTERS,
}


_TYPE_OF_KIND: dict[Kind, Any] = {kind: cls for cls, kind in _KIND_OF_TYPE.items()}
_ROSTER_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(Roster) if f.default is not dataclasses.MISSING
}


def kind_of(record: Record) -> Kind:
    return _KIND_OF_TYPE[type(record)]


def id_of(record: Record) -> str:
    value: str = getattr(record, ID_FIELD[kind_of(record)])
    return value


def to_json(record: Record) -> dict[str, Any]:
    if isinstance(record, Unit):
        return {
            "unit_id": record.unit_id,
            "name": record.name,
            "level": record.level.value,
            "parent_id": record.parent_id,
        }
    if isinstance(record, Volunteer):
        return {
            "volunteer_id": record.volunteer_id,
            "name": record.name,
            "unit_id": record.unit_id,
            "kind": record.kind.value,
            "phone": record.phone,
        }
    if isinstance(record, Terminal):
        return {
            "device_id": record.device_id,
            "unit_id": record.unit_id,
            "kind": record.kind.value,
            "holder": record.holder,
        }
    if isinstance(record, Post):
        return {
            "post_id": record.post_id,
            "name": record.name,
            "kind": record.kind.value,
            "unit_id": record.unit_id,
            "mode": record.mode.value,
            "fence": fence_to_json(record.fence),
        }
    if isinstance(record, Shift):
        return {
            "shift_id": record.shift_id,
            "volunteer_id": record.volunteer_id,
            "post_id": record.post_id,
            "start_ms": record.start_ms,
            "end_ms": record.end_ms,
            "device_id": record.device_id,
            "role": record.role.value,
            "roster_id": record.roster_id,
        }
    return {
        "roster_id": record.roster_id,
        "name": record.name,
        "post_id": record.post_id,
        "members": list(record.members),
        "start": record.start,
        "end": record.end,
        "weekdays": list(record.weekdays),
        "rotation": record.rotation.value,
        "anchor_week": record.anchor_week,
        "tz": record.tz,
    }


E = TypeVar("E", bound=enum.Enum)


class _Doc:
    """The fields of one JSON object, each taken once; what is left over is unknown."""

    def __init__(self, kind: Kind, doc: object, record_id: str) -> None:
        if not isinstance(doc, dict):
            raise OrgError("body", f"expected a JSON object, got {type(doc).__name__}")
        self.fields: dict[str, Any] = dict(doc)
        id_field = ID_FIELD[kind]
        given = self.fields.pop(id_field, record_id)
        if given != record_id:
            raise OrgError(id_field, f"{given!r} differs from the id {record_id!r} in the path")

    def has(self, name: str) -> bool:
        return name in self.fields

    def required(self, name: str) -> Any:
        if name not in self.fields:
            raise OrgError(name, "missing")
        return self.fields.pop(name)

    def optional(self, name: str, default: Any = None) -> Any:
        value = self.fields.pop(name, None)
        return default if value is None else value

    def enum(self, name: str, cls: type[E], default: E | None = None) -> E:
        raw = self.required(name) if default is None else self.optional(name, default.value)
        try:
            return cls(raw)
        except ValueError:
            choices = ", ".join(str(m.value) for m in cls)
            raise OrgError(name, f"{raw!r}: one of {choices}") from None

    def text(self, name: str, default: str | None = None) -> str:
        value = self.required(name) if default is None else self.optional(name, default)
        if not isinstance(value, str):
            raise OrgError(name, f"expected text, got {type(value).__name__}")
        return value

    def done(self) -> None:
        if self.fields:
            raise OrgError(sorted(self.fields)[0], "unknown field")


def _list_of(
    name: str, value: object, check: Callable[[object], bool], what: str
) -> tuple[Any, ...]:
    if not isinstance(value, list) or not all(check(v) for v in value):
        raise OrgError(name, f"expected a list of {what}")
    return tuple(value)


def _fence(doc: object) -> Any:
    try:
        return fence_from_json(doc)
    except FenceError as exc:
        field = exc.field if exc.field.startswith("fence") else f"fence.{exc.field}"
        raise OrgError(field, exc.reason) from None


def from_json(kind: Kind | str, doc: object, *, id: str) -> Record:
    """The record of ``kind`` stored under ``id`` from its JSON object (the id field may be
    left out of ``doc``; if present it must equal ``id``)."""
    try:
        kind = Kind(kind)
    except ValueError:
        raise OrgError("kind", f"{kind!r}: one of {', '.join(Kind)}") from None
    d = _Doc(kind, doc, id)
    # Take every field first and refuse unknown ones before the record checks itself: a typo
    # ("parent" for "parent_id") is then reported as itself, not as the field it left empty.
    fields: dict[str, Any]
    if kind is Kind.UNITS:
        fields = {
            "name": d.text("name"),
            "level": d.enum("level", UnitLevel),
            "parent_id": d.optional("parent_id"),
        }
    elif kind is Kind.VOLUNTEERS:
        fields = {
            "name": d.text("name"),
            "unit_id": d.required("unit_id"),
            "kind": d.enum("kind", VolunteerKind, VolunteerKind.VOLUNTARY),
            "phone": d.text("phone", ""),
        }
    elif kind is Kind.TERMINALS:
        fields = {
            "unit_id": d.required("unit_id"),
            "kind": d.enum("kind", TerminalKind, TerminalKind.HANDHELD),
            "holder": d.optional("holder"),
        }
    elif kind is Kind.POSTS:
        fence = _fence(d.required("fence"))
        default_mode = PostMode.PATROL if isinstance(fence, Corridor) else PostMode.FIXED
        fields = {
            "name": d.text("name"),
            "kind": d.enum("kind", PostKind),
            "unit_id": d.required("unit_id"),
            "fence": fence,
            "mode": d.enum("mode", PostMode, default_mode),
        }
    elif kind is Kind.SHIFTS:
        fields = {
            "volunteer_id": d.required("volunteer_id"),
            "post_id": d.required("post_id"),
            "start_ms": d.required("start_ms"),
            "end_ms": d.required("end_ms"),
            "device_id": d.optional("device_id"),
            "role": d.enum("role", ShiftRole, ShiftRole.MEMBER),
            "roster_id": d.optional("roster_id"),
        }
    else:
        fields = {
            "post_id": d.required("post_id"),
            "members": _list_of("members", d.required("members"), _is_str, "volunteer ids"),
            "start": d.text("start"),
            "end": d.text("end"),
            "weekdays": _list_of(
                "weekdays",
                d.optional("weekdays", list(_ROSTER_DEFAULTS["weekdays"])),
                _is_int,
                "days as 0 (Monday) to 6 (Sunday)",
            ),
            "rotation": d.enum("rotation", Rotation, _ROSTER_DEFAULTS["rotation"]),
            "anchor_week": d.text("anchor_week", _ROSTER_DEFAULTS["anchor_week"]),
            "tz": d.text("tz", _ROSTER_DEFAULTS["tz"]),
            "name": d.text("name", _ROSTER_DEFAULTS["name"]),
        }
    d.done()
    record: Record = _TYPE_OF_KIND[kind](id, **fields)
    return record


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
