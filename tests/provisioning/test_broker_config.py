"""The generated mosquitto.conf and ACL (checked against a real broker in tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning import ProvisioningError
from provisioning.broker_config import acl_text, mosquitto_tls_conf


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
