"""``accounts.db``: accounts and sessions, one writer, every commit fsynced.

Usernames compare without regard to case (``COLLATE NOCASE``): "Li" and "li" are one
person, so nobody can open a look-alike account. A session row holds only the SHA-256 of the
id its browser holds: reading the file (a backup, a stolen disk) gives no way in. A session
of an account reads the account's role, scope and disabled flag at each look-up, so a
change applies at the next request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ..evidence_db import EvidenceDb
from ..web.access import Principal, Role
from .errors import AccountExists, UnknownAccount
from .model import Account, Session


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE accounts (username TEXT PRIMARY KEY COLLATE NOCASE, "
        "display_name TEXT NOT NULL, role TEXT NOT NULL, scope TEXT, volunteer_id TEXT, "
        "hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, "
        "created_ms INTEGER NOT NULL, changed_ms INTEGER NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE sessions (digest TEXT PRIMARY KEY, "
        "username TEXT REFERENCES accounts(username) ON DELETE CASCADE, "
        "name TEXT NOT NULL, role TEXT NOT NULL, scope TEXT, token_sha256 TEXT, "
        "csrf TEXT NOT NULL, created_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL)"
    )
    conn.execute("CREATE INDEX sessions_username ON sessions(username)")
    conn.execute("CREATE INDEX sessions_seen ON sessions(seen_ms)")


MIGRATIONS = [_v1]

_ACCOUNT = "username, display_name, role, scope, volunteer_id, disabled, created_ms, changed_ms"


def _account(row: tuple[Any, ...]) -> Account:
    name, display, role, scope, volunteer, disabled, created, changed = row
    return Account(name, display, Role(role), scope, volunteer, bool(disabled), created, changed)


class AccountStore(EvidenceDb):
    def __init__(self, path: Path) -> None:
        super().__init__(path, MIGRATIONS, name="accounts")

    # ---- accounts ----------------------------------------------------------------------

    def add(self, account: Account, password_hash: str) -> None:
        with self._transaction(f"add account {account.username}") as conn:
            if conn.execute(
                "SELECT 1 FROM accounts WHERE username = ?", (account.username,)
            ).fetchone():
                raise AccountExists(f"username {account.username!r} is taken")
            conn.execute(
                f"INSERT INTO accounts ({_ACCOUNT}, hash) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    account.username,
                    account.display_name,
                    account.role.value,
                    account.scope,
                    account.volunteer_id,
                    int(account.disabled),
                    account.created_ms,
                    account.changed_ms,
                    password_hash,
                ),
            )

    def get(self, username: str) -> Account | None:
        rows = self._read(f"SELECT {_ACCOUNT} FROM accounts WHERE username = ?", (username,))
        return _account(rows[0]) if rows else None

    def hash_of(self, username: str) -> tuple[Account, str] | None:
        rows = self._read(f"SELECT {_ACCOUNT}, hash FROM accounts WHERE username = ?", (username,))
        return (_account(rows[0][:-1]), str(rows[0][-1])) if rows else None

    def all(self) -> list[Account]:
        return [
            _account(r) for r in self._read(f"SELECT {_ACCOUNT} FROM accounts ORDER BY username")
        ]

    def replace(self, account: Account, *, password_hash: str | None, end_sessions: bool) -> None:
        """Write ``account``'s fields (and a new hash); ``end_sessions`` deletes its sessions
        in the same transaction, so no request sees the new state with an old session."""
        with self._transaction(f"change account {account.username}") as conn:
            cur = conn.execute(
                "UPDATE accounts SET display_name = ?, role = ?, scope = ?, volunteer_id = ?, "
                "disabled = ?, changed_ms = ?, hash = COALESCE(?, hash) WHERE username = ?",
                (
                    account.display_name,
                    account.role.value,
                    account.scope,
                    account.volunteer_id,
                    int(account.disabled),
                    account.changed_ms,
                    password_hash,
                    account.username,
                ),
            )
            if cur.rowcount == 0:
                raise UnknownAccount(f"no account {account.username!r}")
            if end_sessions:
                conn.execute("DELETE FROM sessions WHERE username = ?", (account.username,))

    def set_hash(self, username: str, password_hash: str) -> None:
        """A rehash at sign-in (same password, today's parameters): sessions stay."""
        with self._transaction(f"rehash {username}") as conn:
            conn.execute(
                "UPDATE accounts SET hash = ? WHERE username = ?", (password_hash, username)
            )

    # ---- sessions ----------------------------------------------------------------------

    def add_session(self, session: Session) -> None:
        p = session.principal
        with self._transaction("open a session") as conn:
            conn.execute(
                "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    session.digest,
                    session.username,
                    p.name,
                    p.role.value,
                    p.scope,
                    session.token_sha256,
                    session.csrf,
                    session.created_ms,
                    session.seen_ms,
                ),
            )

    def session(self, digest: str) -> Session | None:
        """The session and, for an account's, the account's current role and scope; None
        when there is none or its account is disabled."""
        rows = self._read(
            "SELECT s.digest, s.username, s.name, s.role, s.scope, s.token_sha256, s.csrf, "
            "s.created_ms, s.seen_ms, a.role, a.scope, a.disabled "
            "FROM sessions s LEFT JOIN accounts a ON a.username = s.username "
            "WHERE s.digest = ?",
            (digest,),
        )
        if not rows:
            return None
        (d, username, name, role, scope, token, csrf, created, seen, a_role, a_scope, off) = rows[0]
        if username is not None:
            if a_role is None or off:
                return None
            role, scope = a_role, a_scope
        return Session(d, Principal(name, Role(role), scope), username, token, csrf, created, seen)

    def touch(self, digest: str, seen_ms: int) -> None:
        with self._transaction("note a session's use") as conn:
            conn.execute("UPDATE sessions SET seen_ms = ? WHERE digest = ?", (seen_ms, digest))

    def delete_session(self, digest: str) -> bool:
        with self._transaction("end a session") as conn:
            return conn.execute("DELETE FROM sessions WHERE digest = ?", (digest,)).rowcount > 0

    def delete_expired(self, *, idle_before_ms: int, created_before_ms: int) -> int:
        with self._transaction("end expired sessions") as conn:
            return conn.execute(
                "DELETE FROM sessions WHERE seen_ms < ? OR created_ms < ?",
                (idle_before_ms, created_before_ms),
            ).rowcount

    def session_count(self, username: str) -> int:
        return int(
            self._read("SELECT COUNT(*) FROM sessions WHERE username = ?", (username,))[0][0]
        )
