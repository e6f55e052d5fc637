"""Cheap argon2 parameters for tests (the real ones cost 64 MiB and tens of ms a hash)."""

from __future__ import annotations

from pathlib import Path

from argon2 import PasswordHasher

from server.accounts import Accounts, AccountStore
from server.accounts.passwords import Passwords

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self, t: float = 1_796_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def accounts(tmp_path: Path, clock: Clock | None = None) -> Accounts:
    return Accounts(
        AccountStore(tmp_path / "accounts.db"),
        passwords=Passwords(CHEAP),
        clock=clock or Clock(),
    )
