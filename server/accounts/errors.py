"""The accounts package's exceptions (the tree is drawn in ``server.accounts``)."""

from __future__ import annotations

from ..errors import ServerError


class AccountError(ServerError):
    """Base of the accounts' errors."""


class InvalidField(AccountError, ValueError):
    """A value the accounts refuse; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class AccountExists(AccountError):
    """That username is taken."""


class UnknownAccount(AccountError):
    """No account of that name."""


class SignInFailed(AccountError):
    """Unknown username, wrong password or a disabled account (deliberately one message)."""

    def __init__(self) -> None:
        super().__init__("unknown username or wrong password")
