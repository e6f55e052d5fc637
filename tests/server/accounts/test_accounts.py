"""Accounts and sessions: hashes, one answer for every failed sign-in, expiry, and what ends
a session."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from server.accounts import (
    AccountExists,
    AccountStore,
    InvalidField,
    SignInFailed,
    UnknownAccount,
)
from server.accounts.model import ABSOLUTE_MS, IDLE_MS
from server.accounts.passwords import Passwords
from server.accounts.service import Accounts, session_digest
from server.web.access import Principal, Role

from .support import CHEAP, PASSWORD, Clock, accounts


def test_an_account_signs_in_and_only_the_hash_is_stored(tmp_path: Path) -> None:
    acc = accounts(tmp_path)
    made = acc.create("li", PASSWORD, role="officer", scope="ft-s1", display_name=" 李警官 ")
    assert made.display_name == "李警官" and made.role is Role.OFFICER
    opened = acc.sign_in("li", PASSWORD)
    assert opened.session.principal == Principal("li", Role.OFFICER, "ft-s1")
    raw = (tmp_path / "accounts.db").read_bytes() + (tmp_path / "accounts.db-wal").read_bytes()
    assert PASSWORD.encode() not in raw and opened.session_id.encode() not in raw
    conn = sqlite3.connect(tmp_path / "accounts.db")
    [(stored,)] = conn.execute("SELECT hash FROM accounts").fetchall()
    conn.close()
    assert stored.startswith("$argon2id$")
    assert acc.session(opened.session_id) is not None
    acc.store.close()


def test_unknown_user_wrong_password_and_disabled_get_one_answer(tmp_path: Path) -> None:
    acc = accounts(tmp_path)
    acc.create("li", PASSWORD, role="officer")
    messages = set()
    for user, password in (("nobody", PASSWORD), ("li", "wrong password!"), ("LI", "x")):
        with pytest.raises(SignInFailed) as caught:
            acc.sign_in(user, password)
        messages.add(str(caught.value))
    acc.change("li", disabled=True)
    with pytest.raises(SignInFailed) as caught:
        acc.sign_in("li", PASSWORD)
    messages.add(str(caught.value))
    assert messages == {"unknown username or wrong password"}
    acc.store.close()


def test_usernames_are_one_regardless_of_case(tmp_path: Path) -> None:
    acc = accounts(tmp_path)
    acc.create("Li", PASSWORD, role="officer")
    with pytest.raises(AccountExists):
        acc.create("li", PASSWORD + "x", role="admin")
    assert acc.sign_in("LI", PASSWORD).session.principal.name == "Li"
    acc.store.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"username": "li", "password": "short"}, "password"),
        ({"username": "li-officer", "password": "LI-OFFICER"}, "password"),
        ({"username": "../etc", "password": PASSWORD}, "username"),
        ({"username": "li", "password": PASSWORD, "role": "chief"}, "role"),
        ({"username": "li", "password": PASSWORD, "scope": "a b"}, "scope"),
        ({"username": "li", "password": PASSWORD, "volunteer_id": "v1"}, "volunteer_id"),
        ({"username": "li", "password": PASSWORD, "display_name": "a\nb"}, "display_name"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, kwargs: dict[str, str], field: str) -> None:
    acc = accounts(tmp_path)
    args = {"role": "officer", **kwargs}
    with pytest.raises(InvalidField) as caught:
        acc.create(args.pop("username"), args.pop("password"), **args)  # type: ignore[arg-type]
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")
    assert acc.store.all() == []
    acc.store.close()


def test_sessions_expire_idle_and_absolute(tmp_path: Path) -> None:
    clock = Clock()
    acc = accounts(tmp_path, clock)
    acc.create("li", PASSWORD, role="officer")
    idle = acc.sign_in("li", PASSWORD)
    clock.t += IDLE_MS / 1000 + 1
    assert acc.session(idle.session_id) is None
    assert acc.store.session(session_digest(idle.session_id)) is None  # deleted, not kept
    busy = acc.sign_in("li", PASSWORD)
    start = clock.t
    while clock.t - start < ABSOLUTE_MS / 1000 - 3600:
        clock.t += 6 * 3600
        assert acc.session(busy.session_id) is not None  # each use moves the idle limit
    clock.t = start + ABSOLUTE_MS / 1000 + 1
    assert acc.session(busy.session_id) is None
    acc.store.close()


def test_disabling_or_a_new_password_ends_sessions_but_a_role_change_applies_at_once(
    tmp_path: Path,
) -> None:
    acc = accounts(tmp_path)
    acc.create("li", PASSWORD, role="officer", scope="ft")
    first = acc.sign_in("li", PASSWORD)
    acc.change("li", role="inspector", scope="ft-s1")
    session = acc.session(first.session_id)
    assert session is not None and session.principal == Principal("li", Role.INSPECTOR, "ft-s1")
    acc.change("li", password="a brand new password")
    assert acc.session(first.session_id) is None
    with pytest.raises(SignInFailed):
        acc.sign_in("li", PASSWORD)
    second = acc.sign_in("li", "a brand new password")
    acc.change("li", disabled=True)
    assert acc.session(second.session_id) is None
    acc.change("li", disabled=False)
    assert acc.session(second.session_id) is None  # ended, not suspended
    with pytest.raises(UnknownAccount):
        acc.change("nobody", disabled=True)
    assert acc.sign_out(acc.sign_in("li", "a brand new password").session_id)
    acc.store.close()


def test_an_old_hash_is_replaced_at_sign_in(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "accounts.db")
    Accounts(store, passwords=Passwords(CHEAP)).create("li", PASSWORD, role="admin")
    old = store.hash_of("li")
    stronger = Passwords(PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    acc = Accounts(store, passwords=stronger)
    assert old is not None and stronger.needs_rehash(old[1])
    acc.sign_in("li", PASSWORD)
    new = store.hash_of("li")
    assert new is not None and new[1] != old[1] and not stronger.needs_rehash(new[1])
    acc.sign_in("li", PASSWORD)  # the new hash verifies
    store.close()


def test_a_volunteer_id_only_on_a_volunteer_and_dropped_with_the_role(tmp_path: Path) -> None:
    acc = accounts(tmp_path)
    acc.create("chen", PASSWORD, role="volunteer", volunteer_id="chen")
    assert acc.change("chen", role="officer").volunteer_id is None
    acc.store.close()
