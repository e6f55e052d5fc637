"""The field-report service's exceptions.

Exception tree::

    FieldError                  base of everything this package raises on purpose
    ├── BadRequest              a request that cannot be done; ``field`` names the request
    │   │                       field ("title", "target", "ttl_s", "note", ...), ``reason``
    │   │                       says why. Also a ``ValueError``.
    │   ├── UnknownUnit         "target": no such unit (or none the caller may reach)
    │   └── NobodyReached       "target": the target resolves to no terminal
    ├── NotFound                no such task, clue or alert. Also a ``LookupError``.
    └── AlreadyDone             the clue is already handled / the alert already acknowledged

The store's failures are ``server.errors.StoreError`` (sqlite3 errors converted once, in
``server.field.store``), as for every other store of the server.
"""

from __future__ import annotations


class FieldError(Exception):
    """Base of the field-report service's errors."""


class BadRequest(FieldError, ValueError):
    """A request that cannot be done: ``field`` names what is wrong, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownUnit(BadRequest):
    """The unit a task targets is not in the organisation."""


class NobodyReached(BadRequest):
    """The task's target holds no terminal, so nothing would be sent."""


class NotFound(FieldError, LookupError):
    """No task, clue or alert with that id."""


class AlreadyDone(FieldError):
    """A clue handled twice, an alert acknowledged twice: the first officer's word stands."""
