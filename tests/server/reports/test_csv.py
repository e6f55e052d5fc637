"""CSV for Excel in China: a BOM, fixed columns, Chinese names that survive a round trip."""

from __future__ import annotations

import csv
import dataclasses
import io

from server.reports.csv_export import (
    BOM,
    UNIT_COLUMNS,
    VOLUNTEER_COLUMNS,
    units_csv,
    volunteers_csv,
)
from server.reports.period import Period

from .fakes import make_reports

DAY = Period.parse("2026-03-02", "2026-03-02")


def _rows(text: str) -> list[dict[str, str]]:
    assert text.startswith(BOM)
    return list(csv.DictReader(io.StringIO(text.removeprefix(BOM), newline="")))


def test_units_csv_has_a_bom_the_header_and_the_total_first() -> None:
    report = make_reports().unit_report("futian", DAY)
    text = units_csv(report.totals, report.children)
    data = text.encode("utf-8")
    assert data.startswith(b"\xef\xbb\xbf")
    assert text.splitlines()[0].removeprefix(BOM) == ",".join(UNIT_COLUMNS)
    assert "\r\n" in text
    assert data.decode("utf-8-sig") == text.removeprefix(BOM)
    rows = _rows(text)
    assert [(r["row"], r["unit_id"]) for r in rows] == [
        ("total", "futian"),
        ("child", "s1"),
        ("child", "s2"),
    ]
    total = rows[0]
    assert total["name"] == "福田区"
    assert total["on_duty_rate"] == "0.8182"  # 9 h of 11 h
    assert total["scheduled_s"] == "39600"
    assert total["flags_total"] == "3"
    assert total["flags"] == "clock_skew=1;shared_terminal=1;speed_jump=1"
    s1 = rows[1]
    assert (s1["name"], s1["usage_rate"], s1["spot_check_answer_rate"]) == (
        "福田派出所",
        "0.8889",
        "0.3333",
    )


def test_an_empty_rate_is_an_empty_cell() -> None:
    report = make_reports().unit_report("s2", Period.parse("2026-03-05", "2026-03-05"))
    (row,) = _rows(units_csv(report.totals, report.children))
    assert (row["shifts"], row["on_duty_rate"], row["usage_rate"]) == ("0", "", "")
    assert row["spot_check_answer_rate"] == ""


def test_volunteers_csv_round_trips_chinese_names() -> None:
    report = make_reports().unit_report("futian", DAY, all_volunteers=True)
    text = volunteers_csv(report.volunteers)
    assert text.splitlines()[0].removeprefix(BOM) == ",".join(VOLUNTEER_COLUMNS)
    # What Excel or a script sees after saving the bytes and reading them back.
    back = list(csv.DictReader(io.StringIO(text.encode("utf-8").decode("utf-8-sig"))))
    assert [(r["volunteer_id"], r["name"]) for r in back] == [
        ("v1", "张三"),
        ("v2", "李四"),
        ("v3", "王五"),
        ("v4", "赵六"),
    ]
    v1 = back[0]
    assert (v1["shifts"], v1["shift_ids"], v1["on_duty_rate"], v1["early_leave_s"]) == (
        "1",
        "A",
        "0.5000",
        "3600",
    )


def test_a_name_that_looks_like_a_formula_is_defused() -> None:
    report = make_reports().unit_report("t1", DAY)
    evil = dataclasses.replace(report.volunteers[0], name='=HYPERLINK("http://x","点我")')
    (row,) = _rows(volunteers_csv([evil]))
    assert row["name"] == '\'=HYPERLINK("http://x","点我")'
