"""``yijing report``: an inspector's report from a server's data folder, without the server.

The same figures as ``GET /api/v1/reports/units/{unit}`` (``server.reports``), read from the
files the server writes: ``DIR/yijing.db`` (telemetry), ``DIR/org.db`` (the organisation) and
``DIR/spotchecks.db`` (roll calls; absent: no spot checks yet). SQLite's WAL lets this run
beside a live server. A progress bar on stderr counts the shifts recomputed; it stays quiet
when stderr is not a terminal or with ``--quiet``.

example:
  yijing report --data ./var/server --unit futian-s1 --from 2026-03-02 --to 2026-03-08
  yijing report --data ./var/server --unit futian --from 2026-03-01 --to 2026-03-31 \\
      --format csv --rows volunteers --out march.csv --chart march.svg --lang zh
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from server.reports.aggregate import UnitRow, VolunteerRow
    from server.reports.service import Reports, UnitReport

EXAMPLE = (
    "example:\n"
    "  yijing report --data ./var/server --unit futian-s1 --from 2026-03-02 --to 2026-03-08\n"
    "  yijing report --data ./var/server --unit futian --from 2026-03-01 --to 2026-03-31 \\\n"
    "      --format csv --rows volunteers --out march.csv --chart march.svg --lang zh\n"
    "\n"
    "Rates are ratios of summed seconds over the unit's whole subtree (docs/reports.md);\n"
    "a shift counts in the period in which it starts."
)
FORMATS = ("table", "csv", "json")


class UsageError(Exception):
    """Something the person asked for that cannot be: exit status 2."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``yijing report``, added to the ``yijing`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="an inspector's report (on-duty, terminal usage, spot checks) for a unit and period",
        description="On-duty rate, terminal usage rate, spot-check answer rate and flags for a "
        "unit and its subtree over whole days, read from a server's data folder.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=Path("var/server"), help="the server's data folder")
    p.add_argument("--unit", required=True, help="the unit to report on (its whole subtree)")
    p.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD", help="first day")
    p.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD", help="last day")
    p.add_argument("--tz", default="Asia/Shanghai", help="the days' timezone (Asia/Shanghai)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output (table)")
    p.add_argument(
        "--rows",
        choices=("units", "volunteers"),
        default="units",
        help="what --format csv writes: unit rows (the unit, then its children) or volunteers",
    )
    p.add_argument(
        "--volunteers",
        choices=("direct", "all"),
        default="direct",
        help="volunteers directly in the unit (default) or all in its subtree",
    )
    p.add_argument("--out", type=Path, help="write the report here instead of stdout")
    p.add_argument("--chart", type=Path, metavar="FILE.svg|FILE.png", help="also draw the rates")
    p.add_argument("--lang", choices=("zh", "en"), default="zh", help="chart labels (zh)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# --- opening the data folder ------------------------------------------------------------------


class _NoSpotChecks:
    """Stands in for spot checks when the server has never run one (no spotchecks.db): a
    report must not create files in the server's folder."""

    def answer_stats(
        self, *, units: set[str] | None, since_ms: int, until_ms: int
    ) -> dict[str, tuple[int, int]]:
        return {}

    def requests(
        self, device_id: str, since_ms: int, until_ms: int
    ) -> list[tuple[int, int, int | None]]:
        return []


def _refuse_send(device_id: str, roll_call: object) -> None:
    from yijing.mqtt import LinkError

    raise LinkError("yijing report reads; it sends no roll calls")


@contextlib.contextmanager
def open_reports(data: Path) -> Iterator[Reports]:
    """``Reports`` over the server's stores in ``data``, closed afterwards."""
    from server.duty.service import DutyService
    from server.org.store import OrgStore
    from server.reports.service import Reports
    from server.spotcheck.service import SpotChecks
    from server.sqlite_store import SqliteStore

    for name in ("yijing.db", "org.db"):
        if not (data / name).is_file():
            raise UsageError(f"data: no {name} in {data} (is it the server's --data folder?)")
    with contextlib.ExitStack() as stack:
        store = SqliteStore(data / "yijing.db")
        stack.callback(store.close)
        org = OrgStore(data / "org.db")
        stack.callback(org.close)
        duty = DutyService(store, org)
        spot: _NoSpotChecks | SpotChecks = _NoSpotChecks()
        if (data / "spotchecks.db").is_file():
            checks = SpotChecks(path=data / "spotchecks.db", org=org, send=_refuse_send)
            stack.callback(checks.close)
            spot = checks
        reports = Reports(store, org, duty, spot)
        stack.callback(reports.close)
        yield reports


# --- output -----------------------------------------------------------------------------------


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * max(0, width - _width(text))
    return gap + text if right else text + gap


def table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    widths = [max([_width(h), *(_width(r[i]) for r in rows)]) for i, h in enumerate(head)]
    lines = [
        "  ".join(_pad(cell, widths[i], i in numeric) for i, cell in enumerate(line)).rstrip()
        for line in (head, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _hours(seconds: int) -> str:
    return f"{seconds / 3600:.1f}"


def _unit_cells(r: UnitRow) -> list[str]:
    return [
        r.unit_id,
        r.name,
        r.level,
        str(r.shifts),
        str(r.volunteers),
        _hours(r.scheduled_s),
        _pct(r.on_duty_rate),
        _pct(r.phone_only_rate),
        _pct(r.usage_rate),
        f"{r.spot_checks_answered}/{r.spot_checks_sent}",
        _pct(r.spot_check_answer_rate),
        str(sum(r.flags.values())),
    ]


def _volunteer_cells(r: VolunteerRow) -> list[str]:
    return [
        r.volunteer_id,
        r.name,
        r.unit_id,
        str(len(r.shifts)),
        _hours(r.scheduled_s),
        _pct(r.on_duty_rate),
        _pct(r.phone_only_rate),
        _pct(r.usage_rate),
        f"{r.late_s // 60}",
        f"{r.early_leave_s // 60}",
        f"{r.spot_checks_answered}/{r.spot_checks_sent}",
        str(sum(r.flags.values())),
    ]


def render_table(report: UnitReport) -> str:
    unit, period = report.unit, report.period
    path = " › ".join([*(u.name for u in report.path), unit.name])
    out = [f"{path} ({unit.unit_id})  {period.label()} ({period.tz})\n\n"]
    head = [
        "unit", "name", "level", "shifts", "volunteers", "hours", "on-duty", "phone only",
        "usage", "spot checks", "answered", "flags",
    ]  # fmt: skip
    rows = [_unit_cells(report.totals), *(_unit_cells(r) for r in report.children)]
    out.append(table(head, rows, numeric=set(range(3, 12))))
    if report.volunteers:
        head = [
            "volunteer", "name", "unit", "shifts", "hours", "on-duty", "phone only", "usage",
            "late min", "early min", "spot checks", "flags",
        ]  # fmt: skip
        out.append("\n")
        out.append(table(head, [_volunteer_cells(r) for r in report.volunteers], set(range(3, 12))))
    if report.flags:
        kinds: dict[str, int] = {}
        for f in report.flags:
            kinds[str(f.kind)] = kinds.get(str(f.kind), 0) + 1
        out.append("\nflags: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + "\n")
    return "".join(out)


def render(report: UnitReport, fmt: str, rows: str) -> str:
    from server.reports import csv_export
    from server.reports.shapes import unit_report_json

    if fmt == "json":
        return json.dumps(unit_report_json(report), ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        if rows == "volunteers":
            return csv_export.volunteers_csv(report.volunteers)
        return csv_export.units_csv(report.totals, report.children)
    return render_table(report)


# --- the command ------------------------------------------------------------------------------


def _progress_bar(quiet: bool, stream: TextIO) -> tuple[Callable[[int, int], None], Any]:
    from tqdm import tqdm

    bar = tqdm(
        total=0,
        unit="shift",
        desc="recomputing",
        file=stream,
        disable=quiet or not stream.isatty(),
        leave=False,
    )

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    return progress, bar


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from server.errors import StoreError
    from server.reports import charts
    from server.reports.period import Period, PeriodError
    from server.reports.service import ReportError

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    chart_fmt = None
    if args.chart is not None:
        chart_fmt = args.chart.suffix.lower().lstrip(".")
        if chart_fmt not in charts.FORMATS:
            print(f"yijing report: chart: {args.chart} must end in .svg or .png", file=err)
            return 2
    try:
        period = Period.parse(args.first, args.last, args.tz)
        with open_reports(args.data) as reports:
            progress, bar = _progress_bar(args.quiet, err)
            try:
                report = reports.unit_report(
                    args.unit,
                    period,
                    progress=progress,
                    all_volunteers=args.volunteers == "all",
                )
            finally:
                bar.close()
    except (UsageError, PeriodError, ReportError) as exc:
        print(f"yijing report: {exc}", file=err)
        return 2
    except StoreError as exc:
        print(f"yijing report: {exc}", file=err)
        return 1

    text = render(report, args.format, args.rows)
    if args.out is not None:
        # newline="": the CSV's own CRLF line ends are written as they are.
        with args.out.open("w", encoding="utf-8", newline="") as f:
            f.write(text)
    else:
        out.write(text.removeprefix("\ufeff"))  # a BOM is for files, not for a terminal
    if args.chart is not None and chart_fmt is not None:
        rows = list(report.children) or [report.totals]
        title = f"{report.unit.name} {report.period.label()}"
        args.chart.write_bytes(charts.rates_chart(rows, chart_fmt, args.lang, title=title))
    return 0
