"""The dispatch service's exceptions.

Exception tree::

    DispatchError               base of everything this package raises on purpose
    ├── BadRequest              a request that cannot be carried out as given; ``field``
    │   │                       names the request field ("kind", "priority", "lat",
    │   │                       "device_ids", "ttl_s", ...), ``reason`` says why.
    │   │                       Also a ``ValueError``.
    │   ├── UnknownUnit         "unit_id": no such unit in the organisation
    │   └── NotEligible         "device_ids": a device that is not a current candidate
    │                           (unknown, offline, off duty, engaged, SOS, out of scope);
    │                           ``device_id`` names it
    ├── NotFound                no such incident or dispatch (404). Also a ``LookupError``.
    ├── OutOfScope              the incident belongs to a unit outside the caller's (403)
    └── Conflict                the record is past the change asked for: an incident
                                already closed, a dispatch already final (409)

The store's failures are ``server.errors.StoreError`` (sqlite3 errors converted once, in
``server.dispatch.store``), like every other store of the server.
"""

from __future__ import annotations


class DispatchError(Exception):
    """Base of the dispatch service's errors."""


class BadRequest(DispatchError, ValueError):
    """A request that cannot be carried out: ``field`` names what is wrong, ``reason`` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownUnit(BadRequest):
    """The unit named is not in the organisation."""


class NotEligible(BadRequest):
    """A device asked for is not one that may be dispatched right now."""

    def __init__(self, device_id: str, reason: str) -> None:
        super().__init__("device_ids", f"{device_id} {reason}")
        self.device_id = device_id


class NotFound(DispatchError, LookupError):
    """No incident or dispatch with that id."""


class OutOfScope(DispatchError):
    """The incident is outside the units the caller may change."""


class Conflict(DispatchError):
    """The incident or dispatch is already past the change asked for."""
