"""Bundle format 2 (TLS material) and fuzzing: bytes in, a bundle or a ProvisioningError out."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning import (
    BrokerAddress,
    Enrolment,
    EnrolmentError,
    ProvisioningError,
    StationCA,
    TlsMaterial,
    load_enrolment,
    new_device,
    write_enrolment,
)
from provisioning.bulk import parse_terminals_csv
from provisioning.pki import pem_cert, pem_key

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    ca = StationCA.create(tmp_path_factory.mktemp("pki"))
    key, cert = ca.issue_terminal("ft-0042")
    assert key is not None
    return TlsMaterial(ca.cert_pem, pem_cert(cert), pem_key(key))


def _enrolment(material: TlsMaterial) -> Enrolment:
    return Enrolment(
        new_device("ft-0042", units=("s1",)),
        Ed25519PrivateKey.generate().public_key(),
        1,
        BrokerAddress("10.0.0.5", 8883, "5", tls=True),
        material,
    )


def test_v2_round_trip_with_tls(tmp_path: Path, material: TlsMaterial) -> None:
    path = tmp_path / "b.json"
    write_enrolment(path, _enrolment(material))
    loaded = load_enrolment(path)
    assert loaded.tls == material and loaded.broker.tls
    assert json.loads(path.read_text())["format"] == "yijing-enrolment/2"


def test_v1_bundle_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    write_enrolment(
        path,
        Enrolment(
            new_device("ft-1"),
            Ed25519PrivateKey.generate().public_key(),
            1,
            BrokerAddress("h", 1883),
        ),
    )
    doc = json.loads(path.read_text())
    doc["format"] = "yijing-enrolment/1"
    del doc["broker"]["tls"]
    path.write_text(json.dumps(doc))
    assert load_enrolment(path).tls is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cert", "not pem", "tls.cert"),
        ("key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "tls.key"),
        ("ca", "", "tls.ca"),
    ],
)
def test_broken_tls_material_names_the_field(
    tmp_path: Path, material: TlsMaterial, field: str, value: str, message: str
) -> None:
    path = tmp_path / "b.json"
    write_enrolment(path, _enrolment(material))
    doc = json.loads(path.read_text())
    doc["tls"][field] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(EnrolmentError, match=message):
        load_enrolment(path)


def test_key_of_another_certificate_and_foreign_ca_are_refused(
    tmp_path: Path, material: TlsMaterial
) -> None:
    other = StationCA.create(tmp_path / "other")
    key, cert = other.issue_terminal("ft-0042")
    assert key is not None
    with pytest.raises(EnrolmentError, match=r"tls\.key: does not belong"):
        TlsMaterial(material.ca_pem, material.cert_pem, pem_key(key))
    with pytest.raises(EnrolmentError, match=r"tls\.cert: was not issued"):
        TlsMaterial(material.ca_pem, pem_cert(cert), pem_key(key))


@FUZZ
@given(st.binary(max_size=2048))
def test_any_bytes_load_or_raise_a_provisioning_error(tmp_path_factory, data: bytes) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("fuzz") / "b.json"
    path.write_bytes(data)
    with pytest.raises(ProvisioningError):
        load_enrolment(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(st.data())
def test_any_field_replaced_loads_or_raises_a_provisioning_error(  # type: ignore[no-untyped-def]
    tmp_path_factory, material: TlsMaterial, data
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "b.json"
    write_enrolment(path, _enrolment(material))
    doc = json.loads(path.read_text())
    target = data.draw(st.sampled_from([doc, doc["broker"], doc["tls"]]))
    name = data.draw(st.sampled_from(sorted(target)))
    if data.draw(st.booleans()):
        target[name] = data.draw(JSON)
    else:
        del target[name]
    path.write_text(json.dumps(doc))
    with contextlib.suppress(ProvisioningError):
        load_enrolment(path)


@FUZZ
@given(st.binary(max_size=2048))
def test_csv_reader_any_bytes(data: bytes) -> None:
    with contextlib.suppress(ProvisioningError):
        parse_terminals_csv(data)


@FUZZ
@given(st.lists(st.lists(st.text(max_size=12), max_size=5), max_size=6))
def test_csv_reader_any_table(table: list[list[str]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows([["device_id", "label", "units"], *table])
    try:
        rows = parse_terminals_csv(buf.getvalue().encode("utf-8", "surrogatepass"))
    except ProvisioningError:
        return
    assert all(r.device_id for r in rows)
