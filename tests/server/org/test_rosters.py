"""Rosters into shifts, with concrete dates in Asia/Shanghai: past midnight, the weekly captain,
regeneration that skips what exists, and refusals."""

from __future__ import annotations

from datetime import date

import pytest

from server.org.model import OrgError, Roster, Rotation, Shift, ShiftRole, Terminal, Volunteer
from server.org.rosters import on_duty, roster_shifts
from server.org.store import OrgConflict, OrgStore

from .support import local_ms

FRI, SAT = 4, 5


def night_patrol(**kw: object) -> Roster:
    """The bar-street night patrol, 20:00–02:00 on Friday and Saturday nights."""
    fields: dict[str, object] = {
        "roster_id": "bar-night",
        "post_id": "bar",
        "members": ("li", "wang"),
        "start": "20:00",
        "end": "02:00",
        "weekdays": (FRI, SAT),
    }
    return Roster(**(fields | kw))  # type: ignore[arg-type]


def test_a_night_shift_runs_past_midnight_into_the_next_day(org: OrgStore) -> None:
    org.put_roster(night_patrol())
    # Monday 2 March to Sunday 8 March 2026: the Friday and the Saturday.
    made = org.generate("bar-night", date(2026, 3, 2), date(2026, 3, 8))
    assert [(s.shift_id, s.start_ms, s.end_ms) for s in made] == [
        ("bar-night-20260306-li", local_ms("2026-03-06 20:00"), local_ms("2026-03-07 02:00")),
        ("bar-night-20260306-wang", local_ms("2026-03-06 20:00"), local_ms("2026-03-07 02:00")),
        ("bar-night-20260307-li", local_ms("2026-03-07 20:00"), local_ms("2026-03-08 02:00")),
        ("bar-night-20260307-wang", local_ms("2026-03-07 20:00"), local_ms("2026-03-08 02:00")),
    ]
    # 20:00 in Shanghai (UTC+8, no daylight saving) is 12:00 UTC.
    assert made[0].start_ms == 1_772_798_400_000
    assert all(s.role is ShiftRole.MEMBER and s.roster_id == "bar-night" for s in made)
    # The terminal each volunteer held when the shifts were made: li holds t-1, wang none.
    assert [s.device_id for s in made] == ["t-1", None, "t-1", None]
    assert org.shifts(volunteer_id="wang") == [s for s in made if s.volunteer_id == "wang"]


def test_the_weekly_captain_rotates_from_the_anchor_week(org: OrgStore) -> None:
    for vid in ("a", "b", "c"):
        org.put_volunteer(Volunteer(vid, vid.upper(), "ft-s1-t1"))
    # "Ten stalls a group, one person a week": a 09:00–10:00 round every weekday. The anchor is
    # a Wednesday; its week's Monday, 2026-01-05, is week 0, whose captain is members[0].
    roster = Roster(
        "stalls",
        "route",
        ("a", "b", "c"),
        "09:00",
        "10:00",
        weekdays=(0, 1, 2, 3, 4),
        rotation=Rotation.WEEKLY_ONE,
        anchor_week="2026-01-07",
    )
    org.put_roster(roster)
    made = org.generate("stalls", date(2026, 3, 1), date(2026, 3, 15))
    by_day = {s.shift_id.split("-")[1]: s for s in made}
    # 1 March is a Sunday: not scheduled. 2 March's Monday is 8 weeks on: 8 % 3 = 2 → c.
    # The week of 9 March is 9 weeks on → a.
    assert sorted(by_day) == [
        "20260302", "20260303", "20260304", "20260305", "20260306",
        "20260309", "20260310", "20260311", "20260312", "20260313",
    ]  # fmt: skip
    assert {by_day[d].volunteer_id for d in ("20260302", "20260306")} == {"c"}
    assert {by_day[d].volunteer_id for d in ("20260309", "20260313")} == {"a"}
    assert all(s.role is ShiftRole.CAPTAIN for s in made)
    assert by_day["20260302"].start_ms == local_ms("2026-03-02 09:00")
    # Weeks before the anchor count backwards: the week of 29 December 2025 is week -1 → c.
    assert on_duty(roster, date(2025, 12, 31)) == (("c",), ShiftRole.CAPTAIN)
    assert on_duty(roster, date(2026, 1, 11)) == (("a",), ShiftRole.CAPTAIN)  # a Sunday
    assert on_duty(roster, date(2026, 1, 12)) == (("b",), ShiftRole.CAPTAIN)


def test_generating_again_skips_what_exists(org: OrgStore) -> None:
    org.put_roster(night_patrol())
    first = org.generate("bar-night", date(2026, 3, 6), date(2026, 3, 6))
    assert len(first) == 2
    # li hands the terminal to wang meanwhile: the existing shifts still count as made.
    org.put_terminal(Terminal("t-1", "ft-s1", holder="wang"), at_ms=local_ms("2026-03-06 12:00"))
    again = org.generate("bar-night", date(2026, 3, 2), date(2026, 3, 8))
    assert [s.shift_id for s in again] == ["bar-night-20260307-li", "bar-night-20260307-wang"]
    assert [s.device_id for s in again] == [None, "t-1"]
    assert org.shift("bar-night-20260306-li") == first[0]  # the past is not rewritten
    assert org.generate("bar-night", date(2026, 3, 2), date(2026, 3, 8)) == []


def test_a_changed_roster_does_not_silently_rewrite_shifts(org: OrgStore) -> None:
    org.put_roster(night_patrol())
    org.generate("bar-night", date(2026, 3, 6), date(2026, 3, 6))
    org.put_roster(night_patrol(start="21:00"))
    with pytest.raises(OrgConflict) as e:
        org.generate("bar-night", date(2026, 3, 6), date(2026, 3, 7))
    assert e.value.field == "shift_id" and "bar-night-20260306-li" in e.value.reason
    # All or nothing: Saturday's shifts were not made either.
    assert org.shifts(since_ms=local_ms("2026-03-07 12:00")) == []


def test_an_overlap_refuses_the_whole_run(org: OrgStore) -> None:
    org.put_shift(
        Shift("manual", "wang", "route", local_ms("2026-03-07 18:00"), local_ms("2026-03-07 21:00"))
    )
    org.put_roster(night_patrol())
    with pytest.raises(OrgConflict, match="'manual'"):
        org.generate("bar-night", date(2026, 3, 6), date(2026, 3, 7))
    assert [s.shift_id for s in org.shifts()] == ["manual"]


def test_roster_refusals(org: OrgStore) -> None:
    for roster, field in (
        (night_patrol(post_id="nowhere"), "post_id"),
        (night_patrol(members=("li", "ghost")), "members"),
        (night_patrol(tz="Mars/Olympus"), "tz"),
        (night_patrol(tz="../../etc/passwd"), "tz"),
        (night_patrol(anchor_week="2026-02-30"), "anchor_week"),
    ):
        with pytest.raises(OrgError) as e:
            org.put_roster(roster)
        assert e.value.field == field
    assert org.rosters() == []
    with pytest.raises(OrgError, match="roster_id: no roster"):
        org.generate("nothing", date(2026, 3, 1), date(2026, 3, 2))
    org.put_roster(night_patrol())
    with pytest.raises(OrgError, match="last_day"):
        org.generate("bar-night", date(2026, 3, 2), date(2026, 3, 1))


def test_shift_ids_must_stay_ids() -> None:
    roster = night_patrol(roster_id="r" * 60)
    with pytest.raises(OrgError, match="shorten the roster id"):
        roster_shifts(roster, date(2026, 3, 6), date(2026, 3, 6), lambda v: None)


def test_rosters_are_kept_and_found_by_unit(org: OrgStore) -> None:
    roster = night_patrol(name="酒吧街夜巡")
    assert org.put_roster(roster) is True
    assert org.put_roster(roster) is False
    assert org.roster("bar-night") == roster
    assert org.rosters(units=org.subtree("ft-s1")) == [roster]
    assert org.rosters(units=org.subtree("ns")) == []
    with pytest.raises(OrgConflict, match="is on rosters bar-night"):
        org.delete_volunteer("wang")
    with pytest.raises(OrgConflict, match="1 rosters"):
        org.delete_post("bar")
    assert org.delete_roster("bar-night") is True
    assert org.roster("bar-night") is None


def test_another_time_zone(org: OrgStore) -> None:
    # Ürümqi keeps its own clock two hours behind Beijing's.
    org.put_roster(night_patrol(tz="Asia/Urumqi", weekdays=(FRI,)))
    [li, _] = org.generate("bar-night", date(2026, 3, 6), date(2026, 3, 6))
    assert li.start_ms == local_ms("2026-03-06 22:00")
