"""A sans-IO NMEA 0183 decoder: bytes in, events out, in the style of h11.

::

    decoder = NmeaDecoder()
    for event in decoder.receive_data(chunk):    # any split of the byte stream
        match event:
            case FixDecoded(fix=fix): ...        # one per epoch with a fix
            case NoFix(reason=reason): ...       # one per epoch without a usable fix
            case Rejected(reason=reason): ...    # one per malformed line
    decoder.end_of_stream()                      # the last epoch, when the stream ends

Nothing here opens a port, starts a thread or reads a clock (``serial_nmea`` does).

Errors: ``receive_data`` and ``end_of_stream`` raise nothing for any bytes; bad input becomes a
``Rejected`` event and is counted in ``stats``. The constructor raises ``SourceConfigError``.

Epochs. A receiver reports each solution in several sentences (RMC, GGA, GNS, VTG, from one or
several talkers) stamped with the same UTC time. Sentences with the same time form an epoch,
and each epoch yields exactly one event. It is emitted when the sentence that ended the previous
epoch arrives again (learned from the stream, as gpsd's driver_nmea0183.c learns its
"cycle enders"), or else when a sentence with a new time opens the next epoch.

A fix is emitted only when the receiver says it has one and nothing in the epoch says it has
not: at least one of RMC status A, GGA quality 1-5 or a GNS mode with a real fix (A, D, F, P,
R), and no RMC status V, GGA quality 0/6/7/8/empty, or mode indicator N, E, M or S (no fix,
dead reckoning, manual input, simulator: none is a GNSS position). An epoch in which a line was
rejected is not emitted either: the lost line may have said "no fix", and a bit flip must never
produce a different fix. (Until the receiver's sentence order is known, a rejected line may
belong to the open epoch or the next: both are dropped.)

Time. GGA and GNS carry only the time of day; RMC adds a two-digit year. An epoch's date is its
own RMC's, or else the last known date, advanced at midnight. Until an RMC has given a date no
fix is emitted (``NoFix(NO_DATE)``): a fix without a true date would be a bogus fix.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from protocol import Fix, FixSource, InvalidField

from .errors import SourceConfigError

# NMEA 0183 §5.3: a sentence is at most 82 characters from "$" to <CR><LF>. Receivers exceed
# it: RTK receivers print minutes to 8 decimals (the Trimble lines of gpsd's
# nmea-fuzzy-cases.log are 93). Sentences we decode may be 120; a longer one is refused.
MAX_SENTENCE = 82
SENTENCE_TOLERANCE = 38
# Any line at all (proprietary ones such as MediaTek's $PMTKCHN reach 205): beyond this the
# bytes are not NMEA (a wrong baud rate, binary protocol) and are dropped unbuffered.
MAX_LINE_BYTES = 1024
SHOWN_BYTES = 128  # how much of a bad line a Rejected event keeps

KNOT_MPS = 1852.0 / 3600.0  # the international knot, exactly
#: Horizontal accuracy = HDOP x a user equivalent range error (UERE). We use gpsd's figures
#: (libgpsd_core.c, gpsd_error_model: P_UERE 19.0 m without, 4.75 m with differential
#: corrections, "95% confidence") so that the NMEA and the gpsd source report the same number
#: for the same receiver. gpsd applies the differential figure to GGA quality 2 only; we also
#: apply it to RTK (quality 4 and 5), which is differential too.
UERE_M = 19.0
UERE_DIFFERENTIAL_M = 4.75

_DAY_MS = 86_400_000
_SPLIT = re.compile(rb"[\r\n]+")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")  # NMEA 0183 sentences are printable ASCII
_HEX2 = re.compile(rb"[0-9A-Fa-f]{2}")
_ADDRESS = re.compile(r"[A-Z]{5}")  # talker (2) + sentence formatter (3); "P..." is proprietary
_TIME = re.compile(r"(\d\d)(\d\d)(\d\d)(?:\.(\d{1,9}))?")
_DATE = re.compile(r"(\d\d)(\d\d)(\d\d)")
_UNSIGNED = re.compile(r"\d{1,9}(?:\.\d{1,12})?")  # no sign, exponent, "nan" or "1_0"
_SIGNED = re.compile(r"-?\d{1,9}(?:\.\d{1,12})?")
_LATLON = re.compile(r"(\d{1,3})(\d\d(?:\.\d{1,12})?)")  # ddmm.mmmm / dddmm.mmmm


# --- events ------------------------------------------------------------------------------------


class RejectReason(enum.StrEnum):
    GARBAGE = "garbage"  # no "$", bytes that are not printable ASCII, junk before the "$"
    TOO_LONG = "too_long"  # longer than MAX_SENTENCE + tolerance (or MAX_LINE_BYTES)
    NO_CHECKSUM = "no_checksum"  # no "*hh" (NMEA 0183 §5.3): cannot be told from damage
    BAD_CHECKSUM = "bad_checksum"  # "*hh" malformed or not the XOR of the sentence
    MISSING_FIELD = "missing_field"  # too few fields, or an empty one the status requires
    BAD_FIELD = "bad_field"  # a field that is not a valid value (minutes >= 60, hour 25, ...)


class NoFixReason(enum.StrEnum):
    RECEIVER = "receiver"  # the receiver says it has no fix (or does not say it has one)
    DAMAGED = "damaged"  # a line of the epoch was rejected
    NO_DATE = "no_date"  # a fix, but no RMC has given a date yet
    OUT_OF_RANGE = "out_of_range"  # values a Fix does not admit (year 1999, 400 m/s, ...)


@dataclass(frozen=True, slots=True)
class FixDecoded:
    fix: Fix


@dataclass(frozen=True, slots=True)
class NoFix:
    reason: NoFixReason
    time_of_day_ms: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: RejectReason
    line: bytes
    detail: str = ""


Event = FixDecoded | NoFix | Rejected


@dataclass
class DecoderStats:
    lines: int = 0
    sentences: int = 0  # checksum verified
    ignored: int = 0  # verified, but not a sentence this decoder uses (GSV, GSA, $P...)
    fixes: int = 0
    rejected: Counter[RejectReason] = field(default_factory=Counter)
    no_fix: Counter[NoFixReason] = field(default_factory=Counter)


# --- one sentence --------------------------------------------------------------------------------


class _FieldError(Exception):
    """Internal: a field is missing or bad; becomes a Rejected event, never escapes."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass(slots=True)
class _Report:
    """What one sentence says. ``verdict``: True claims a fix, False denies one, None neither."""

    rank: int  # which sentence wins a field: RMC 0, GNS 1, GGA 2, VTG 3
    tod_ms: int | None = None
    verdict: bool | None = None
    differential: bool = False
    date: datetime.date | None = None
    latlon: tuple[float, float] | None = None
    speed_mps: float | None = None
    course_deg: float | None = None
    alt_m: float | None = None
    hdop: float | None = None
    satellites: int | None = None


def _get(fields: list[str], i: int) -> str:
    return fields[i] if i < len(fields) else ""


def _need(fields: list[str], count: int, kind: str) -> None:
    if len(fields) < count:
        raise _FieldError(RejectReason.MISSING_FIELD, f"{kind}: {len(fields)} fields")


def _number(text: str, name: str, *, signed: bool = False) -> float:
    if not (_SIGNED if signed else _UNSIGNED).fullmatch(text):
        raise _FieldError(RejectReason.BAD_FIELD, f"{name} {text!r}")
    return float(text)


def _optional(text: str, name: str, *, signed: bool = False) -> float | None:
    return None if text == "" else _number(text, name, signed=signed)


def _time_of_day(text: str) -> int | None:
    if text == "":
        return None
    m = _TIME.fullmatch(text)
    if m is None:
        raise _FieldError(RejectReason.BAD_FIELD, f"time {text!r}")
    hh, mm, ss = int(m[1]), int(m[2]), int(m[3])
    # ss 60 is a leap second: it has no Unix time of its own, so its epoch is dropped.
    if hh > 23 or mm > 59 or ss > 59:
        raise _FieldError(RejectReason.BAD_FIELD, f"time {text!r}")
    ms = int((m[4] or "0").ljust(3, "0")[:3])  # integer digits: 132820.60 is .600, never .599
    return ((hh * 60 + mm) * 60 + ss) * 1000 + ms


def _date(text: str) -> datetime.date | None:
    if text == "":
        return None
    m = _DATE.fullmatch(text)
    if m is None:
        raise _FieldError(RejectReason.BAD_FIELD, f"date {text!r}")
    yy = int(m[3])
    # RMC has a two-digit year. GPS time starts in 1980, so 80-99 are 1980-1999: a receiver
    # with a week-rollover bug says 1999 rather than 2019, and Fix refuses 1999 (it admits
    # 2000-2099) instead of us inventing 2099.
    year = 1900 + yy if yy >= 80 else 2000 + yy
    try:
        return datetime.date(year, int(m[2]), int(m[1]))
    except ValueError:
        raise _FieldError(RejectReason.BAD_FIELD, f"date {text!r}") from None


def _angle(value: str, hemisphere: str, limit: int, name: str) -> float:
    m = _LATLON.fullmatch(value)
    if m is None or len(m[1]) > len(str(limit)):
        raise _FieldError(RejectReason.BAD_FIELD, f"{name} {value!r}")
    degrees, minutes = int(m[1]), float(m[2])
    if minutes >= 60.0 or degrees + minutes / 60.0 > limit:
        raise _FieldError(RejectReason.BAD_FIELD, f"{name} {value!r}")
    signs = {"lat": {"N": 1, "S": -1}, "lon": {"E": 1, "W": -1}}[name]
    if hemisphere not in signs:
        raise _FieldError(RejectReason.BAD_FIELD, f"{name} hemisphere {hemisphere!r}")
    return signs[hemisphere] * (degrees + minutes / 60.0)


def _position(fields: list[str], at: int) -> tuple[float, float]:
    lat, ns, lon, ew = fields[at : at + 4]
    if "" in (lat, ns, lon, ew):
        raise _FieldError(RejectReason.MISSING_FIELD, "position")
    return _angle(lat, ns, 90, "lat"), _angle(lon, ew, 180, "lon")


def _course(text: str) -> float | None:
    course = _optional(text, "course")
    if course is not None and course > 360.0:
        raise _FieldError(RejectReason.BAD_FIELD, f"course {text!r}")
    return None if course is None else course % 360.0


def _satellites(text: str) -> int | None:
    if text == "":
        return None
    if not text.isdigit() or not text.isascii() or int(text) > 255:
        raise _FieldError(RejectReason.BAD_FIELD, f"satellites {text!r}")
    return int(text)


# FAA mode indicator (NMEA 0183 v2.3+, RMC/GNS/VTG): A autonomous, D differential, F float RTK,
# P precise, R RTK are GNSS fixes; E dead reckoning, M manual input, S simulator, N no fix.
_FIX_MODES = frozenset("ADFPR")
_NO_FIX_MODES = frozenset("EMNS")
_DIFFERENTIAL_MODES = frozenset("DFR")


def _rmc(fields: list[str]) -> _Report:
    # $xxRMC,time,status,lat,N/S,lon,E/W,knots,course,ddmmyy,magvar,E/W[,mode[,navstatus]]
    _need(fields, 10, "RMC")
    report = _Report(rank=0, tod_ms=_time_of_day(fields[1]))
    status, mode = fields[2], _get(fields, 12)
    if status not in ("A", "D", "V", "") or (mode and mode not in _FIX_MODES | _NO_FIX_MODES):
        raise _FieldError(RejectReason.BAD_FIELD, f"RMC status {status!r} mode {mode!r}")
    # Status A valid, V warning; D (differential) is not in the standard but old receivers
    # send it for a valid fix, and gpsd reads it so. The NMEA 4.1 navigational status (field
    # 13) is not read: "V" there means "no status given", which Quectel modems send with
    # every valid fix.
    report.verdict = status in ("A", "D") and mode not in _NO_FIX_MODES
    if report.verdict:  # a denial's other fields are not trusted, so not parsed either
        if report.tod_ms is None:
            raise _FieldError(RejectReason.MISSING_FIELD, "RMC time")
        report.latlon = _position(fields, 3)
        knots = _optional(fields[7], "speed")
        report.speed_mps = None if knots is None else knots * KNOT_MPS
        report.course_deg = _course(fields[8])
        report.date = _date(fields[9])
        report.differential = status == "D" or mode in _DIFFERENTIAL_MODES
    return report


def _gga_like(fields: list[str], report: _Report, *, alt_at: int) -> None:
    if report.tod_ms is None:
        raise _FieldError(RejectReason.MISSING_FIELD, "time")
    report.latlon = _position(fields, 2)
    report.satellites = _satellites(fields[7])
    hdop = _optional(fields[8], "hdop")
    report.hdop = hdop if hdop else None  # 0.0 is no DOP at all: some receivers mean "unknown"
    report.alt_m = _optional(fields[alt_at], "altitude", signed=True)


def _gga(fields: list[str]) -> _Report:
    # $xxGGA,time,lat,N/S,lon,E/W,quality,sats,hdop,alt,M,geoid,M,dgps age,station
    _need(fields, 10, "GGA")
    report = _Report(rank=2, tod_ms=_time_of_day(fields[1]))
    quality = fields[6]
    if quality not in ("", "0", "1", "2", "3", "4", "5", "6", "7", "8"):
        raise _FieldError(RejectReason.BAD_FIELD, f"GGA quality {quality!r}")
    # 1 GPS, 2 DGPS, 3 PPS, 4 RTK fixed, 5 RTK float are fixes; 0 invalid, 6 estimated
    # (dead reckoning), 7 manual, 8 simulator are not; empty is no data, so no fix.
    report.verdict = quality in ("1", "2", "3", "4", "5")
    if report.verdict:
        _gga_like(fields, report, alt_at=9)
        report.differential = quality in ("2", "4", "5")
    return report


def _gns(fields: list[str]) -> _Report:
    # $xxGNS,time,lat,N/S,lon,E/W,modes,sats,hdop,alt,geoid,dgps age,station[,navstatus]
    _need(fields, 10, "GNS")
    report = _Report(rank=1, tod_ms=_time_of_day(fields[1]))
    modes = fields[6]  # one character per constellation: GPS, GLONASS, Galileo, BeiDou, ...
    if not set(modes) <= _FIX_MODES | _NO_FIX_MODES:
        raise _FieldError(RejectReason.BAD_FIELD, f"GNS mode {modes!r}")
    report.verdict = bool(set(modes) & _FIX_MODES)  # "AAN": GPS and GLONASS fix, no Galileo
    if report.verdict:
        _gga_like(fields, report, alt_at=9)
        report.differential = bool(set(modes) & _DIFFERENTIAL_MODES)
    return report


def _vtg(fields: list[str]) -> _Report:
    # $xxVTG,course,T,magnetic,M,knots,N,km/h,K[,mode]; before NMEA 2.x without the letters:
    # $xxVTG,course,magnetic,knots,km/h. VTG has no time: it belongs to the open epoch.
    report = _Report(rank=3)
    if _get(fields, 2) == "T":
        _need(fields, 9, "VTG")
        course, knots, kmh, mode = fields[1], fields[5], fields[7], _get(fields, 9)
    else:
        _need(fields, 5, "VTG")
        course, knots, kmh, mode = fields[1], fields[3], fields[4], ""
    if mode and mode not in _FIX_MODES | _NO_FIX_MODES:
        raise _FieldError(RejectReason.BAD_FIELD, f"VTG mode {mode!r}")
    if mode in _NO_FIX_MODES:
        return report  # "not valid": says nothing, and is no verdict on the position
    report.course_deg = _course(course)
    speed = _optional(knots, "speed")
    if speed is not None:
        report.speed_mps = speed * KNOT_MPS
    elif (speed := _optional(kmh, "speed")) is not None:
        report.speed_mps = speed / 3.6
    return report


_PARSERS = {"RMC": _rmc, "GGA": _gga, "GNS": _gns, "VTG": _vtg}


# --- epochs ------------------------------------------------------------------------------------


_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


@dataclass(slots=True)
class _Epoch:
    tod_ms: int
    damaged: bool = False  # a rejected line may have been this epoch's
    lost_inside: bool = False  # ... and arrived while it was open: maybe its last line
    emitted: bool = False
    claims: int = 0
    denials: int = 0
    last_key: str = ""
    reports: list[_Report] = field(default_factory=list)  # all but the denials

    def absorb(self, report: _Report) -> None:
        if report.verdict is False:
            self.denials += 1
        else:
            self.claims += report.verdict is True
            self.reports.append(report)

    def pick(self, name: str) -> Any:
        """The field from the best-ranked sentence that has it (RMC, GNS, GGA, VTG)."""
        for report in sorted(self.reports, key=lambda r: r.rank):  # stable: first one wins
            value = getattr(report, name)
            if value is not None:
                return value
        return None

    @property
    def date(self) -> datetime.date | None:
        dates = [r.date for r in self.reports if r.date is not None]  # only RMC has one
        return dates[0] if dates else None

    @property
    def satellites(self) -> int | None:
        # Each talker counts its own constellation's satellites (Quectel: GPGGA 3, GNGNS 8,
        # for one solution); the largest count is the closest to the solution's.
        counts = [r.satellites for r in self.reports if r.satellites is not None]
        return max(counts) if counts else None


class NmeaDecoder:
    """Turns a stream of NMEA 0183 bytes into events; see the module docstring."""

    def __init__(self, *, uere_m: float = UERE_M, uere_differential_m: float = UERE_DIFFERENTIAL_M):
        if not 0 < uere_differential_m <= uere_m:
            raise SourceConfigError("need 0 < uere_differential_m <= uere_m")
        self._uere, self._uere_differential = uere_m, uere_differential_m
        self.stats = DecoderStats()
        self._buffer = bytearray()
        self._discarding = False  # inside a line already refused as too long
        self._epoch: _Epoch | None = None
        self._taint_next = False  # a line was rejected while no epoch was open
        self._ender = ""  # the sentence that ended the last complete epoch
        self._date: datetime.date | None = None  # the date of the newest fix, and its time
        self._date_tod_ms = 0

    # --- input ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes as they arrive (any split); returns the events they complete."""
        events: list[Event] = []
        self._buffer += data
        *lines, tail = _SPLIT.split(self._buffer)  # CR, LF or CR LF ends a line
        self._buffer = bytearray(tail)
        for line in lines:
            if self._discarding:  # the rest of a line refused while it was buffered
                self._discarding = False
            elif line:
                self._line(bytes(line), events)
        if len(self._buffer) > MAX_LINE_BYTES:
            if not self._discarding:  # once per overlong line, however long it goes on
                self._reject(RejectReason.TOO_LONG, bytes(self._buffer), "no line end", events)
            self._buffer.clear()
            self._discarding = True
        return events

    def end_of_stream(self) -> list[Event]:
        """The stream ended: decode an unterminated last line and close the open epoch."""
        events: list[Event] = []
        if self._buffer and not self._discarding:
            self._line(bytes(self._buffer), events)
        self._buffer.clear()
        self._discarding = False
        if self._epoch is not None and not self._epoch.emitted:
            events.append(self._finish(self._epoch))
        self._epoch, self._taint_next = None, False
        return events

    # --- lines ---------------------------------------------------------------------------------

    def _reject(self, reason: RejectReason, line: bytes, detail: str, out: list[Event]) -> None:
        self.stats.rejected[reason] += 1
        out.append(Rejected(reason, line[:SHOWN_BYTES], detail))
        # The lost line belongs to the open epoch if the receiver's order is known and that
        # epoch has not ended; before the order is known it may be the next epoch's first.
        epoch = self._epoch
        if epoch is not None and not epoch.emitted:
            epoch.damaged = epoch.lost_inside = True
            self._taint_next |= not self._ender
        else:
            self._taint_next = True

    def _line(self, line: bytes, out: list[Event]) -> None:
        self.stats.lines += 1
        if len(line) > MAX_LINE_BYTES:
            return self._reject(RejectReason.TOO_LONG, line, f"{len(line)} bytes", out)
        start = line.rfind(b"$")  # resynchronise on the last "$": it cannot occur in a field
        if start < 0:
            return self._reject(RejectReason.GARBAGE, line, "no '$'", out)
        if line[:start].strip(b" \t\x00"):
            self._reject(RejectReason.GARBAGE, line[:start], "junk before '$'", out)
        sentence = line[start:]
        if not _PRINTABLE.fullmatch(sentence):
            return self._reject(RejectReason.GARBAGE, sentence, "not printable ASCII", out)
        star = sentence.rfind(b"*")
        if star < 0:
            return self._reject(RejectReason.NO_CHECKSUM, sentence, "", out)
        # NMEA 0183 §5.3: the checksum is the 8-bit XOR of every character between "$" and
        # "*", as two hex digits (we also accept lower case: the same value).
        given = sentence[star + 1 :]
        if not _HEX2.fullmatch(given):
            return self._reject(RejectReason.BAD_CHECKSUM, sentence, "malformed", out)
        body = sentence[1:star]
        checksum = 0
        for byte in body:
            checksum ^= byte
        if checksum != int(given, 16):
            return self._reject(RejectReason.BAD_CHECKSUM, sentence, f"{checksum:02X}", out)
        self.stats.sentences += 1
        fields = body.decode("ascii").split(",")
        address = fields[0]
        parser = _PARSERS.get(address[2:])
        if parser is None or not _ADDRESS.fullmatch(address) or address[0] == "P":
            self.stats.ignored += 1  # GSV, GSA, ZDA, $PMTK..., any talker's
            return None
        if len(sentence) + 2 > MAX_SENTENCE + SENTENCE_TOLERANCE:
            return self._reject(RejectReason.TOO_LONG, sentence, f"{len(sentence) + 2}", out)
        try:
            report = parser(fields)
        except _FieldError as exc:
            return self._reject(exc.reason, sentence, exc.detail, out)
        return self._merge(address, report, out)

    # --- epochs --------------------------------------------------------------------------------

    def _merge(self, key: str, report: _Report, out: list[Event]) -> None:
        epoch = self._epoch
        if report.tod_ms is not None and (epoch is None or report.tod_ms != epoch.tod_ms):
            if epoch is not None:
                if not epoch.lost_inside and epoch.last_key:
                    self._ender = epoch.last_key  # not from an epoch that may have lost it
                if not epoch.emitted:
                    out.append(self._finish(epoch))
            epoch = self._epoch = _Epoch(report.tod_ms, damaged=self._taint_next)
            self._taint_next = False
        if epoch is None:
            return  # a sentence without time before any epoch: nothing to attach it to
        epoch.last_key = key
        if epoch.emitted:
            return  # after the learned end of its epoch (the receiver changed its order)
        epoch.absorb(report)
        if key == self._ender:
            out.append(self._finish(epoch))

    def _date_for(self, epoch: _Epoch) -> datetime.date | None:
        if epoch.date is not None:
            return epoch.date
        if self._date is None:
            return None
        # No RMC in this epoch: the last fix's date, a day on if the time of day went back
        # more than half a day (midnight passed), a day back if it jumped forward as far.
        step = epoch.tod_ms - self._date_tod_ms
        if step < -_DAY_MS // 2:
            return self._date + datetime.timedelta(days=1)
        if step > _DAY_MS // 2:
            return self._date - datetime.timedelta(days=1)
        return self._date

    def _no_fix(self, reason: NoFixReason, epoch: _Epoch, detail: str = "") -> NoFix:
        self.stats.no_fix[reason] += 1
        return NoFix(reason, epoch.tod_ms, detail)

    def _finish(self, epoch: _Epoch) -> Event:
        epoch.emitted = True
        if epoch.damaged:
            return self._no_fix(NoFixReason.DAMAGED, epoch)
        latlon = epoch.pick("latlon")
        if epoch.denials or not epoch.claims or latlon is None:
            return self._no_fix(NoFixReason.RECEIVER, epoch)
        date = self._date_for(epoch)
        if date is None:
            return self._no_fix(NoFixReason.NO_DATE, epoch)
        hdop = epoch.pick("hdop")
        differential = any(r.differential for r in epoch.reports)
        uere = self._uere_differential if differential else self._uere
        try:
            fix = Fix(
                time_ms=(date.toordinal() - _EPOCH_ORDINAL) * _DAY_MS + epoch.tod_ms,
                lat=latlon[0],
                lon=latlon[1],
                accuracy_m=None if hdop is None else hdop * uere,
                speed_mps=epoch.pick("speed_mps"),
                course_deg=epoch.pick("course_deg"),
                alt_m=epoch.pick("alt_m"),
                satellites=epoch.satellites,
                source=FixSource.GNSS,
            )
        except InvalidField as exc:
            return self._no_fix(NoFixReason.OUT_OF_RANGE, epoch, str(exc))
        self._date, self._date_tod_ms = date, epoch.tod_ms
        self.stats.fixes += 1
        return FixDecoded(fix)


__all__ = [
    "MAX_SENTENCE",
    "UERE_DIFFERENTIAL_M",
    "UERE_M",
    "DecoderStats",
    "Event",
    "FixDecoded",
    "NmeaDecoder",
    "NoFix",
    "NoFixReason",
    "RejectReason",
    "Rejected",
]
