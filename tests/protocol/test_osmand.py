"""Traccar Client's OsmAnd protocol: requests exactly as the clients send them, hostile input.

Each documented request below says where it was copied from. Sources:
- decoder-test: github.com/traccar/traccar ``src/test/java/org/traccar/protocol/
  OsmAndProtocolDecoderTest.java`` (requests the Traccar server is tested with).
- client: github.com/traccar/traccar-client ``lib/preferences.dart`` (9.x: the JSON body) and
  github.com/traccar/traccar-client-android ``ProtocolFormatter.kt`` (before 9: parameters).
- osmand: https://www.traccar.org/osmand/ (the example URL).
"""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import Fix, FixSource, PhoneFormatError, PhoneKind, PhoneReport, ProtocolError, osmand
from protocol.phone import MAX_PAYLOAD

KNOT = 1852 / 3600


def _params(url: str) -> dict[str, str]:
    """A request's parameters as the HTTP layer hands them over: percent-decoded, one value
    per name (the last, as a dict of parse_qsl keeps it)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def _query(url: str) -> tuple[str, PhoneReport]:
    return osmand.decode_query(_params(url))


def _refused_query(params: dict[str, str], field: str, *words: str) -> None:
    with pytest.raises(PhoneFormatError) as caught:
        osmand.decode_query(params)
    assert caught.value.field == field, str(caught.value)
    for word in words:
        assert word in str(caught.value), str(caught.value)


def _refused_json(body: bytes, field: str, *words: str) -> None:
    with pytest.raises(PhoneFormatError) as caught:
        osmand.decode_json(body)
    assert caught.value.field == field, str(caught.value)
    for word in words:
        assert word in str(caught.value), str(caught.value)


# --- parameters, as sent -----------------------------------------------------------------------


def test_iso_timestamp() -> None:
    # decoder-test
    device, report = _query(
        "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z&hdop=6.0"
        "&altitude=224.0&speed=0.0"
    )
    assert device == "902064"
    assert report.kind is PhoneKind.LOCATION and report.raw_type == "osmand"
    assert report.fix == Fix(
        time_ms=1453920947000, lat=42.06288, lon=-88.23412, speed_mps=0.0, alt_m=224.0
    )
    assert report.time_ms == 1453920947000


def test_millisecond_timestamp() -> None:
    # decoder-test
    _, report = _query(
        "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=1442068686579&hdop=6.0"
        "&altitude=224.0&speed=0.0"
    )
    assert report.time_ms == 1442068686579


def test_plain_date_timestamp_is_utc() -> None:
    # decoder-test ("+" is a space in a query string)
    device, report = _query(
        "/?lat=49.60688&lon=6.15788&timestamp=2014-06-04+09%3A10%3A11&altitude=384.7&speed=0.0"
        "&id=353861053849681"
    )
    assert device == "353861053849681"
    assert report.time_ms == 1401873011000  # 2014-06-04T09:10:11Z
    assert report.fix is not None and report.fix.alt_m == 384.7


def test_seconds_bearing_and_location_forms() -> None:
    # decoder-test
    _, report = _query(
        "/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0&speed=0.0&bearing=0.0&altitude=0"
        "&hdop=0.0"
    )
    assert report.fix == Fix(
        time_ms=1377177267000, lat=60.0, lon=30.0, speed_mps=0.0, course_deg=0.0, alt_m=0.0
    )
    _, bare = _query("/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0")  # decoder-test
    assert bare.fix == Fix(time_ms=1377177267000, lat=60.0, lon=30.0)
    _, location = _query("/?id=123456&timestamp=1377177267&location=60.0,30.0")  # decoder-test
    assert location.fix == bare.fix


def test_speed_is_knots_and_unknown_params_are_ignored() -> None:
    # decoder-test
    _, report = _query(
        "/?id=123456789012345&timestamp=1504763810&lat=40.7232948571&lon=-74.0061408571"
        "&bearing=7.19889788244&speed=40&ignition=true&rpm=933&fuel=24"
    )
    assert report.fix is not None
    assert report.fix.speed_mps == round(40 * KNOT, 2)  # 20.58 m/s, Fix's 0.01 resolution
    assert report.fix.course_deg == 7.2


def test_requests_without_timestamp_are_refused() -> None:
    # decoder-test: Traccar dates these with its clock; a sans-IO decoder has none.
    _refused_query(
        _params("/?lat=60.0&lon=30.0&speed=0.0&heading=0.0&vacc=0&hacc=0&altitude=0&deviceid=123456"),
        "timestamp", "required",
    )  # fmt: skip
    _refused_query(
        _params("/?id=861001000719969&lat=41.666667&lon=-0.883333&altitude=350.059479"
                "&speed=0.000000&batt=87"),
        "timestamp", "required",
    )  # fmt: skip


def test_requests_traccar_refuses_too() -> None:
    # decoder-test: no id (Traccar answers 400)
    _refused_query(_params("/?timestamp=1377177267&lat=60.0&lon=30.0"), "id", "required")
    # decoder-test: cells and wifi without a position (Traccar would look it up)
    _refused_query(
        _params("/?id=123456&timestamp=1377177267&cell=257,02,16,2224&cell=257,02,16,2223,-90"
                "&wifi=00-14-22-01-23-45,-80&wifi=00-1C-B3-09-85-15,-70"),
        "lat", "required",
    )  # fmt: skip


def test_the_old_android_client() -> None:
    # client: ProtocolFormatter.kt writes Kotlin Double.toString values; speed in knots,
    # accuracy 0.0 for a GPS fix, batt a percentage, then mock and alarm when set.
    device, report = _query(
        "http://demo.traccar.org:5055/?id=784512&timestamp=1718000000&lat=31.2304567"
        "&lon=121.4737012&speed=2.62433&bearing=271.5&altitude=12.3&accuracy=0.0&batt=87.0"
        "&mock=true&alarm=sos"
    )
    assert device == "784512"
    assert report.fix == Fix(
        time_ms=1718000000000, lat=31.2304567, lon=121.4737012, speed_mps=2.62433 * KNOT,
        course_deg=271.5, alt_m=12.3, source=FixSource.SIMULATED,
    )  # fmt: skip
    assert report.fix.accuracy_m is None  # 0.0: "not given"
    assert report.battery_pct == 87 and report.alarm == "sos"


def test_the_osmand_page_example() -> None:
    # osmand: "...?id=123456&lat={0}&lon={1}&timestamp={2}&hdop={3}&altitude={4}&speed={5}"
    url = "http://demo.traccar.org:5055/?id=123456&lat={0}&lon={1}&timestamp={2}&hdop={3}&altitude={4}&speed={5}"
    _, report = _query(url.format(22.5431, 114.0579, 1718000000, 0.9, 35.2, 1.5))
    assert report.fix == Fix(
        time_ms=1718000000000, lat=22.5431, lon=114.0579, alt_m=35.2, speed_mps=1.5 * KNOT
    )


def test_battery_charge_and_validity() -> None:
    base = {"id": "a1", "timestamp": "1718000000", "lat": "1", "lon": "2"}
    _, report = osmand.decode_query({**base, "batt": "54.4", "charge": "true"})
    assert (report.battery_pct, report.charging) == (54, True)
    _, report = osmand.decode_query({**base, "charge": "false", "batt": "-1"})
    assert (report.battery_pct, report.charging) == (None, False)  # negative: unknown
    _, report = osmand.decode_query({**base, "valid": "false"})
    assert report.kind is PhoneKind.OTHER and report.fix is None
    for valid in ("true", "1", "TRUE"):
        assert osmand.decode_query({**base, "valid": valid})[1].kind is PhoneKind.LOCATION
    _, report = osmand.decode_query({**base, "speed": "-1", "bearing": "-1"})
    assert report.fix is not None and report.fix.speed_mps is None
    assert report.fix.course_deg is None


def test_deviceid_and_evidence() -> None:
    params = {"deviceid": "tc-0042", "timestamp": "1718000000", "lat": "1", "lon": "2"}
    device, report = osmand.decode_query(params)
    assert device == "tc-0042"
    assert report.evidence == b"deviceid=tc-0042&timestamp=1718000000&lat=1&lon=2"
    assert osmand.decode_query({**params, "id": "tc-0042"})[0] == "tc-0042"


# --- the JSON body, as sent --------------------------------------------------------------------

# decoder-test testDecodeJson, the first request: Traccar Client 9 on Android
JSON_ANDROID = (
    b'{"location":{"timestamp":"2025-06-15T13:45:12.862Z","coords":{"latitude":37.4219983,'
    b'"longitude":-122.084,"accuracy":5,"speed":0,"heading":-1,"altitude":5},"is_moving":false,'
    b'"odometer":0,"event":"motionchange","battery":{"level":1,"is_charging":false},'
    b'"activity":{"type":"still"},"extras":{},"_":"&id=48241179&lat=37.4219983&lon=-122.084'
    b'&timestamp=2025-06-15T13:45:12.862Z&"},"device_id":"48241179"}'
)
# decoder-test testDecodeJson, the third: iOS simulator (mock, -1 for unknown values)
JSON_IOS_MOCK = (
    b'{"location":{"extras":{},"mock":true,"coords":{"speed_accuracy":-1,"speed":-1,'
    b'"longitude":-122.406417,"ellipsoidal_altitude":0,"floor":null,"heading_accuracy":-1,'
    b'"latitude":37.785834000000001,"accuracy":5,"altitude_accuracy":-1,"altitude":0,'
    b'"heading":-1},"is_moving":false,"age":188,"odometer":0,'
    b'"uuid":"2FB04C65-99CF-42AB-8DD3-EBCB4B108BF8","event":"motionchange",'
    b'"battery":{"level":-1,"is_charging":false},"activity":{"type":"unknown","confidence":100},'
    b'"timestamp":"2025-05-09T04:11:30.579Z"},"device_id":"658765"}'
)
# decoder-test testDecodeJson, the fourth: moving, battery 0.79
JSON_MOVING = (
    b'{"location":{"event":"motionchange","is_moving":false,'
    b'"uuid":"0e9a2473-a9a7-4c00-997b-fb97d2154e75","timestamp":"2021-07-21T08:06:34.444Z",'
    b'"odometer":0,"coords":{"latitude":-6.1148096,"longitude":106.6837015,"accuracy":3.8,'
    b'"speed":18.67,"speed_accuracy":0.26,"heading":63,"heading_accuracy":0.28,"altitude":35.7,'
    b'"altitude_accuracy":3.8},"activity":{"type":"still","confidence":100},'
    b'"battery":{"is_charging":false,"level":0.79},"extras":{}},"device_id":"8737767034"}'
)


def _client_body(extras: str = "{}", device: str = "48241179") -> bytes:
    """client: preferences.dart's location template, filled in as the SDK fills it, with
    the device_id its params add."""
    location = (
        '{"timestamp": "2025-11-23T10:15:02.125Z","coords": {"latitude": 22.5431,'
        '"longitude": 114.0579,"accuracy": 12.4,"speed": 1.38,"heading": 87.5,'
        '"altitude": 35.2},"is_moving": true,"odometer": 1532.7,"event": "",'
        '"battery": {"level": 0.62,"is_charging": true},"activity": {"type": "walking"},'
        f'"extras": {extras},"_": "&id={device}&lat=22.5431&lon=114.0579'
        '&timestamp=2025-11-23T10:15:02.125Z&"}'
    )
    return f'{{"location":{location},"device_id":"{device}"}}'.encode()


def test_json_android() -> None:
    device, report = osmand.decode_json(JSON_ANDROID)
    assert device == "48241179"
    assert report.kind is PhoneKind.LOCATION and report.raw_type == "osmand-json"
    assert report.fix == Fix(
        time_ms=1749995112862, lat=37.4219983, lon=-122.084, accuracy_m=5.0, speed_mps=0.0,
        alt_m=5.0,
    )  # fmt: skip
    assert report.fix.course_deg is None  # heading -1: unknown
    assert (report.battery_pct, report.charging) == (100, False)
    assert report.evidence == JSON_ANDROID


def test_json_ios_mock() -> None:
    device, report = osmand.decode_json(JSON_IOS_MOCK)
    assert device == "658765"
    assert report.fix is not None
    assert report.fix.source is FixSource.SIMULATED  # the app says: not GNSS
    assert report.fix.speed_mps is None and report.fix.course_deg is None
    assert report.fix.lat == 37.785834
    assert (report.battery_pct, report.charging) == (None, False)


def test_json_moving() -> None:
    _, report = osmand.decode_json(JSON_MOVING)
    assert report.fix == Fix(
        time_ms=1626854794444, lat=-6.1148096, lon=106.6837015, accuracy_m=3.8,
        speed_mps=18.67, course_deg=63.0, alt_m=35.7,
    )  # fmt: skip
    assert report.battery_pct == 79  # rounded, not truncated


def test_json_client_template() -> None:
    device, report = osmand.decode_json(_client_body())
    assert device == "48241179"
    assert report.fix == Fix(
        time_ms=1763892902125, lat=22.5431, lon=114.0579, accuracy_m=12.4, speed_mps=1.38,
        course_deg=87.5, alt_m=35.2,
    )  # fmt: skip
    assert (report.battery_pct, report.charging, report.trigger) == (62, True, None)


def test_json_extras() -> None:
    # client: push_service.dart (positionSingle), geolocation_service.dart (heartbeat),
    # quick_actions.dart (SOS)
    _, remote = osmand.decode_json(_client_body('{"remote": true}'))
    assert remote.trigger == "r" and remote.answers_report_request
    _, heartbeat = osmand.decode_json(_client_body('{"heartbeat": true}'))
    assert heartbeat.trigger == "p" and not heartbeat.answers_report_request
    _, sos = osmand.decode_json(_client_body('{"alarm": "sos"}'))
    assert sos.alarm == "sos"


def test_reply_body() -> None:
    assert osmand.reply_body() == b""
    assert osmand.reply_body("positionSingle") == b"positionSingle"
    for bad in ("", "a\nb", "x" * 1025):
        with pytest.raises(PhoneFormatError):
            osmand.reply_body(bad)


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("1377177267", 1377177267000),
        ("2147483646", 2147483646000),  # the last count read as seconds (2038)
        ("1442068686579", 1442068686579),
        ("4102444800000", 4102444800000),
        ("2016-01-27T18:55:47Z", 1453920947000),
        ("2016-01-27T18:55:47", 1453920947000),  # no offset: UTC
        ("2016-01-27T18:55:47.5Z", 1453920947500),
        ("2016-01-27T18:55:47.123456789Z", 1453920947123),
        ("2016-01-27T20:55:47+02:00", 1453920947000),
        ("2016-01-27T13:25:47-0530", 1453920947000),
        ("2016-01-27 18:55:47", 1453920947000),
    ],
)
def test_timestamp_forms(value: str, ms: int) -> None:
    params = {"id": "a1", "timestamp": value, "lat": "1", "lon": "2"}
    assert osmand.decode_query(params)[1].time_ms == ms


@pytest.mark.parametrize(
    "value",
    [
        "", "2147483647", "946684799", "99999999999999999999", "-1377177267", "1377177267.5",
        "0x5213", "2016-13-27T18:55:47Z", "2016-02-30T00:00:00Z", "2016-01-27T24:00:00Z",
        "2016-01-27T18:55:47+24:00", "2016-01-27", "18:55:47", "1999-12-31T23:59:59Z",
        "2100-01-01T00:00:01Z", "yesterday", "2016-01-27T18:55:47ZZ", "２０１６-01-27 18:55:47",
    ],
)  # fmt: skip
def test_bad_timestamps(value: str) -> None:
    _refused_query({"id": "a1", "timestamp": value, "lat": "1", "lon": "2"}, "timestamp")


# --- hostile and malformed ----------------------------------------------------------------------

_BASE = {"id": "a1", "timestamp": "1718000000", "lat": "31.23", "lon": "121.47"}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"id": ""}, "id", "required"),
        ({"id": "../etc"}, "id", "not match"),
        ({"id": "a b"}, "id", "not match"),
        ({"id": "+"}, "id", "not match"),
        ({"id": "x" * 65}, "id", "length"),
        ({"deviceid": "a2"}, "id", "differ"),
        ({"lat": "NaN"}, "lat", "not a decimal"),
        ({"lat": "Infinity"}, "lat", "not a decimal"),
        ({"lat": "0x1p3"}, "lat", "not a decimal"),
        ({"lat": "1_0"}, "lat", "not a decimal"),
        ({"lat": " 10"}, "lat", "not a decimal"),
        ({"lat": "\uff13\uff11"}, "lat", "not a decimal"),  # full-width digits: float() takes them
        ({"lat": "1e999"}, "lat", "finite"),
        ({"lat": "9" * 41}, "lat", "not a decimal"),
        ({"lat": "91"}, "lat", "outside"),
        ({"lon": "-180.01"}, "lon", "outside"),
        ({"lat": ""}, "lat", "required"),
        ({"lon": ""}, "lon", "required"),
        ({"location": "1,2"}, "location", "which one"),
        ({"speed": "584"}, "speed", "knots"),
        ({"speed": "fast"}, "speed", "not a decimal"),
        ({"bearing": "360"}, "bearing", "outside"),
        ({"bearing": "10", "heading": "20"}, "bearing", "differ"),
        ({"heading": "400"}, "heading", "outside"),
        ({"altitude": "-1000.5"}, "altitude", "outside"),
        ({"accuracy": "-3"}, "accuracy", "outside"),
        ({"accuracy": "100001"}, "accuracy", "outside"),
        ({"batt": "100.6"}, "batt", "outside"),
        ({"charge": "yes"}, "charge", "not true"),
        ({"valid": "maybe"}, "valid", "not true"),
        ({"mock": "sure"}, "mock", "not true"),
        ({"alarm": "s o s"}, "alarm", "not match"),
        ({"alarm": "x" * 33}, "alarm", "length"),
    ],
)
def test_malformed_params(changes: dict[str, str], field: str, words: str) -> None:
    _refused_query({**_BASE, **changes}, field, words)


def test_malformed_location_param() -> None:
    base = {k: v for k, v in _BASE.items() if k not in ("lat", "lon")}
    for location in ("1", "1,2,3", ",", "a,b", "91,0", "0,181", "NaN,0", "1e999,0", "\u0661,2"):
        with pytest.raises(PhoneFormatError) as caught:
            osmand.decode_query({**base, "location": location})
        assert caught.value.field == "location", str(caught.value)


def test_param_limits() -> None:
    _refused_query({**_BASE, **{f"x{i}": "1" for i in range(100)}}, "", "parameters is over")
    _refused_query({**_BASE, "note": "x" * 10_000_000}, "", "is over")
    with pytest.raises(PhoneFormatError):
        osmand.decode_query({**_BASE, "lat": 31.23})  # type: ignore[dict-item]
    with pytest.raises(PhoneFormatError, match="surrogate"):
        osmand.decode_query({**_BASE, "note": "\udcff"})  # as surrogateescape decodes 0xff
    with pytest.raises(PhoneFormatError):
        osmand.decode_query([("id", "a1")])  # type: ignore[arg-type]


def _body(**changes: Any) -> bytes:
    """The client template with some fields replaced (dotted paths; ... deletes)."""
    root = json.loads(_client_body())
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = root
        for name in parents:
            node = node[name]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return json.dumps(root).encode()


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b"", "", "not JSON"),
        (_client_body()[:-5], "", "not JSON"),
        (b"[]", "", "JSON object"),
        (b"\xff" + _client_body(), "", "UTF-8"),
        (_body(device_id=...), "device_id", "expected text"),
        (_body(device_id=48241179), "device_id", "expected text"),
        (_body(device_id="a/b"), "device_id", "not match"),
        (_body(location=...), "location", "expected a JSON object"),
        (_body(location=[json.loads(_client_body())["location"]]), "location", "batch"),
        (_body(location__timestamp=...), "location.timestamp", "expected text"),
        (_body(location__timestamp=1763892902125), "location.timestamp", "expected text"),
        (_body(location__timestamp="2025-11-23"), "location.timestamp", "ISO-8601"),
        (_body(location__coords=...), "location.coords", "required"),
        (_body(location__coords=[1, 2]), "location.coords", "JSON object"),
        (_body(location__coords__latitude=...), "location.coords.latitude", "required"),
        (_body(location__coords__longitude=None), "location.coords.longitude", "required"),
        (_body(location__coords__latitude="22.5"), "location.coords.latitude", "got str"),
        (_body(location__coords__latitude=True), "location.coords.latitude", "got bool"),
        (_body(location__coords__latitude=-91), "location.coords.latitude", "outside"),
        (_body(location__coords__longitude=10**400), "location.coords.longitude", "outside"),
        (_body(location__coords__speed=301), "location.coords.speed", "outside"),
        (_body(location__coords__speed="1"), "location.coords.speed", "got str"),
        (_body(location__coords__heading=360), "location.coords.heading", "outside"),
        (_body(location__coords__accuracy=-1), "location.coords.accuracy", "outside"),
        (_body(location__coords__altitude=20001), "location.coords.altitude", "outside"),
        (_body(location__battery__level=1.5), "location.battery.level", "outside"),
        (_body(location__battery__level="0.5"), "location.battery.level", "got str"),
        (_body(location__battery__is_charging="false"), "location.battery.is_charging", "true"),
        (_body(location__battery=0.5), "location.battery", "JSON object"),
        (_body(location__mock="true"), "location.mock", "true or false"),
        (_body(location__extras=[]), "location.extras", "JSON object"),
        (_body(location__extras={"alarm": 1}), "location.extras.alarm", "expected text"),
        (_body(location__alarm="\u0000"), "location.alarm", "not match"),
        (b'{"device_id":"a","device_id":"b","location":{}}', "device_id", "twice"),
        (b'{"location":{"coords":{"latitude":NaN}}}', "", "NaN"),
        (b'{"x":' + b"[" * 30_000 + b"]" * 30_000 + b"}", "", "nested"),
        (_body(location__extras={"note": "x" * 10_000_000}), "", "over the limit"),
    ],
)
def test_malformed_json(body: bytes, field: str, words: str) -> None:
    _refused_json(body, field, words)


# --- properties and fuzz -------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_KNOWN = ["id", "deviceid", "timestamp", "lat", "lon", "location", "speed", "bearing", "heading",
          "altitude", "accuracy", "hdop", "batt", "charge", "valid", "mock", "alarm"]  # fmt: skip
_VALUES = st.text(max_size=30) | st.sampled_from(
    ["", "0", "-1", "1e999", "NaN", "true", "1377177267", "2016-01-27T18:55:47Z", "60.0,30.0",
     "2016-01-27 18:55:47", "999999999999999999999", "91", "a1"]
)  # fmt: skip


def _only_phone_errors(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except PhoneFormatError as exc:
        assert str(exc) and exc.reason and isinstance(exc, ProtocolError)
        return None


@FUZZ
@given(params=st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=12))
def test_any_params(params: dict[str, str]) -> None:
    _only_phone_errors(osmand.decode_query, params)


@FUZZ
@given(
    params=st.dictionaries(st.sampled_from(_KNOWN), _VALUES, max_size=len(_KNOWN)),
    base=st.booleans(),
)
def test_known_params_with_any_values(params: dict[str, str], base: bool) -> None:
    result = _only_phone_errors(osmand.decode_query, {**_BASE, **params} if base else params)
    if result is not None:
        device, report = result
        assert device in (params.get("id"), params.get("deviceid"), _BASE["id"])
        assert report.kind in (PhoneKind.LOCATION, PhoneKind.OTHER)


@FUZZ
@given(body=st.binary(max_size=400))
def test_random_bodies(body: bytes) -> None:
    _only_phone_errors(osmand.decode_json, body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)  # fmt: skip
_PATHS = [("device_id",), ("location",), ("location", "timestamp"), ("location", "coords"),
          ("location", "coords", "latitude"), ("location", "coords", "longitude"),
          ("location", "coords", "speed"), ("location", "coords", "heading"),
          ("location", "coords", "accuracy"), ("location", "coords", "altitude"),
          ("location", "battery"), ("location", "battery", "level"),
          ("location", "battery", "is_charging"), ("location", "mock"), ("location", "extras"),
          ("location", "alarm")]  # fmt: skip


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(_PATHS), json_values), max_size=3))
def test_json_fields_with_any_values(changes: list[tuple[tuple[str, ...], Any]]) -> None:
    root = json.loads(_client_body())
    for path, value in changes:
        node = root
        for name in path[:-1]:
            if not isinstance(node.get(name), dict):
                break
            node = node[name]
        else:
            node[path[-1]] = value
    try:
        body = json.dumps(root).encode()
    except ValueError:
        return
    _only_phone_errors(osmand.decode_json, body)


def _finite(lo: float, hi: float, *, exclude_max: bool = False) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, exclude_max=exclude_max)


@FUZZ
@given(
    time_s=st.integers(946_684_800, 2_147_483_646),
    lat=_finite(-90, 90),
    lon=_finite(-180, 180),
    speed_kn=st.none() | _finite(0, 583),
    bearing=st.none() | _finite(0, 360, exclude_max=True),
    altitude=st.none() | _finite(-1000, 20_000),
    accuracy=st.none() | _finite(0.1, 100_000),
    batt=st.none() | st.integers(0, 100),
    charge=st.none() | st.booleans(),
)
def test_query_round_trip(
    time_s: int, lat: float, lon: float, speed_kn: float | None, bearing: float | None,
    altitude: float | None, accuracy: float | None, batt: int | None, charge: bool | None,
) -> None:  # fmt: skip
    params = {"id": "tc-1", "timestamp": str(time_s), "lat": repr(lat), "lon": repr(lon)}
    optional = {"speed": speed_kn, "bearing": bearing, "altitude": altitude,
                "accuracy": accuracy, "batt": batt}  # fmt: skip
    params.update({k: repr(v) for k, v in optional.items() if v is not None})
    if charge is not None:
        params["charge"] = str(charge).lower()
    # What reaches the decoder went through a query string and back.
    device, report = osmand.decode_query(dict(parse_qsl(urlencode(params))))
    assert device == "tc-1"
    assert report.fix == Fix(
        time_ms=time_s * 1000, lat=lat, lon=lon, accuracy_m=accuracy, course_deg=bearing,
        speed_mps=None if speed_kn is None else speed_kn * KNOT, alt_m=altitude,
    )  # fmt: skip
    assert (report.battery_pct, report.charging) == (batt, charge)


def test_mutation_fuzz() -> None:
    """Seeded byte-level mutations of the documented JSON bodies."""
    rng = random.Random(20251123)
    corpus = [JSON_ANDROID, JSON_IOS_MOCK, JSON_MOVING, _client_body('{"alarm": "sos"}')]
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(4000):
        body = bytearray(rng.choice(corpus))
        for _ in range(rng.choice([1, 1, 2, 4])):
            at = rng.randrange(len(body))
            action = rng.randrange(3)
            if action == 0:
                body[at] ^= 1 << rng.randrange(8)
            elif action == 1:
                body[at] = rng.choice(b'{}[]",:0-9.eE\\ntfu\x00\xff')
            else:
                del body[at : at + rng.randrange(1, 6)]
        result = _only_phone_errors(osmand.decode_json, bytes(body))
        outcomes["ok" if result is not None else "refused"] += 1
    assert outcomes["ok"] > 100 and outcomes["refused"] > 1000, outcomes
    assert len(JSON_ANDROID) < MAX_PAYLOAD
