"""People's accounts and their browser sessions (``accounts.db``).

An account is a username, a role (``server.web.access.Role``), a scope (a unit id whose
subtree the person may see; ``None``: the whole organisation), for a volunteer their
volunteer id, and an argon2id hash of the password (``passwords``). Signing in makes a
session: a random 32-byte id that only the browser holds (the store keeps its SHA-256), a
CSRF token bound to it, an idle expiry (12 h) and an absolute one (7 days). Disabling an
account or changing its password ends its sessions.

- ``model``: the frozen, validating records and the field rules (username, password).
- ``passwords``: argon2id hashing off the event loop, a bounded number at a time.
- ``store``: the SQLite tables and queries.
- ``service``: ``Accounts``, what the web routes and the CLI call.

Exception tree::

    AccountError (a server.errors.ServerError)
    ├── InvalidField       a value refused; names the field (username, password, role, …)
    ├── AccountExists      a username already taken
    ├── UnknownAccount     no account of that name
    └── SignInFailed       unknown username, wrong password or disabled account: one message,
                           so an answer does not tell which

Store failures are ``server.errors.StoreError``, as for every other store.
"""

from __future__ import annotations

from .errors import AccountError, AccountExists, InvalidField, SignInFailed, UnknownAccount
from .model import Account, Session
from .service import Accounts, NewSession
from .store import AccountStore

__all__ = [
    "Account",
    "AccountError",
    "AccountExists",
    "AccountStore",
    "Accounts",
    "InvalidField",
    "NewSession",
    "Session",
    "SignInFailed",
    "UnknownAccount",
]
