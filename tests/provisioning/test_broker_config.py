"""The generated mosquitto.conf and ACL (checked against a real broker in tests/e2e)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from provisioning import ProvisioningError
from provisioning.broker_config import (
    ACL_FILE,
    PASSWORD_FILE,
    acl_text,
    mosquitto_tls_conf,
    password_file_text,
    write_enrolment_files,
)
from provisioning.phones import Phone, PhoneApp, PhoneRegistry


def test_conf_has_a_client_certificate_tls_listener() -> None:
    p = Path("/etc/yj")
    text = mosquitto_tls_conf(
        port=8883,
        host="0.0.0.0",
        cafile=p / "ca.pem",
        certfile=p / "b.pem",
        keyfile=p / "k.pem",
        crlfile=p / "crl.pem",
        acl_file=p / "acl",
    )
    lines = text.splitlines()
    for want in (
        "per_listener_settings false",
        "listener 8883 0.0.0.0",
        "cafile /etc/yj/ca.pem",
        "crlfile /etc/yj/crl.pem",
        "require_certificate true",
        "use_identity_as_username true",
        "allow_anonymous false",
        "acl_file /etc/yj/acl",
        "max_queued_messages 1000000",
    ):
        assert want in lines
    assert "allow_anonymous true" not in lines
    with pytest.raises(ProvisioningError, match="acl_file"):
        mosquitto_tls_conf(
            port=1, host="h", cafile=p, certfile=p, keyfile=p, crlfile=p, acl_file=Path("a\nb")
        )


def test_acl_spells_out_each_terminal_and_leaves_revoked_out() -> None:
    text = acl_text([("ft-2", ["s1"]), ("ft-1", ["s1", "night"]), ("ft-3", [])], {"ft-3"})
    assert "pattern" not in text
    assert text.splitlines()[1:3] == ["user yijing:server", "topic readwrite yj/1/#"]
    block = text.split("user ft-1\n")[1].split("\n\n")[0].splitlines()
    assert block == [
        "topic write yj/1/up/ft-1/+",
        "topic read yj/1/down/ft-1/+",
        "topic read yj/1/unit/night/+",
        "topic read yj/1/unit/s1/+",
    ]
    assert "ft-3" not in text
    with pytest.raises(ProvisioningError, match="ACL"):
        acl_text([("ft 1\ntopic readwrite #", [])], set())


# --- phones (#10) ----------------------------------------------------------------------------


def _conf(**kw: object) -> str:
    p = Path("/etc/yj")
    args: dict[str, object] = dict(
        port=8883, host="0.0.0.0", cafile=p / "ca.pem", certfile=p / "b.pem",
        keyfile=p / "k.pem", crlfile=p / "crl.pem", acl_file=p / "acl",
    )  # fmt: skip
    return mosquitto_tls_conf(**{**args, **kw})  # type: ignore[arg-type]


def test_conf_has_a_password_listener_for_phones() -> None:
    text = _conf(phone_port=8884, password_file=Path("/etc/yj/passwd"))
    globals_, terminals, phones = text.split("\n\n")[:3]
    assert "password_file /etc/yj/passwd" in globals_.splitlines()
    assert "per_listener_settings false" in globals_.splitlines()
    assert terminals.splitlines()[0] == "listener 8883 0.0.0.0"
    assert "require_certificate true" in terminals.splitlines()
    assert phones.splitlines() == [
        "listener 8884 0.0.0.0",
        "certfile /etc/yj/b.pem",
        "keyfile /etc/yj/k.pem",
        "require_certificate false",
        "use_username_as_clientid true",
        "tls_version tlsv1.2",
    ]
    other = _conf(
        phone_port=8884,
        phone_host="10.0.0.5",
        password_file=Path("/p"),
        phone_certfile=Path("/le/fullchain.pem"),
        phone_keyfile=Path("/le/privkey.pem"),
    )
    assert "listener 8884 10.0.0.5\ncertfile /le/fullchain.pem\nkeyfile /le/privkey.pem" in other
    # Without phones, nothing changes.
    assert "password_file" not in _conf() and "require_certificate false" not in _conf()
    with pytest.raises(ProvisioningError, match="password_file"):
        _conf(phone_port=8884)
    with pytest.raises(ProvisioningError, match="phone port 8883"):
        _conf(phone_port=8883, password_file=Path("/p"))
    with pytest.raises(ProvisioningError, match="password_file"):
        _conf(phone_port=8884, password_file=Path("/p\nallow_anonymous true"))
    with pytest.raises(ProvisioningError, match="phone_host"):
        _conf(phone_port=8884, password_file=Path("/p"), phone_host="a b")
    with pytest.raises(ProvisioningError, match="phone_certfile"):
        _conf(phone_port=8884, password_file=Path("/p"), phone_certfile=Path("/c"))


@pytest.fixture
def phones(tmp_path: Path) -> list[Phone]:
    reg = PhoneRegistry(tmp_path / "phones.db")
    try:
        for volunteer, app in (("a", "owntracks"), ("b", "owntracks"), ("t", "traccar")):
            reg.enrol(volunteer_id=volunteer, unit_id="s1", app=PhoneApp(app), now_ms=1)
        reg.enrol(volunteer_id="r", unit_id="s1", app=PhoneApp.OWNTRACKS, now_ms=1)
        reg.revoke("ph-r", now_ms=2)
        # Named like a terminal: it would share ft-1's ACL block.
        reg.enrol(volunteer_id="x", unit_id="s1", app=PhoneApp.OWNTRACKS, now_ms=1, phone_id="ft-1")
        return reg.phones()
    finally:
        reg.close()


def test_acl_gives_each_active_owntracks_phone_its_own_topics(phones: list[Phone]) -> None:
    text = acl_text([("ft-1", ["s1"])], set(), phones)
    assert text.splitlines()[1:4] == [
        "user yijing:server",
        "topic readwrite yj/1/#",
        "topic readwrite owntracks/#",
    ]
    block = text.split("user ph-a\n")[1].split("\n\n")[0].splitlines()
    assert block == [
        "topic write owntracks/ph-a/phone",
        "topic write owntracks/ph-a/phone/event",
        "topic write owntracks/ph-a/phone/info",
        "topic read owntracks/ph-a/phone/cmd",
    ]
    assert "user ph-b\n" in text
    assert "ph-r" not in text and "ph-t" not in text  # revoked; Traccar has no MQTT
    assert text.count("user ft-1\n") == 1 and "owntracks/ft-1" not in text
    assert "pattern" not in text


def test_password_file_lists_active_owntracks_phones_only(phones: list[Phone]) -> None:
    text = password_file_text(phones, reserved=["ft-1"])
    users = [line.split(":")[0] for line in text.splitlines()]
    assert users == ["ph-a", "ph-b"]
    by_id = {p.phone_id: p for p in phones}
    assert text.splitlines()[0] == f"ph-a:{by_id['ph-a'].password_hash}"
    assert password_file_text([], reserved=[]) == ""


def test_write_enrolment_files_writes_the_password_file(
    tmp_path: Path, phones: list[Phone]
) -> None:
    folder = tmp_path / "broker"
    write_enrolment_files(folder, terminals=[("ft-1", [])], revoked=set(), crl_pem=b"crl")
    assert not (folder / PASSWORD_FILE).exists()
    write_enrolment_files(
        folder, terminals=iter([("ft-1", [])]), revoked=set(), crl_pem=b"crl", phones=phones
    )
    assert (folder / PASSWORD_FILE).read_text().count("\n") == 2
    assert stat.S_IMODE((folder / PASSWORD_FILE).stat().st_mode) == 0o644
    assert "user ph-a\n" in (folder / ACL_FILE).read_text()
    assert "user ft-1\n" in (folder / ACL_FILE).read_text()
