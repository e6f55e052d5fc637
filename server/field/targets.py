"""Who a task reaches, and who holds a terminal: the organisation, asked through ``OrgView``.

A task targets either a **unit** (a grid, a team, a station: every terminal issued to that
unit or any unit below it, whoever holds it and whether on duty or not; a published task is
for the unit's people) or a **post kind** (every terminal on a shift running now at a post of
that kind: "all duty points, check your fire extinguishers"). Both stay inside the caller's
units: a station's officer never reaches another station's volunteers.

``OrgView`` is the few calls of ``server.org.store.OrgStore`` this package uses; tests hand
in the real store on a temporary file.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from ..org.model import Post, PostKind, Shift, Terminal, TerminalKind, Volunteer
from .errors import BadRequest, NobodyReached, UnknownUnit
from .model import TargetKind


class OrgView(Protocol):
    """What field reports ask of the organisation (``server.org.store.OrgStore`` has it)."""

    def subtree(self, unit_id: str, /) -> set[str]: ...

    def terminal(self, device_id: str, /) -> Terminal | None: ...

    def terminals(self, *, units: Collection[str] | None = ...) -> list[Terminal]: ...

    def volunteer(self, volunteer_id: str, /) -> Volunteer | None: ...

    def posts(self, *, units: Collection[str] | None = ...) -> list[Post]: ...

    def shifts(
        self,
        *,
        since_ms: int | None = ...,
        until_ms: int | None = ...,
        units: Collection[str] | None = ...,
    ) -> list[Shift]: ...


@dataclass(frozen=True, slots=True)
class Holder:
    """A terminal's unit and the volunteer holding it (each None when unknown: a device the
    organisation does not list is seen only by people without a scope)."""

    device_id: str
    unit_id: str | None = None
    volunteer_id: str | None = None
    name: str | None = None


class _Names:
    """Volunteer names, each looked up once per resolution."""

    def __init__(self, org: OrgView) -> None:
        self._org = org
        self._known: dict[str, str | None] = {}

    def __call__(self, volunteer_id: str | None) -> str | None:
        if volunteer_id is None:
            return None
        if volunteer_id not in self._known:
            v = self._org.volunteer(volunteer_id)
            self._known[volunteer_id] = v.name if v is not None else None
        return self._known[volunteer_id]


def holder(org: OrgView, device_id: str) -> Holder:
    """Who holds ``device_id`` now, and its unit."""
    terminal = org.terminal(device_id)
    if terminal is None:
        return Holder(device_id)
    return Holder(device_id, terminal.unit_id, terminal.holder, _Names(org)(terminal.holder))


def resolve(
    org: OrgView,
    target_kind: TargetKind,
    target: str,
    *,
    units: Collection[str] | None,
    now_ms: int,
) -> list[Holder]:
    """The terminals the task reaches, by device id, inside ``units`` (None: anywhere).

    Raises ``UnknownUnit`` for a unit target that does not exist (or lies wholly outside
    ``units``), ``BadRequest`` for a post kind that is not one, and ``NobodyReached`` when the
    target holds no terminal.
    """
    if target_kind is TargetKind.UNIT:
        found = _unit(org, target, units)
    elif target_kind is TargetKind.POST_KIND:
        found = _post_kind(org, target, units, now_ms)
    else:  # pragma: no cover - the enum has two members
        raise BadRequest("target_kind", f"{target_kind!r}: one of unit, post_kind")
    if not found:
        what = "unit" if target_kind is TargetKind.UNIT else "post kind"
        raise NobodyReached("target", f"{what} {target!r} reaches no terminal")
    return found


def _unit(org: OrgView, unit_id: str, units: Collection[str] | None) -> list[Holder]:
    subtree = org.subtree(unit_id)
    if units is not None:
        subtree &= set(units)
    if not subtree:
        raise UnknownUnit("target", f"no unit {unit_id!r}")
    names = _Names(org)
    # Phone apps cannot show or acknowledge a task (docs/phones.md): signed terminals only.
    return [
        Holder(t.device_id, t.unit_id, t.holder, names(t.holder))
        for t in org.terminals(units=subtree)
        if t.kind is not TerminalKind.PHONE
    ]


def _post_kind(org: OrgView, kind: str, units: Collection[str] | None, now_ms: int) -> list[Holder]:
    try:
        post_kind = PostKind(kind)
    except ValueError:
        raise BadRequest(
            "target", f"{kind!r} is not a post kind (one of {', '.join(PostKind)})"
        ) from None
    posts = {p.post_id for p in org.posts(units=units) if p.kind is post_kind}
    if not posts:
        return []
    # The shift started last wins when a terminal is somehow on two at once: it names who has
    # the terminal now.
    running: dict[str, Shift] = {}
    shifts = org.shifts(since_ms=now_ms, until_ms=now_ms + 1, units=units)
    for s in sorted(shifts, key=lambda s: (s.start_ms, s.shift_id)):
        if s.device_id is not None and s.post_id in posts and s.start_ms <= now_ms < s.end_ms:
            running[s.device_id] = s
    names = _Names(org)
    found: list[Holder] = []
    for device, shift in sorted(running.items()):
        terminal = org.terminal(device)
        if terminal is not None and terminal.kind is TerminalKind.PHONE:
            continue  # cannot take a task (above)
        unit = terminal.unit_id if terminal is not None else None
        found.append(Holder(device, unit, shift.volunteer_id, names(shift.volunteer_id)))
    return found
