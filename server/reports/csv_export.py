"""Reports as CSV for spreadsheets: one file of unit rows, one of volunteer rows.

UTF-8 with a byte-order mark: Excel as installed in China opens a BOM-less CSV as GBK and
shows Chinese names as mojibake; with the BOM it reads UTF-8. Rates are decimals in [0, 1]
with four places (0.8731, not 87.31%: a spreadsheet formats them), empty when there was
nothing to measure; seconds are whole numbers. Rows end in CRLF, as RFC 4180 and Excel expect.

A text cell that begins with ``= + - @`` (or a tab or CR) would be run as a formula by Excel;
names come from people's data entry, so such a cell is prefixed with an apostrophe (OWASP's
advice against CSV injection). Ids never begin so (``server.org.model.ID_RE``).

Columns (also in ``docs/reports.md``):

units.csv
    row (``total`` for the report's unit, then ``child`` for each child unit), unit_id, name,
    level, shifts, volunteers, scheduled_s, on_post_s, on_post_backfilled_s, off_post_s,
    no_fix_s, offline_s, on_duty_rate, phone_on_post_s, phone_only_rate, terminals,
    terminal_scheduled_s, terminal_alive_s, usage_rate, spot_checks_sent, spot_checks_answered,
    spot_check_answer_rate, flags_total, flags (``kind=count`` joined by ``;``, kinds in order)
volunteers.csv
    volunteer_id, name, unit_id, shifts (how many), scheduled_s, on_post_s, on_post_backfilled_s,
    off_post_s, no_fix_s, offline_s, on_duty_rate, phone_on_post_s, phone_only_rate, usage_rate,
    late_s, early_leave_s, spot_checks_sent, spot_checks_answered, spot_check_answer_rate,
    flags_total, flags, shift_ids (space-separated, by start)

``phone_on_post_s`` are the on-post seconds (within ``on_post_s``) that rest on a phone's word
alone, ``phone_only_rate`` the part of ``on_duty_rate`` they make (``docs/metrics.md`` §7):
next to the rate, so a spreadsheet shows both.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from .aggregate import UnitRow, VolunteerRow

BOM = "\ufeff"

UNIT_COLUMNS = (
    "row",
    "unit_id",
    "name",
    "level",
    "shifts",
    "volunteers",
    "scheduled_s",
    "on_post_s",
    "on_post_backfilled_s",
    "off_post_s",
    "no_fix_s",
    "offline_s",
    "on_duty_rate",
    "phone_on_post_s",
    "phone_only_rate",
    "terminals",
    "terminal_scheduled_s",
    "terminal_alive_s",
    "usage_rate",
    "spot_checks_sent",
    "spot_checks_answered",
    "spot_check_answer_rate",
    "flags_total",
    "flags",
)

VOLUNTEER_COLUMNS = (
    "volunteer_id",
    "name",
    "unit_id",
    "shifts",
    "scheduled_s",
    "on_post_s",
    "on_post_backfilled_s",
    "off_post_s",
    "no_fix_s",
    "offline_s",
    "on_duty_rate",
    "phone_on_post_s",
    "phone_only_rate",
    "usage_rate",
    "late_s",
    "early_leave_s",
    "spot_checks_sent",
    "spot_checks_answered",
    "spot_check_answer_rate",
    "flags_total",
    "flags",
    "shift_ids",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def rate(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def flags_cell(flags: dict[str, int]) -> str:
    return ";".join(f"{kind}={n}" for kind, n in sorted(flags.items()))


def _write(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buf = io.StringIO()
    buf.write(BOM)
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def _unit_cells(kind: str, r: UnitRow) -> list[object]:
    return [
        kind,
        r.unit_id,
        text(r.name),
        r.level,
        r.shifts,
        r.volunteers,
        r.scheduled_s,
        r.on_post_s,
        r.on_post_backfilled_s,
        r.off_post_s,
        r.no_fix_s,
        r.offline_s,
        rate(r.on_duty_rate),
        r.phone_on_post_s,
        rate(r.phone_only_rate),
        r.terminals,
        r.terminal_scheduled_s,
        r.terminal_alive_s,
        rate(r.usage_rate),
        r.spot_checks_sent,
        r.spot_checks_answered,
        rate(r.spot_check_answer_rate),
        sum(r.flags.values()),
        flags_cell(r.flags),
    ]


def units_csv(totals: UnitRow, children: Sequence[UnitRow]) -> str:
    """The report's own row (``row`` = total) then its children's (``row`` = child)."""
    return _write(
        UNIT_COLUMNS,
        [_unit_cells("total", totals), *(_unit_cells("child", r) for r in children)],
    )


def volunteers_csv(rows: Sequence[VolunteerRow]) -> str:
    return _write(
        VOLUNTEER_COLUMNS,
        (
            [
                r.volunteer_id,
                text(r.name),
                r.unit_id,
                len(r.shifts),
                r.scheduled_s,
                r.on_post_s,
                r.on_post_backfilled_s,
                r.off_post_s,
                r.no_fix_s,
                r.offline_s,
                rate(r.on_duty_rate),
                r.phone_on_post_s,
                rate(r.phone_only_rate),
                rate(r.usage_rate),
                r.late_s,
                r.early_leave_s,
                r.spot_checks_sent,
                r.spot_checks_answered,
                rate(r.spot_check_answer_rate),
                sum(r.flags.values()),
                flags_cell(r.flags),
                " ".join(r.shifts),
            ]
            for r in rows
        ),
    )
