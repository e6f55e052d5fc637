"""The field rules take whatever a person or a request sends: they accept or name the field,
never anything else."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from server.accounts import InvalidField
from server.accounts.model import (
    MIN_PASSWORD,
    check_display_name,
    check_password,
    check_role,
    check_unit,
    check_username,
)

ANYTHING = st.one_of(st.text(), st.none(), st.integers(), st.floats(), st.lists(st.text()))


def _named(fn: object, value: object, field: str) -> bool:
    try:
        fn(value)  # type: ignore[operator]
    except InvalidField as exc:
        assert exc.field == field and str(exc).startswith(field + ": ")
        return False
    return True


@given(ANYTHING)
def test_username(value: object) -> None:
    ok = _named(check_username, value, "username")
    assert ok == (
        isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9][\w.-]{0,63}", value, re.A) is not None
    )


@given(ANYTHING)
def test_unit_role_and_display_name(value: object) -> None:
    _named(lambda v: check_unit(v, "scope"), value, "scope")
    if _named(check_role, value, "role"):
        assert value in ("volunteer", "officer", "inspector", "admin")
    if _named(check_display_name, value, "display_name"):
        assert isinstance(value, str) and 1 <= len(value.strip()) <= 100


@given(st.text(max_size=40), st.from_regex(r"[a-z]{1,12}", fullmatch=True))
def test_password(password: str, username: str) -> None:
    if _named(lambda p: check_password(p, username), password, "password"):
        assert len(password) >= MIN_PASSWORD
        assert password.strip().casefold() != username.casefold()
