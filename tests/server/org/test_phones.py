"""Phones as terminals (issue #10): a volunteer holds at most one phone and one other terminal;
a new shift records the other one; the hand-over history says which phones a volunteer held
when (docs/metrics.md §7)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from server.org.model import Shift, Terminal, TerminalKind, Unit, UnitLevel, Volunteer
from server.org.store import MIGRATIONS, OrgConflict, OrgStore
from yijing.sqlite import migrate, open_database

from .support import ISSUED_MS, local_ms

PHONE = TerminalKind.PHONE


def phone(device_id: str, holder: str | None, unit: str = "ft-s1") -> Terminal:
    return Terminal(device_id, unit, PHONE, holder)


def test_a_volunteer_holds_one_phone_beside_one_terminal(org: OrgStore) -> None:
    assert org.terminal_of("li") == "t-1"
    org.put_terminal(phone("ph-li", "li"), at_ms=ISSUED_MS + 1)
    assert [t.device_id for t in org.held_by("li")] == ["t-1", "ph-li"]
    # A second phone: refused, naming the field and the phone held.
    with pytest.raises(OrgConflict) as e:
        org.put_terminal(phone("ph-2", "li"), at_ms=ISSUED_MS + 2)
    assert e.value.field == "holder" and "already holds phone 'ph-li'" in e.value.reason
    # A second terminal of another kind: refused, naming the terminal held.
    with pytest.raises(OrgConflict, match="'li' already holds terminal 't-1'") as e:
        org.put_terminal(Terminal("cam-1", "ft-s1", TerminalKind.BODYCAM, "li"), at_ms=ISSUED_MS)
    assert e.value.field == "holder"
    # Turning the held terminal into a phone would give li two phones.
    with pytest.raises(OrgConflict, match="already holds phone 'ph-li'"):
        org.put_terminal(Terminal("t-1", "ft-s1", PHONE, "li"), at_ms=ISSUED_MS + 3)
    assert org.terminal("ph-2") is None and org.terminal("cam-1") is None
    # Updating a held one (same device) is no conflict.
    org.put_terminal(phone("ph-li", "li", unit="ft-s2"), at_ms=ISSUED_MS + 4)
    assert org.terminal("ph-li") == phone("ph-li", "li", unit="ft-s2")


def test_terminal_of_prefers_the_signed_terminal(org: OrgStore) -> None:
    # wang gets a phone first, then a handheld whose id sorts after it.
    org.put_terminal(phone("a-phone", "wang"), at_ms=ISSUED_MS)
    assert org.terminal_of("wang") == "a-phone"  # only a phone: the phone
    org.put_terminal(Terminal("z-handheld", "ft-s1", holder="wang"), at_ms=ISSUED_MS)
    assert org.terminal_of("wang") == "z-handheld"
    start, end = local_ms("2026-03-06 20:00"), local_ms("2026-03-06 22:00")
    assert org.make_shift("n", "wang", "bar", start, end).device_id == "z-handheld"
    assert org.with_terminal(Shift("n2", "wang", "bar", start, end)).device_id == "z-handheld"


def test_deleting_a_volunteer_names_every_terminal_held(org: OrgStore) -> None:
    org.put_terminal(phone("ph-li", "li"), at_ms=ISSUED_MS)
    with pytest.raises(OrgConflict, match="holds terminals 't-1', 'ph-li'"):
        org.delete_volunteer("li")


def test_phones_held_from_the_hand_overs(org: OrgStore) -> None:
    t = local_ms("2026-03-06 20:00")
    org.put_terminal(phone("ph-1", "li"), at_ms=t)
    org.put_terminal(phone("ph-1", "wang"), at_ms=t + 60_000)  # handed to wang at 20:01
    org.put_terminal(phone("ph-2", "li"), at_ms=t + 120_000)  # li's new phone from 20:02
    assert org.phones_held("li", t, t + 180_000) == ["ph-1", "ph-2"]
    # Half-open windows: a holding ending as the window starts, or starting as it ends, is out.
    assert org.phones_held("li", t + 60_000, t + 120_000) == []
    assert org.phones_held("li", t - 1000, t) == []
    assert org.phones_held("li", t + 59_999, t + 60_000) == ["ph-1"]
    assert org.phones_held("wang", t, t + 60_000) == []
    assert org.phones_held("wang", t + 60_000, t + 60_001) == ["ph-1"]
    assert org.phones_held("wang", t + 10**9, t + 10**9 + 1) == ["ph-1"]  # held now: open
    # A non-phone terminal is not a phone, however it changed hands.
    assert org.phones_held("chen", 0, 2**53) == []
    assert org.phone_holdings(["li", "wang"], t, t + 180_000) == [
        ("ph-1", "li", t, t + 60_000),
        ("ph-2", "li", t + 120_000, None),
        ("ph-1", "wang", t + 60_000, None),
    ]
    assert org.phones(["ph-1", "ph-2", "t-1", "nothing"]) == {"ph-1", "ph-2"}
    assert org.phones([]) == set()


def test_a_version_1_database_learns_the_relaxed_rule(tmp_path: Path) -> None:
    path = tmp_path / "org.db"
    conn = open_database(path)
    migrate(conn, MIGRATIONS[:1])  # the schema before phones
    conn.close()
    org = OrgStore(path)
    try:
        org.put_unit(Unit("sz", "深圳市", UnitLevel.CITY))
        org.put_volunteer(Volunteer("li", "李", "sz"))
        org.put_terminal(Terminal("t-1", "sz", holder="li"), at_ms=ISSUED_MS)
        org.put_terminal(phone("ph-1", "li", unit="sz"), at_ms=ISSUED_MS)
        assert [t.device_id for t in org.held_by("li")] == ["t-1", "ph-1"]
    finally:
        org.close()
    # The database itself refuses a second terminal of a class, whatever the code does.
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO terminals VALUES ('ph-2', 'sz', 'phone', 'li')")
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO terminals VALUES ('t-2', 'sz', 'bodycam', 'li')")
    raw.execute("INSERT INTO terminals VALUES ('t-3', 'sz', 'bodycam', NULL)")
    raw.close()
