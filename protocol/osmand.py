"""The OsmAnd protocol as Traccar Client speaks it, sans-IO: query/form parameters or JSON.

Sources (cited beside each rule below):

- [osmand] Traccar, "OsmAnd" — https://www.traccar.org/osmand/ : one HTTP request per
  location, parameters in the query string or a form body (any method); ``id`` (or
  ``deviceid``) is mandatory; ``valid``, ``timestamp``, ``lat``, ``lon``, ``location``,
  ``speed``, ``bearing``/``heading``, ``altitude``, ``accuracy``, ``hdop``, ``batt``,
  ``charge``, ... ; and the JSON format "used by Traccar Client, starting from version
  9.0.0", supported by the server from 6.7.0, with its example body.
- [decoder] traccar/traccar ``src/main/java/org/traccar/protocol/OsmAndProtocolDecoder.java``
  (2013-2025), what the server does with each parameter: ``timestamp`` is a number of
  seconds if below ``Integer.MAX_VALUE`` (2^31-1), else of milliseconds; otherwise ISO-8601
  if it contains "T", else ``yyyy-MM-dd HH:mm:ss``; ``location=lat,lon``; ``speed`` in knots
  (``convertSpeed(value, "kn")``); ``valid`` is true for "true" or "1"; ``charge`` a boolean.
  JSON mode (``Content-Type: application/json``): ``device_id``; ``location.timestamp``
  (ISO); ``location.coords.{latitude, longitude, accuracy, speed (m/s), heading,
  altitude}``, a negative speed or heading meaning "unknown"; ``battery.level`` 0..1 (-1
  unknown) and ``battery.is_charging``; ``mock``, ``is_moving``, ``odometer``, ``event``,
  ``activity.type``, ``alarm`` and ``extras``, whose ``alarm`` counts too.
  Its test ``OsmAndProtocolDecoderTest.java`` holds real requests (used in ours).
- [client-android] traccar/traccar-client-android ``ProtocolFormatter.kt`` and
  ``Position.kt`` (the client before 9.0): ``id, timestamp (seconds), lat, lon, speed
  (knots: m/s x 1.943844), bearing, altitude, accuracy, batt`` (percent), then ``mock`` and
  ``alarm`` when set; ``accuracy`` is 0 for a fix from the GPS provider (only network fixes
  carry one). ``RequestManager.kt`` reads the reply to its end and ignores it.
- [client] traccar/traccar-client (Flutter, 9.x): ``lib/preferences.dart`` posts the
  background-geolocation SDK's location template above with ``device_id``;
  ``lib/push_service.dart`` gets commands (positionSingle / positionPeriodic / positionStop)
  by Firebase push, answering positionSingle with a location whose ``extras`` hold
  ``{"remote": true}``; heartbeats carry ``{"heartbeat": true}``; the SOS quick action
  (``lib/quick_actions.dart``) ``{"alarm": "sos"}``.

What the reply can carry. To a query/form report the Traccar server answers ``200 OK`` with
the ``data`` of one queued custom command as the body, if any [decoder]; to a JSON report,
``200 OK`` and no body; to an unknown device ``400`` (query) or ``404`` (JSON). So the
protocol has room for one line of command text in the reply, but Traccar Client does
nothing with it: the old client reads and drops the body [client-android], and the 9.x
client takes commands only by Firebase push from the Traccar server it was built for
[client] (yijing cannot send those). ``reply_body`` writes what the protocol allows; yijing
sends ``reply_body()``, an empty body. To ask a Traccar phone for a fix, there is no way.
Every report the server keeps must be answered with a 2xx: the clients resend until then.

Choices where the sources leave room, each documented where it is made:

- A time without a zone (``yyyy-MM-dd HH:mm:ss``, or ISO without an offset) is UTC. Traccar
  takes the server's local zone, which a sans-IO decoder does not have; the clients send
  epoch seconds (old) or ISO with ``Z`` (9.x) anyway. A report without ``timestamp`` is
  refused (Traccar would use its clock).
- ``accuracy=0`` in parameters is "not given" [client-android]; negative speed, course or
  battery level is "unknown" in both forms (the platforms' -1, [decoder] for JSON).
- ``mock=true`` makes the fix ``FixSource.SIMULATED``: the app says it is not from GNSS.
- ``valid=false`` makes the report OTHER, without a fix: the app says it is not a position.
- ``extras.remote`` maps to trigger "r" (answers a request for a position) and
  ``extras.heartbeat`` to "p" (ping): OwnTracks' letters, so the server reads one field.
- ``valid``, ``charge`` and ``mock`` must be true/false/1/0 (any case): Java's
  ``parseBoolean`` would read any other text as false; here it is an error.
- Parameters yijing does not use (``hdop``, ``cell``, ``wifi``, ``driverUniqueId``, anything
  else) are ignored, as are the JSON fields it does not use (``is_moving``, ``odometer``,
  ``event``, ``activity``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlencode

from .errors import PhoneFormatError
from .fields import MAX_TIME_MS, MIN_TIME_MS
from .messages import FixSource
from .phone import (
    ALARM,
    MAX_PAYLOAD,
    PhoneKind,
    PhoneReport,
    boolean,
    check_size,
    device_id,
    load_json_object,
    make_fix,
    number,
    obj,
    text,
)

#: At most this many parameters in one request (the clients send about ten).
MAX_PARAMS = 100
#: ``Integer.MAX_VALUE``: below it a numeric timestamp is seconds, else milliseconds [decoder].
_SECONDS_BELOW = 2**31 - 1
_KNOT_MPS = 1852 / 3600  # one knot in m/s: 1852 m per hour (SI brochure, table 8)
_MAX_SPEED_MPS = 300.0  # Fix's limit
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: A decimal number as Java's Double.parseDouble takes it, minus its NaN, Infinity, hex
#: floats and type suffixes (none of which the clients send) and Python's underscores.
#: (re.ASCII throughout: \d would also match other scripts' digits, which int() takes.)
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?", re.ASCII)
_INTEGER = re.compile(r"\d{1,19}", re.ASCII)
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)
_PLAIN = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})", re.ASCII)
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})

#: Fix field -> the parameter it came from, for error messages.
_QUERY_NAMES = {
    "time_ms": "timestamp", "lat": "lat", "lon": "lon", "accuracy_m": "accuracy",
    "speed_mps": "speed", "course_deg": "bearing", "alt_m": "altitude",
}  # fmt: skip
_JSON_NAMES = {
    "time_ms": "location.timestamp", "lat": "location.coords.latitude",
    "lon": "location.coords.longitude", "accuracy_m": "location.coords.accuracy",
    "speed_mps": "location.coords.speed", "course_deg": "location.coords.heading",
    "alt_m": "location.coords.altitude",
}  # fmt: skip


# --- times ------------------------------------------------------------------------------------


def _ms_of(dt: datetime, name: str) -> int:
    ms = (dt - _EPOCH) // timedelta(milliseconds=1)
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise PhoneFormatError(name, f"{dt.isoformat()} is outside 2000..2100")
    return ms


def _iso_ms(value: str, name: str) -> int:
    """ISO-8601 date and time, to the millisecond; no offset means UTC (see the docstring)."""
    match = _ISO.fullmatch(value)
    if match is None:
        raise PhoneFormatError(name, f"{value[:40]!r} is not an ISO-8601 date and time")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7), match.group(8)
    zone = UTC
    if offset not in (None, "Z"):
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise PhoneFormatError(name, f"offset {offset!r} is not a time zone offset")
        delta = timedelta(hours=hours, minutes=minutes)
        zone = timezone(-delta if offset[0] == "-" else delta)
    millis = int((fraction or "0")[:3].ljust(3, "0"))  # beyond the millisecond: dropped
    try:
        dt = datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=zone)
    except ValueError as exc:  # month 13, 25 o'clock, 30 February ...
        raise PhoneFormatError(name, f"{value[:40]!r}: {exc}") from None
    return _ms_of(dt, name)


def _timestamp_ms(value: str) -> int:
    """The ``timestamp`` parameter in the forms the server takes [decoder]."""
    if _INTEGER.fullmatch(value):
        count = int(value)
        ms = count * 1000 if count < _SECONDS_BELOW else count
        if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
            unit = "seconds" if count < _SECONDS_BELOW else "milliseconds"
            raise PhoneFormatError("timestamp", f"{value} {unit} is outside 2000..2100")
        return ms
    if "T" in value:
        return _iso_ms(value, "timestamp")
    match = _PLAIN.fullmatch(value)
    if match is None:
        raise PhoneFormatError(
            "timestamp", f"{value[:40]!r} is not epoch seconds or ms, ISO-8601, "
            "or yyyy-MM-dd HH:mm:ss"
        )  # fmt: skip
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    try:
        dt = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise PhoneFormatError("timestamp", f"{value!r}: {exc}") from None
    return _ms_of(dt, "timestamp")


# --- query and form parameters ----------------------------------------------------------------


def _decimal(params: Mapping[str, str], name: str) -> float | None:
    value = params.get(name)
    if value is None or value == "":  # the server skips empty values [decoder]
        return None
    if len(value) > 40 or not _DECIMAL.fullmatch(value):
        raise PhoneFormatError(name, f"{value[:40]!r} is not a decimal number")
    return float(value)  # 1e999 is inf: the range checks refuse it as not finite


def _in_range(value: float, name: str, lo: float, hi: float, *, hi_open: bool = False) -> float:
    return number(value, name, lo, hi, hi_open=hi_open)


def _flag(params: Mapping[str, str], name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise PhoneFormatError(name, f"{value[:40]!r} is not true, false, 1 or 0")


def _checked_params(params: object) -> Mapping[str, str]:
    if not isinstance(params, Mapping):
        raise PhoneFormatError("", f"expected parameters, got {type(params).__name__}")
    if len(params) > MAX_PARAMS:
        raise PhoneFormatError("", f"{len(params)} parameters is over {MAX_PARAMS}")
    size = 0
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise PhoneFormatError(str(key)[:40], "parameters are text")
        size += len(key) + len(value)
        if size > MAX_PAYLOAD:
            break
        try:  # evidence is form-encoded UTF-8: a lone surrogate cannot be
            key.encode("utf-8"), value.encode("utf-8")
        except UnicodeEncodeError:
            raise PhoneFormatError(key[:40], "is not valid Unicode (lone surrogate)") from None
    if size > MAX_PAYLOAD:
        raise PhoneFormatError("", f"{size} characters of parameters is over {MAX_PAYLOAD}")
    return params


def _query_device(params: Mapping[str, str]) -> str:
    ids = {params[name] for name in ("id", "deviceid") if params.get(name)}
    if not ids:
        raise PhoneFormatError("id", "required (or deviceid)")
    if len(ids) > 1:
        raise PhoneFormatError("id", "id and deviceid differ")
    return device_id(ids.pop(), "id" if params.get("id") else "deviceid")


def _query_position(params: Mapping[str, str]) -> tuple[float, float]:
    location = params.get("location")
    if location:
        if params.get("lat") or params.get("lon"):
            raise PhoneFormatError("location", "given with lat/lon: which one is meant?")
        parts = location.split(",")
        if len(parts) != 2 or not all(len(p) <= 40 and _DECIMAL.fullmatch(p) for p in parts):
            raise PhoneFormatError("location", f"{location[:40]!r} is not lat,lon")
        return (
            _in_range(float(parts[0]), "location", -90.0, 90.0),
            _in_range(float(parts[1]), "location", -180.0, 180.0),
        )
    lat, lon = _decimal(params, "lat"), _decimal(params, "lon")
    if lat is None:
        raise PhoneFormatError("lat", "required (or location=lat,lon)")
    if lon is None:
        raise PhoneFormatError("lon", "required (or location=lat,lon)")
    return _in_range(lat, "lat", -90.0, 90.0), _in_range(lon, "lon", -180.0, 180.0)


def _query_course(params: Mapping[str, str]) -> float | None:
    bearing, heading = _decimal(params, "bearing"), _decimal(params, "heading")
    if bearing is not None and heading is not None and bearing != heading:
        raise PhoneFormatError("bearing", "bearing and heading differ")
    course = bearing if bearing is not None else heading
    name = "bearing" if bearing is not None else "heading"
    if course is None or course < 0:  # negative: unknown (CoreLocation's -1)
        return None
    return _in_range(course, name, 0.0, 360.0, hi_open=True)


def decode_query(params: Mapping[str, str]) -> tuple[str, PhoneReport]:
    """(device id, report) from the parameters of a GET query string or a form POST body
    (one value per name, already percent-decoded). Raises ``PhoneFormatError`` only."""
    params = _checked_params(params)
    device = _query_device(params)
    raw_time = params.get("timestamp")
    if not raw_time:
        raise PhoneFormatError("timestamp", "required")
    time_ms = _timestamp_ms(raw_time)
    lat, lon = _query_position(params)

    speed_kn = _decimal(params, "speed")
    speed_mps = None
    if speed_kn is not None and speed_kn >= 0:  # negative: unknown
        speed_mps = speed_kn * _KNOT_MPS  # [decoder] knots
        if speed_mps > _MAX_SPEED_MPS:
            raise PhoneFormatError("speed", f"{speed_kn} knots is over {_MAX_SPEED_MPS} m/s")
    accuracy = _decimal(params, "accuracy")
    if accuracy is not None:
        # 0 is what the old client sends for a GPS fix: "not given" [client-android].
        accuracy = None if accuracy == 0 else _in_range(accuracy, "accuracy", 0.0, 100_000.0)
    altitude = _decimal(params, "altitude")
    if altitude is not None:
        altitude = _in_range(altitude, "altitude", -1_000.0, 20_000.0)

    batt = _decimal(params, "batt")
    battery_pct = None
    if batt is not None and batt >= 0:  # negative: unknown
        battery_pct = round(_in_range(batt, "batt", 0.0, 100.0))  # [client-android] a double
    valid = _flag(params, "valid")
    mock = _flag(params, "mock")
    alarm = params.get("alarm") or None

    fix = make_fix(
        time_ms=time_ms, lat=lat, lon=lon, accuracy_m=accuracy, speed_mps=speed_mps,
        course_deg=_query_course(params), alt_m=altitude,
        source=FixSource.SIMULATED if mock else FixSource.GNSS, names=_QUERY_NAMES,
    )  # fmt: skip
    report = PhoneReport(
        kind=PhoneKind.OTHER if valid is False else PhoneKind.LOCATION,
        fix=None if valid is False else fix,
        time_ms=time_ms, raw_type="osmand",
        evidence=urlencode(list(params.items())).encode("ascii"),
        battery_pct=battery_pct, charging=_flag(params, "charge"),
        alarm=None if alarm is None else text(alarm, "alarm", max_len=32, pattern=ALARM),
    )  # fmt: skip
    return device, report


# --- the JSON body of Traccar Client 9 ---------------------------------------------------------


def _opt_number(
    parent: Mapping[str, object], key: str, name: str, lo: float, hi: float
) -> float | None:
    value = parent.get(key)
    return None if value is None else number(value, name, lo, hi)


def _unknown_if_negative(parent: Mapping[str, object], key: str, name: str) -> float | None:
    """A number, None if absent or negative (the SDK's -1 for unknown [decoder])."""
    value = parent.get(key)
    if value is None:
        return None
    result = number(value, name, float("-inf"), float("inf"))
    return None if result < 0 else result


def _json_battery(location: Mapping[str, object]) -> tuple[int | None, bool | None]:
    raw = location.get("battery")
    if raw is None:
        return None, None
    battery = obj(raw, "location.battery")
    level = _unknown_if_negative(battery, "level", "location.battery.level")
    pct = None
    if level is not None:
        # [osmand] "a decimal value from 0 to 1"; rounded (Traccar truncates: 0.29 -> 28).
        pct = round(number(level, "location.battery.level", 0.0, 1.0) * 100)
    charging = battery.get("is_charging")
    return pct, None if charging is None else boolean(charging, "location.battery.is_charging")


def _json_extras(location: Mapping[str, object]) -> tuple[str | None, str | None]:
    """(trigger, alarm) from ``extras`` and ``alarm`` [client, decoder]."""
    raw = location.get("extras")
    extras = {} if raw is None else obj(raw, "location.extras")
    trigger = None
    if extras.get("remote") is True:  # the answer to a positionSingle push [client]
        trigger = "r"
    elif extras.get("heartbeat") is True:
        trigger = "p"
    alarm = location.get("alarm", extras.get("alarm"))
    name = "location.alarm" if "alarm" in location else "location.extras.alarm"
    return trigger, None if alarm is None else text(alarm, name, max_len=32, pattern=ALARM)


def decode_json(body: bytes) -> tuple[str, PhoneReport]:
    """(device id, report) from Traccar Client's JSON body [osmand, client]: one location
    per request (a list, as the SDK's batch mode would send, is refused: Traccar reads one
    object). Raises ``PhoneFormatError`` only."""
    root = load_json_object(body)
    device = device_id(root.get("device_id"), "device_id")
    raw = root.get("location")
    if isinstance(raw, list):
        raise PhoneFormatError("location", "a list (batch sync): one location per request")
    location = obj(raw, "location")
    stamp = location.get("timestamp")
    time_ms = _iso_ms(text(stamp, "location.timestamp", max_len=40), "location.timestamp")
    if location.get("coords") is None:
        raise PhoneFormatError("location.coords", "required")
    coords = obj(location["coords"], "location.coords")
    lat, lon = coords.get("latitude"), coords.get("longitude")
    if lat is None:
        raise PhoneFormatError("location.coords.latitude", "required")
    if lon is None:
        raise PhoneFormatError("location.coords.longitude", "required")

    speed = _unknown_if_negative(coords, "speed", "location.coords.speed")
    if speed is not None:
        speed = number(speed, "location.coords.speed", 0.0, _MAX_SPEED_MPS)
    heading = _unknown_if_negative(coords, "heading", "location.coords.heading")
    if heading is not None:
        heading = number(heading, "location.coords.heading", 0.0, 360.0, hi_open=True)
    mock = location.get("mock")
    simulated = mock is not None and boolean(mock, "location.mock")
    fix = make_fix(
        time_ms=time_ms,
        lat=number(lat, "location.coords.latitude", -90.0, 90.0),
        lon=number(lon, "location.coords.longitude", -180.0, 180.0),
        accuracy_m=_opt_number(coords, "accuracy", "location.coords.accuracy", 0.0, 100_000.0),
        speed_mps=speed, course_deg=heading,
        alt_m=_opt_number(coords, "altitude", "location.coords.altitude", -1_000.0, 20_000.0),
        source=FixSource.SIMULATED if simulated else FixSource.GNSS, names=_JSON_NAMES,
    )  # fmt: skip
    battery_pct, charging = _json_battery(location)
    trigger, alarm = _json_extras(location)
    report = PhoneReport(
        kind=PhoneKind.LOCATION, fix=fix, time_ms=time_ms, raw_type="osmand-json",
        evidence=check_size(body), battery_pct=battery_pct, charging=charging,
        trigger=trigger, alarm=alarm,
    )  # fmt: skip
    return device, report


# --- the reply --------------------------------------------------------------------------------


def reply_body(command: str | None = None) -> bytes:
    """The body of a ``200 OK`` answering a query/form report: empty, or one command's text as
    the Traccar server sends a queued custom command [decoder]. Traccar Client ignores it
    (see the module docstring), so yijing calls this without a command. A JSON-mode report
    is answered with an empty body whatever is queued [decoder]."""
    if command is None:
        return b""
    return text(command, "command", max_len=1024).encode("utf-8")
