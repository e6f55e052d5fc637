"""What the reports read, as protocols: the organisation, the duty engine, spot checks, flags.

The real parts are ``server.org.store.OrgStore``, ``server.duty.service.DutyService``,
``server.spotcheck.service.SpotChecks`` and ``server.duty.flag_scan.scan_shift``; the tests use
small fakes of these protocols. Only what the reports call is listed, so each part may grow
without touching this package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..duty.rules import ShiftResult
from ..org.model import Post, Shift, Unit, Volunteer


class OrgSource(Protocol):
    def unit(self, unit_id: str) -> Unit | None: ...

    def units(self, *, units: set[str] | None = None) -> list[Unit]: ...

    def children(self, unit_id: str) -> list[Unit]: ...

    def subtree(self, unit_id: str) -> set[str]:
        """The unit and every unit below it; empty for an unknown unit."""
        ...

    def ancestors(self, unit_id: str) -> list[str]:
        """The units above ``unit_id``, root first, the unit itself excluded."""
        ...

    def volunteer(self, volunteer_id: str) -> Volunteer | None: ...

    def volunteers(self, *, units: set[str] | None = None) -> list[Volunteer]: ...

    def post(self, post_id: str) -> Post | None: ...

    def posts(self, *, units: set[str] | None = None) -> list[Post]: ...

    def shifts(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        units: set[str] | None = None,
        volunteer_id: str | None = None,
        device_id: str | None = None,
    ) -> list[Shift]: ...

    def shift(self, shift_id: str) -> Shift | None: ...


class DutySource(Protocol):
    def recompute(self, shift: Shift) -> ShiftResult: ...

    def recompute_many(
        self, shifts: Sequence[Shift], *, progress: Callable[[int], None] | None = None
    ) -> list[ShiftResult]: ...


class SpotCheckSource(Protocol):
    def answer_stats(
        self, *, units: set[str] | None, since_ms: int, until_ms: int
    ) -> dict[str, tuple[int, int]]: ...

    def requests(
        self, device_id: str, since_ms: int, until_ms: int
    ) -> list[tuple[int, int, int | None]]: ...


class FlagLike(Protocol):
    """A flag raised on a shift (``server.duty.flag_scan.Flag``); read-only here."""

    @property
    def kind(self) -> str: ...  # a StrEnum in the real Flag: its value is the JSON name

    @property
    def device_id(self) -> str | None: ...

    @property
    def shift_id(self) -> str | None: ...

    @property
    def volunteer_id(self) -> str | None: ...

    @property
    def start_ms(self) -> int: ...

    @property
    def end_ms(self) -> int: ...

    @property
    def value(self) -> Any: ...

    @property
    def detail(self) -> Any: ...


class ScanShift(Protocol):
    """``server.duty.flag_scan.scan_shift``."""

    def __call__(
        self,
        store: Any,
        shift: Shift,
        result: ShiftResult,
        *,
        spot_requests: Sequence[tuple[int, int, int | None]] = (),
        other_shifts: Sequence[Shift] = (),
    ) -> Sequence[FlagLike]: ...


#: (done, total): shifts processed so far, and how many the report has.
Progress = Callable[[int, int], None]
