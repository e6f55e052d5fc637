"""Report charts as SVG or PNG bytes: rates per child unit, and one shift's timeline.

Matplotlib's object API only (``Figure`` and its own canvas, never ``pyplot``): no global
figure state and no display, so charts can be drawn on the web's worker threads at once.

Chinese labels need a CJK font. The first installed of ``CJK_FAMILIES`` is used (Debian's
fonts-wqy-microhei is what ``.ci/run`` installs); without one, the labels fall back to English
and any name that the fonts cannot draw is replaced by its id, so matplotlib never warns about
a missing glyph (the tests turn every warning into a failure, and a server log full of them
helps nobody). SVG text is drawn as paths, so the file looks the same on a machine without the
font; matplotlib writes each text as an XML comment beside its paths, which keeps it findable.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from matplotlib import font_manager
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from ..duty.rules import State
from .aggregate import UnitRow
from .service import ShiftDetail

log = logging.getLogger("yijing.reports")

Format = Literal["svg", "png"]
Lang = Literal["zh", "en"]
FORMATS: tuple[str, ...] = ("svg", "png")
LANGS: tuple[str, ...] = ("zh", "en")

CJK_FAMILIES = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC")
#: File-name stems of those families, to find one installed after matplotlib cached its list.
_CJK_FILES = ("wqy-microhei", "notosanscjk", "notosanssc")
LATIN = "DejaVu Sans"  # ships with matplotlib

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "on_duty_rate": "在岗率",
        "on_duty_signed": "在岗率（签名终端）",
        "on_duty_phone": "在岗率（仅手机）",
        "phone_only": "仅凭手机在岗",
        "phone_only_rate": "其中仅手机",
        "usage_rate": "终端使用率",
        "spot_check_answer_rate": "抽查应答率",
        "on_post": "在岗",
        "on_post_backfilled": "在岗（补传）",
        "off_post": "离岗",
        "no_fix": "无定位",
        "offline": "离线",
        "roll_call_answered": "抽查点名（已应答）",
        "roll_call_missed": "抽查点名（未应答）",
        "no_data": "本期无数据",
        "rates_title": "各单位在岗率、终端使用率、抽查应答率",
        "time": "时间",
    },
    "en": {
        "on_duty_rate": "On-duty rate",
        "on_duty_signed": "On-duty rate (signed terminal)",
        "on_duty_phone": "On-duty rate (phone only)",
        "phone_only": "On post on a phone alone",
        "phone_only_rate": "of it phone only",
        "usage_rate": "Terminal usage rate",
        "spot_check_answer_rate": "Spot-check answer rate",
        "on_post": "On post",
        "on_post_backfilled": "On post (backfilled)",
        "off_post": "Off post",
        "no_fix": "No fix",
        "offline": "Offline",
        "roll_call_answered": "Roll call (answered)",
        "roll_call_missed": "Roll call (not answered)",
        "no_data": "No data in this period",
        "rates_title": "On-duty, terminal usage and spot-check answer rates by unit",
        "time": "Time",
    },
}

#: Timeline colours: green on post (lighter when it came by backfill), orange off post, grey
#: without a usable fix, red offline.
STATE_STYLE: tuple[tuple[State, str, str], ...] = (
    (State.ON_POST, "on_post", "#2e7d32"),
    (State.ON_POST_BACKFILLED, "on_post_backfilled", "#a5d6a7"),
    (State.OFF_POST, "off_post", "#f57c00"),
    (State.NO_FIX, "no_fix", "#9e9e9e"),
    (State.OFFLINE, "offline", "#d32f2f"),
)
RATE_STYLE = (
    ("on_duty_rate", "#2e7d32"),
    ("usage_rate", "#1565c0"),
    ("spot_check_answer_rate", "#f9a825"),
)
#: The part of an on-duty rate resting on a phone alone (docs/metrics.md §7): pale and hatched
#: in the on-duty green, so it reads as part of that rate but cannot be taken for the rest.
PHONE_FACE, PHONE_HATCH = "#c8e6c9", "///"


# --- fonts ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fonts:
    cjk_family: str | None
    paths: tuple[str, ...]  # the files of the families used, to check what they can draw


_fonts_lock = threading.Lock()
_fonts: _Fonts | None = None
_charmaps: dict[str, frozenset[int]] = {}


def _find_cjk() -> tuple[str, str] | None:
    by_name = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in by_name:
            return family, by_name[family]
    # Matplotlib caches its font list on first use; a font installed later is not in it.
    for path in font_manager.findSystemFonts():
        stem = os.path.basename(path).lower().replace("-", "").replace("_", "")
        if any(hint.replace("-", "") in stem for hint in _CJK_FILES):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue
    by_name = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in by_name:
            return family, by_name[family]
    return None


def fonts() -> _Fonts:
    """The fonts charts use, looked up once per process."""
    global _fonts
    with _fonts_lock:
        if _fonts is None:
            latin = font_manager.findfont(FontProperties(family=LATIN), fallback_to_default=True)
            found = _find_cjk()
            if found is None:
                log.info("no CJK font (%s): charts in English", ", ".join(CJK_FAMILIES))
                _fonts = _Fonts(None, (latin,))
            else:
                _fonts = _Fonts(found[0], (latin, found[1]))
        return _fonts


def _charmap(path: str) -> frozenset[int]:
    with _fonts_lock:
        if path not in _charmaps:
            from matplotlib.ft2font import FT2Font

            _charmaps[path] = frozenset(FT2Font(path).get_charmap())
        return _charmaps[path]


def drawable(text: str) -> bool:
    """Whether the chart fonts have a glyph for every character of ``text``."""
    maps = [_charmap(p) for p in fonts().paths]
    return all(c.isspace() or any(ord(c) in m for m in maps) for c in text)


def _name(name: str, fallback: str) -> str:
    return name if drawable(name) else fallback


@dataclass(frozen=True, slots=True)
class _Style:
    lang: str
    font: FontProperties

    def label(self, key: str) -> str:
        return LABELS[self.lang][key]

    def small(self) -> FontProperties:
        """The font at legend size (a legend given ``prop`` ignores ``fontsize``)."""
        font = self.font.copy()
        font.set_size("small")
        return font


def _style(lang: str) -> _Style:
    if lang not in LANGS:
        raise ValueError(f"lang: {lang!r} is not one of {', '.join(LANGS)}")
    f = fonts()
    if f.cjk_family is None:
        return _Style("en", FontProperties(family=[LATIN]))
    families = [f.cjk_family, LATIN] if lang == "zh" else [LATIN, f.cjk_family]
    return _Style(lang, FontProperties(family=families))


def _render(fig: Figure, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    FigureCanvasAgg(fig)  # attaches itself; savefig switches to the SVG canvas for svg
    buf = io.BytesIO()
    # No date or software stamp, so the same report gives the same bytes.
    metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buf, format=fmt, dpi=100, metadata=metadata)
    return buf.getvalue()


# --- rates per unit ---------------------------------------------------------------------------


def rates_chart(
    rows: Sequence[UnitRow], fmt: str = "svg", lang: str = "zh", *, title: str = ""
) -> bytes:
    """Bars per unit: on-duty rate, terminal usage rate, spot-check answer rate (a rate with
    nothing to measure has no bar). The on-duty bar is split: its signed-terminal part below,
    the part resting on a phone alone stacked above it (docs/metrics.md §7)."""
    style = _style(lang)
    n = len(rows)
    fig = Figure(figsize=(min(30.0, max(6.0, 1.1 * n + 2.5)), 4.8), layout="constrained")
    ax = fig.add_subplot()
    font = style.font
    fig.suptitle(_name(title, "") or style.label("rates_title"), fontproperties=font)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(axis="y", alpha=0.3)
    width = 0.26
    for i, (key, colour) in enumerate(RATE_STYLE):
        measured = [(j, r) for j, r in enumerate(rows) if getattr(r, key) is not None]
        xs = [j + (i - 1) * width for j, _ in measured]
        hs = [getattr(r, key) for _, r in measured]
        # An empty bar set still gives the legend its entry.
        if key == "on_duty_rate":
            phone = [min(getattr(r, key), r.phone_only_rate or 0.0) for _, r in measured]
            signed = [h - p for h, p in zip(hs, phone, strict=True)]
            ax.bar(xs, signed, width=width, color=colour, label=style.label("on_duty_signed"))
            bars = ax.bar(
                xs,
                phone,
                width=width,
                bottom=signed,
                facecolor=PHONE_FACE,
                edgecolor=colour,
                hatch=PHONE_HATCH,
                linewidth=0,
                label=style.label("on_duty_phone"),
            )
        else:
            bars = ax.bar(xs, hs, width=width, color=colour, label=style.label(key))
        if n <= 15:  # past that the figures overlap; the axis still reads
            ax.bar_label(bars, labels=[f"{h:.0%}" for h in hs], fontsize="x-small", padding=1)
    ax.set_xticks(
        range(n),
        [_name(r.name, r.unit_id) for r in rows],
        rotation=30 if n > 6 else 0,
        ha="right" if n > 6 else "center",
        fontproperties=font,
    )
    if n == 0:
        ax.set_xlim(-1, 1)
        ax.text(0, 0.5, style.label("no_data"), ha="center", fontproperties=font)
    # Below the plot, not on it: a bar at 100 % would hide under a legend inside the axes.
    fig.legend(prop=style.small(), loc="outside lower center", ncol=len(RATE_STYLE) + 1)
    return _render(fig, fmt)


# --- one shift's timeline ---------------------------------------------------------------------


def hour_ticks(start_s: int, end_s: int, tz: str) -> list[tuple[int, str]]:
    """Whole local hours in ``[start_s, end_s]`` (every 2 h past 12 h, every 3 h past 24 h)
    as (epoch second, "HH:MM")."""
    zone = ZoneInfo(tz)
    span_h = (end_s - start_s) / 3600
    step = 1 if span_h <= 12 else 2 if span_h <= 24 else 3
    first = dt.datetime.fromtimestamp(start_s, zone).replace(minute=0, second=0, microsecond=0)
    t = int(first.timestamp())
    if t < start_s:
        t += 3600
    ticks = []
    while t <= end_s:
        local = dt.datetime.fromtimestamp(t, zone)
        if local.hour % step == 0:
            ticks.append((t, local.strftime("%H:%M")))
        t += 3600
    return ticks


def timeline_chart(detail: ShiftDetail, fmt: str = "svg", lang: str = "zh") -> bytes:
    """The shift as one band coloured by state over its hours, with the roll calls above and,
    for a shift with a phone, the on-post seconds resting on the phone alone marked in a thin
    hatched band below (docs/metrics.md §7)."""
    style = _style(lang)
    font = style.font
    r = detail.result
    fig = Figure(figsize=(11, 3.0), layout="constrained")
    ax = fig.add_subplot()
    handles: list[Artist] = []
    for state, key, colour in STATE_STYLE:
        spans = [(s.start_s, s.end_s - s.start_s) for s in r.segments if s.state is state]
        if spans:
            ax.broken_barh(spans, (0, 1), facecolors=colour)
        handles.append(Patch(facecolor=colour, label=style.label(key)))
    if r.phone:
        spans = [(a, b - a) for a, b in r.phone_only()]
        phone_style: dict[str, Any] = {
            "facecolor": PHONE_FACE,
            "edgecolor": STATE_STYLE[0][2],
            "hatch": PHONE_HATCH,
            "linewidth": 0,
        }
        if spans:
            ax.broken_barh(spans, (-0.3, 0.22), **phone_style)
        handles.append(Patch(label=style.label("phone_only"), **phone_style))
    # Roll calls as markers above the band: filled if answered by the deadline, hollow if not.
    for answered, key in ((True, "roll_call_answered"), (False, "roll_call_missed")):
        xs = [
            c.sent_ms // 1000
            for c in detail.roll_calls
            if c.answered is answered and r.start_s <= c.sent_ms // 1000 <= r.end_s
        ]
        if not xs:
            continue
        face = "black" if answered else "white"
        style_kw: dict[str, Any] = {
            "marker": "v",
            "markersize": 8,
            "color": "black",
            "markerfacecolor": face,
        }
        ax.plot(xs, [1.15] * len(xs), linestyle="none", **style_kw)
        handles.append(Line2D([], [], linestyle="none", label=style.label(key), **style_kw))
    ax.set_xlim(r.start_s, r.end_s)
    ax.set_ylim(-0.35 if r.phone else 0, 1.35)
    ax.set_yticks([])
    ticks = hour_ticks(r.start_s, r.end_s, detail.tz)
    ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks], fontproperties=font)
    ax.set_xlabel(f"{style.label('time')} ({detail.tz})", fontproperties=font)
    shift = detail.shift
    who = shift.volunteer_id
    if detail.volunteer is not None:
        who = _name(detail.volunteer.name, shift.volunteer_id)
    where = shift.post_id if detail.post is None else _name(detail.post.name, shift.post_id)
    day = dt.datetime.fromtimestamp(r.start_s, ZoneInfo(detail.tz)).strftime("%Y-%m-%d")
    t = r.tally
    # The rate and, beside it, how much of it rests on a phone alone (metrics.md §7).
    phone = f" ({style.label('phone_only_rate')} {r.phone_only_rate:.1%})" if r.phone else ""
    ax.set_title(
        f"{who} · {where} · {day}   {style.label('on_duty_rate')} {t.on_duty_rate:.1%}{phone}"
        f" · {style.label('usage_rate')} {r.usage_rate:.1%}",
        fontproperties=font,
        fontsize="medium",
    )
    fig.legend(
        handles=handles,
        prop=style.small(),
        loc="outside lower center",
        ncol=len(handles),
        frameon=False,
    )
    return _render(fig, fmt)
