"""Phones as terminals (#10): the registry of enrolled phones and what their apps are told.

A volunteer with only a phone runs one of two free apps:

- **OwnTracks** speaks MQTT to the broker's phone listener (user name and password, TLS) or
  POSTs JSON over HTTP(S) with basic auth. It publishes ``owntracks/<user>/<device>`` and
  reads ``owntracks/<user>/<device>/cmd`` (https://owntracks.org/booklet/tech/json/,
  "Topics"). It can seal each payload with libsodium's secretbox under a key made from a
  passphrase of "up to 32 octets ... which the apps pad with binary zeroes"
  (https://owntracks.org/booklet/features/encrypt/; the Android app takes the string's
  UTF-8 bytes cut or zero-padded to 32 and sends base64(nonce ‖ MAC ‖ ciphertext):
  owntracks/android ``model/EncryptionProvider.kt``). It imports its settings from an
  ``.otrc`` JSON document, also as ``owntracks:///config?inline=<base64 of it>``
  (https://owntracks.org/booklet/features/remoteconfig/, "URL config"); the keys are those
  of ``_type=configuration`` (https://owntracks.org/booklet/tech/json/) and of the Android
  app's ``preferences/Preferences.kt`` (``mode`` 0 MQTT / 3 HTTP, ``tid`` at most two
  letters or digits, ``encryptionKey``).
- **Traccar Client** sends the OsmAnd protocol (https://www.traccar.org/osmand/): the device
  identifier is the *only* credential, so here it is a random, unguessable string. Its
  in-app QR scanner takes a URL: the server address is the URL without its query, and the
  query sets ``id``, ``interval``, ``distance``, ``accuracy`` ... (traccar/traccar-client
  ``lib/qr_code_screen.dart``, ``lib/configuration_service.dart``).

The registry is ``DATA/phones.db``: SQLite in WAL mode, file mode 0600 (it holds password
hashes, encryption keys and Traccar ids), written by ``yijing provision phone`` in one
process while the server reads it in another. ``version()`` is a counter bumped in the same
transaction as every change, so a reader polls one row to learn whether to reload.

Passwords are checked the way Mosquitto 2.0 checks its ``password_file`` (``$7$``:
PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt, both base64, as ``mosquitto_passwd``
writes them; tests/e2e/test_phone_broker.py checks a real broker and the real tool agree),
so one stored hash serves the broker and OwnTracks' HTTP mode. The iteration count is low
because the passwords are random (192 bits), not chosen by people.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import sqlite3
import string
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import segno

from protocol import owntracks
from protocol.errors import ProtocolError
from yijing.sqlite import SchemaError, migrate, open_database, transaction

from .identity import ProvisioningError


class PhoneError(ProvisioningError):
    """A phone, a phone id or a phone app setting that cannot be used (names what)."""


class PhoneApp(enum.StrEnum):
    OWNTRACKS = "owntracks"
    TRACCAR = "traccar"


ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # as protocol.messages.ID_PATTERN
TRACCAR_ID_RE = re.compile(r"yj[a-z2-7]{24}")  # 120 random bits, base32 (easy to type)
HASH_RE = re.compile(r"\$7\$([0-9]{1,9})\$([A-Za-z0-9+/=]{1,88})\$([A-Za-z0-9+/=]{1,200})")
OWNTRACKS_ROOT = "owntracks"
OWNTRACKS_DEVICE = "phone"
PBKDF2_ITERATIONS = 101  # mosquitto_passwd 2.0's default
SALT_BYTES = 12
KEY_BYTES = owntracks.KEY_SIZE  # 32, secretbox's key


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """``$7$101$<salt>$<hash>``: a line of Mosquitto 2.0's password file after ``user:``."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def check_mosquitto_hash(stored: str, password: str) -> bool:
    """Does ``password`` match a ``$7$`` hash? Compared in constant time."""
    match = HASH_RE.fullmatch(stored)
    if match is None or not isinstance(password, str):
        return False
    try:
        salt, want = base64.b64decode(match[2]), base64.b64decode(match[3])
    except binascii.Error:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(match[1]), len(want))
    return hmac.compare_digest(got, want)


# Checked against when the user is unknown, so the answer takes as long as for a known one.
_DUMMY_HASH = mosquitto_hash(secrets.token_urlsafe(24))


def owntracks_key(passphrase: str) -> bytes:
    """The secretbox key OwnTracks makes from ``encryptionKey`` (``protocol.owntracks``,
    where the payloads are sealed and opened)."""
    try:
        return owntracks.secretbox_key(passphrase)
    except ProtocolError as exc:
        raise PhoneError(f"encryption key: {exc}") from None


def _check_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise PhoneError(
            f"{name}: {str(value)[:80]!r} is not an id (letters, digits, _ . -; max 64)"
        )
    return value


def _check_ms(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise PhoneError(f"{name}: {value!r} is not a time in ms")


@dataclass(frozen=True, slots=True)
class Phone:
    """One enrolled phone. Checked on construction; errors name the field."""

    phone_id: str
    volunteer_id: str
    unit_id: str
    app: PhoneApp
    created_ms: int
    revoked_ms: int | None
    mqtt_user: str
    owntracks_device: str
    password_hash: str = field(repr=False)
    secret_key: bytes | None = field(repr=False)
    secret_passphrase: str | None = field(repr=False)
    traccar_id: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_id(self.phone_id, "phone_id")
        _check_id(self.volunteer_id, "volunteer_id")
        _check_id(self.unit_id, "unit_id")
        if not isinstance(self.app, PhoneApp):
            raise PhoneError(f"app: {self.app!r} is not one of {', '.join(PhoneApp)}")
        _check_ms(self.created_ms, "created_ms")
        if self.revoked_ms is not None:
            _check_ms(self.revoked_ms, "revoked_ms")
        if self.mqtt_user != self.phone_id:
            raise PhoneError(f"mqtt_user: {self.mqtt_user!r} is not the phone id")
        _check_id(self.owntracks_device, "owntracks_device")
        if not isinstance(self.password_hash, str) or not HASH_RE.fullmatch(self.password_hash):
            raise PhoneError("password_hash: not a Mosquitto $7$ hash")
        if (self.secret_key is None) != (self.secret_passphrase is None):
            raise PhoneError("secret_key: comes with secret_passphrase or not at all")
        if self.secret_passphrase is not None and (
            not isinstance(self.secret_passphrase, str)
            or not 0 < len(self.secret_passphrase.encode()) <= KEY_BYTES
            or self.secret_key != owntracks_key(self.secret_passphrase)
        ):
            raise PhoneError("secret_passphrase: not 1-32 bytes, or not the secret_key's")
        if not isinstance(self.traccar_id, str) or not TRACCAR_ID_RE.fullmatch(self.traccar_id):
            raise PhoneError("traccar_id: not 'yj' and 24 base32 letters")

    @property
    def active(self) -> bool:
        return self.revoked_ms is None

    @property
    def topic(self) -> str:
        """``owntracks/<user>/<device>``, where OwnTracks publishes its locations."""
        return f"{OWNTRACKS_ROOT}/{self.mqtt_user}/{self.owntracks_device}"


# --- the registry ----------------------------------------------------------------------------


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE phones (
            phone_id TEXT PRIMARY KEY,
            volunteer_id TEXT NOT NULL,
            unit_id TEXT NOT NULL,
            app TEXT NOT NULL,
            created_ms INTEGER NOT NULL,
            revoked_ms INTEGER,
            mqtt_user TEXT NOT NULL UNIQUE,
            owntracks_device TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            secret_key BLOB,
            secret_passphrase TEXT,
            traccar_id TEXT NOT NULL UNIQUE
        )"""
    )
    conn.execute("CREATE INDEX phones_volunteer ON phones(volunteer_id)")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('version', 0)")


MIGRATIONS = [_v1]
_COLUMNS = (
    "phone_id, volunteer_id, unit_id, app, created_ms, revoked_ms, mqtt_user, "
    "owntracks_device, password_hash, secret_key, secret_passphrase, traccar_id"
)
_PASSPHRASE_ALPHABET = string.ascii_letters + string.digits


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 before SQLite opens it (SQLite gives the -wal and
    -shm files the database's mode); tighten an existing file we own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        path.chmod(0o600)


class PhoneRegistry:
    """``DATA/phones.db``. One connection and a lock: safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            _private_file(path)
            self._conn = open_database(path, synchronous="FULL")
            migrate(self._conn, MIGRATIONS)
        except (OSError, sqlite3.Error, SchemaError) as exc:
            raise PhoneError(f"cannot open phone registry {path}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock, transaction(self._conn, PhoneError, what):
            yield self._conn
            self._conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise PhoneError(f"phone registry {self.path}: read failed: {exc}") from exc

    def enrol(
        self,
        *,
        volunteer_id: str,
        unit_id: str,
        app: PhoneApp,
        now_ms: int,
        phone_id: str | None = None,
        encrypt: bool = True,
    ) -> tuple[Phone, str]:
        """Enrol a phone, or re-issue every credential of an enrolled one (which also lifts
        a revocation). Returns the phone and its password in plain text: show it once."""
        _check_id(volunteer_id, "volunteer_id")
        _check_id(unit_id, "unit_id")
        _check_ms(now_ms, "now_ms")
        try:
            app = PhoneApp(app)
        except ValueError:
            raise PhoneError(f"app: {app!r} is not one of {', '.join(PhoneApp)}") from None
        phone_id = f"ph-{volunteer_id}" if phone_id is None else phone_id
        _check_id(phone_id, "phone_id")
        password = secrets.token_urlsafe(24)
        # OwnTracks encrypts; Traccar Client cannot (the OsmAnd protocol has no such thing).
        passphrase = None
        if encrypt and app == PhoneApp.OWNTRACKS:
            passphrase = "".join(secrets.choice(_PASSPHRASE_ALPHABET) for _ in range(KEY_BYTES))
        traccar_id = "yj" + base64.b32encode(secrets.token_bytes(15)).decode().lower()
        with self._write(f"enrol phone {phone_id}") as conn:
            row = conn.execute(
                "SELECT created_ms FROM phones WHERE phone_id = ?", (phone_id,)
            ).fetchone()
            phone = Phone(
                phone_id=phone_id,
                volunteer_id=volunteer_id,
                unit_id=unit_id,
                app=app,
                created_ms=now_ms if row is None else int(row[0]),
                revoked_ms=None,
                mqtt_user=phone_id,
                owntracks_device=OWNTRACKS_DEVICE,
                password_hash=mosquitto_hash(password),
                secret_key=None if passphrase is None else owntracks_key(passphrase),
                secret_passphrase=passphrase,
                traccar_id=traccar_id,
            )
            if row is not None:  # not INSERT OR REPLACE: that deletes any row a UNIQUE hits
                conn.execute("DELETE FROM phones WHERE phone_id = ?", (phone_id,))
            conn.execute(
                f"INSERT INTO phones ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _to_row(phone),
            )
        return phone, password

    def revoke(self, phone_id: str, *, now_ms: int) -> None:
        """Take a phone's access away (its broker topics and password at the next sync).
        Revoking a revoked phone changes nothing; an unknown one is a ``PhoneError``."""
        _check_id(phone_id, "phone_id")
        _check_ms(now_ms, "now_ms")
        with self._write(f"revoke phone {phone_id}") as conn:
            row = conn.execute(
                "SELECT revoked_ms FROM phones WHERE phone_id = ?", (phone_id,)
            ).fetchone()
            if row is None:
                raise PhoneError(f"phone {phone_id!r} is not enrolled")
            if row[0] is None:
                conn.execute(
                    "UPDATE phones SET revoked_ms = ? WHERE phone_id = ?", (now_ms, phone_id)
                )

    def _one(self, column: str, value: object) -> Phone | None:
        if not isinstance(value, str):
            return None
        rows = self._read(f"SELECT {_COLUMNS} FROM phones WHERE {column} = ?", (value,))
        return _from_row(rows[0]) if rows else None

    def get(self, phone_id: str) -> Phone | None:
        """The phone, revoked or not (``phone.active`` says which)."""
        return self._one("phone_id", phone_id)

    def by_mqtt_user(self, user: str) -> Phone | None:
        """The phone of an MQTT or HTTP user name, revoked or not."""
        return self._one("mqtt_user", user)

    def by_traccar_id(self, traccar_id: str) -> Phone | None:
        """The phone of an OsmAnd ``id``, revoked or not, of either app: check ``active`` and
        ``app == PhoneApp.TRACCAR`` before trusting a location sent with it."""
        return self._one("traccar_id", traccar_id)

    def verify_password(self, user: str, password: str) -> bool:
        """True only for an active phone's own password; as slow for unknown users."""
        phone = self.by_mqtt_user(user)
        known = phone is not None and phone.active
        stored = phone.password_hash if known and phone is not None else _DUMMY_HASH
        return check_mosquitto_hash(stored, password) and known

    def phones(self) -> list[Phone]:
        """Every phone, revoked ones too, by id."""
        return [_from_row(r) for r in self._read(f"SELECT {_COLUMNS} FROM phones ORDER BY 1")]

    def version(self) -> int:
        """Bumped by every enrolment, re-issue and revocation, by any process."""
        return int(self._read("SELECT value FROM meta WHERE key = 'version'")[0][0])


def _to_row(p: Phone) -> tuple[object, ...]:
    return (
        p.phone_id, p.volunteer_id, p.unit_id, p.app.value, p.created_ms, p.revoked_ms,
        p.mqtt_user, p.owntracks_device, p.password_hash, p.secret_key, p.secret_passphrase,
        p.traccar_id,
    )  # fmt: skip


def _from_row(row: tuple[Any, ...]) -> Phone:
    try:
        return Phone(
            row[0], row[1], row[2], PhoneApp(row[3]), row[4], row[5], row[6], row[7], row[8],
            None if row[9] is None else bytes(row[9]), row[10], row[11],
        )  # fmt: skip
    except ValueError as exc:  # an app name this code does not know
        raise PhoneError(f"phone {row[0]!r}: app: {exc}") from None


# --- what the apps are told ------------------------------------------------------------------


def check_host(host: object, name: str = "mqtt_host") -> str:
    if (
        not isinstance(host, str)
        or not 0 < len(host) <= 253
        or any(c.isspace() or c in "/?#@[]" for c in host)
    ):
        raise PhoneError(f"{name}: {str(host)[:80]!r} is not a host name or address")
    return host


def check_url(url: object, name: str) -> str:
    parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or parsed.username is not None
        or parsed.query
        or parsed.fragment
        or any(c.isspace() for c in str(url))
    ):
        raise PhoneError(f"{name}: {str(url)[:120]!r} is not an http(s) URL without a query")
    try:
        port = parsed.port
    except ValueError as exc:
        raise PhoneError(f"{name}: {url!r}: {exc}") from None
    if port == 0:
        raise PhoneError(f"{name}: {url!r}: port 0")
    return str(url)


def tracker_id(volunteer_id: str) -> str:
    """OwnTracks' ``tid``: at most two letters or digits, shown on its map."""
    return "".join(c for c in volunteer_id if c.isalnum())[-2:].upper()


def owntracks_config(
    phone: Phone,
    password: str,
    *,
    mqtt_host: str,
    mqtt_port: int,
    mqtt_tls: bool,
    http_url: str | None = None,
    interval_s: int = 30,
    displacement_m: int = 20,
) -> dict[str, Any]:
    """The ``.otrc`` document: MQTT mode (``mode`` 0) to the broker's phone listener, or
    HTTP mode (``mode`` 3) to ``http_url`` when given. In HTTP mode the MQTT settings are
    optional (an empty ``mqtt_host`` leaves them out; given, they allow a later switch).
    Move monitoring every ``interval_s``: a patrol wants a track, not a pin."""
    if phone.app != PhoneApp.OWNTRACKS:
        raise PhoneError(f"phone {phone.phone_id!r} is enrolled for {phone.app}, not OwnTracks")
    if not check_mosquitto_hash(phone.password_hash, password):
        raise PhoneError(f"password: not the one issued to {phone.phone_id!r}")
    config: dict[str, Any] = {"_type": "configuration", "mode": 0 if http_url is None else 3}
    if http_url is None or mqtt_host:
        if not isinstance(mqtt_port, int) or not 0 < mqtt_port < 65536:
            raise PhoneError(f"mqtt_port: {mqtt_port!r} is outside 1-65535")
        config.update(host=check_host(mqtt_host), port=mqtt_port, tls=bool(mqtt_tls))
    config.update(
        {
            "auth": True,
            "username": phone.mqtt_user,
            "password": password,
            "deviceId": phone.owntracks_device,
            "clientId": phone.mqtt_user,  # what the broker's use_username_as_clientid imposes
            "tid": tracker_id(phone.volunteer_id),
            "pubTopicBase": phone.topic,
            "pubQos": 1,
            "pubRetain": False,
            "cleanSession": False,
            "mqttProtocolLevel": 4,  # MQTT 3.1.1
            "cmd": True,
            "remoteConfiguration": False,
            "monitoring": 2,  # move mode
            "locatorInterval": interval_s,
            "moveModeLocatorInterval": interval_s,
            "locatorDisplacement": displacement_m,
            "locked": True,  # iOS: the volunteer sees the settings but cannot change them
        }
    )
    if http_url is not None:
        config["url"] = check_url(http_url, "http_url")
    if phone.secret_passphrase is not None:
        config["encryptionKey"] = phone.secret_passphrase
    return config


def owntracks_qr_url(config: dict[str, Any]) -> str:
    """``owntracks:///config?inline=<base64 of the JSON>``.

    The JSON is written so that its base64 is letters and digits only: ``>``, ``?``, ``~``
    and DEL escaped as ``\\u00XX`` (only they put ``+`` or ``/`` into base64 of ASCII text)
    and spaces added after the object up to a multiple of 3 bytes (no ``=``). Then no
    URL-decoding on the phone can change it (Android's URIBuilder turns ``+`` into a space).
    """
    text = json.dumps(config, separators=(",", ":"), ensure_ascii=True)
    for char in ">?~\x7f":
        text = text.replace(char, f"\\u{ord(char):04x}")
    text += " " * (-len(text) % 3)
    return "owntracks:///config?inline=" + base64.b64encode(text.encode("ascii")).decode()


def traccar_url(
    phone: Phone,
    *,
    server_url: str,
    interval_s: int = 30,
    distance_m: int = 20,
    accuracy: str = "high",
) -> str:
    """What Traccar Client's own QR scanner takes: ``server_url`` (the OsmAnd endpoint)
    with ``id`` and the tracking settings as query parameters."""
    if phone.app != PhoneApp.TRACCAR:
        raise PhoneError(f"phone {phone.phone_id!r} is enrolled for {phone.app}, not Traccar")
    if accuracy not in ("highest", "high", "medium", "low"):
        raise PhoneError(f"accuracy: {accuracy!r} is not highest, high, medium or low")
    query = urllib.parse.urlencode(
        {"id": phone.traccar_id, "interval": interval_s, "distance": distance_m,
         "accuracy": accuracy, "buffer": "true"}
    )  # fmt: skip
    return f"{check_url(server_url, 'server_url')}?{query}"


def _qr(data: str) -> segno.QRCode:
    try:
        return segno.make(data, micro=False)
    except ValueError as exc:  # segno.DataOverflowError: too long for any QR code
        raise PhoneError(f"QR code: {exc}") from None


def qr_text(data: str) -> str:
    """The QR code as text for a terminal: two modules a character (half blocks)."""
    out = io.StringIO()
    _qr(data).terminal(out=out, compact=True, border=2)
    return out.getvalue()


def qr_svg(data: str) -> str:
    """The QR code as an inline ``<svg>`` element for a web page."""
    # A standalone document (namespace, viewBox), so a page can show it as an <img>: the
    # inline form without them is not drawn by browsers as an image.
    out = io.BytesIO()
    _qr(data).save(
        out, kind="svg", scale=4, dark="#000", light="#fff", xmldecl=False, svgns=True,
        omitsize=True,
    )  # fmt: skip
    return out.getvalue().decode()


@dataclass(frozen=True)
class PhoneSetup:
    """What a volunteer is given: the QR code's text, the same settings in words (to type
    if scanning fails) and a file (``.otrc`` for OwnTracks). All hold the secrets."""

    qr: str
    words: str
    file_text: str


def phone_setup(
    phone: Phone,
    password: str,
    *,
    mqtt_host: str | None = None,
    mqtt_port: int = 8884,
    http_url: str | None = None,
    server_url: str | None = None,
) -> PhoneSetup:
    """OwnTracks: MQTT over TLS to ``mqtt_host:mqtt_port``, or HTTP mode to ``http_url``.
    Traccar Client: its QR URL for ``server_url``, the OsmAnd endpoint."""
    if phone.app == PhoneApp.TRACCAR:
        if server_url is None:
            raise PhoneError("server_url: Traccar Client needs the OsmAnd endpoint's URL")
        url = traccar_url(phone, server_url=server_url)
        words = (
            "  app:               Traccar Client (scan from its settings: the QR button)\n"
            f"  server URL:        {server_url}\n"
            f"  device identifier: {phone.traccar_id}   (the secret: keep it private)"
        )
        return PhoneSetup(url, words, f"{url}\n\n{words}\n")
    if mqtt_host is None and http_url is None:
        raise PhoneError("mqtt_host or http_url: OwnTracks needs one of them")
    config = owntracks_config(
        phone,
        password,
        mqtt_host=mqtt_host or "",
        mqtt_port=mqtt_port,
        mqtt_tls=True,
        http_url=http_url,
    )
    if http_url is not None:
        where = f"  mode:       HTTP\n  URL:        {http_url}"
    else:
        where = f"  mode:       MQTT, TLS\n  host:       {mqtt_host}\n  port:       {mqtt_port}"
    words = (
        "  app:        OwnTracks (scan with the phone's camera, or open the .otrc file)\n"
        f"{where}\n  user:       {phone.mqtt_user}\n  password:   {password}\n"
        f"  device id:  {phone.owntracks_device}\n  tracker id: {config['tid']}\n"
        f"  topic:      {phone.topic}\n  encryption: {phone.secret_passphrase or 'off'}"
    )
    return PhoneSetup(owntracks_qr_url(config), words, json.dumps(config, indent=2) + "\n")
