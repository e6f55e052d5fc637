"""What a phone app reports, as one validated type: ``PhoneReport``.

Most volunteers carry only a phone, and two free apps report from it (issue #10):

- OwnTracks, over MQTT or HTTP, JSON payloads (``protocol.owntracks``);
- Traccar Client, the OsmAnd protocol over HTTP: query or form parameters, or since Traccar
  Client 9 a JSON body (``protocol.osmand``).

Both decoders produce a ``PhoneReport``: the fix in yijing's own ``Fix`` (SI units, the same
ranges as a terminal's), the report's own time, and the few extras yijing uses (battery,
charging, why the app reported, a region transition, an SOS). Phone apps sign nothing, so a
report is only as genuine as the transport that delivered it (broker ACL, HTTP auth, Traccar's
unguessable id); see ``server.phones``.

Rules common to both apps live here too: the size limit, a JSON parser that refuses what the
apps never send (NaN, Infinity, duplicate keys, deep nesting, non-UTF-8), and number and text
checks whose errors name the app's own field (``PhoneFormatError("vel", ...)``), never the
``Fix`` field it became. Nothing is clamped: a value outside ``Fix``'s ranges is an error.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import InvalidField, PhoneFormatError
from .fields import MAX_TIME_MS, MIN_TIME_MS
from .messages import ID_PATTERN, Fix, FixSource

#: The largest payload or body taken from a phone, bytes. An OwnTracks location is ~300
#: bytes; a card with its face (a base64 PNG) is the largest thing the apps send.
MAX_PAYLOAD = 64 * 1024
#: Deepest JSON nesting taken. OwnTracks' deepest documented message (a configuration with
#: its waypoints) is 3 levels; Traccar Client's body is 3 (``location.coords.latitude``).
MAX_DEPTH = 16

#: Report times in seconds: the ``Fix`` time window (2000-01-01 to 2100-01-01).
MIN_TIME_S = MIN_TIME_MS // 1000
MAX_TIME_S = MAX_TIME_MS // 1000

_ID = re.compile(ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: An alarm name as Traccar uses them ("sos", "general", "lowBattery", ...).
ALARM = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_RAW_TYPE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_EVENTS = frozenset({"enter", "leave"})


class PhoneKind(enum.StrEnum):
    LOCATION = "location"  # a fix
    TRANSITION = "transition"  # entering or leaving a region the phone watches (OwnTracks)
    LWT = "lwt"  # the broker's word that the phone went away (OwnTracks over MQTT)
    #: A documented message yijing accepts but does not use (OwnTracks status, waypoint, card,
    #: steps, beacon, ...; a Traccar report the app marks ``valid=false``).
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class PhoneReport:
    """One report from a phone app, checked on construction (``PhoneFormatError``)."""

    kind: PhoneKind
    #: Where the phone was. Required for LOCATION, optional for TRANSITION (OwnTracks sends the
    #: coordinates where the event fired), never for LWT.
    fix: Fix | None
    #: The report's own time, ms: OwnTracks ``tst`` (for an lwt: when the app first
    #: connected), Traccar's ``timestamp``. 0 only for an OTHER message that carries no time
    #: (an OwnTracks card, status or configuration).
    time_ms: int
    #: The app's name for what it sent: OwnTracks ``_type``, or "osmand" / "osmand-json".
    raw_type: str
    #: What the app sent, as stored for evidence: the JSON (decrypted, for OwnTracks), or the
    #: OsmAnd parameters form-encoded in the order given.
    evidence: bytes = field(default=b"", repr=False)
    battery_pct: int | None = None
    #: On external power: OwnTracks ``bs`` 2 (charging) or 3 (full); Traccar ``charge`` /
    #: ``battery.is_charging``. None when the app does not say.
    charging: bool | None = None
    #: Why the app reported: OwnTracks ``t`` ("p" ping, "c" circular region, "b" beacon,
    #: "r" response to a reportLocation cmd, "u" user, "t" timer, "v" iOS visits; one ASCII
    #: character). Traccar Client's ``extras`` are mapped onto the same letters (see
    #: ``protocol.osmand``).
    trigger: str | None = None
    #: TRANSITION only: "enter" or "leave".
    event: str | None = None
    #: TRANSITION only: the region's name (OwnTracks ``desc``).
    region: str | None = None
    #: OwnTracks ``tid``: the short tracker id the app shows for its user.
    tracker_id: str | None = None
    #: An alarm the app raised, e.g. "sos" (Traccar Client's SOS action).
    alarm: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, PhoneKind):
            raise PhoneFormatError("kind", f"expected a PhoneKind, got {type(self.kind).__name__}")
        if self.fix is not None and not isinstance(self.fix, Fix):
            raise PhoneFormatError("fix", f"expected a Fix, got {type(self.fix).__name__}")
        if type(self.time_ms) is not int:
            got = type(self.time_ms).__name__
            raise PhoneFormatError("time_ms", f"expected an integer, got {got}")
        untimed_other = self.kind is PhoneKind.OTHER and self.time_ms == 0
        if not untimed_other and not MIN_TIME_MS <= self.time_ms <= MAX_TIME_MS:
            raise PhoneFormatError("time_ms", f"{self.time_ms} is outside 2000..2100")
        text(self.raw_type, "raw_type", max_len=32, pattern=_RAW_TYPE)
        if not isinstance(self.evidence, bytes) or len(self.evidence) > MAX_PAYLOAD:
            raise PhoneFormatError("evidence", f"must be bytes of at most {MAX_PAYLOAD}")
        if self.kind is PhoneKind.LOCATION and self.fix is None:
            raise PhoneFormatError("fix", "a location report needs a fix")
        if self.kind is PhoneKind.LWT and self.fix is not None:
            raise PhoneFormatError("fix", "an lwt carries no fix")
        if self.kind is PhoneKind.TRANSITION:
            if self.event not in _EVENTS:
                raise PhoneFormatError("event", f"{self.event!r} is not 'enter' or 'leave'")
        elif self.event is not None or self.region is not None:
            raise PhoneFormatError("event", "only a transition has an event and a region")
        if self.battery_pct is not None and (
            type(self.battery_pct) is not int or not 0 <= self.battery_pct <= 100
        ):
            raise PhoneFormatError("battery_pct", f"{self.battery_pct!r} is outside 0..100")
        if self.charging is not None and not isinstance(self.charging, bool):
            raise PhoneFormatError("charging", "expected true, false or None")
        if self.trigger is not None and not (
            isinstance(self.trigger, str) and len(self.trigger) == 1 and "!" <= self.trigger <= "~"
        ):
            raise PhoneFormatError("trigger", f"{self.trigger!r} is not one printable character")
        if self.region is not None:
            text(self.region, "region", max_len=256)
        if self.tracker_id is not None:
            text(self.tracker_id, "tracker_id", max_len=64)
        if self.alarm is not None:
            text(self.alarm, "alarm", max_len=32, pattern=ALARM)

    @property
    def answers_report_request(self) -> bool:
        """Whether the app sent this because it was asked to (OwnTracks ``t`` = "r": a
        response to a ``reportLocation`` cmd)."""
        return self.trigger == "r"


# --- checks shared by the decoders ------------------------------------------------------------


def _show(value: object) -> str:
    """A short rendering of an untrusted value for an error message (never huge)."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"a {value.bit_length()}-bit integer"
    if isinstance(value, str):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    return f"a {type(value).__name__}"


def text(
    value: object,
    name: str,
    *,
    max_len: int,
    min_len: int = 1,
    pattern: re.Pattern[str] | None = None,
) -> str:
    """A string of printable, encodable characters of a bounded length."""
    if not isinstance(value, str):
        raise PhoneFormatError(name, f"expected text, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise PhoneFormatError(name, f"length {len(value)} is outside {min_len}..{max_len}")
    if pattern is not None and not pattern.fullmatch(value):
        raise PhoneFormatError(name, f"{_show(value)} does not match {pattern.pattern}")
    if _CONTROL.search(value):
        raise PhoneFormatError(name, "contains control characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, which JSON's \\ud800 escapes can make
            raise PhoneFormatError(name, "is not valid Unicode (lone surrogate)") from None
    return value


def device_id(value: object, name: str) -> str:
    """An id as yijing's topics and ACLs take it (``messages.ID_PATTERN``)."""
    return text(value, name, max_len=64, pattern=_ID)


def number(value: object, name: str, lo: float, hi: float, *, hi_open: bool = False) -> float:
    """A finite JSON number (int or float; a bool is not a number) within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PhoneFormatError(name, f"expected a number, got {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:  # an integer beyond float's range
        raise PhoneFormatError(name, f"{_show(value)} is outside {lo}..{hi}") from None
    if not math.isfinite(result):  # 1e400 parses as inf
        raise PhoneFormatError(name, f"{result} is not a finite number")
    if result < lo or (result >= hi if hi_open else result > hi):
        bound = f"{hi} (exclusive)" if hi_open else f"{hi}"
        raise PhoneFormatError(name, f"{_show(value)} is outside {lo}..{bound}")
    return result


def integer(value: object, name: str, lo: int, hi: int) -> int:
    """A JSON integer (not a float, not a bool) within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PhoneFormatError(name, f"expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise PhoneFormatError(name, f"{_show(value)} is outside {lo}..{hi}")
    return value


def boolean(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise PhoneFormatError(name, f"expected true or false, got {type(value).__name__}")
    return value


def obj(value: object, name: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise PhoneFormatError(name, f"expected a JSON object, got {type(value).__name__}")
    return value


def make_fix(
    *,
    time_ms: int,
    lat: float,
    lon: float,
    accuracy_m: float | None = None,
    speed_mps: float | None = None,
    course_deg: float | None = None,
    alt_m: float | None = None,
    source: FixSource = FixSource.GNSS,
    names: Mapping[str, str],
) -> Fix:
    """A ``Fix``; a value it refuses is reported under the app's name for it (``names`` maps
    Fix fields to app fields), as a PhoneFormatError. The decoders check ranges first, in the
    app's own units, so this is the backstop (a rounding edge, say)."""
    try:
        return Fix(
            time_ms=time_ms, lat=lat, lon=lon, accuracy_m=accuracy_m, speed_mps=speed_mps,
            course_deg=course_deg, alt_m=alt_m, source=source,
        )  # fmt: skip
    except InvalidField as exc:
        raise PhoneFormatError(names.get(exc.field, exc.field), exc.reason) from None


def _refuse_constant(name: str) -> object:
    # json calls this for NaN, Infinity and -Infinity: JavaScript literals, not JSON (RFC 8259
    # §6), which neither app sends.
    raise PhoneFormatError("", f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Parsers disagree on which of two equal keys wins (RFC 8259 §4): refuse the ambiguity
    # rather than read a value another consumer of the same evidence would not.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise PhoneFormatError(key[:40], "appears twice in one object")
            seen.add(key)
    return result


def _depth_ok(root: object) -> bool:
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return True


def check_size(payload: object, name: str = "") -> bytes:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise PhoneFormatError(name, f"expected bytes, got {type(payload).__name__}")
    data = bytes(payload)
    if len(data) > MAX_PAYLOAD:
        raise PhoneFormatError(name, f"{len(data)} bytes is over the limit of {MAX_PAYLOAD}")
    return data


def load_json_object(payload: object) -> dict[str, object]:
    """The JSON object in ``payload``: UTF-8 (RFC 8259 §8.1), at most ``MAX_PAYLOAD`` bytes
    and ``MAX_DEPTH`` levels, no NaN or Infinity, no duplicate keys."""
    data = check_size(payload)
    try:
        # Decoded here, strictly: json.loads(bytes) would also guess UTF-16 and UTF-32.
        document = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PhoneFormatError("", f"not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            document, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates
        )
    except RecursionError:
        raise PhoneFormatError("", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise PhoneFormatError("", f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(value, dict):
        raise PhoneFormatError("", f"expected a JSON object, got {type(value).__name__}")
    if not _depth_ok(value):
        raise PhoneFormatError("", f"JSON nested deeper than {MAX_DEPTH} levels")
    return value
