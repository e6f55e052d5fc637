"""The enrolment bundle and the server key file: round trips, file modes, named errors."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioning import (
    BrokerAddress,
    Enrolment,
    EnrolmentError,
    ProvisioningError,
    load_enrolment,
    load_or_create_server_identity,
    new_device,
    write_enrolment,
)
from provisioning.identity import raw_private, raw_public


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def enrolment() -> Enrolment:
    return Enrolment(
        new_device("patrol-7", units=("north", "night"), key_id=3),
        Ed25519PrivateKey.generate().public_key(),
        2,
        BrokerAddress("broker.example.org", 8883, "3.1.1"),
    )


@pytest.fixture
def bundle(tmp_path: Path, enrolment: Enrolment) -> Path:
    path = tmp_path / "enrolment.json"
    write_enrolment(path, enrolment)
    return path


def test_round_trip(bundle: Path, enrolment: Enrolment) -> None:
    loaded = load_enrolment(bundle)
    ident, want = loaded.identity, enrolment.identity
    assert (ident.device_id, ident.key_id, ident.units) == ("patrol-7", 3, ("north", "night"))
    assert ident.mac_key == want.mac_key
    assert raw_private(ident.signing_key) == raw_private(want.signing_key)
    assert raw_public(loaded.server_key) == raw_public(enrolment.server_key)
    assert loaded.server_key_id == 2
    assert loaded.broker == BrokerAddress("broker.example.org", 8883, "3.1.1")


def test_bundle_is_private_to_its_owner(bundle: Path, tmp_path: Path) -> None:
    assert mode(bundle) == 0o600
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, nothing left behind


def test_rewriting_keeps_it_private(tmp_path: Path, enrolment: Enrolment) -> None:
    path = tmp_path / "sub" / "dir" / "enrolment.json"  # parents are created
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)
    write_enrolment(path, enrolment)
    assert mode(path) == 0o600
    assert load_enrolment(path).identity.device_id == "patrol-7"


def test_protocol_defaults_to_mqtt_5(tmp_path: Path, bundle: Path) -> None:
    doc = json.loads(bundle.read_text())
    del doc["broker"]["protocol"]
    bundle.write_text(json.dumps(doc))
    assert load_enrolment(bundle).broker.protocol == "5"


# --- errors name the field ----------------------------------------------------------------------


def edit(bundle: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = json.loads(bundle.read_text())
    change(doc)
    bundle.write_text(json.dumps(doc))
    return bundle


def error_for(path: Path) -> EnrolmentError:
    with pytest.raises(EnrolmentError) as info:
        load_enrolment(path)
    assert str(path) in str(info.value)  # the message says which file
    assert isinstance(info.value, ProvisioningError)
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    err = error_for(tmp_path / "nowhere.json")
    assert err.field == "file"
    assert "cannot be read" in err.reason


@pytest.mark.parametrize("content", [b"not json {", b"\xff\xfe\x00garbage", b""])
def test_not_json(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "enrolment.json"
    path.write_bytes(content)
    err = error_for(path)
    assert err.field == "file"
    assert "JSON" in err.reason


def test_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "enrolment.json"
    path.write_text("[1, 2, 3]")
    assert error_for(path).field == "file"


@pytest.mark.parametrize("value", ["yijing-enrolment/3", "", None])
def test_wrong_format(bundle: Path, value: object) -> None:
    err = error_for(edit(bundle, lambda d: d.__setitem__("format", value)))
    assert err.field == "format"


def test_format_missing(bundle: Path) -> None:
    assert error_for(edit(bundle, lambda d: d.pop("format"))).field == "format"


def test_missing_device_id(bundle: Path) -> None:
    err = error_for(edit(bundle, lambda d: d.pop("device_id")))
    assert err.field == "device_id"
    assert "missing" in err.reason


def test_device_id_of_wrong_type(bundle: Path) -> None:
    err = error_for(edit(bundle, lambda d: d.__setitem__("device_id", 7)))
    assert err.field == "device_id"


@pytest.mark.parametrize("bad_id", ["a/b", "dev+1", "#", "", "-leading-dash", "x" * 65])
def test_bad_device_id(bundle: Path, bad_id: str) -> None:
    # Ids end up in MQTT topics and ACL patterns: / + # must never get in.
    err = error_for(edit(bundle, lambda d: d.__setitem__("device_id", bad_id)))
    assert err.field == "device_id"


def test_bad_unit_id(bundle: Path) -> None:
    err = error_for(edit(bundle, lambda d: d.__setitem__("units", ["north", "a/#"])))
    assert err.field == "units[1]"


@pytest.mark.parametrize("name", ["mac_key", "signing_key", "server_key"])
def test_bad_base64(bundle: Path, name: str) -> None:
    err = error_for(edit(bundle, lambda d: d.__setitem__(name, "not base64!!")))
    assert err.field == name
    assert "base64" in err.reason


@pytest.mark.parametrize(
    ("name", "size"), [("mac_key", 16), ("signing_key", 64), ("server_key", 31)]
)
def test_wrong_key_size(bundle: Path, name: str, size: int) -> None:
    wrong = base64.b64encode(b"\x01" * size).decode()
    err = error_for(edit(bundle, lambda d: d.__setitem__(name, wrong)))
    assert err.field == name
    assert str(size) in err.reason


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_bad_port(bundle: Path, port: int) -> None:
    err = error_for(edit(bundle, lambda d: d["broker"].__setitem__("port", port)))
    assert err.field == "broker.port"


@pytest.mark.parametrize("port", ["1883", True, 1883.0])
def test_port_of_wrong_type(bundle: Path, port: object) -> None:
    err = error_for(edit(bundle, lambda d: d["broker"].__setitem__("port", port)))
    assert err.field.endswith("port")


@pytest.mark.parametrize("protocol", ["4", "3.1", 5, "mqtt"])
def test_bad_protocol(bundle: Path, protocol: object) -> None:
    err = error_for(edit(bundle, lambda d: d["broker"].__setitem__("protocol", protocol)))
    assert err.field == "broker.protocol"


@pytest.mark.parametrize("name", ["key_id", "server_key_id", "units", "broker", "mac_key"])
def test_other_missing_fields_are_named(bundle: Path, name: str) -> None:
    assert error_for(edit(bundle, lambda d: d.pop(name))).field == name


def test_key_id_must_be_an_integer(bundle: Path) -> None:
    assert error_for(edit(bundle, lambda d: d.__setitem__("key_id", True))).field == "key_id"


# --- the server's key ---------------------------------------------------------------------------


def test_server_identity_is_created_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "server" / "server-key.json"
    first = load_or_create_server_identity(path)
    assert path.exists()
    assert mode(path) == 0o600
    second = load_or_create_server_identity(path)
    assert second.key_id == first.key_id == 1
    assert raw_private(second.signing_key) == raw_private(first.signing_key)
    assert raw_public(second.public_key) == raw_public(first.public_key)
    # What the old key signed, the reloaded key's public half verifies.
    signature = first.signing_key.sign(b"dispatch")
    second.public_key.verify(signature, b"dispatch")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "{}",
        '{"key_id": 1}',
        '{"key_id": 1, "signing_key": "!!"}',
        '{"key_id": 1, "signing_key": "AAAA"}',
        "[]",
    ],
)
def test_corrupt_server_key_file_is_refused_not_replaced(tmp_path: Path, content: str) -> None:
    path = tmp_path / "server-key.json"
    path.write_text(content)
    with pytest.raises(ProvisioningError, match="server key"):
        load_or_create_server_identity(path)
    assert path.read_text() == content  # a new key would orphan every signed command
