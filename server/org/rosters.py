"""From a roster to its shifts: date arithmetic only, no store.

A roster says "at this post, on these weekdays, from HH:MM to HH:MM local time, these members".
``roster_shifts`` turns that into concrete ``Shift`` records for a range of days. The store
checks and saves them (``OrgStore.generate``); keeping the arithmetic here lets it be tested
on its own, with concrete dates.

Rules:

- Times of day are local to the roster's ``tz`` (zoneinfo). An end at or before the start runs
  past midnight into the next day (the bar-street night patrol 20:00–02:00): the shift belongs
  to the day it starts, and that day must be a scheduled weekday.
- ``Rotation.ALL``: every member on every scheduled day, role ``MEMBER``.
- ``Rotation.WEEKLY_ONE`` ("ten stalls a group, one person a week"): on a day whose Monday is
  ``k`` whole weeks after the anchor week's Monday, only ``members[k % n]``, as ``CAPTAIN``.
  Weeks before the anchor count backwards the same way (k < 0 still picks ``k % n``).
- Shift ids are deterministic, ``{roster_id}-{YYYYMMDD}-{volunteer_id}``, so generating twice
  makes the same ids and the store can skip what exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .model import OrgError, Roster, Rotation, Shift, ShiftRole


def zone_of(roster: Roster) -> ZoneInfo:
    """The roster's time zone, or an ``OrgError`` naming ``tz``."""
    if not isinstance(roster.tz, str) or not roster.tz:
        raise OrgError("tz", f"{roster.tz!r} is not a time zone name")
    try:
        return ZoneInfo(roster.tz)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: names that are not zone keys at all ("../x", absolute paths).
        raise OrgError(
            "tz", f"{roster.tz!r} is not a known time zone (e.g. Asia/Shanghai)"
        ) from None


def anchor_monday(roster: Roster) -> date:
    """The Monday of the roster's anchor week (the anchor may be any day of that week)."""
    try:
        anchor = date.fromisoformat(roster.anchor_week)
    except ValueError:
        raise OrgError("anchor_week", f"{roster.anchor_week!r} is not a date") from None
    return anchor - timedelta(days=anchor.weekday())


def check_roster(roster: Roster) -> None:
    """What the record itself cannot check: a real time zone and a real anchor date."""
    zone_of(roster)
    anchor_monday(roster)


def days(first_day: date, last_day: date) -> Iterator[date]:
    day = first_day
    while day <= last_day:
        yield day
        day += timedelta(days=1)


def shift_id(roster_id: str, day: date, volunteer_id: str) -> str:
    made = f"{roster_id}-{day:%Y%m%d}-{volunteer_id}"
    if len(made) > 64:
        raise OrgError(
            "roster_id",
            f"{made!r} would be a shift id longer than 64 characters: shorten the roster id",
        )
    return made


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _epoch_ms(moment: datetime) -> int:
    # Whole minutes, so the float timestamp is exact.
    return int(moment.timestamp()) * 1000


def on_duty(roster: Roster, day: date) -> tuple[tuple[str, ...], ShiftRole]:
    """Who is on duty on ``day`` (ignoring the weekday filter), and in which role."""
    if roster.rotation is Rotation.ALL:
        return roster.members, ShiftRole.MEMBER
    monday = day - timedelta(days=day.weekday())
    weeks = (monday - anchor_monday(roster)).days // 7
    return (roster.members[weeks % len(roster.members)],), ShiftRole.CAPTAIN


def roster_shifts(
    roster: Roster,
    first_day: date,
    last_day: date,
    device_of: Callable[[str], str | None],
) -> list[Shift]:
    """The roster's shifts starting on the days ``first_day`` to ``last_day`` (both included).

    ``device_of(volunteer_id)`` gives the terminal each volunteer holds now; a shift records it
    at creation (see ``Shift``).
    """
    if last_day < first_day:
        raise OrgError("last_day", f"{last_day} is before the first day {first_day}")
    zone = zone_of(roster)
    start, end = _hhmm(roster.start), _hhmm(roster.end)
    overnight = end <= start
    devices: dict[str, str | None] = {}
    shifts = []
    for day in days(first_day, last_day):
        if day.weekday() not in roster.weekdays:
            continue
        start_ms = _epoch_ms(datetime.combine(day, start, tzinfo=zone))
        end_day = day + timedelta(days=1) if overnight else day
        end_ms = _epoch_ms(datetime.combine(end_day, end, tzinfo=zone))
        members, role = on_duty(roster, day)
        for volunteer_id in members:
            if volunteer_id not in devices:
                devices[volunteer_id] = device_of(volunteer_id)
            shifts.append(
                Shift(
                    shift_id=shift_id(roster.roster_id, day, volunteer_id),
                    volunteer_id=volunteer_id,
                    post_id=roster.post_id,
                    start_ms=start_ms,
                    end_ms=end_ms,
                    device_id=devices[volunteer_id],
                    role=role,
                    roster_id=roster.roster_id,
                )
            )
    return shifts
