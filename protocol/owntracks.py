"""OwnTracks, sans-IO: its JSON messages, its payload encryption, its MQTT topics.

Sources (as cited beside each rule below):

- [json] OwnTracks booklet, "JSON" — https://owntracks.org/booklet/tech/json/ : the ``_type``
  table, "Topics", ``_type=location`` (units: ``acc`` m, ``alt`` m, ``batt`` %, ``bs``
  0 unknown / 1 unplugged / 2 charging / 3 full, ``cog`` degrees, ``lat``/``lon`` degrees,
  ``t`` trigger, ``tid``, ``tst`` epoch seconds of the fix, ``vel`` km/h), ``_type=lwt``
  (``tst``: when the app first connected), ``_type=transition`` (``event`` enter/leave,
  ``desc``, ``tst``, ``wtst``, ``acc``), ``_type=cmd`` (the actions), ``_type=encrypted``.
- [schema] owntracks/json-schema, ``schemas/message.json``: ``t`` is one character, ``bs``
  one of 0..3, ``tst`` an integer; location requires lat, lon, tst; transition requires
  acc, event, lat, lon, tst, wtst (the booklet calls its lat/lon optional: taken as such).
- [http] OwnTracks booklet, "HTTP" — https://owntracks.org/booklet/tech/http/ : the app
  POSTs exactly the MQTT payloads; a 2xx means delivered, anything else is queued and
  resent; the reply is a JSON array of messages for the phone (typically ``[]``; ``cmd``,
  ``location``, ``card``, ``transition`` objects are acted on); the OwnTracks Recorder takes
  user and device from ``?u=&d=`` or the ``X-Limit-U`` / ``X-Limit-D`` headers. In HTTP
  mode no LWT exists and ``cmd`` reaches the phone only in such a reply.
- [encrypt] OwnTracks booklet, "Payload encryption" —
  https://owntracks.org/booklet/features/encrypt/ : libsodium secret-key authenticated
  encryption (``crypto_secretbox``: XSalsa20-Poly1305); the secret is "an up to 32 octet
  long passphrase (which the apps pad with binary zeroes)"; the payload becomes
  ``{"_type": "encrypted", "data": "<base64>"}``.
- The exact layout, verified in two implementations: owntracks/recorder ``recorder.c``
  ``decrypt()`` (key buffer zeroed, then the secret copied in; nonce = the first
  ``crypto_secretbox_NONCEBYTES`` (24) bytes of the base64-decoded ``data``;
  ``crypto_secretbox_open_easy`` on the rest), and owntracks/android ``EncryptionProvider.kt``
  (key = ``encryptionKey.toByteArray().copyOf(32)``: the secret's UTF-8 bytes, zero-padded
  or truncated to 32; output base64 of nonce | Poly1305 tag | ciphertext). That is exactly
  PyNaCl's ``SecretBox`` combined form, which does the cryptography here.

Encryption is confidentiality (from the broker) and, because the box is authenticated,
proof of the shared secret. A plaintext payload is accepted with or without a key: who may
publish a phone's topic or POST as its user is the broker's ACL and the HTTP layer's
business, and the lwt is published by the broker on the app's behalf.

Strictness: OwnTracks numbers are JSON numbers since Android 0.5.11 / iOS 8.0 [json, an
earlier revision's "heads up"]; a string where a number belongs is refused (the Recorder's
``atof`` fallback is not followed), as is a bool, NaN, Infinity, or a value outside its
range. Unknown elements are ignored (the apps add fields over time).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from .errors import PhoneFormatError
from .messages import ID_PATTERN
from .phone import (
    MAX_PAYLOAD,
    MAX_TIME_S,
    MIN_TIME_S,
    PhoneKind,
    PhoneReport,
    check_size,
    integer,
    load_json_object,
    make_fix,
    number,
    text,
)

ROOT = "owntracks"
#: Sub-topics under ``owntracks/<user>/<device>`` [json, "Topics"].
TOPIC_SUFFIXES = frozenset(
    {"cmd", "event", "info", "step", "beacon", "dump", "status", "waypoint", "waypoints"}
)
#: Documented ``_type`` values yijing accepts without using them [json, "Types"].
OTHER_TYPES = frozenset(
    {"beacon", "card", "cmd", "configuration", "request", "status", "steps", "waypoint",
     "waypoints"}
)  # fmt: skip
#: ``cmd`` actions [json, "_type=cmd"; schema "action"; json-schema test/cmd-status.json].
CMD_ACTIONS = frozenset(
    {"action", "clearWaypoints", "dump", "reportLocation", "reportSteps", "response",
     "setConfiguration", "setWaypoints", "status", "waypoints"}
)  # fmt: skip

KEY_SIZE = SecretBox.KEY_SIZE  # 32
NONCE_SIZE = SecretBox.NONCE_SIZE  # 24
_TAG_SIZE = SecretBox.MACBYTES  # 16
_ID = re.compile(ID_PATTERN)
_MAX_TOPIC = 256
#: Units: [json] gives ``vel`` in km/h; yijing's Fix takes m/s (300 m/s = 1080 km/h).
_MAX_VEL_KMH = 1080.0
#: ``bs`` [json]: 0 unknown, 1 unplugged, 2 charging, 3 full (full: on the charger).
_CHARGING = {0: None, 1: False, 2: True, 3: True}
#: Fix field -> the OwnTracks element it came from, for error messages.
_NAMES = {
    "time_ms": "tst", "lat": "lat", "lon": "lon", "accuracy_m": "acc", "speed_mps": "vel",
    "course_deg": "cog", "alt_m": "alt",
}  # fmt: skip


# --- decoding ---------------------------------------------------------------------------------


def decode(payload: bytes, *, key: bytes | None) -> PhoneReport:
    """One OwnTracks payload, as published over MQTT or POSTed in HTTP mode.

    ``key`` is the phone's 32-byte secretbox key (``secretbox_key``), or None if the phone
    does not encrypt. An encrypted payload is decrypted and its inner message decoded; its
    evidence is the decrypted JSON. Raises ``PhoneFormatError`` and nothing else.
    """
    message = load_json_object(payload)
    if _type_of(message) != "encrypted":
        return _decode_plain(message, check_size(payload))
    plain = _decrypt(message, key)
    inner = load_json_object(plain)
    if _type_of(inner) == "encrypted":
        raise PhoneFormatError("_type", "an encrypted payload inside an encrypted payload")
    return _decode_plain(inner, plain)


def _type_of(message: Mapping[str, object]) -> str:
    return text(_required(message, "_type"), "_type", max_len=32)


def _get(message: Mapping[str, object], name: str) -> object:
    """An element's value; absent and JSON null are the same (None)."""
    return message.get(name)


def _required(message: Mapping[str, object], name: str) -> object:
    value = message.get(name)
    if value is None:
        raise PhoneFormatError(name, "required")
    return value


def _tst(message: Mapping[str, object], name: str = "tst") -> int:
    # [json] "UNIX epoch timestamp in seconds"; [schema] an integer. The window is Fix's.
    return integer(_required(message, name), name, MIN_TIME_S, MAX_TIME_S)


def _decode_plain(message: Mapping[str, object], evidence: bytes) -> PhoneReport:
    kind = _type_of(message)
    if kind == "location":
        return _location(message, evidence)
    if kind == "transition":
        return _transition(message, evidence)
    if kind == "lwt":
        # [json] "_type=lwt": tst is when the app first connected, not when it went away.
        time_ms = _tst(message) * 1000
        return PhoneReport(
            kind=PhoneKind.LWT, fix=None, time_ms=time_ms, raw_type=kind, evidence=evidence
        )
    if kind in OTHER_TYPES:
        tst = _get(message, "tst")
        return PhoneReport(
            kind=PhoneKind.OTHER, fix=None, raw_type=kind, evidence=evidence,
            time_ms=0 if tst is None else _tst(message) * 1000,
            tracker_id=_tracker_id(message),
        )  # fmt: skip
    raise PhoneFormatError("_type", f"{kind!r} is not an OwnTracks message type")


def _trigger(message: Mapping[str, object]) -> str | None:
    value = _get(message, "t")
    if value is None:
        return None
    trigger = text(value, "t", max_len=1)  # [schema] minLength 1, maxLength 1
    if not "!" <= trigger <= "~":
        raise PhoneFormatError("t", f"{trigger!r} is not a printable ASCII character")
    return trigger


def _tracker_id(message: Mapping[str, object]) -> str | None:
    value = _get(message, "tid")
    if value == "":  # an unset tracker id: the apps then show the topic's last characters
        return None
    return None if value is None else text(value, "tid", max_len=64)


def _accuracy(message: Mapping[str, object]) -> float | None:
    acc = _get(message, "acc")
    return None if acc is None else number(acc, "acc", 0.0, 100_000.0)


def _motion(message: Mapping[str, object]) -> tuple[float | None, float | None, float | None]:
    """(speed m/s, course, altitude) from vel, cog and alt [json]; absent ones None (the apps
    add these "only if they are not zero")."""
    vel, cog, alt = _get(message, "vel"), _get(message, "cog"), _get(message, "alt")
    return (
        # km/h to m/s: x * 1000 / 3600 (exact at the limit: 1080 km/h is 300.0 m/s).
        None if vel is None else number(vel, "vel", 0.0, _MAX_VEL_KMH) * 1000 / 3600,
        None if cog is None else number(cog, "cog", 0.0, 360.0, hi_open=True),
        None if alt is None else number(alt, "alt", -1_000.0, 20_000.0),
    )


def _battery(message: Mapping[str, object]) -> tuple[int | None, bool | None]:
    batt, bs = _get(message, "batt"), _get(message, "bs")
    pct = None if batt is None else integer(batt, "batt", 0, 100)
    charging = None if bs is None else _CHARGING[integer(bs, "bs", 0, 3)]
    return pct, charging


def _location(message: Mapping[str, object], evidence: bytes) -> PhoneReport:
    time_ms = _tst(message) * 1000
    lat = number(_required(message, "lat"), "lat", -90.0, 90.0)
    lon = number(_required(message, "lon"), "lon", -180.0, 180.0)
    speed, course, alt = _motion(message)
    fix = make_fix(
        time_ms=time_ms, lat=lat, lon=lon, accuracy_m=_accuracy(message), speed_mps=speed,
        course_deg=course, alt_m=alt, names=_NAMES,
    )  # fmt: skip
    battery_pct, charging = _battery(message)
    return PhoneReport(
        kind=PhoneKind.LOCATION, fix=fix, time_ms=time_ms, raw_type="location",
        evidence=evidence, battery_pct=battery_pct, charging=charging,
        trigger=_trigger(message), tracker_id=_tracker_id(message),
    )  # fmt: skip


def _transition(message: Mapping[str, object], evidence: bytes) -> PhoneReport:
    time_ms = _tst(message) * 1000
    event = text(_required(message, "event"), "event", max_len=32)
    if event not in ("enter", "leave"):
        raise PhoneFormatError("event", f"{event!r} is not 'enter' or 'leave'")
    lat, lon = _get(message, "lat"), _get(message, "lon")
    fix = None
    if lat is not None or lon is not None:
        fix = make_fix(
            time_ms=time_ms,
            lat=number(_required(message, "lat"), "lat", -90.0, 90.0),
            lon=number(_required(message, "lon"), "lon", -180.0, 180.0),
            accuracy_m=_accuracy(message),
            names=_NAMES,
        )
    desc = _get(message, "desc")
    return PhoneReport(
        kind=PhoneKind.TRANSITION, fix=fix, time_ms=time_ms, raw_type="transition",
        evidence=evidence, event=event,
        region=None if desc is None or desc == "" else text(desc, "desc", max_len=256),
        trigger=_trigger(message), tracker_id=_tracker_id(message),
    )  # fmt: skip


# --- encryption -------------------------------------------------------------------------------


def secretbox_key(passphrase: str) -> bytes:
    """The secretbox key the apps derive from their ``encryptionKey`` setting [encrypt]: the
    passphrase's UTF-8 bytes, zero-padded (or, past 32 bytes, truncated, as the Android app's
    ``copyOf(32)`` does) to 32 bytes. Not a KDF: choose a long random secret."""
    if not isinstance(passphrase, str) or not passphrase:
        # The apps take an empty secret as "encryption off".
        raise PhoneFormatError("passphrase", "must be non-empty text")
    try:
        raw = passphrase.encode("utf-8")
    except UnicodeEncodeError:
        raise PhoneFormatError("passphrase", "is not valid Unicode (lone surrogate)") from None
    return raw[:KEY_SIZE].ljust(KEY_SIZE, b"\0")


def _check_key(key: object) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise PhoneFormatError("key", f"must be {KEY_SIZE} bytes (see secretbox_key)")
    return key


def _decrypt(message: Mapping[str, object], key: bytes | None) -> bytes:
    if key is None:
        raise PhoneFormatError("data", "the payload is encrypted, but no key is set for this phone")
    box = SecretBox(_check_key(key))
    data = text(_required(message, "data"), "data", max_len=MAX_PAYLOAD)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise PhoneFormatError("data", "is not base64") from None
    if len(raw) < NONCE_SIZE + _TAG_SIZE:
        raise PhoneFormatError("data", f"{len(raw)} bytes is too short for nonce and tag")
    try:
        # SecretBox.decrypt takes the combined form: nonce (24) | tag (16) | ciphertext.
        plain: bytes = box.decrypt(raw)
    except CryptoError:
        raise PhoneFormatError(
            "data",
            "does not decrypt with this phone's key (a different secret, or altered on the way)",
        ) from None
    return plain


def encrypt(payload: bytes, key: bytes, *, nonce: bytes | None = None) -> bytes:
    """``payload`` as the apps encrypt it [encrypt]: ``{"_type":"encrypted","data":...}``.

    For commands to a phone that encrypts (it drops what it cannot decrypt) and for tests.
    ``nonce`` is for reproducible tests only: a nonce must never repeat under one key, so
    leave it to PyNaCl's random one.
    """
    data = check_size(payload, "payload")
    box = SecretBox(_check_key(key))
    if nonce is None:
        sealed = bytes(box.encrypt(data))
    else:
        if not isinstance(nonce, bytes) or len(nonce) != NONCE_SIZE:
            raise PhoneFormatError("nonce", f"must be {NONCE_SIZE} bytes")
        sealed = bytes(box.encrypt(data, nonce))
    wrapped = {"_type": "encrypted", "data": base64.b64encode(sealed).decode("ascii")}
    out = json.dumps(wrapped, separators=(",", ":")).encode("ascii")
    return check_size(out, "payload")


# --- commands and replies ---------------------------------------------------------------------


def cmd(action: str, **fields: object) -> bytes:
    """A ``_type: cmd`` message [json, "_type=cmd"], e.g. ``cmd("action", notification="...")``.

    Published to ``cmd_topic(user, device)`` (MQTT, QoS > 0: "Don't expect device to be
    online") or returned in an HTTP-mode reply (``http_reply``). A phone acts on it only if
    remote commands are enabled in its settings (``cmd`` in its configuration).
    """
    if action not in CMD_ACTIONS:
        raise PhoneFormatError("action", f"{action!r} is not an OwnTracks cmd action")
    if "_type" in fields:
        raise PhoneFormatError("_type", "is set by cmd() itself")
    message = {"_type": "cmd", "action": action, **fields}
    try:
        out = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        encoded = out.encode("utf-8")
    except (TypeError, ValueError) as exc:  # not JSON-serializable, NaN, a lone surrogate
        raise PhoneFormatError("fields", str(exc)[:80]) from None
    return check_size(encoded, "payload")


def cmd_report_location() -> bytes:
    """Ask the phone for a fix now; it answers with a location whose ``t`` is "r"
    (``PhoneReport.answers_report_request``)."""
    return cmd("reportLocation")


def http_reply(messages: Iterable[bytes]) -> bytes:
    """The body answering an HTTP-mode POST [http]: a JSON array of the given messages
    (each a JSON object with a ``_type``, e.g. from ``cmd`` or ``encrypt``); ``b"[]"`` when
    there are none."""
    items = []
    for i, message in enumerate(messages):
        try:
            _type_of(load_json_object(message))
        except PhoneFormatError as exc:
            raise exc.within(f"messages[{i}]") from None
        items.append(bytes(message))
    return check_size(b"[" + b",".join(items) + b"]", "messages")


# --- topics -----------------------------------------------------------------------------------


def _checked_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        shown = repr(value[:70]) if isinstance(value, str) else type(value).__name__
        raise PhoneFormatError(what, f"{shown} is not a valid id (pattern {ID_PATTERN})")
    return value


def topic_parts(topic: str) -> tuple[str, str, str | None]:
    """``owntracks/<user>/<device>[/<suffix>]`` [json, "Topics"] as (user, device, suffix).

    The suffix is None for the base topic (locations and the lwt), else one of
    ``TOPIC_SUFFIXES``. User and device must be ids (``messages.ID_PATTERN``): so no MQTT
    wildcard (+ #), no ``$``, no empty level and no ``..`` can pass. Only the apps' default
    ``pubTopicBase`` (``owntracks/%u/%d``) is taken.
    """
    if not isinstance(topic, str):
        raise PhoneFormatError("topic", f"expected text, got {type(topic).__name__}")
    if len(topic) > _MAX_TOPIC:
        raise PhoneFormatError("topic", f"length {len(topic)} is over {_MAX_TOPIC}")
    parts = topic.split("/")
    if parts[0] != ROOT or len(parts) not in (3, 4):
        raise PhoneFormatError("topic", f"{topic[:80]!r} is not {ROOT}/<user>/<device>[/<sub>]")
    user = _checked_id(parts[1], "topic")
    device = _checked_id(parts[2], "topic")
    if len(parts) == 3:
        return user, device, None
    if parts[3] not in TOPIC_SUFFIXES:
        raise PhoneFormatError("topic", f"unknown sub-topic {parts[3][:40]!r}")
    return user, device, parts[3]


def cmd_topic(user: str, device: str) -> str:
    """Where a phone listens for commands [json, "Topics"]: ``owntracks/<user>/<device>/cmd``."""
    return f"{ROOT}/{_checked_id(user, 'user')}/{_checked_id(device, 'device')}/cmd"
