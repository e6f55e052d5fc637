#!/usr/bin/env python3
"""Benchmark of enrolment and sign-in, the two security steps whose speed a person waits on.

1. **Bulk enrolment** of N terminals (default 1,200, Futian's issue) from a CSV, with the
   station CA: parse and validate the CSV, then per terminal a MAC key, an Ed25519 key, an
   ECDSA P-256 TLS key, a certificate signed by the CA, the bundle file (0600, fsync'd) and
   its registration in the server's SQLite store. Reference in the same run: the bare
   cryptography floor — the same three key generations and one certificate signature per
   terminal, nothing written — so the figure says what the files and the store cost on top.
2. **Password hashing** (argon2id with the accounts' parameters): one hash, the cost of a
   sign-in, and how many sign-ins a second the server can check on this machine.

Run: ``.venv/bin/python bench/enrol_bench.py`` (about 15 s; ``--terminals 200`` for a look).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from machine_info import cpu_model

from provisioning import BrokerAddress, load_or_create_server_identity
from provisioning.bulk import enrol_bulk, parse_terminals_csv
from provisioning.identity import raw_public
from provisioning.pki import StationCA
from server.accounts.passwords import Passwords
from server.sqlite_store import SqliteStore
from server.store import Device, DeviceKey


def floor(n: int, ca: StationCA) -> float:
    """Key generations and one CA signature per terminal, in memory only (signed by a P-256
    key like the CA's: the CA keeps its own key private)."""
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    began = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    for i in range(n):
        os.urandom(32)
        Ed25519PrivateKey.generate()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ref-{i:05d}")])
        (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(issuer_key, hashes.SHA256())
        )
    return time.perf_counter() - began


def bulk(n: int, root: Path) -> tuple[float, StationCA]:
    ca = StationCA.create(root / "pki")
    server = load_or_create_server_identity(root / "server-key.json")
    csv = "device_id,label,units\n" + "".join(
        f"ft-{i:05d},Terminal {i},futian-s{i % 12}\n" for i in range(n)
    )
    store = SqliteStore(root / "yijing.db")

    def register(identity, label: str) -> None:  # type: ignore[no-untyped-def]
        store.add_device(
            Device(identity.device_id, label, identity.units, int(time.time() * 1000)),
            DeviceKey(
                identity.device_id, identity.key_id, identity.mac_key,
                raw_public(identity.public_key),
            ),
        )  # fmt: skip

    began = time.perf_counter()
    rows = parse_terminals_csv(csv.encode())
    enrol_bulk(
        rows,
        out_dir=root / "bundles",
        server_identity=server,
        broker=BrokerAddress("station.example", 8883, tls=True),
        ca=ca,
        register=register,
    )
    seconds = time.perf_counter() - began
    store.close()
    return seconds, ca


def passwords(rounds: int) -> float:
    hasher = Passwords()
    encoded = hasher.hash("correct horse battery staple")
    began = time.perf_counter()
    for _ in range(rounds):
        assert hasher.verify(encoded, "correct horse battery staple")
    return (time.perf_counter() - began) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminals", type=int, default=1200)
    parser.add_argument("--sign-ins", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        seconds, ca = bulk(args.terminals, Path(tmp))
        ref = floor(args.terminals, ca)
    n = args.terminals
    print(f"bulk enrolment of {n:,} terminals (CSV → keys, certificate, bundle, store)")
    print(f"  yijing:      {seconds:7.2f} s   {n / seconds:8.0f} terminals/s")
    print(f"  crypto floor {ref:7.2f} s   {n / ref:8.0f} terminals/s   (keys + 1 signature)")
    print(f"  ratio: {seconds / ref:.2f}× the floor")
    per = passwords(args.sign_ins)
    print(f"argon2id password check: {per * 1000:.0f} ms each, {1 / per:.1f} sign-ins/s per core")


if __name__ == "__main__":
    main()
