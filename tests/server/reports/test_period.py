"""A period is whole local days; errors name the field people typed."""

from __future__ import annotations

import datetime as dt

import pytest

from server.reports.period import MAX_DAYS, Period, PeriodError


def test_one_day_in_shanghai_is_local_midnight_to_midnight() -> None:
    p = Period.parse("2026-03-02", "2026-03-02")
    # 2026-03-02 00:00 +08:00 is 2026-03-01 16:00 UTC.
    assert p.since_ms == int(dt.datetime(2026, 3, 1, 16, tzinfo=dt.UTC).timestamp()) * 1000
    assert p.until_ms - p.since_ms == 86_400_000
    assert p.days == 1
    assert p.label() == "2026-03-02"
    assert p.as_json() == {"from": "2026-03-02", "to": "2026-03-02", "tz": "Asia/Shanghai"}


def test_a_week_and_its_label() -> None:
    p = Period(dt.date(2026, 3, 2), dt.date(2026, 3, 8), "UTC")
    assert p.window_ms == (
        int(dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()) * 1000,
        int(dt.datetime(2026, 3, 9, tzinfo=dt.UTC).timestamp()) * 1000,
    )
    assert p.days == 7
    assert p.label() == "2026-03-02..2026-03-08"


def test_a_day_with_a_clock_change_is_23_hours() -> None:
    p = Period.parse("2026-03-29", "2026-03-29", "Europe/Berlin")
    assert p.until_ms - p.since_ms == 23 * 3_600_000


def test_a_shift_belongs_to_the_period_it_starts_in() -> None:
    p = Period.parse("2026-03-02", "2026-03-02")
    assert p.contains_start(p.since_ms)
    assert p.contains_start(p.until_ms - 1000)
    assert not p.contains_start(p.until_ms)
    assert not p.contains_start(p.since_ms - 1000)


@pytest.mark.parametrize(
    ("first", "last", "tz", "field", "words"),
    [
        ("2026-03-09", "2026-03-08", "Asia/Shanghai", "to", "before from"),
        ("2026-13-01", "2026-03-08", "Asia/Shanghai", "from", "YYYY-MM-DD"),
        ("2026-3-1", "2026-03-08", "Asia/Shanghai", "from", "YYYY-MM-DD"),
        ("2026-03-01", "yesterday", "Asia/Shanghai", "to", "YYYY-MM-DD"),
        ("2026-01-01", "2026-04-03", "Asia/Shanghai", "to", "at most 92 days"),
        ("2026-03-01", "2026-03-02", "Mars/Olympus", "tz", "unknown timezone"),
        ("2026-03-01", "2026-03-02", "../../etc/passwd", "tz", "not a timezone"),
        ("2026-03-01", "2026-03-02", "", "tz", "not a timezone"),
    ],
)
def test_errors_name_the_field(first: str, last: str, tz: str, field: str, words: str) -> None:
    with pytest.raises(PeriodError) as info:
        Period.parse(first, last, tz)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert words in str(info.value)


def test_the_longest_period_is_a_quarter() -> None:
    first = dt.date(2026, 1, 1)
    assert Period(first, first + dt.timedelta(days=MAX_DAYS - 1)).days == MAX_DAYS
    with pytest.raises(PeriodError):
        Period(first, first + dt.timedelta(days=MAX_DAYS))


def test_a_datetime_is_not_a_day() -> None:
    with pytest.raises(PeriodError) as info:
        Period(dt.datetime(2026, 3, 2, 12), dt.date(2026, 3, 2))
    assert info.value.field == "from"
