"""Bulk enrolment: the CSV's checks (all rows, line and column named), then 1,200 terminals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from provisioning import BrokerAddress, BulkError, StationCA, load_enrolment
from provisioning.bulk import enrol_bulk, parse_terminals_csv
from provisioning.identity import load_or_create_server_identity


def test_reads_units_split_by_semicolons_or_spaces() -> None:
    rows = parse_terminals_csv(
        b"\xef\xbb\xbfdevice_id,label,units\nft-1,Patrol 1,s1;night\nft-2,,s1  s2\nft-3,,\n"
    )
    assert [(r.line, r.device_id, r.units) for r in rows] == [
        (2, "ft-1", ("s1", "night")),
        (3, "ft-2", ("s1", "s2")),
        (4, "ft-3", ()),
    ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "header"),
        (b"device_id,label\nft-1,x\n", "missing column(s) units"),
        (b"device_id,label,units,extra\n", "unknown column(s) 'extra'"),
        (b"device_id,label,units\n", "no terminals"),
        (b"device_id,label,units\nft-1,,\n,,\n", "line 3: blank row"),
        (b"device_id,label,units\nft 1,,\n", "line 2, column device_id"),
        (b"device_id,label,units\nft-1,,s/1\n", "line 2, column units"),
        (
            b"device_id,label,units\nft-1,,\nft-1,,\n",
            "line 3, column device_id: 'ft-1' repeats line 2",
        ),
        (b"device_id,label,units\nft-1,,,\n", "line 2: expected 3 fields, got 4"),
        (b"device_id,label,units\nft-\xff,,\n", "line 2: not UTF-8"),
        (b'device_id,label,units\nft-1,"unclosed\n', "not CSV"),
    ],
)
def test_bad_csv_names_line_and_column(data: bytes, problem: str) -> None:
    with pytest.raises(BulkError) as info:
        parse_terminals_csv(data, "t.csv")
    assert problem in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    data = b"device_id,label,units\nbad id,,\nft-2,,\nft-2,,\nft-9,,\n"
    with pytest.raises(BulkError) as info:
        parse_terminals_csv(data, existing={"ft-9"})
    assert [p.split(":")[0] for p in info.value.problems] == [
        "line 2, column device_id",
        "line 4, column device_id",
        "line 5, column device_id",
    ]


def test_1200_terminals_with_certificates(tmp_path: Path) -> None:
    csv_bytes = b"device_id,label,units\n" + b"".join(
        f"ft-{i:04d},Patrol {i},futian-s{i % 7};night\n".encode() for i in range(1200)
    )
    rows = parse_terminals_csv(csv_bytes)
    ca = StationCA.create(tmp_path / "pki")
    server = load_or_create_server_identity(tmp_path / "server-key.json")
    registered: list[str] = []
    ticks: list[tuple[int, int]] = []
    began = time.monotonic()
    result = enrol_bulk(
        rows,
        out_dir=tmp_path / "bundles",
        server_identity=server,
        broker=BrokerAddress("10.0.0.5", 8883, "5", tls=True),
        ca=ca,
        register=lambda identity, label: registered.append(identity.device_id),
        progress=lambda done, total: ticks.append((done, total)),
    )
    seconds = time.monotonic() - began
    print(f"bulk enrolment of 1200 terminals: {seconds:.2f} s")
    assert len(result.bundles) == len(registered) == 1200
    assert ticks[0] == (0, 1200) and ticks[-1] == (1200, 1200)
    assert len(StationCA.load(ca.directory).index) == 1200
    sample = load_enrolment(result.bundles[1199])
    assert sample.identity.device_id == "ft-1199" and sample.tls is not None
    assert sample.tls.common_name == "ft-1199"
    assert seconds < 120
    # A second run refuses before issuing anything: the bundles exist.
    with pytest.raises(BulkError, match="exists"):
        enrol_bulk(
            rows[:3],
            out_dir=tmp_path / "bundles",
            server_identity=server,
            broker=BrokerAddress("h", 1883),
            ca=None,
            register=lambda identity, label: None,
        )
    assert len(StationCA.load(ca.directory).index) == 1200
