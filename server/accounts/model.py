"""Accounts and sessions as frozen records, and the rules for what a person may type.

Every record checks itself on construction, so a bad value is refused where it enters (the
REST body, the CLI, a row read back) with an ``InvalidField`` that names the field.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ..web.access import Principal, Role
from .errors import InvalidField

#: The same shape as the protocol's ids (letters, digits, ``. _ -``; at most 64): a username
#: can sit in a log line, an audit entry or a URL path without quoting.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
UNIT = USERNAME
MIN_PASSWORD = 10
#: argon2 takes any length, but a megabyte "password" is a way to make the server work hard.
MAX_PASSWORD = 1024
MAX_DISPLAY_NAME = 100

#: Sessions end after 12 hours without a request, and 7 days after sign-in whatever happens.
IDLE_MS = 12 * 3600 * 1000
ABSOLUTE_MS = 7 * 86_400 * 1000


def check_username(value: object, field: str = "username") -> str:
    if not isinstance(value, str) or not USERNAME.fullmatch(value):
        raise InvalidField(
            field, "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def check_unit(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not UNIT.fullmatch(value):
        raise InvalidField(field, f"{value!r} is not a unit or volunteer id")
    return value


def check_role(value: object) -> Role:
    allowed = ", ".join(r.value for r in Role)
    if isinstance(value, str) and value in set(Role):
        return Role(value)
    raise InvalidField("role", f"{value!r} is not one of {allowed}")


def check_display_name(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidField("display_name", "must be text")
    text = value.strip()
    if not 1 <= len(text) <= MAX_DISPLAY_NAME:
        raise InvalidField("display_name", f"1 to {MAX_DISPLAY_NAME} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text):
        raise InvalidField("display_name", "no control characters")
    return text


def check_password(password: object, username: str) -> str:
    """At least ``MIN_PASSWORD`` characters, not the username itself (in any case)."""
    if not isinstance(password, str):
        raise InvalidField("password", "must be text")
    if len(password) < MIN_PASSWORD:
        raise InvalidField("password", f"at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidField("password", f"at most {MAX_PASSWORD} characters")
    if password.strip().casefold() == username.casefold():
        raise InvalidField("password", "must not be the username")
    return password


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    display_name: str
    role: Role
    scope: str | None
    volunteer_id: str | None
    disabled: bool
    created_ms: int
    changed_ms: int

    def __post_init__(self) -> None:
        check_username(self.username)
        object.__setattr__(self, "display_name", check_display_name(self.display_name))
        object.__setattr__(self, "role", check_role(self.role))
        check_unit(self.scope, "scope")
        check_unit(self.volunteer_id, "volunteer_id")
        if self.volunteer_id is not None and self.role is not Role.VOLUNTEER:
            raise InvalidField("volunteer_id", "only a volunteer's account names a volunteer")
        if not isinstance(self.disabled, bool):
            raise InvalidField("disabled", "must be true or false")

    @property
    def principal(self) -> Principal:
        return Principal(self.username, self.role, self.scope)

    def to_json(self) -> dict[str, object]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role.value,
            "scope": self.scope,
            "volunteer_id": self.volunteer_id,
            "disabled": self.disabled,
            "created_ms": self.created_ms,
            "changed_ms": self.changed_ms,
        }


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser. ``username`` is None for a session opened with a token link
    (``token_sha256`` then names the token, which must still be known)."""

    digest: str  # SHA-256 of the id the browser holds, hex
    principal: Principal
    username: str | None
    token_sha256: str | None
    csrf: str
    created_ms: int
    seen_ms: int

    def expired(self, now_ms: int) -> bool:
        return now_ms - self.seen_ms > IDLE_MS or now_ms - self.created_ms > ABSOLUTE_MS

    @property
    def expires_ms(self) -> int:
        return min(self.seen_ms + IDLE_MS, self.created_ms + ABSOLUTE_MS)
