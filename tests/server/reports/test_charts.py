"""Charts: SVG that parses and names its legend, PNG that is a PNG, Chinese and English, and
no missing-glyph warnings without a CJK font (warnings are errors in this suite)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from server.reports import charts
from server.reports.period import Period

from .fakes import make_reports

DAY = Period.parse("2026-03-02", "2026-03-02")
PNG = b"\x89PNG\r\n\x1a\n"
@pytest.fixture
def cjk_font() -> None:
    """Chinese labels need a CJK font; like Chromium and Mosquitto, it is a part the tests
    require rather than skip (`.ci/run` installs fonts-wqy-microhei)."""
    if charts.fonts().cjk_family is None:
        pytest.fail("no CJK font: apt-get install fonts-wqy-microhei (.ci/run installs it)")


@pytest.fixture
def no_cjk_font(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    latin = charts.fonts().paths[0]
    monkeypatch.setattr(charts, "_fonts", charts._Fonts(None, (latin,)))
    yield


def _svg_text(data: bytes) -> str:
    ET.fromstring(data)  # well-formed XML
    text = data.decode("utf-8")
    assert "<svg" in text
    return text


def _labels(lang: str, *keys: str) -> list[str]:
    return [charts.LABELS[lang][k] for k in keys]


RATES = ("on_duty_rate", "usage_rate", "spot_check_answer_rate")
STATES = ("on_post", "on_post_backfilled", "off_post", "no_fix", "offline")


@pytest.mark.usefixtures("cjk_font")
def test_rates_chart_svg_in_chinese() -> None:
    report = make_reports().unit_report("futian", DAY)
    svg = _svg_text(charts.rates_chart(report.children, "svg", "zh", title="福田区 2026-03-02"))
    for label in [*_labels("zh", *RATES), "福田派出所", "香蜜湖派出所", "福田区 2026-03-02"]:
        assert label in svg


def test_rates_chart_svg_in_english() -> None:
    report = make_reports().unit_report("futian", DAY)
    svg = _svg_text(charts.rates_chart(report.children, "svg", "en"))
    for label in _labels("en", *RATES, "rates_title"):
        assert label in svg


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_rates_chart_png(lang: str) -> None:
    report = make_reports().unit_report("futian", DAY)
    assert charts.rates_chart(report.children, "png", lang).startswith(PNG)


def test_rates_chart_with_no_rows_says_so() -> None:
    svg = _svg_text(charts.rates_chart([], "svg", "en"))
    assert charts.LABELS["en"]["no_data"] in svg


@pytest.mark.usefixtures("cjk_font")
def test_timeline_svg_in_chinese_has_every_state_in_its_legend() -> None:
    detail = make_reports().shift_detail("A")
    svg = _svg_text(charts.timeline_chart(detail, "svg", "zh"))
    for label in [
        *_labels("zh", *STATES, "roll_call_answered", "roll_call_missed"),
        "张三",
        "华强北路口",
        "08:00",
        "10:00",
    ]:
        assert label in svg


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_timeline_in_english(fmt: str) -> None:
    detail = make_reports().shift_detail("D")  # 20:00 to 02:00 the next day
    data = charts.timeline_chart(detail, fmt, "en")
    if fmt == "png":
        assert data.startswith(PNG)
        return
    svg = _svg_text(data)
    for label in [*_labels("en", *STATES), "20:00", "00:00", "02:00", "Asia/Shanghai"]:
        assert label in svg


def test_without_a_cjk_font_labels_fall_back_to_english_and_ids(no_cjk_font: None) -> None:
    reports = make_reports()
    report = reports.unit_report("futian", DAY)
    svg = _svg_text(charts.rates_chart(report.children, "svg", "zh", title="福田区"))
    assert charts.LABELS["en"]["on_duty_rate"] in svg
    assert "在岗率" not in svg and "福田派出所" not in svg
    assert "s1" in svg and "s2" in svg  # names the fonts cannot draw: their ids
    assert charts.rates_chart(report.children, "png", "zh").startswith(PNG)
    timeline = _svg_text(charts.timeline_chart(reports.shift_detail("A"), "svg", "zh"))
    assert "v1" in timeline and "p1" in timeline and "Off post" in timeline


def test_hour_ticks_in_the_reports_timezone() -> None:
    detail = make_reports().shift_detail("D")
    ticks = charts.hour_ticks(detail.result.start_s, detail.result.end_s, "Asia/Shanghai")
    assert [label for _, label in ticks] == [
        "20:00", "21:00", "22:00", "23:00", "00:00", "01:00", "02:00",
    ]  # fmt: skip
    utc = charts.hour_ticks(detail.result.start_s, detail.result.end_s, "UTC")
    assert utc[0][1] == "12:00"
    day = charts.hour_ticks(detail.result.start_s, detail.result.start_s + 20 * 3600, "UTC")
    assert [label for _, label in day][:3] == ["12:00", "14:00", "16:00"]


def test_bad_format_and_language_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"^format: "):
        charts.rates_chart([], "gif", "en")
    with pytest.raises(ValueError, match=r"^lang: "):
        charts.rates_chart([], "svg", "fr")
