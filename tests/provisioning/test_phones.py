"""The phone registry, the Mosquitto-compatible hashes, and what OwnTracks and Traccar Client
are told (the broker side is tests/e2e/test_phone_broker.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import stat
import urllib.parse
from pathlib import Path

import pytest

from provisioning import ProvisioningError
from provisioning.phones import (
    KEY_BYTES,
    Phone,
    PhoneApp,
    PhoneError,
    PhoneRegistry,
    check_mosquitto_hash,
    mosquitto_hash,
    owntracks_config,
    owntracks_key,
    owntracks_qr_url,
    phone_setup,
    qr_svg,
    qr_text,
    traccar_url,
)
from yijing.cli import main

# Written by `mosquitto_passwd -b passwd alice s3cret` (Mosquitto 2.0.11).
MOSQUITTO_PASSWD_LINE = (
    "alice:$7$101$y81z0oqGOvzxttB3$tcKdoVwLcuB8Qm+lRzN1dZq+DYK2U3aebK3AxIxO/CzIGQPas/QfDA8KMW8k"
    "M6bG9XjjJIgpBhR4M3qh4dU/dA=="
)
T0 = 1_760_000_000_000


@pytest.fixture
def registry(tmp_path: Path) -> PhoneRegistry:
    reg = PhoneRegistry(tmp_path / "data" / "phones.db")
    yield reg  # type: ignore[misc]
    reg.close()


def enrol(reg: PhoneRegistry, volunteer: str = "li-na", **kw: object) -> tuple[Phone, str]:
    args: dict[str, object] = {"unit_id": "futian-s1", "app": PhoneApp.OWNTRACKS, "now_ms": T0}
    return reg.enrol(volunteer_id=volunteer, **{**args, **kw})  # type: ignore[arg-type]


def test_mosquitto_hash_matches_mosquitto_passwd() -> None:
    stored = MOSQUITTO_PASSWD_LINE.split(":", 1)[1]
    assert check_mosquitto_hash(stored, "s3cret")
    assert not check_mosquitto_hash(stored, "s3cret ")
    ours = mosquitto_hash("pw", salt=b"\x01" * 12)
    _, seven, iterations, salt, digest = ours.split("$")
    assert (seven, iterations) == ("7", "101")
    assert base64.b64decode(salt) == b"\x01" * 12
    want = hashlib.pbkdf2_hmac("sha512", b"pw", b"\x01" * 12, 101, 64)
    assert base64.b64decode(digest) == want
    assert check_mosquitto_hash(mosquitto_hash("pw"), "pw")
    for broken in ("", "$6$101$abc$def", "$7$x$abc$def", "$7$101$!!$def"):
        assert not check_mosquitto_hash(broken, "pw")


def test_enrol_and_read_back_in_another_connection(registry: PhoneRegistry) -> None:
    assert registry.version() == 0
    phone, password = enrol(registry)
    assert phone.phone_id == phone.mqtt_user == "ph-li-na"
    assert phone.topic == "owntracks/ph-li-na/phone"
    assert phone.active and phone.created_ms == T0
    assert re.fullmatch(r"yj[a-z2-7]{24}", phone.traccar_id)
    assert phone.secret_key == owntracks_key(phone.secret_passphrase or "")
    assert len(password) >= 32
    assert "password_hash" not in repr(phone) and password not in repr(phone)
    # A second connection, as the server would have while the CLI writes.
    other = PhoneRegistry(registry.path)
    try:
        assert other.version() == 1
        assert other.get("ph-li-na") == phone
        assert other.by_mqtt_user("ph-li-na") == phone
        assert other.by_traccar_id(phone.traccar_id) == phone
        assert other.phones() == [phone]
        assert other.verify_password("ph-li-na", password)
    finally:
        other.close()
    assert registry.get("nobody") is None
    assert registry.by_traccar_id("yj" + "a" * 24) is None
    assert registry.by_mqtt_user(None) is None  # type: ignore[arg-type]


def test_the_file_is_private(registry: PhoneRegistry) -> None:
    enrol(registry)
    for path in registry.path.parent.glob("phones.db*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_file_left_readable_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "phones.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    PhoneRegistry(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_enrolling_again_reissues_everything_and_lifts_a_revocation(
    registry: PhoneRegistry,
) -> None:
    first, old_password = enrol(registry)
    registry.revoke("ph-li-na", now_ms=T0 + 5)
    assert registry.get("ph-li-na").revoked_ms == T0 + 5  # type: ignore[union-attr]
    again, password = enrol(registry, now_ms=T0 + 10, unit_id="futian-s2")
    assert again.active and again.created_ms == T0 and again.unit_id == "futian-s2"
    assert password != old_password
    assert again.traccar_id != first.traccar_id
    assert again.secret_key != first.secret_key
    assert registry.verify_password("ph-li-na", password)
    assert not registry.verify_password("ph-li-na", old_password)
    assert registry.by_traccar_id(first.traccar_id) is None
    assert registry.version() == 3 and len(registry.phones()) == 1


def test_revoke(registry: PhoneRegistry) -> None:
    _, password = enrol(registry)
    enrol(registry, "wang-wei")
    registry.revoke("ph-li-na", now_ms=T0 + 1)
    assert not registry.verify_password("ph-li-na", password)
    assert registry.get("ph-li-na").revoked_ms == T0 + 1  # type: ignore[union-attr]
    version = registry.version()
    registry.revoke("ph-li-na", now_ms=T0 + 2)  # again: nothing changes
    assert registry.get("ph-li-na").revoked_ms == T0 + 1  # type: ignore[union-attr]
    assert registry.get("ph-wang-wei").active  # type: ignore[union-attr]
    with pytest.raises(ProvisioningError, match="'ph-nobody' is not enrolled"):
        registry.revoke("ph-nobody", now_ms=T0)
    with pytest.raises(PhoneError, match="phone_id"):
        registry.revoke("ph li\n", now_ms=T0)
    assert registry.version() == version + 1  # the second revoke's transaction still counts


def test_verify_password_costs_the_same_for_anyone(
    registry: PhoneRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, password = enrol(registry)
    registry.revoke("ph-li-na", now_ms=T0 + 1)
    enrol(registry, "wang-wei")
    real_kdf, real_compare = hashlib.pbkdf2_hmac, hmac.compare_digest
    calls: list[str] = []
    compared: list[int] = []

    def kdf(*args: object) -> bytes:
        calls.append("kdf")
        return real_kdf(*args)  # type: ignore[arg-type]

    def compare(a: bytes, b: bytes) -> bool:
        compared.append(1)
        return real_compare(a, b)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", kdf)
    monkeypatch.setattr(hmac, "compare_digest", compare)
    for user, pw in (
        ("ph-wang-wei", "wrong"),  # known, wrong password
        ("ph-nobody", "x"),  # unknown
        ("ph-li-na", password),  # revoked, right password
        ("ph-wang-wei", 42),  # not a string
    ):
        calls.clear()
        compared.clear()
        assert registry.verify_password(user, pw) is False  # type: ignore[arg-type]
        if isinstance(pw, str):
            assert calls == ["kdf"] and compared == [1], user


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"volunteer": "li na"}, "volunteer_id"),
        ({"volunteer": ""}, "volunteer_id"),
        ({"volunteer": "li/na"}, "volunteer_id"),
        ({"volunteer": "x" * 62}, "phone_id"),  # ph- + 62 is over 64
        ({"unit_id": "s1\ntopic readwrite #"}, "unit_id"),
        ({"phone_id": "+"}, "phone_id"),
        ({"phone_id": "#"}, "phone_id"),
        ({"app": "whatsapp"}, "app"),
        ({"now_ms": -1}, "now_ms"),
        ({"now_ms": True}, "now_ms"),
    ],
)
def test_hostile_enrolments_are_named(registry: PhoneRegistry, kw: dict, field: str) -> None:  # type: ignore[type-arg]
    volunteer = kw.pop("volunteer", "li-na")
    with pytest.raises(PhoneError, match=field):
        enrol(registry, volunteer, **kw)
    assert registry.phones() == [] and registry.version() == 0


def test_a_phone_checks_itself() -> None:
    good = {
        "phone_id": "ph-1", "volunteer_id": "v1", "unit_id": "u1", "app": PhoneApp.OWNTRACKS,
        "created_ms": T0, "revoked_ms": None, "mqtt_user": "ph-1", "owntracks_device": "phone",
        "password_hash": mosquitto_hash("pw"), "secret_key": None, "secret_passphrase": None,
        "traccar_id": "yj" + "a" * 24,
    }  # fmt: skip
    Phone(**good)  # type: ignore[arg-type]
    for name, value in (
        ("mqtt_user", "ph-2"),
        ("owntracks_device", "a/b"),
        ("password_hash", "plaintext"),
        ("secret_key", b"k" * 32),
        ("traccar_id", "123456"),
        ("app", "owntracks"),
        ("revoked_ms", "yesterday"),
    ):
        with pytest.raises(PhoneError, match=name.split("_ms")[0]):
            Phone(**{**good, name: value})  # type: ignore[arg-type]
    with pytest.raises(PhoneError, match="secret_passphrase"):
        Phone(**{**good, "secret_key": b"k" * 32, "secret_passphrase": "other"})  # type: ignore[arg-type]


def test_owntracks_key_is_the_apps_derivation() -> None:
    # (Sealing and opening payloads with it: tests/protocol/test_owntracks.py.)
    assert owntracks_key("abc") == b"abc" + b"\0" * 29
    assert owntracks_key("x" * 40) == b"x" * KEY_BYTES
    assert owntracks_key("密") == "密".encode() + b"\0" * 29
    with pytest.raises(PhoneError, match="encryption key"):
        owntracks_key("")


def test_traccar_phones_get_no_encryption_key(registry: PhoneRegistry) -> None:
    phone, _ = enrol(registry, app=PhoneApp.TRACCAR)
    assert phone.secret_key is None and phone.secret_passphrase is None
    plain, _ = enrol(registry, "wang-wei", encrypt=False)
    assert plain.secret_key is None


def test_owntracks_config_mqtt_and_http(registry: PhoneRegistry) -> None:
    phone, password = enrol(registry)
    config = owntracks_config(
        phone, password, mqtt_host="mqtt.station.lan", mqtt_port=8884, mqtt_tls=True
    )
    assert config["_type"] == "configuration" and config["mode"] == 0
    assert {k: config[k] for k in ("host", "port", "tls", "username", "password")} == {
        "host": "mqtt.station.lan", "port": 8884, "tls": True, "username": "ph-li-na",
        "password": password,
    }  # fmt: skip
    assert config["deviceId"] == "phone" and config["tid"] == "NA"
    assert config["pubTopicBase"] == "owntracks/ph-li-na/phone"
    assert config["encryptionKey"] == phone.secret_passphrase
    assert "url" not in config
    http = owntracks_config(
        phone, password, mqtt_host="", mqtt_port=0, mqtt_tls=True, http_url="https://yj.lan/ot"
    )
    assert http["mode"] == 3 and http["url"] == "https://yj.lan/ot" and "host" not in http
    with pytest.raises(PhoneError, match="password"):
        owntracks_config(phone, "guess", mqtt_host="h", mqtt_port=1, mqtt_tls=True)
    with pytest.raises(PhoneError, match="mqtt_host"):
        owntracks_config(phone, password, mqtt_host="h h", mqtt_port=1, mqtt_tls=True)
    with pytest.raises(PhoneError, match="mqtt_port"):
        owntracks_config(phone, password, mqtt_host="h", mqtt_port=0, mqtt_tls=True)
    with pytest.raises(PhoneError, match="http_url"):
        owntracks_config(
            phone, password, mqtt_host="", mqtt_port=0, mqtt_tls=True, http_url="ftp://x"
        )
    unencrypted, pw2 = enrol(registry, "wang-wei", encrypt=False)
    assert "encryptionKey" not in owntracks_config(
        unencrypted, pw2, mqtt_host="h", mqtt_port=1, mqtt_tls=False
    )
    traccar, pw3 = enrol(registry, "zhao", app=PhoneApp.TRACCAR)
    with pytest.raises(PhoneError, match="not OwnTracks"):
        owntracks_config(traccar, pw3, mqtt_host="h", mqtt_port=1, mqtt_tls=True)


def test_owntracks_qr_url_is_letters_and_digits_and_decodes_to_the_config(
    registry: PhoneRegistry,
) -> None:
    phone, password = enrol(registry)
    config = owntracks_config(phone, password, mqtt_host="h", mqtt_port=8884, mqtt_tls=True)
    tricky = {**config, "note": ">?~\x7f 中 ??>>~~"}
    for doc in (config, tricky):
        url = owntracks_qr_url(doc)
        match = re.fullmatch(r"owntracks:///config\?inline=([A-Za-z0-9]+)", url)
        assert match, url
        # What Android does: parse the query (URL-decoding), base64-decode, parse JSON.
        inline = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["inline"][0]
        assert json.loads(base64.b64decode(inline)) == doc


def test_traccar_url(registry: PhoneRegistry) -> None:
    phone, _ = enrol(registry, app=PhoneApp.TRACCAR)
    url = traccar_url(phone, server_url="https://yj.station.lan:8443/osmand")
    parts = urllib.parse.urlsplit(url)
    # Traccar Client keeps origin + path as the server URL and applies the query.
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://yj.station.lan:8443/osmand"
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert query["id"] == phone.traccar_id
    assert query["interval"] == "30" and query["accuracy"] == "high"
    for bad in ("https://h/x?id=1", "javascript:alert(1)", "https://u:p@h/", "http://", "h:1"):
        with pytest.raises(PhoneError, match="server_url"):
            traccar_url(phone, server_url=bad)
    owntracks, _ = enrol(registry, "wang-wei")
    with pytest.raises(PhoneError, match="not Traccar"):
        traccar_url(owntracks, server_url="https://h/")


def test_qr_renderings(registry: PhoneRegistry) -> None:
    phone, password = enrol(registry)
    setup = phone_setup(phone, password, mqtt_host="10.0.0.5")
    assert setup.qr.startswith("owntracks:///config?inline=")
    assert password in setup.words and "8884" in setup.words
    assert json.loads(setup.file_text)["password"] == password
    text = qr_text(setup.qr)
    lines = text.splitlines()
    assert len(lines) > 20 and len({len(line) for line in lines if line}) == 1
    assert set(text) <= {"█", "▀", "▄", " ", "\n"}
    svg = qr_svg(setup.qr)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "<path" in svg
    with pytest.raises(PhoneError, match="QR code"):
        qr_text("x" * 8000)


def test_phone_setup_for_traccar(registry: PhoneRegistry) -> None:
    phone, password = enrol(registry, app=PhoneApp.TRACCAR)
    setup = phone_setup(phone, password, server_url="https://yj.lan/osmand")
    assert setup.qr.startswith("https://yj.lan/osmand?id=" + phone.traccar_id)
    assert phone.traccar_id in setup.words and password not in setup.words
    with pytest.raises(PhoneError, match="server_url"):
        phone_setup(phone, password)


# --- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["phone", "phone-revoke"])
def test_help_has_an_example(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["provision", what, "--help"])
    assert info.value.code == 0
    assert "example" in capsys.readouterr().out


def test_cli_enrols_prints_the_qr_and_revokes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "server")
    assert main(["provision", "ca", "--data", data, "--broker-host", "127.0.0.1"]) == 0
    assert main(["provision", "broker-config", "--data", data, "--port", "8883"]) == 0
    conf = (tmp_path / "server" / "broker" / "mosquitto.conf").read_text()
    assert "listener 8884 0.0.0.0" in conf and "password_file " in conf
    capsys.readouterr()
    otrc = tmp_path / "li-na.otrc"
    argv = ["provision", "phone", "li-na", "--unit", "futian-s1", "--app", "owntracks"]
    assert main([*argv, "--mqtt-host", "10.0.0.5", "--data", data, "--out", str(otrc)]) == 0
    out = capsys.readouterr().out
    assert "▀" in out and "user:       ph-li-na" in out and "port:       8884" in out
    config = json.loads(otrc.read_text())
    assert stat.S_IMODE(otrc.stat().st_mode) == 0o600
    assert config["username"] == "ph-li-na" and config["password"] in out
    passwd = (tmp_path / "server" / "broker" / "passwd").read_text()
    assert passwd.startswith("ph-li-na:$7$101$")
    assert "user ph-li-na\n" in (tmp_path / "server" / "broker" / "acl").read_text()
    # Again: new credentials; the file exists, so --out is refused before anything changes.
    assert main([*argv, "--mqtt-host", "10.0.0.5", "--data", data, "--out", str(otrc)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main([*argv, "--mqtt-host", "10.0.0.5", "--data", data]) == 0
    assert "new credentials for ph-li-na" in capsys.readouterr().out
    assert (tmp_path / "server" / "broker" / "passwd").read_text() != passwd

    traccar = ["provision", "phone", "wang", "--unit", "futian-s1", "--app", "traccar"]
    assert main([*traccar, "--data", data]) == 1
    assert "--server-url" in capsys.readouterr().err
    assert main([*traccar, "--server-url", "https://yj.lan/osmand", "--data", data]) == 0
    out = capsys.readouterr().out
    registry = PhoneRegistry(tmp_path / "server" / "phones.db")
    try:
        assert registry.get("ph-wang").traccar_id in out  # type: ignore[union-attr]
    finally:
        registry.close()

    assert main(["provision", "phone-revoke", "ph-li-na", "--data", data]) == 0
    assert "ph-li-na" not in (tmp_path / "server" / "broker" / "passwd").read_text()
    assert main(["provision", "phone-revoke", "ph-nobody", "--data", data]) == 1
    assert "'ph-nobody' is not enrolled" in capsys.readouterr().err


def test_cli_refuses_bad_settings_before_enrolling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "server")
    argv = ["provision", "phone", "li-na", "--unit", "s1", "--app", "owntracks", "--data", data]
    assert main(argv) == 1
    assert "--mqtt-host" in capsys.readouterr().err
    assert main([*argv, "--mqtt-host", "bad host"]) == 1
    assert "--mqtt-host" in capsys.readouterr().err
    assert main([*argv, "--http-url", "https://h/x?token=1"]) == 1
    assert "--http-url" in capsys.readouterr().err
    assert not (tmp_path / "server" / "phones.db").exists()
    # A terminal's id cannot be a phone's: they would share its ACL block.
    device = ["provision", "device", "ft-1", "--data", data, "--out", str(tmp_path / "ft-1.json")]
    assert main(device) == 0
    assert main([*argv, "--mqtt-host", "h", "--phone-id", "ft-1"]) == 1
    assert "terminal's id" in capsys.readouterr().err


def test_a_colliding_traccar_id_fails_instead_of_deleting_a_phone(
    registry: PhoneRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets

    monkeypatch.setattr(secrets, "token_bytes", lambda n: b"\x00" * n)
    first, _ = enrol(registry)
    with pytest.raises(PhoneError, match="cannot enrol phone ph-wang-wei"):
        enrol(registry, "wang-wei")
    assert registry.phones() == [first] and registry.version() == 1
