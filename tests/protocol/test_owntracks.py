"""OwnTracks: payloads exactly as the apps send them, encryption, topics, hostile input.

Each documented payload below says where it was copied from. Sources:
- json-schema: github.com/owntracks/json-schema, ``test/*.json`` (the apps' project's own
  sample messages).
- booklet/json: https://owntracks.org/booklet/tech/json/ (examples in the ``_type`` sections).
- booklet/traccar: https://owntracks.org/booklet/features/traccar/ ("HTTP Payloads").
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import nacl.bindings
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    Fix,
    FixSource,
    PhoneFormatError,
    PhoneKind,
    PhoneReport,
    ProtocolError,
    owntracks,
)
from protocol.phone import MAX_DEPTH, MAX_PAYLOAD, MAX_TIME_S, MIN_TIME_S

KEY = owntracks.secretbox_key("mysecreTpass01")  # the booklet's example secret (encrypt page)
OTHER_KEY = owntracks.secretbox_key("mysecreTpass02")

# json-schema test/l.json (an iOS location: conn, m and tag are extended data)
LOCATION_L = b"""{
    "_type" : "location",
    "acc" : 35,
    "alt" : 0,
    "batt" : 75,
    "bs" : 1,
    "conn" : "w",
    "lat" : 52.195913,
    "lon" : 7.688245,
    "m" : 1,
    "tag" : "Coffee",
    "tid" : "C1",
    "tst" : 1699882482
}
"""
# booklet/traccar, "HTTP Payloads": the least an HTTP-mode location carries
LOCATION_MINIMAL = b'{"lon":2.29513,"lat":48.85833,"_type":"location","tst":1497476456, "tid":"JJ"}'
# json-schema test/transition.json
TRANSITION = (
    b'{"_type":"transition","acc":6,"created_at":1701264373,"desc":"blukii","event":"enter",'
    b'"lat":61.195709,"lon":9.688233,"rid":"c00b92","t":"b","tid":"SG","tst":1701264368,'
    b'"wtst":1610104404}\n'
)
# booklet/json, "_type=lwt" (earlier revision of the page, which shows the values)
LWT = b'{\n    "_type":"lwt",\n    "tst": 1380738247\n}'
# json-schema test/status.json
STATUS = b"""{
  "_type": "status",
  "iOS": {
    "altimeterAuthorizationStatus": "CMAuthorizationStatusNotDetermined",
    "altimeterIsAbsoluteAltitudeAvailable": false,
    "altimeterIsRelativeAltitudeAvailable": false,
    "backgroundRefreshStatus": "UIBackgroundRefreshStatusAvailable",
    "deviceIdentifierForVendor": "27A2DC28-0371-4077-B607-85FE50BDCB74",
    "deviceModel": "iPad",
    "deviceSystemName": "iPadOS",
    "deviceSystemVersion": "17.2",
    "deviceUserInterfaceIdiom": "UIUserInterfaceIdiomPad",
    "locale": "de_DE",
    "localeUsesMetricSystem": true,
    "locationManagerAuthorizationStatus": "kCLAuthorizationStatusAuthorizedAlways",
    "version": "17.2.3"
  }
}
"""
# json-schema test/e.json: the wrapper's shape, with a stand-in "data" (base64 of "abcde\n")
ENCRYPTED_STANDIN = b'{\n\t"_type": "encrypted",\n\t"data": "YWJjZGUK"\n}\n'
# A location with every element the booklet lists for Android and iOS (booklet/json,
# "_type=location"), values as the apps write them: integers for acc, alt, cog, vel, batt.
LOCATION_FULL = (
    b'{"_type":"location","BSSID":"b0:f2:8:45:94:33","SSID":"Home","acc":14,"alt":113,'
    b'"batt":43,"bs":2,"cog":271,"conn":"w","created_at":1700000020,"inregions":["Home"],'
    b'"lat":31.2304567,"lon":121.4737012,"m":2,"p":101.2,"t":"r","tid":"ZX",'
    b'"topic":"owntracks/zhang/phone","tst":1700000017,"vac":3,"vel":54}'
)


def _location(**changes: Any) -> bytes:
    message: dict[str, Any] = {"_type": "location", "lat": 31.23, "lon": 121.47, "tst": 1700000000}
    message.update(changes)
    return json.dumps({k: v for k, v in message.items() if v is not ...}).encode()


def _refused(payload: bytes, field: str, *words: str, key: bytes | None = None) -> None:
    with pytest.raises(PhoneFormatError) as caught:
        owntracks.decode(payload, key=key)
    assert caught.value.field == field, str(caught.value)
    for word in words:
        assert word in str(caught.value)


# --- documented payloads ----------------------------------------------------------------------


def test_location_as_ios_sends_it() -> None:
    report = owntracks.decode(LOCATION_L, key=None)
    assert report.kind is PhoneKind.LOCATION
    assert report.fix == Fix(
        time_ms=1699882482000, lat=52.195913, lon=7.688245, accuracy_m=35.0, alt_m=0.0
    )
    assert report.time_ms == 1699882482000
    assert (report.battery_pct, report.charging) == (75, False)  # bs 1: unplugged
    assert report.tracker_id == "C1"
    assert report.trigger is None and not report.answers_report_request
    assert report.raw_type == "location"
    assert report.evidence == LOCATION_L


def test_minimal_http_location() -> None:
    report = owntracks.decode(LOCATION_MINIMAL, key=None)
    assert report.fix == Fix(time_ms=1497476456000, lat=48.85833, lon=2.29513)
    assert report.tracker_id == "JJ" and report.battery_pct is None and report.charging is None


def test_every_documented_location_element() -> None:
    report = owntracks.decode(LOCATION_FULL, key=None)
    assert report.fix == Fix(
        time_ms=1700000017000, lat=31.2304567, lon=121.4737012, accuracy_m=14.0,
        speed_mps=15.0, course_deg=271.0, alt_m=113.0, source=FixSource.GNSS,
    )  # fmt: skip
    assert report.fix.speed_mps == 54 / 3.6  # vel is km/h
    assert (report.battery_pct, report.charging) == (43, True)  # bs 2: charging
    assert report.trigger == "r" and report.answers_report_request
    assert report.time_ms == 1700000017000  # tst (the fix), not created_at


def test_transition() -> None:
    report = owntracks.decode(TRANSITION, key=None)
    assert report.kind is PhoneKind.TRANSITION
    assert (report.event, report.region, report.trigger) == ("enter", "blukii", "b")
    assert report.fix == Fix(time_ms=1701264368000, lat=61.195709, lon=9.688233, accuracy_m=6.0)
    assert report.time_ms == 1701264368000 and report.tracker_id == "SG"


def test_transition_without_coordinates() -> None:
    # The booklet lists lat and lon of a transition as optional.
    report = owntracks.decode(
        b'{"_type":"transition","tst":1701264368,"wtst":1610104404,"acc":6,"event":"leave"}',
        key=None,
    )
    assert report.fix is None and report.event == "leave" and report.region is None


def test_lwt() -> None:
    report = owntracks.decode(LWT, key=None)
    assert report.kind is PhoneKind.LWT and report.fix is None
    assert report.time_ms == 1380738247000  # when the app first connected


def test_documented_types_yijing_does_not_use_are_other() -> None:
    status = owntracks.decode(STATUS, key=None)
    assert status.kind is PhoneKind.OTHER and status.raw_type == "status"
    assert status.time_ms == 0 and status.fix is None  # a status carries no time
    # booklet/json "_type=cmd": what the server sends, should it come back
    echoed = owntracks.decode(b'{"_type":"cmd","action":"reportLocation"}', key=None)
    assert echoed.kind is PhoneKind.OTHER
    waypoint = owntracks.decode(
        b'{"_type":"waypoint","desc":"Home","lat":52.0,"lon":7.6,"rad":50,"tst":1610104404}',
        key=None,
    )
    assert waypoint.kind is PhoneKind.OTHER and waypoint.time_ms == 1610104404000
    for kind in owntracks.OTHER_TYPES:
        assert owntracks.decode(json.dumps({"_type": kind}).encode(), key=None).raw_type == kind


def test_every_bs_value() -> None:
    # booklet/json: 0=unknown, 1=unplugged, 2=charging, 3=full (full: still on the charger)
    expected = {0: None, 1: False, 2: True, 3: True}
    for bs, charging in expected.items():
        assert owntracks.decode(_location(bs=bs), key=None).charging is charging


def test_cmds_as_the_booklet_writes_them() -> None:
    # booklet/json, "_type=cmd"
    assert owntracks.cmd_report_location() == b'{"_type":"cmd","action":"reportLocation"}'
    assert owntracks.cmd("dump") == b'{"_type":"cmd","action":"dump"}'
    assert json.loads(owntracks.cmd("action", notification="Warning! Battery low")) == {
        "_type": "cmd", "action": "action", "notification": "Warning! Battery low"
    }  # fmt: skip
    assert json.loads(owntracks.cmd("action", content="巡逻 19:00 东门集合")) == {
        "_type": "cmd", "action": "action", "content": "巡逻 19:00 东门集合"
    }  # fmt: skip


def test_cmd_refuses_what_the_apps_do_not_know() -> None:
    with pytest.raises(PhoneFormatError, match="action"):
        owntracks.cmd("selfDestruct")
    with pytest.raises(PhoneFormatError, match="_type"):
        owntracks.cmd("dump", _type="location")
    with pytest.raises(PhoneFormatError):
        owntracks.cmd("action", content=float("nan"))
    with pytest.raises(PhoneFormatError):
        owntracks.cmd("action", content=object())
    with pytest.raises(PhoneFormatError):
        owntracks.cmd("action", content="x" * MAX_PAYLOAD)


def test_http_reply() -> None:
    # booklet "HTTP": an array of messages, typically empty
    assert owntracks.http_reply([]) == b"[]"
    body = owntracks.http_reply([owntracks.cmd_report_location(), owntracks.cmd("dump")])
    assert json.loads(body) == [
        {"_type": "cmd", "action": "reportLocation"}, {"_type": "cmd", "action": "dump"}
    ]  # fmt: skip
    with pytest.raises(PhoneFormatError) as caught:
        owntracks.http_reply([owntracks.cmd("dump"), b"[1]"])
    assert caught.value.field == "messages[1]"


# --- encryption -------------------------------------------------------------------------------


def test_key_is_the_passphrase_zero_padded() -> None:
    assert owntracks.secretbox_key("mysecreTpass01") == b"mysecreTpass01" + bytes(18)
    assert owntracks.secretbox_key("巡逻") == "巡逻".encode() + bytes(26)
    long = "x" * 40  # past 32 bytes: truncated, as the Android app's copyOf(32)
    assert owntracks.secretbox_key(long) == b"x" * 32
    for bad in ("", "\ud800"):
        with pytest.raises(PhoneFormatError):
            owntracks.secretbox_key(bad)


def test_encrypted_round_trip() -> None:
    for plain in (LOCATION_L, TRANSITION, LWT, STATUS, LOCATION_FULL):
        sealed = owntracks.encrypt(plain, KEY)
        assert json.loads(sealed)["_type"] == "encrypted"
        report = owntracks.decode(sealed, key=KEY)
        assert report == owntracks.decode(plain, key=None)
        assert report.evidence == plain  # the decrypted JSON is the evidence


def test_layout_is_the_apps(monkeypatch: pytest.MonkeyPatch) -> None:
    """base64(nonce | Poly1305 tag | XSalsa20 ciphertext), built here with the raw libsodium
    binding, as owntracks/android EncryptionProvider.kt and recorder.c decrypt() lay it out."""
    nonce = bytes(range(24))
    boxed = nacl.bindings.crypto_secretbox(LOCATION_MINIMAL, nonce, KEY)  # tag | ciphertext
    assert len(boxed) == len(LOCATION_MINIMAL) + 16
    payload = json.dumps({"_type": "encrypted", "data": base64.b64encode(nonce + boxed).decode()})
    report = owntracks.decode(payload.encode(), key=KEY)
    assert report.tracker_id == "JJ"
    # ... and encrypt() makes exactly that, given the same nonce.
    compact = payload.replace(" ", "").encode()
    assert owntracks.encrypt(LOCATION_MINIMAL, KEY, nonce=nonce) == compact


def test_encrypt_nonces_differ() -> None:
    assert owntracks.encrypt(LWT, KEY) != owntracks.encrypt(LWT, KEY)


def test_plaintext_is_accepted_with_a_key() -> None:
    assert owntracks.decode(LOCATION_L, key=KEY).kind is PhoneKind.LOCATION


def test_encrypted_without_a_key() -> None:
    _refused(owntracks.encrypt(LOCATION_L, KEY), "data", "no key")


def test_wrong_key() -> None:
    _refused(owntracks.encrypt(LOCATION_L, KEY), "data", "does not decrypt", key=OTHER_KEY)


def test_tampered_ciphertext() -> None:
    data = bytearray(base64.b64decode(json.loads(owntracks.encrypt(LOCATION_L, KEY))["data"]))
    for at in (0, 23, 24, 39, 40, len(data) - 1):  # nonce, tag, ciphertext
        flipped = bytearray(data)
        flipped[at] ^= 0x01
        payload = json.dumps({"_type": "encrypted", "data": base64.b64encode(flipped).decode()})
        _refused(payload.encode(), "data", "does not decrypt", key=KEY)
    truncated = json.dumps({"_type": "encrypted", "data": base64.b64encode(data[:-1]).decode()})
    _refused(truncated.encode(), "data", key=KEY)


def test_encrypted_wrapper_errors() -> None:
    _refused(ENCRYPTED_STANDIN, "data", "too short", key=KEY)  # json-schema test/e.json
    _refused(b'{"_type":"encrypted"}', "data", "required", key=KEY)
    _refused(b'{"_type":"encrypted","data":42}', "data", "expected text", key=KEY)
    _refused(b'{"_type":"encrypted","data":"not base64!"}', "data", "base64", key=KEY)
    _refused(b'{"_type":"encrypted","data":"\xc3\xa9\xc3\xa9"}', "data", "base64", key=KEY)


def test_nested_encryption_is_refused() -> None:
    twice = owntracks.encrypt(owntracks.encrypt(LOCATION_L, KEY), KEY)
    _refused(twice, "_type", "inside an encrypted", key=KEY)


def test_encrypted_garbage_inside() -> None:
    _refused(owntracks.encrypt(b"\xff\xfe", KEY), "", "UTF-8", key=KEY)
    _refused(owntracks.encrypt(b"[1,2]", KEY), "", "JSON object", key=KEY)
    _refused(owntracks.encrypt(_location(lat=91), KEY), "lat", "outside", key=KEY)


def test_bad_keys_and_nonces() -> None:
    for key in (b"short", bytes(33), "x" * 32):
        with pytest.raises(PhoneFormatError, match="key"):
            owntracks.decode(owntracks.encrypt(LWT, KEY), key=key)  # type: ignore[arg-type]
        with pytest.raises(PhoneFormatError, match="key"):
            owntracks.encrypt(LWT, key)  # type: ignore[arg-type]
    with pytest.raises(PhoneFormatError, match="nonce"):
        owntracks.encrypt(LWT, KEY, nonce=bytes(23))


# --- hostile and malformed payloads -----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        (LOCATION_L[:-20], "", "not JSON"),  # truncated
        (b"", "", "not JSON"),
        (b"[]", "", "JSON object"),
        (b'"location"', "", "JSON object"),
        (b"\xff" + LOCATION_L, "", "not UTF-8"),
        (LOCATION_L.decode().encode("utf-16"), "", "not UTF-8"),
        (b"\xef\xbb\xbf" + LOCATION_L, "", "not JSON"),  # a BOM
        (b"{}", "_type", "required"),
        (b'{"_type":null}', "_type", "required"),
        (b'{"_type":7}', "_type", "expected text"),
        (b'{"_type":"locations"}', "_type", "not an OwnTracks message type"),
        (b'{"_type":"location","_type":"lwt","tst":1700000000}', "_type", "twice"),
        (_location(lat=...), "lat", "required"),
        (_location(lon=None), "lon", "required"),
        (_location(tst=...), "tst", "required"),
        (_location(lat=90.0000001), "lat", "outside"),
        (_location(lon=-180.5), "lon", "outside"),
        (_location(lat="31.23"), "lat", "expected a number, got str"),
        (_location(lat=True), "lat", "expected a number, got bool"),
        (_location(tst=1700000000.5), "tst", "expected an integer, got float"),
        (_location(tst=True), "tst", "got bool"),
        (_location(tst=946684799), "tst", "outside"),  # 1999-12-31
        (_location(tst=4102444801), "tst", "outside"),
        (_location(tst=1700000000000), "tst", "outside"),  # milliseconds, not seconds
        (_location(acc=-1), "acc", "outside"),
        (_location(vel=-3), "vel", "outside"),
        (_location(vel=1081), "vel", "outside"),
        (_location(cog=360), "cog", "outside"),
        (_location(alt=-1001), "alt", "outside"),
        (_location(batt=101), "batt", "outside"),
        (_location(batt=50.5), "batt", "expected an integer"),
        (_location(batt=False), "batt", "got bool"),
        (_location(bs=4), "bs", "outside"),
        (_location(t="rr"), "t", "length"),
        (_location(t="\n"), "t", "control"),
        (_location(t="巡"), "t", "printable ASCII"),
        (_location(tid=7), "tid", "expected text"),
        (_location(tid="x" * 65), "tid", "length"),
        (_location(tid="a\u0000b"), "tid", "control"),
        (_location(lat=10**400), "lat", "outside"),
        (b'{"_type":"location","lat":1e400,"lon":0,"tst":1700000000}', "lat", "finite"),
        (b'{"_type":"location","lat":NaN,"lon":0,"tst":1700000000}', "", "NaN"),
        (b'{"_type":"location","lat":Infinity,"lon":0,"tst":1700000000}', "", "Infinity"),
        (b'{"_type":"location","lat":-Infinity,"lon":0,"tst":1700000000}', "", "Infinity"),
        (b'{"_type":"location","lat":' + b"9" * 5000 + b',"lon":0,"tst":1}', "", "not JSON"),
        (b'{"_type":"location","tid":"\\ud800","lat":0,"lon":0,"tst":1700000000}', "tid", "surr"),
        (b'{"_type":"transition","tst":1701264368,"event":"arrive"}', "event", "enter"),
        (b'{"_type":"transition","tst":1701264368}', "event", "required"),
        (b'{"_type":"transition","tst":1701264368,"event":"enter","lat":1}', "lon", "required"),
        (b'{"_type":"lwt"}', "tst", "required"),
        (b'{"_type":"waypoint","tst":"yesterday"}', "tst", "expected an integer"),
    ],
)
def test_malformed(payload: bytes, field: str, words: str) -> None:
    _refused(payload, field, words)


def test_deep_nesting() -> None:
    deep = b'{"_type":"location","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _refused(deep, "", "over the limit")  # too big before anything is parsed
    within_size = b'{"_type":"location","x":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    _refused(within_size, "", "nested deeper")  # the parser's recursion limit
    nested = {"_type": "status", "x": 1}
    for _ in range(MAX_DEPTH):
        nested = {"_type": "status", "x": nested}
    _refused(json.dumps(nested).encode(), "", "nested deeper")


def test_size_limit() -> None:
    huge = _location(tid="x" * 10_000_000)  # a 10 MB string
    _refused(huge, "", "over the limit")
    _refused(b" " * (MAX_PAYLOAD + 1), "", "over the limit")
    padded = _location().replace(b"{", b"{" + b" " * (MAX_PAYLOAD - len(_location())), 1)
    assert len(padded) == MAX_PAYLOAD
    assert owntracks.decode(padded, key=None).kind is PhoneKind.LOCATION


def test_not_bytes() -> None:
    for payload in ("{}", None, 7):
        with pytest.raises(PhoneFormatError, match="expected bytes"):
            owntracks.decode(payload, key=None)  # type: ignore[arg-type]
    assert owntracks.decode(bytearray(LWT), key=None).kind is PhoneKind.LWT


def test_report_validates_itself() -> None:
    fix = Fix(time_ms=1700000000000, lat=1.0, lon=2.0)
    with pytest.raises(PhoneFormatError, match="needs a fix"):
        PhoneReport(kind=PhoneKind.LOCATION, fix=None, time_ms=1700000000000, raw_type="x")
    with pytest.raises(PhoneFormatError, match="lwt"):
        PhoneReport(kind=PhoneKind.LWT, fix=fix, time_ms=1700000000000, raw_type="lwt")
    with pytest.raises(PhoneFormatError, match="event"):
        PhoneReport(kind=PhoneKind.TRANSITION, fix=None, time_ms=1700000000000, raw_type="t")
    with pytest.raises(PhoneFormatError, match="only a transition"):
        PhoneReport(
            kind=PhoneKind.LOCATION, fix=fix, time_ms=1700000000000, raw_type="x", event="enter"
        )
    with pytest.raises(PhoneFormatError, match="time_ms"):
        PhoneReport(kind=PhoneKind.LOCATION, fix=fix, time_ms=0, raw_type="x")
    with pytest.raises(PhoneFormatError, match="battery_pct"):
        PhoneReport(
            kind=PhoneKind.LOCATION, fix=fix, time_ms=1700000000000, raw_type="x", battery_pct=101
        )
    with pytest.raises(PhoneFormatError, match="alarm"):
        PhoneReport(
            kind=PhoneKind.LOCATION, fix=fix, time_ms=1700000000000, raw_type="x", alarm="s o s"
        )


# --- topics -----------------------------------------------------------------------------------


def test_topics() -> None:
    assert owntracks.topic_parts("owntracks/jane/phone") == ("jane", "phone", None)
    assert owntracks.topic_parts("owntracks/jane/phone/event") == ("jane", "phone", "event")
    for suffix in owntracks.TOPIC_SUFFIXES:
        assert owntracks.topic_parts(f"owntracks/u-1/ph.2/{suffix}")[2] == suffix
    assert owntracks.cmd_topic("jane", "phone") == "owntracks/jane/phone/cmd"
    assert owntracks.topic_parts(owntracks.cmd_topic("jane", "phone"))[2] == "cmd"


@pytest.mark.parametrize(
    "topic",
    [
        "owntracks/+/x",
        "owntracks/+/+",
        "owntracks/#",
        "owntracks/a/#",
        "owntracks/a/b/../c",
        "owntracks/a/..",
        "owntracks/../b",
        "owntracks//b",
        "owntracks/a/",
        "owntracks/a/b/",
        "owntracks/a/b/event/x",
        "owntracks/a/b/unknown",
        "owntracks/a",
        "owntracks",
        "",
        "/owntracks/a/b",
        "OwnTracks/a/b",
        "$SYS/broker/a",
        "owntracks/$SYS/b",
        "yj/1/up/a/pos",
        "owntracks/a b/c",
        "owntracks/a/b\x00",
        "owntracks/" + "a" * 65 + "/b",
        "owntracks/a/b" + "/" * 300,
    ],
)
def test_topic_injection(topic: str) -> None:
    with pytest.raises(PhoneFormatError) as caught:
        owntracks.topic_parts(topic)
    assert caught.value.field == "topic"


def test_cmd_topic_refuses_bad_ids() -> None:
    for user, device in (("+", "phone"), ("jane", "#"), ("jane", "a/b"), ("", "phone")):
        with pytest.raises(PhoneFormatError):
            owntracks.cmd_topic(user, device)


# --- properties and fuzz ----------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f"]
_tids = st.text(st.characters(codec="utf-8", exclude_characters=_CONTROLS), min_size=1, max_size=64)


def _finite(lo: float, hi: float, *, exclude_max: bool = False) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, exclude_max=exclude_max)


@st.composite
def locations(draw: st.DrawFn) -> dict[str, Any]:
    """A location message as the apps may write it: required elements, any optional ones."""
    message: dict[str, Any] = {
        "_type": "location",
        "tst": draw(st.integers(MIN_TIME_S, MAX_TIME_S)),
        "lat": draw(_finite(-90, 90) | st.integers(-90, 90)),
        "lon": draw(_finite(-180, 180) | st.integers(-180, 180)),
    }
    optional = {
        "acc": st.integers(0, 100_000) | _finite(0, 100_000),
        "vel": st.integers(0, 1080),
        "cog": st.integers(0, 359) | _finite(0, 360, exclude_max=True),
        "alt": st.integers(-1000, 20_000),
        "batt": st.integers(0, 100),
        "bs": st.integers(0, 3),
        "t": st.sampled_from("pcbrutv"),
        "tid": _tids,
        "conn": st.sampled_from("wom"),
        "created_at": st.integers(MIN_TIME_S, MAX_TIME_S),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            message[name] = draw(strategy)
    return message


@FUZZ
@given(message=locations(), encrypted=st.booleans(), escaped=st.booleans())
def test_location_round_trip(message: dict[str, Any], encrypted: bool, escaped: bool) -> None:
    # Both JSON spellings of text: \u-escaped and raw UTF-8.
    plain = json.dumps(message, ensure_ascii=escaped).encode()
    payload = owntracks.encrypt(plain, KEY) if encrypted else plain
    report = owntracks.decode(payload, key=KEY if encrypted else None)
    vel = message.get("vel")
    assert report.fix == Fix(
        time_ms=message["tst"] * 1000, lat=message["lat"], lon=message["lon"],
        accuracy_m=message.get("acc"), speed_mps=None if vel is None else vel * 1000 / 3600,
        course_deg=message.get("cog"), alt_m=message.get("alt"),
    )  # fmt: skip
    assert report.time_ms == message["tst"] * 1000
    assert report.battery_pct == message.get("batt")
    assert report.charging == {None: None, 0: None, 1: False, 2: True, 3: True}[message.get("bs")]
    assert report.trigger == message.get("t")
    assert report.tracker_id == message.get("tid")
    assert report.answers_report_request == (message.get("t") == "r")
    assert report.evidence == plain


def _only_phone_errors(payload: bytes, key: bytes | None) -> PhoneReport | None:
    try:
        return owntracks.decode(payload, key=key)
    except PhoneFormatError as exc:
        assert str(exc) and exc.reason
        assert isinstance(exc, ProtocolError)
        return None


@FUZZ
@given(payload=st.binary(max_size=400), keyed=st.booleans())
def test_random_bytes(payload: bytes, keyed: bool) -> None:
    _only_phone_errors(payload, KEY if keyed else None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=25,
)  # fmt: skip
_ELEMENTS = ["_type", "lat", "lon", "tst", "acc", "vel", "cog", "alt", "batt", "bs", "t",
             "tid", "event", "desc", "data", "wtst"]  # fmt: skip
_TYPES = ["location", "transition", "lwt", "encrypted", "status", "card", "cmd", "x", ""]


@FUZZ
@given(
    base=locations(),
    changes=st.dictionaries(st.sampled_from(_ELEMENTS), json_values, max_size=4),
    kind=st.sampled_from(_TYPES),
)
def test_documented_elements_with_any_values(
    base: dict[str, Any], changes: dict[str, Any], kind: str
) -> None:
    message = {**base, "_type": kind, **changes}
    try:
        payload = json.dumps(message).encode()  # NaN and Infinity are written as such
    except ValueError:
        return
    report = _only_phone_errors(payload, None)
    if report is not None and report.fix is not None:
        assert -90 <= report.fix.lat <= 90 and -180 <= report.fix.lon <= 180
    _only_phone_errors(owntracks.encrypt(payload, KEY), KEY)


@FUZZ
@given(topic=st.text(max_size=60) | st.lists(st.text(max_size=8), max_size=6).map("/".join))
def test_any_topic(topic: str) -> None:
    try:
        user, device, suffix = owntracks.topic_parts(topic)
    except PhoneFormatError:
        return
    rebuilt = "/".join(p for p in ("owntracks", user, device, suffix) if p is not None)
    assert rebuilt == topic and not set("+#$") & set(topic)


def test_mutation_fuzz() -> None:
    """Seeded byte-level mutations of valid payloads, plain and encrypted under the right key
    (so mutants reach the MAC, and re-encrypted mutants the inner decoder)."""
    rng = random.Random(20251123)
    corpus = [LOCATION_L, LOCATION_MINIMAL, LOCATION_FULL, TRANSITION, LWT, STATUS]
    outcomes: dict[str, int] = {}
    for _ in range(6000):
        plain = bytearray(rng.choice(corpus))
        for _ in range(rng.choice([1, 1, 2, 4])):
            action = rng.randrange(4)
            at = rng.randrange(len(plain))
            if action == 0:
                plain[at] ^= 1 << rng.randrange(8)
            elif action == 1:
                plain[at] = rng.choice(b'{}[]",:0-9.eE\\ntfu\x00\xff')
            elif action == 2:
                del plain[at : at + rng.randrange(1, 6)]
            else:
                plain[at:at] = rng.randbytes(rng.randrange(1, 6))
        roll = rng.random()
        if roll < 0.5:
            payload, key = bytes(plain), None
        elif roll < 0.8:
            payload, key = owntracks.encrypt(bytes(plain), KEY), KEY
        else:
            sealed = bytearray(owntracks.encrypt(bytes(rng.choice(corpus)), KEY))
            sealed[rng.randrange(len(sealed))] ^= 1 << rng.randrange(8)
            payload, key = bytes(sealed), KEY
        report = _only_phone_errors(payload, key)
        name = "ok" if report is not None else "refused"
        outcomes[name] = outcomes.get(name, 0) + 1
    assert outcomes.get("ok", 0) > 100 and outcomes.get("refused", 0) > 1000, outcomes
