"""A report's period: whole local days, turned into an epoch-millisecond window.

Inspectors think in calendar days in their own timezone ("last week", "the 3rd to the 9th"),
so a period is a first and a last day, both included, and the window runs from local midnight
of the first day to local midnight after the last. A shift belongs to the period in which it
*starts* (``Period.contains_start``), so consecutive periods never count a night shift twice.

Errors name the field as people type it (``from``, ``to``, ``tz``): the CLI's ``--from`` and
the REST API's ``from`` both reach here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: A quarter (92 days) at most: the longest period an inspection looks back over, and a bound on
#: how much one report may make the server recompute.
MAX_DAYS = 92
DEFAULT_TZ = "Asia/Shanghai"


class PeriodError(ValueError):
    """A period that cannot be: ``field`` is ``from``, ``to`` or ``tz``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def zone(name: str, field: str = "tz") -> ZoneInfo:
    """The IANA timezone ``name``, or a ``PeriodError`` naming ``field``."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise PeriodError(field, f"{name!r} is not a timezone name such as Asia/Shanghai")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name longer than the file system allows (ENAMETOOLONG).
        raise PeriodError(field, f"unknown timezone {name[:80]!r}") from None


def parse_day(field: str, text: str) -> dt.date:
    """``YYYY-MM-DD`` as a date, or a ``PeriodError`` naming ``field``."""
    if not isinstance(text, str) or len(text) != 10:
        raise PeriodError(field, f"{text!r} is not a date as YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise PeriodError(field, f"{text!r} is not a date as YYYY-MM-DD") from None


@dataclass(frozen=True, slots=True)
class Period:
    """Days ``first_day`` to ``last_day``, both included, in timezone ``tz``."""

    first_day: dt.date
    last_day: dt.date
    tz: str = DEFAULT_TZ

    def __post_init__(self) -> None:
        # datetime is a subclass of date: a datetime here would silently drop its time.
        for name, value in (("from", self.first_day), ("to", self.last_day)):
            if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
                raise PeriodError(name, f"{value!r} is not a date")
        zone(self.tz)
        if self.last_day < self.first_day:
            raise PeriodError("to", f"{self.last_day} is before from ({self.first_day})")
        if self.days > MAX_DAYS:
            raise PeriodError("to", f"a period is at most {MAX_DAYS} days, this is {self.days}")

    @classmethod
    def parse(cls, first: str, last: str, tz: str = DEFAULT_TZ) -> Period:
        """From the ``YYYY-MM-DD`` strings of a query or the command line."""
        return cls(parse_day("from", first), parse_day("to", last), tz)

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def since_ms(self) -> int:
        """Local midnight at the start of ``first_day``, epoch ms."""
        return _midnight_ms(self.first_day, self.tz)

    @property
    def until_ms(self) -> int:
        """Local midnight after ``last_day`` (excluded), epoch ms."""
        return _midnight_ms(self.last_day + dt.timedelta(days=1), self.tz)

    @property
    def window_ms(self) -> tuple[int, int]:
        return self.since_ms, self.until_ms

    def contains_start(self, start_ms: int) -> bool:
        """Whether a shift starting at ``start_ms`` belongs to this period."""
        return self.since_ms <= start_ms < self.until_ms

    def as_json(self) -> dict[str, str]:
        return {"from": self.first_day.isoformat(), "to": self.last_day.isoformat(), "tz": self.tz}

    def label(self) -> str:
        """``2026-01-05..2026-01-11`` (one day: just the day), for titles and file names."""
        if self.first_day == self.last_day:
            return self.first_day.isoformat()
        return f"{self.first_day.isoformat()}..{self.last_day.isoformat()}"


def _midnight_ms(day: dt.date, tz: str) -> int:
    # A zone whose clocks skip midnight (rare; some DST rules did) gets the instant zoneinfo
    # maps the wall time to, which is the first existing instant after it for fold=0.
    local = dt.datetime.combine(day, dt.time(0), tzinfo=zone(tz))
    return int(local.timestamp()) * 1000
