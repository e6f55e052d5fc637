"""Bulk enrolment: a CSV of terminals in, one enrolment bundle per terminal out.

The CSV (UTF-8, a header row required)::

    device_id,label,units
    ft-0001,Futian patrol 1,futian-s1;futian-night
    ft-0002,,futian-s1

``units`` are separated by ';' or spaces. Every row is checked before anything is issued, and
every problem is reported at once with its line and column, so a district's 1,200-row sheet
is fixed in one round, not twelve. Then each terminal gets its MAC and signing keys, a TLS
certificate when the broker is mqtts://, a bundle file, and is registered through the
caller's ``register`` (the CLI writes the server's store; this package does not import the
server).

Order per chunk of terminals: certificates are issued and ``index.json`` saved first (a
certificate missing from the index could not be revoked), then each terminal is registered,
then its bundle written. A crash leaves registered terminals without bundles at worst: the
rerun refuses them by name, and ``yijing provision rotate`` re-issues each.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ProtocolError
from protocol.messages import IDENT

from .identity import (
    BrokerAddress,
    DeviceIdentity,
    Enrolment,
    ProvisioningError,
    ServerIdentity,
    TlsMaterial,
    new_device,
    write_enrolment,
)
from .pki import StationCA, pem_cert, pem_key

COLUMNS = ("device_id", "label", "units")
MAX_BYTES = 16 << 20
MAX_ROWS = 100_000
MAX_LABEL = 200
#: Problems shown in the message; all of them are on ``BulkError.problems``.
SHOWN = 20
_UNIT_SEPARATORS = re.compile(r"[;\s]+")


class BulkError(ProvisioningError):
    """A terminals CSV that cannot be enrolled; ``problems`` lists every line at fault."""

    def __init__(self, where: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:SHOWN])
        more = len(self.problems) - SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{where}: {len(self.problems)} problem(s):\n  {shown}{tail}")


@dataclass(frozen=True)
class TerminalRow:
    line: int
    device_id: str
    label: str
    units: tuple[str, ...]


def read_terminals_csv(path: Path, *, existing: Collection[str] = ()) -> list[TerminalRow]:
    """Read and check a whole CSV; ``existing`` are ids already registered (refused)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise BulkError(str(path), [f"cannot be read ({exc.strerror})"]) from None
    return parse_terminals_csv(data, str(path), existing=existing)


def parse_terminals_csv(
    data: bytes, where: str = "CSV", *, existing: Collection[str] = ()
) -> list[TerminalRow]:
    if len(data) > MAX_BYTES:
        raise BulkError(where, [f"larger than {MAX_BYTES} bytes"])
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's export often starts with a BOM
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BulkError(where, [f"line {line}: not UTF-8 (byte {exc.start})"]) from None
    problems: list[str] = []
    rows: list[TerminalRow] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    seen: dict[str, int] = {}
    line = 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if header is None:
                header = [name.strip() for name in record]
                problems += _check_header(header)
                if problems:
                    break
                continue
            if len(rows) + len(problems) >= MAX_ROWS:
                problems.append(f"line {start}: more than {MAX_ROWS} rows")
                break
            row = _check_row(start, header, record, seen, existing, problems)
            if row is not None:
                rows.append(row)
    except csv.Error as exc:
        problems.append(f"line {line}: not CSV ({exc})")
    if header is None and not problems:
        problems.append("line 1: the header (device_id,label,units) is missing")
    elif not rows and not problems:
        problems.append("no terminals below the header")
    if problems:
        raise BulkError(where, problems)
    return rows


def _check_header(header: list[str]) -> list[str]:
    problems = []
    unknown = [name for name in header if name not in COLUMNS]
    missing = [name for name in COLUMNS if name not in header]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if unknown:
        problems.append(f"line 1: unknown column(s) {', '.join(map(repr, unknown))}")
    if missing:
        problems.append(f"line 1: missing column(s) {', '.join(missing)}")
    if repeated:
        problems.append(f"line 1: repeated column(s) {', '.join(repeated)}")
    if problems:
        problems[-1] += f" (expected the header {','.join(COLUMNS)})"
    return problems


def _check_row(
    line: int,
    header: list[str],
    record: list[str],
    seen: dict[str, int],
    existing: Collection[str],
    problems: list[str],
) -> TerminalRow | None:
    if not any(field.strip() for field in record):
        problems.append(f"line {line}: blank row")
        return None
    if len(record) != len(header):
        problems.append(f"line {line}: expected {len(header)} fields, got {len(record)}")
        return None
    values = dict(zip(header, (field.strip() for field in record), strict=True))
    before = len(problems)
    device_id = values["device_id"]
    try:
        IDENT.check(device_id, "device_id")
    except ProtocolError as exc:
        problems.append(f"line {line}, column device_id: {exc.reason}")
    else:
        if device_id in seen:
            problems.append(
                f"line {line}, column device_id: {device_id!r} repeats line {seen[device_id]}"
            )
        elif device_id in existing:
            problems.append(
                f"line {line}, column device_id: {device_id!r} is registered already "
                "(give it new keys with `yijing provision rotate`)"
            )
        seen.setdefault(device_id, line)
    label = values["label"]
    if len(label) > MAX_LABEL or any(ord(ch) < 0x20 for ch in label):
        problems.append(
            f"line {line}, column label: longer than {MAX_LABEL} or has control characters"
        )
    units = tuple(dict.fromkeys(u for u in _UNIT_SEPARATORS.split(values["units"]) if u))
    for unit in units:
        try:
            IDENT.check(unit, "units")
        except ProtocolError as exc:
            problems.append(f"line {line}, column units: {exc.reason}")
    if len(problems) > before:
        return None
    return TerminalRow(line, device_id, label, units)


@dataclass(frozen=True)
class BulkResult:
    bundles: tuple[Path, ...]
    seconds: float


Register = Callable[[DeviceIdentity, str], None]
Progress = Callable[[int, int], None]


def enrol_bulk(
    rows: Sequence[TerminalRow],
    *,
    out_dir: Path,
    server_identity: ServerIdentity,
    broker: BrokerAddress,
    ca: StationCA | None,
    register: Register,
    progress: Progress | None = None,
    chunk: int = 100,
) -> BulkResult:
    """Issue keys, certificate and bundle for every row; ``register`` each in the store."""
    began = time.monotonic()
    if broker.tls and ca is None:
        raise BulkError(
            str(out_dir), ["an mqtts:// broker needs the station CA (yijing provision ca)"]
        )
    paths = [out_dir / f"{row.device_id}.json" for row in rows]
    clashes = [f"line {r.line}: {p} exists" for r, p in zip(rows, paths, strict=True) if p.exists()]
    if clashes:
        raise BulkError(str(out_dir), clashes)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir.chmod(0o700)
    total, done = len(rows), 0
    if progress is not None:
        progress(0, total)
    for first in range(0, total, chunk):
        batch = list(zip(rows[first : first + chunk], paths[first : first + chunk], strict=True))
        enrolments = list(_issue(batch, server_identity, broker, ca))
        for (row, path), enrolment in zip(batch, enrolments, strict=True):
            # The bundle first: a crash between the two leaves a file the next run names and
            # refuses to overwrite, never a terminal the server knows whose keys are lost.
            write_enrolment(path, enrolment)
            register(enrolment.identity, row.label)
            done += 1
            if progress is not None:
                progress(done, total)
    return BulkResult(tuple(paths), time.monotonic() - began)


def _issue(
    batch: Iterable[tuple[TerminalRow, Path]],
    server_identity: ServerIdentity,
    broker: BrokerAddress,
    ca: StationCA | None,
) -> list[Enrolment]:
    made = []
    if ca is None:
        for row, _ in batch:
            identity = new_device(row.device_id, units=row.units)
            made.append(
                Enrolment(identity, server_identity.public_key, server_identity.key_id, broker)
            )
        return made
    ca_pem = ca.cert_pem
    with ca.deferred_index():  # one index write per chunk, before any bundle leaves
        for row, _ in batch:
            identity = new_device(row.device_id, units=row.units)
            key, cert = ca.issue_terminal(row.device_id)
            assert key is not None  # issue_terminal made it: no public key was given
            tls = TlsMaterial(ca_pem, pem_cert(cert), pem_key(key))
            made.append(
                Enrolment(identity, server_identity.public_key, server_identity.key_id, broker, tls)
            )
    return made
