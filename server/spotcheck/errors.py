"""The spot-check service's exceptions.

Exception tree::

    SpotCheckError              base of everything this package raises on purpose
    └── BadRequest              a check that cannot be made; ``field`` names the request
        │                       field ("unit", "devices", "sample", "deadline_s", "by"),
        │                       ``reason`` says why. Also a ``ValueError``.
        ├── UnknownUnit         "unit": no such unit in the organisation
        ├── NotInUnit           "devices": a device that is no terminal of the unit's subtree
        └── NobodyOnDuty        "sample": no terminal is on a shift in the unit right now

The store's failures are ``server.errors.StoreError`` (sqlite3 errors converted once, in
``server.spotcheck.store``), like every other store of the server: a caller that already
handles a failing store needs nothing new.
"""

from __future__ import annotations


class SpotCheckError(Exception):
    """Base of the spot-check service's errors."""


class BadRequest(SpotCheckError, ValueError):
    """A check that cannot be made: ``field`` names what is wrong, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownUnit(BadRequest):
    """The unit named is not in the organisation."""


class NotInUnit(BadRequest):
    """A device is not a known terminal, or its unit is outside the checked unit's subtree."""


class NobodyOnDuty(BadRequest):
    """A sample was asked for, but no shift with a terminal is active in the unit now."""
