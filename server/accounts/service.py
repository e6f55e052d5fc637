"""``Accounts``: what the web routes and the CLI do with accounts and sessions.

The hashing (``passwords``) is slow by design; the ``*_async`` methods run it on worker
threads so the event loop keeps serving the live map while somebody signs in.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..web.access import Principal, Role
from .errors import InvalidField, SignInFailed, UnknownAccount
from .model import (
    ABSOLUTE_MS,
    IDLE_MS,
    Account,
    Session,
    check_display_name,
    check_password,
    check_role,
    check_unit,
    check_username,
)
from .passwords import Passwords
from .store import AccountStore

#: A session's last use is written at most this often (one write a minute per browser, not
#: one per request); the 12-hour idle limit does not need finer.
TOUCH_MS = 60_000


def session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just opened: ``session_id`` goes into the browser's cookie, once."""

    session_id: str
    session: Session


class Accounts:
    def __init__(
        self,
        store: AccountStore,
        *,
        passwords: Passwords | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.passwords = passwords or Passwords()
        self._clock = clock

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ---- accounts ----------------------------------------------------------------------

    def create(
        self,
        username: str,
        password: str,
        *,
        role: Role | str,
        display_name: str | None = None,
        scope: str | None = None,
        volunteer_id: str | None = None,
    ) -> Account:
        check_username(username)
        check_password(password, username)
        now = self.now_ms()
        account = Account(
            username,
            display_name if display_name is not None else username,
            check_role(role),
            scope,
            volunteer_id,
            False,
            now,
            now,
        )
        self.store.add(account, self.passwords.hash(password))
        return account

    def get(self, username: str) -> Account:
        account = self.store.get(username)
        if account is None:
            raise UnknownAccount(f"no account {username!r}")
        return account

    def change(
        self,
        username: str,
        *,
        role: Role | str | None = None,
        scope: str | object | None = ...,
        display_name: str | None = None,
        volunteer_id: str | object | None = ...,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> Account:
        """Change what is given (``...``: scope / volunteer_id unchanged). Disabling the
        account or setting a password ends its sessions."""
        if disabled is not None and not isinstance(disabled, bool):
            raise InvalidField("disabled", "must be true or false")
        old = self.get(username)
        new_role = check_role(role) if role is not None else old.role
        if volunteer_id is ...:
            volunteer = old.volunteer_id if new_role is Role.VOLUNTEER else None
        else:
            volunteer = check_unit(volunteer_id, "volunteer_id")
        new = replace(
            old,
            role=new_role,
            scope=old.scope if scope is ... else check_unit(scope, "scope"),
            volunteer_id=volunteer,
            display_name=(
                old.display_name if display_name is None else check_display_name(display_name)
            ),
            disabled=old.disabled if disabled is None else disabled,
            changed_ms=self.now_ms(),
        )
        hashed = None
        if password is not None:
            hashed = self.passwords.hash(check_password(password, old.username))
        self.store.replace(
            new,
            password_hash=hashed,
            end_sessions=hashed is not None or (new.disabled and not old.disabled),
        )
        return new

    # ---- signing in ----------------------------------------------------------------------

    def check_password(self, username: str, password: str) -> Account:
        """The account, if ``password`` is its password and it is enabled; a hash made
        with older parameters is replaced by one with today's."""
        found = self.store.hash_of(username) if isinstance(username, str) else None
        ok = self.passwords.verify(found[1] if found else None, str(password))
        if found is None or not ok or found[0].disabled:
            raise SignInFailed()
        account, stored = found
        if self.passwords.needs_rehash(stored):
            self.store.set_hash(account.username, self.passwords.hash(password))
        return account

    def sign_in(self, username: str, password: str) -> NewSession:
        account = self.check_password(username, password)
        return self.open(account.principal, username=account.username)

    async def sign_in_async(self, username: str, password: str) -> NewSession:
        return await asyncio.to_thread(self.sign_in, username, password)

    def open(
        self, principal: Principal, *, username: str | None = None, token_sha256: str | None = None
    ) -> NewSession:
        """A new session for ``principal`` (an account's, or a token link's)."""
        session_id = secrets.token_urlsafe(32)
        now = self.now_ms()
        session = Session(
            session_digest(session_id),
            principal,
            username,
            token_sha256,
            secrets.token_urlsafe(32),
            now,
            now,
        )
        self.store.add_session(session)
        return NewSession(session_id, session)

    def session(self, session_id: str) -> Session | None:
        """The live session behind a cookie's id (None: unknown, expired, or its account
        disabled). Notes the use at most once a minute."""
        digest = session_digest(session_id)
        session = self.store.session(digest)
        if session is None:
            return None
        now = self.now_ms()
        if session.expired(now):
            self.store.delete_session(digest)
            return None
        if now - session.seen_ms >= TOUCH_MS:
            self.store.touch(digest, now)
            session = replace(session, seen_ms=now)
        return session

    def sign_out(self, session_id: str) -> bool:
        return self.store.delete_session(session_digest(session_id))

    def sweep(self) -> int:
        """Delete expired sessions (they are refused anyway; this keeps the table small)."""
        now = self.now_ms()
        return self.store.delete_expired(
            idle_before_ms=now - IDLE_MS, created_before_ms=now - ABSOLUTE_MS
        )
