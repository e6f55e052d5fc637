"""The organisation store: the unit tree's rules, subtrees, holdings, shifts and their overlaps."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from server.errors import StoreError
from server.org.model import (
    OrgError,
    Shift,
    ShiftRole,
    Terminal,
    Unit,
    UnitLevel,
    Volunteer,
    VolunteerKind,
)
from server.org.store import MIGRATIONS, OrgConflict, OrgStore

from .support import BAR, ISSUED_MS, PARK, ROUTE, local_ms

# --- the unit tree ---------------------------------------------------------------------------


def test_levels_follow_the_parent_rules(store: OrgStore) -> None:
    assert store.put_unit(Unit("sz", "深圳", UnitLevel.CITY)) is True
    assert store.put_unit(Unit("sz", "深圳市", UnitLevel.CITY)) is False  # an update
    with pytest.raises(OrgError) as e:
        store.put_unit(Unit("s1", "station", UnitLevel.STATION, "sz"))
    assert e.value.field == "parent_id" and "district" in e.value.reason
    with pytest.raises(OrgError, match="no unit 'nowhere'"):
        store.put_unit(Unit("ft", "福田", UnitLevel.DISTRICT, "nowhere"))
    store.put_unit(Unit("ft", "福田", UnitLevel.DISTRICT, "sz"))
    store.put_unit(Unit("s1", "station", UnitLevel.STATION, "ft"))
    store.put_unit(Unit("g1", "grid 1", UnitLevel.GRID, "s1"))
    store.put_unit(Unit("g2", "grid 2", UnitLevel.GRID, "g1"))  # Yulin's nested grids
    store.put_unit(Unit("t1", "team", UnitLevel.TEAM, "g2"))
    with pytest.raises(OrgError, match="parent_id: a team cannot be under a team"):
        store.put_unit(Unit("t2", "team", UnitLevel.TEAM, "t1"))
    assert store.unit("sz") == Unit("sz", "深圳市", UnitLevel.CITY)
    assert store.unit("t2") is None


def test_a_move_into_its_own_subtree_is_refused(org: OrgStore) -> None:
    org.put_unit(Unit("ft-s1-g2", "grid 2", UnitLevel.GRID, "ft-s1-g1"))
    for parent in ("ft-s1-g2", "ft-s1-g1"):  # a descendant, and itself
        with pytest.raises(OrgError) as e:
            org.put_unit(Unit("ft-s1-g1", "一级网格", UnitLevel.GRID, parent))
        assert e.value.field == "parent_id" and "cycle" in e.value.reason
    assert org.unit("ft-s1-g1") == Unit("ft-s1-g1", "一级网格", UnitLevel.GRID, "ft-s1")
    assert org.subtree("ft-s1-g1") == {"ft-s1-g1", "ft-s1-g2", "ft-s1-t1"}


def test_moving_a_unit_moves_its_subtree(org: OrgStore) -> None:
    org.put_unit(Unit("ft-s1-g1", "一级网格", UnitLevel.GRID, "ft-s2"))
    assert org.ancestors("ft-s1-t1") == ["sz", "ft", "ft-s2", "ft-s1-g1"]
    assert org.subtree("ft-s2") == {"ft-s2", "ft-s1-g1", "ft-s1-t1"}
    assert org.subtree("ft-s1") == {"ft-s1"}
    assert [u.unit_id for u in org.children("ft-s2")] == ["ft-s1-g1"]
    assert org.within("ft-s1-t1", "ft-s2") and not org.within("ft-s1-t1", "ft-s1")


def test_a_level_change_must_suit_the_children(org: OrgStore) -> None:
    with pytest.raises(OrgError) as e:  # the grid has a team under it; a team cannot
        org.put_unit(Unit("ft-s1-g1", "一级网格", UnitLevel.TEAM, "ft-s1"))
    assert e.value.field == "level" and "ft-s1-t1" in e.value.reason


def test_subtree_and_ancestors(org: OrgStore) -> None:
    assert org.subtree("ft") == {"ft", "ft-s1", "ft-s1-g1", "ft-s1-t1", "ft-s2"}
    assert org.subtree("sz") == {u.unit_id for u in org.units()}
    assert org.subtree("ns-s1") == {"ns-s1"}
    assert org.subtree("nowhere") == set()
    assert org.ancestors("ft-s1-t1") == ["sz", "ft", "ft-s1", "ft-s1-g1"]
    assert org.ancestors("sz") == []
    # Parents come before their children, so a listing can be imported again as it is.
    order = [u.unit_id for u in org.units()]
    for unit in org.units():
        if unit.parent_id:
            assert order.index(unit.parent_id) < order.index(unit.unit_id)


def test_subtree_is_not_fooled_by_similar_ids(store: OrgStore) -> None:
    # "_" is a LIKE wildcard and "-" and "." sort before "/": none may leak into ft's subtree.
    store.put_unit(Unit("sz", "深圳", UnitLevel.CITY))
    for unit_id in ("ft", "ft-x", "ft.y", "ft_z", "ft0", "fta", "f_"):
        store.put_unit(Unit(unit_id, unit_id, UnitLevel.DISTRICT, "sz"))
    store.put_unit(Unit("ft-1", "station", UnitLevel.STATION, "ft"))
    store.put_unit(Unit("f_-1", "station", UnitLevel.STATION, "f_"))
    assert store.subtree("ft") == {"ft", "ft-1"}
    assert store.subtree("f_") == {"f_", "f_-1"}


def test_a_unit_with_anything_attached_is_not_deleted(org: OrgStore) -> None:
    with pytest.raises(OrgConflict) as e:
        org.delete_unit("ft-s1")
    assert "1 child units" in e.value.reason and "1 volunteers" in e.value.reason
    assert "1 terminals" in e.value.reason and "1 posts" in e.value.reason
    assert org.delete_unit("ft-s1-t1") is True
    assert org.delete_unit("ft-s1-t1") is False
    assert org.unit("ft-s1-t1") is None


# --- volunteers and terminals ----------------------------------------------------------------


def test_volunteers_need_a_unit_and_filter_by_units(org: OrgStore) -> None:
    with pytest.raises(OrgError, match="unit_id: no unit 'x'"):
        org.put_volunteer(Volunteer("zhao", "赵", "x"))
    futian = org.subtree("ft")
    assert [v.volunteer_id for v in org.volunteers(units=futian)] == ["li", "wang"]
    assert [v.volunteer_id for v in org.volunteers()] == ["chen", "li", "wang"]
    assert org.volunteers(units=[]) == []
    assert org.volunteer("li") == Volunteer(
        "li", "李", "ft-s1-g1", VolunteerKind.DUTY, "13800000001"
    )


def test_terminal_hand_overs_are_kept_as_holdings(org: OrgStore) -> None:
    t0 = ISSUED_MS
    assert org.holdings("t-1") == [("li", t0, None)]
    assert org.terminal_of("li") == "t-1"
    org.put_terminal(Terminal("t-1", "ft-s1", holder="wang"), at_ms=t0 + 5000)
    assert org.holdings("t-1") == [("li", t0, t0 + 5000), ("wang", t0 + 5000, None)]
    assert org.terminal_of("li") is None and org.terminal_of("wang") == "t-1"
    # An update that keeps the holder leaves the holdings alone.
    org.put_terminal(Terminal("t-1", "ft-s2", holder="wang"), at_ms=t0 + 6000)
    org.put_terminal(Terminal("t-1", "ft-s2"), at_ms=t0 + 9000)
    assert org.holdings("t-1")[-1] == ("wang", t0 + 5000, t0 + 9000)
    assert org.terminal_of("wang") is None
    # Handed on within the same millisecond: the empty holding is not kept.
    org.put_terminal(Terminal("t-1", "ft-s2", holder="li"), at_ms=t0 + 10_000)
    org.put_terminal(Terminal("t-1", "ft-s2", holder="wang"), at_ms=t0 + 10_000)
    assert org.holdings("t-1")[-1] == ("wang", t0 + 10_000, None)
    assert len(org.holdings("t-1")) == 3


def test_terminal_refusals(org: OrgStore) -> None:
    with pytest.raises(OrgError, match="holder: no volunteer 'ghost'"):
        org.put_terminal(Terminal("t-3", "ft-s1", holder="ghost"), at_ms=ISSUED_MS)
    with pytest.raises(OrgConflict, match="'li' already holds terminal 't-1'"):
        org.put_terminal(Terminal("t-3", "ft-s1", holder="li"), at_ms=ISSUED_MS)
    with pytest.raises(OrgError, match=r"at_ms: .* before the current holding began"):
        org.put_terminal(Terminal("t-1", "ft-s1", holder="wang"), at_ms=ISSUED_MS - 1)
    assert org.terminal("t-3") is None
    assert org.terminal("t-1") == Terminal("t-1", "ft-s1", holder="li")


def test_a_volunteer_is_not_deleted_while_on_duty_records(org: OrgStore) -> None:
    with pytest.raises(OrgConflict, match="holds terminal 't-1'"):
        org.delete_volunteer("li")
    org.put_volunteer(Volunteer("zhao", "赵", "ft-s2"))
    org.put_shift(
        Shift("s1", "zhao", "route", local_ms("2026-03-02 08:00"), local_ms("2026-03-02 12:00"))
    )
    with pytest.raises(OrgConflict, match="has 1 shifts"):
        org.delete_volunteer("zhao")
    org.delete_shift("s1")
    assert org.delete_volunteer("zhao") is True
    assert org.delete_volunteer("zhao") is False


def test_a_terminal_recorded_on_shifts_is_not_deleted(org: OrgStore) -> None:
    org.put_shift(
        org.make_shift(
            "s1", "li", "bar", local_ms("2026-03-02 08:00"), local_ms("2026-03-02 12:00")
        )
    )
    with pytest.raises(OrgConflict, match="'t-1' is recorded on 1 shifts"):
        org.delete_terminal("t-1")
    assert org.delete_terminal("t-2") is True
    assert org.holdings("t-2") == [] and org.terminal("t-2") is None


# --- posts and shifts --------------------------------------------------------------------------


def test_posts_keep_their_fences(org: OrgStore) -> None:
    assert org.post("bar") == BAR and org.post("route") == ROUTE and org.post("park") == PARK
    assert [p.post_id for p in org.posts(units=org.subtree("ft-s1"))] == ["bar", "route"]
    org.put_shift(
        Shift("s1", "wang", "route", local_ms("2026-03-02 08:00"), local_ms("2026-03-02 12:00"))
    )
    with pytest.raises(OrgConflict, match="'route' has 1 shifts"):
        org.delete_post("route")
    assert org.delete_post("park") is True


def test_make_shift_records_the_terminal_held_now(org: OrgStore) -> None:
    start, end = local_ms("2026-03-06 20:00"), local_ms("2026-03-07 02:00")
    shift = org.make_shift("night-li", "li", "bar", start, end, role=ShiftRole.CAPTAIN)
    assert shift.device_id == "t-1" and shift.role is ShiftRole.CAPTAIN
    assert org.make_shift("night-wang", "wang", "bar", start, end).device_id is None
    assert org.make_shift("x", "li", "bar", start, end, device_id=None).device_id is None
    assert org.put_shift(shift) is True
    assert org.put_shift(shift) is False
    assert org.shift("night-li") == shift
    assert org.unit_of_shift(shift) == "ft-s1-g1"


def test_a_resent_shift_keeps_the_terminal_it_was_made_with(org: OrgStore) -> None:
    start, end = local_ms("2026-03-06 20:00"), local_ms("2026-03-07 02:00")
    org.put_shift(org.with_terminal(Shift("n", "li", "bar", start, end)))
    org.put_terminal(Terminal("t-1", "ft-s1", holder="wang"), at_ms=start - 3_600_000)
    # Sent again without a terminal (a CSV re-import): still t-1, though li holds none now.
    assert org.with_terminal(Shift("n", "li", "bar", start, end + 60_000)).device_id == "t-1"
    # Given to another volunteer: that volunteer's terminal.
    assert org.with_terminal(Shift("n", "wang", "bar", start, end)).device_id == "t-1"
    assert org.with_terminal(Shift("n", "chen", "bar", start, end)).device_id == "t-2"
    assert org.with_terminal(Shift("new", "li", "bar", start, end)).device_id is None


def test_one_person_cannot_be_on_two_posts_at_once(org: OrgStore) -> None:
    org.put_shift(
        Shift("a", "li", "bar", local_ms("2026-03-06 20:00"), local_ms("2026-03-07 02:00"))
    )
    with pytest.raises(OrgConflict) as e:
        org.put_shift(
            Shift("b", "li", "route", local_ms("2026-03-07 01:00"), local_ms("2026-03-07 03:00"))
        )
    assert e.value.field == "start_ms" and "'a'" in e.value.reason
    with pytest.raises(OrgConflict, match="'a'"):  # inside, and around
        org.put_shift(
            Shift("b", "li", "route", local_ms("2026-03-06 21:00"), local_ms("2026-03-06 22:00"))
        )
    with pytest.raises(OrgConflict, match="'a'"):
        org.put_shift(
            Shift("b", "li", "route", local_ms("2026-03-06 19:00"), local_ms("2026-03-07 03:00"))
        )
    # Back to back is fine (the end is excluded), and so is another volunteer at the same time.
    org.put_shift(
        Shift("b", "li", "route", local_ms("2026-03-07 02:00"), local_ms("2026-03-07 06:00"))
    )
    org.put_shift(
        Shift("c", "wang", "bar", local_ms("2026-03-06 20:00"), local_ms("2026-03-07 02:00"))
    )
    # A shift may be moved over its own old time.
    org.put_shift(
        Shift("a", "li", "bar", local_ms("2026-03-06 19:00"), local_ms("2026-03-07 01:00"))
    )
    assert org.shift("a").start_ms == local_ms("2026-03-06 19:00")  # type: ignore[union-attr]


def test_shift_refusals_name_the_field(org: OrgStore) -> None:
    start, end = local_ms("2026-03-02 08:00"), local_ms("2026-03-02 12:00")
    for shift, field in (
        (Shift("s", "ghost", "bar", start, end), "volunteer_id"),
        (Shift("s", "li", "nowhere", start, end), "post_id"),
        (Shift("s", "li", "bar", start, end, device_id="t-9"), "device_id"),
    ):
        with pytest.raises(OrgError) as e:
            org.put_shift(shift)
        assert e.value.field == field
    assert org.shift("s") is None


def test_shift_queries_by_window_unit_volunteer_and_device(org: OrgStore) -> None:
    day = [
        org.make_shift(
            "morning", "li", "bar", local_ms("2026-03-02 08:00"), local_ms("2026-03-02 12:00")
        ),
        org.make_shift(
            "noon", "wang", "route", local_ms("2026-03-02 11:00"), local_ms("2026-03-02 15:00")
        ),
        org.make_shift(
            "night", "chen", "park", local_ms("2026-03-02 20:00"), local_ms("2026-03-03 08:00")
        ),
    ]
    for shift in day:
        org.put_shift(shift)

    def ids(**kw: object) -> list[str]:
        return [s.shift_id for s in org.shifts(**kw)]  # type: ignore[arg-type]

    assert ids() == ["morning", "noon", "night"]
    # Overlapping the window [since, until): a shift that began 12 h before still counts.
    assert ids(since_ms=local_ms("2026-03-03 07:00")) == ["night"]
    assert ids(since_ms=local_ms("2026-03-02 12:00"), until_ms=local_ms("2026-03-02 20:00")) == [
        "noon"
    ]
    assert ids(until_ms=local_ms("2026-03-02 08:00")) == []
    assert ids(units=org.subtree("ft")) == ["morning", "noon"]
    assert ids(units=org.subtree("ft-s1-g1")) == ["morning"]
    assert ids(volunteer_id="chen") == ["night"]
    assert ids(device_id="t-1") == ["morning"]
    assert ids(limit=2) == ["morning", "noon"]


# --- the store itself ----------------------------------------------------------------------------


def test_the_store_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "org.db"
    store = OrgStore(path)
    store.put_unit(Unit("sz", "深圳", UnitLevel.CITY))
    store.close()
    store = OrgStore(path)
    assert store.units() == [Unit("sz", "深圳", UnitLevel.CITY)]
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_sqlite_failures_become_store_errors(tmp_path: Path) -> None:
    (tmp_path / "org.db").write_bytes(b"not a database, but long enough to look like one" * 100)
    with pytest.raises(StoreError, match="cannot open organisation store"):
        OrgStore(tmp_path / "org.db")
    store = OrgStore(tmp_path / "ok.db")
    store.close()
    with pytest.raises(StoreError):
        store.units()


def test_writers_on_many_threads(store: OrgStore) -> None:
    store.put_unit(Unit("sz", "深圳", UnitLevel.CITY))
    store.put_unit(Unit("ft", "福田", UnitLevel.DISTRICT, "sz"))

    def add(k: int) -> None:
        for i in range(25):
            store.put_volunteer(Volunteer(f"v{k}-{i}", "volunteer", "ft"))
            store.volunteers(units={"ft"})

    threads = [threading.Thread(target=add, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.volunteers()) == 200


def test_a_batch_is_one_transaction(org: OrgStore) -> None:
    with pytest.raises(OrgError), org.batch("two volunteers") as tables:
        tables.put_volunteer(Volunteer("zhao", "赵", "ft-s2"))
        tables.put_volunteer(Volunteer("qian", "钱", "nowhere"))
    assert org.volunteer("zhao") is None
    with org.batch("two volunteers") as tables:
        tables.put_volunteer(Volunteer("zhao", "赵", "ft-s2"))
        assert org.volunteer("zhao") is not None  # a read inside the batch does not deadlock
    assert org.volunteer("zhao") is not None


def test_generic_access_by_kind(org: OrgStore) -> None:
    assert org.get("posts", "bar") == BAR
    assert org.get("units", "nowhere") is None
    assert [r.volunteer_id for r in org.records("volunteers", units={"ns-s1"})] == ["chen"]  # type: ignore[union-attr]
    assert org.owner(BAR) == "ft-s1-g1"
    moved = Volunteer("li", "李", "ns-s1")
    assert org.write_units(moved) == ["ft-s1-g1", "ns-s1"]
    assert org.write_units(Unit("ft-s3", "新站", UnitLevel.STATION, "ft")) == ["ft"]
    assert org.write_units(Unit("sz", "深圳", UnitLevel.CITY)) == ["sz"]
    assert org.write_units(Unit("gz", "广州", UnitLevel.CITY)) == [None]
    assert org.put(moved, at_ms=ISSUED_MS) is False
    assert org.delete("shifts", "nothing") is False
