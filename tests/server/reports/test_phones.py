"""Reports of shifts with phones (issue #10, docs/metrics.md §7), over the real stores and duty
engine: every on-duty rate comes with the part that rests on a phone alone — the shift, volunteer
and unit rows, the CSV files, the JSON, the charts — and terminal usage stays per terminal.

On 2026-03-02, team t1 has post p1 and two shifts from 08:00 to 09:00:

- A: 张三 (v1) with terminal d1 and phone ph-v1. d1 reports on the post every 30 s from 07:59
  and is switched off at 08:30; the phone reports on the post from 08:30. On post all hour,
  half of it on the phone alone: trust "mixed". d1 itself was on for half an hour.
- B: 李四 (v2) with a phone only, ph-v2, on the post every 30 s until 08:27:30: on post until
  08:30 (150 s more), all of it on the phone: trust "phone".

Team: on post 5400 s of 7200 (75 %), 3600 s of them on a phone alone (50 %); terminals d1 and
ph-v2 alive 1800 s each of 3600 (50 %).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from protocol import Fix
from server.duty.geo import Circle
from server.duty.rules import Trust
from server.duty.service import DutyService
from server.org.model import Post, PostKind, Terminal, TerminalKind, Unit, UnitLevel, Volunteer
from server.org.store import OrgStore
from server.reports import charts
from server.reports.csv_export import BOM, UNIT_COLUMNS, units_csv, volunteers_csv
from server.reports.period import Period
from server.reports.service import Reports, UnitReport
from server.reports.shapes import shift_detail_json, unit_report_json
from server.sqlite_store import SqliteStore
from server.store import IncomingFrame
from server.web.duty_routes import result_json

from .fakes import FakeSpotChecks

TZ = ZoneInfo("Asia/Shanghai")
DAY = Period.parse("2026-03-02", "2026-03-02")
LAT0, LON0 = 22.5431, 114.0579


def at(hour: int, minute: int = 0, second: int = 0) -> int:
    local = dt.datetime(2026, 3, 2, hour, minute, second, tzinfo=TZ)
    return int(local.timestamp()) * 1000


def fix_frame(device: str, t_ms: int, *, phone: bool) -> IncomingFrame:
    seq = t_ms * 4 if phone else t_ms // 30_000
    fix = Fix(time_ms=t_ms, lat=LAT0, lon=LON0, accuracy_m=6.0)
    return IncomingFrame(
        device, seq, 0 if phone else 1, 0x80 if phone else 0x02, t_ms, t_ms + 500,
        f"{device}{seq}".encode(), bytes(32), fixes=(fix,),
    )  # fmt: skip


@dataclass
class Parts:
    reports: Reports
    org: OrgStore
    duty: DutyService


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    org = OrgStore(tmp_path / "org.db")
    store = SqliteStore(tmp_path / "yijing.db")
    for unit in (
        Unit("sz", "深圳市", UnitLevel.CITY),
        Unit("futian", "福田区", UnitLevel.DISTRICT, "sz"),
        Unit("s1", "福田派出所", UnitLevel.STATION, "futian"),
        Unit("t1", "一队", UnitLevel.TEAM, "s1"),
    ):
        org.put_unit(unit)
    org.put_volunteer(Volunteer("v1", "张三", "t1"))
    org.put_volunteer(Volunteer("v2", "李四", "t1"))
    org.put_terminal(Terminal("d1", "t1", holder="v1"), at_ms=at(0))
    org.put_terminal(Terminal("ph-v1", "t1", TerminalKind.PHONE, "v1"), at_ms=at(0))
    org.put_terminal(Terminal("ph-v2", "t1", TerminalKind.PHONE, "v2"), at_ms=at(0))
    org.put_post(Post("p1", "华强北路口", PostKind.DUTY_POINT, "t1", Circle(LAT0, LON0, 50)))
    org.put_shift(org.make_shift("A", "v1", "p1", at(8), at(9)))
    org.put_shift(org.make_shift("B", "v2", "p1", at(8), at(9)))
    frames = [fix_frame("d1", t, phone=False) for t in range(at(7, 59), at(8, 30), 30_000)]
    off = at(8, 30)  # d1 switched off: an orderly "offline" presence
    frames.append(IncomingFrame("d1", 10**6, 1, 3, off, off + 500, b"off", bytes(32), offline=True))
    frames += [fix_frame("ph-v1", t, phone=True) for t in range(at(8, 30), at(9), 30_000)]
    frames += [fix_frame("ph-v2", t, phone=True) for t in range(at(7, 59, 30), at(8, 28), 30_000)]
    store.store_frames(frames)
    duty = DutyService(store, org)
    reports = Reports(store, org, duty, FakeSpotChecks(stats={}, calls={}))
    yield Parts(reports, org, duty)
    reports.close()
    org.close()
    store.close()


def report(parts: Parts) -> UnitReport:
    return parts.reports.unit_report("t1", DAY)


def test_rows_show_the_phone_only_part_of_every_rate(parts: Parts) -> None:
    r = report(parts)
    t = r.totals
    assert (t.scheduled_s, t.on_post_s, t.phone_on_post_s) == (7200, 5400, 3600)
    assert t.on_duty_rate == pytest.approx(0.75) and t.phone_only_rate == pytest.approx(0.5)
    # Terminal usage per terminal, by its own data: d1 was off from 08:30 whatever the phone
    # said; v2's recorded terminal is their phone.
    assert (t.terminals, t.terminal_scheduled_s, t.terminal_alive_s) == (2, 7200, 3600)
    a, b = r.shifts
    assert (a.shift_id, a.device_id, a.devices, a.trust) == ("A", "d1", ("d1", "ph-v1"), "mixed")
    assert (a.on_post_s, a.phone_on_post_s, a.phone_only_rate) == (3600, 1800, 0.5)
    assert a.usage_rate == 0.5  # d1's own: off from 08:30, whatever the phone said
    assert (b.shift_id, b.device_id, b.devices, b.trust) == ("B", "ph-v2", ("ph-v2",), "phone")
    assert (b.on_post_s, b.phone_on_post_s) == (1800, 1800)
    v1, v2 = r.volunteers
    assert (v1.volunteer_id, v1.phone_on_post_s, v1.phone_only_rate) == ("v1", 1800, 0.5)
    assert (v1.usage_rate, v2.usage_rate) == (0.5, 0.5)
    assert (v2.volunteer_id, v2.phone_on_post_s, v2.phone_only_rate) == ("v2", 1800, 0.5)
    up = parts.reports.unit_report("futian", DAY)
    assert up.totals.phone_on_post_s == 3600  # summed up the tree like the rest
    assert up.children[0].phone_only_rate == pytest.approx(0.5)


def test_csv_has_named_phone_columns_beside_the_rate(parts: Parts) -> None:
    r = report(parts)
    text = units_csv(r.totals, r.children)
    header = text.removeprefix(BOM).splitlines()[0].split(",")
    assert header == list(UNIT_COLUMNS)
    i = header.index("on_duty_rate")
    assert header[i + 1 : i + 3] == ["phone_on_post_s", "phone_only_rate"]
    (total,) = csv.DictReader(io.StringIO(text.removeprefix(BOM), newline=""))
    assert (total["on_duty_rate"], total["phone_on_post_s"], total["phone_only_rate"]) == (
        "0.7500",
        "3600",
        "0.5000",
    )
    rows = list(csv.DictReader(io.StringIO(volunteers_csv(r.volunteers).removeprefix(BOM))))
    assert [(v["volunteer_id"], v["phone_on_post_s"], v["phone_only_rate"]) for v in rows] == [
        ("v1", "1800", "0.5000"),
        ("v2", "1800", "0.5000"),
    ]


def test_json_contracts_carry_devices_trust_and_phone_seconds(parts: Parts) -> None:
    doc = unit_report_json(report(parts))
    assert doc["totals"]["phone_on_post_s"] == 3600 and doc["totals"]["phone_only_rate"] == 0.5
    assert doc["volunteers"][0]["phone_only_rate"] == 0.5
    a = doc["shifts"][0]
    assert (a["devices"], a["trust"], a["phone_on_post_s"]) == (["d1", "ph-v1"], "mixed", 1800)
    detail = shift_detail_json(parts.reports.shift_detail("A"))
    assert (detail["devices"], detail["phones"], detail["trust"]) == (
        ["d1", "ph-v1"],
        ["ph-v1"],
        "mixed",
    )
    assert detail["phone_only"] == [{"start_s": at(8, 30) // 1000, "end_s": at(9) // 1000}]
    assert detail["tally"]["phone_on_post_s"] == 1800
    assert detail["tally"]["phone_only_rate"] == 0.5
    assert detail["tally"]["on_duty_rate"] == 1.0
    assert (detail["tally"]["usage_rate"], detail["tally"]["alive_s"]) == (0.5, 3600)
    # The live duty route's shape says the same.
    shift = parts.org.shift("A")
    assert shift is not None
    live = result_json(parts.duty.recompute(shift))
    assert (live["trust"], live["phones"], live["tally"]["phone_on_post_s"]) == (
        "mixed",
        ["ph-v1"],
        1800,
    )
    assert live["tally"]["usage_rate"] == 0.5


def test_a_shift_without_phones_says_signed(parts: Parts) -> None:
    parts.org.put_terminal(Terminal("ph-v1", "t1", TerminalKind.PHONE), at_ms=at(1))
    detail = parts.reports.shift_detail("A")
    assert detail.result.trust is Trust.SIGNED and detail.result.phones == ()
    assert shift_detail_json(detail)["phone_only"] == []


def test_rates_chart_splits_the_on_duty_bar(parts: Parts) -> None:
    r = report(parts)
    svg = charts.rates_chart([r.totals], "svg", "en").decode()
    for key in ("on_duty_signed", "on_duty_phone", "usage_rate"):
        assert charts.LABELS["en"][key] in svg
    assert "75%" in svg  # the bar's label: the whole rate, on top of both parts


def test_rates_chart_in_chinese_names_the_phone_part(parts: Parts) -> None:
    if charts.fonts().cjk_family is None:
        pytest.fail("no CJK font: apt-get install fonts-wqy-microhei (.ci/run installs it)")
    svg = charts.rates_chart([report(parts).totals], "svg", "zh").decode()
    assert "在岗率（签名终端）" in svg and "在岗率（仅手机）" in svg


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_timeline_marks_what_rests_on_the_phone(parts: Parts, lang: str) -> None:
    detail = parts.reports.shift_detail("A")
    svg = charts.timeline_chart(detail, "svg", lang).decode()
    style = charts._style(lang)
    assert style.label("phone_only") in svg
    assert f"{style.label('phone_only_rate')} 50.0%" in svg
    assert charts.timeline_chart(detail, "png", lang).startswith(b"\x89PNG")
