"""Bulk import of the organisation from CSV (every kind but rosters) and GeoJSON (posts).

All or nothing: a file is imported in one transaction, and if any row is wrong nothing is
kept. Admins fix the file and send it again; a half-imported roster, with some volunteers on
duty and others silently missing, never happens. The report lists every bad row (row numbers
count data rows from 1, the header excluded; for GeoJSON the features from 1; row 0 is the file
itself: header, encoding, structure), not only the first, so one round trip finds them all.

Rows are checked in file order against the store *and the rows before them*, so a unit may
name a parent defined earlier in the same file. A row that fails is undone on its own (a
savepoint) so the rows after it are still checked against a consistent state.

The columns and the GeoJSON mapping are documented in ``docs/import.md``; the column sets are
``COLUMNS`` below. Values go through ``server.org.codec.from_json``, the same as the REST API.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from .codec import ID_FIELD, Kind, Record, from_json, id_of, kind_of
from .model import OrgError, Shift
from .schedule import Tables
from .store import OrgStore

T = TypeVar("T")

MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000


class ImportRefused(ValueError):
    """The file as a whole cannot be imported (too large, too many rows, unknown kind)."""


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # CSV: data row from 1, header excluded; GeoJSON: feature from 1; 0: the file
    field: str
    message: str


@dataclass(slots=True)
class ImportReport:
    kind: str
    rows: int = 0
    created: int = 0  # what was imported: both 0 when there are errors (nothing is)
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "imported": self.ok,
            "errors": [{"row": e.row, "field": e.field, "message": e.message} for e in self.errors],
        }


#: Per kind: (required columns, optional columns). Cells left empty in an optional column
#: take the record's default.
COLUMNS: dict[Kind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Kind.UNITS: (("unit_id", "name", "level"), ("parent_id",)),
    Kind.VOLUNTEERS: (("volunteer_id", "name", "unit_id"), ("kind", "phone")),
    Kind.TERMINALS: (("device_id", "unit_id"), ("kind", "holder")),
    Kind.POSTS: (
        ("post_id", "name", "kind", "unit_id"),
        ("mode", "lat", "lon", "radius_m", "fence"),
    ),
    Kind.SHIFTS: (("shift_id", "volunteer_id", "post_id", "start", "end"), ("device_id", "role")),
}
#: The field a scope refusal names: where the record hangs in the tree.
_SCOPE_FIELD = {Kind.UNITS: "parent_id", Kind.SHIFTS: "post_id"}
#: Record fields that a CSV column of another name fills (a shift's start column → start_ms).
_COLUMN_OF_FIELD = {"start_ms": "start", "end_ms": "end"}


class _Abort(Exception):
    """Raised inside the transaction to roll it back when any row failed."""


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OrgError(name, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise OrgError(name, f"{text!r} is not a finite number")
    return value


def _time_ms(name: str, text: str) -> int:
    """Epoch milliseconds, or ISO 8601 with a UTC offset (``2026-03-02T20:00+08:00``)."""
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise OrgError(
            name, f"{text!r} is neither epoch milliseconds nor ISO 8601 (2026-03-02T20:00+08:00)"
        ) from None
    if moment.tzinfo is None:
        # A bare local time is ambiguous on a server that may run in UTC: refuse, do not guess.
        raise OrgError(name, f"{text!r} needs a UTC offset, e.g. {text}+08:00")
    return round(moment.timestamp() * 1000)


def _post_doc(cells: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = {k: cells[k] for k in ("name", "kind", "unit_id") if k in cells}
    if cells.get("mode"):
        doc["mode"] = cells["mode"]
    circle = {k: cells[k] for k in ("lat", "lon", "radius_m") if cells.get(k)}
    if circle and cells.get("fence"):
        raise OrgError("fence", "give either lat, lon and radius_m (a circle) or fence, not both")
    if cells.get("fence"):
        try:
            doc["fence"] = json.loads(cells["fence"])
        except ValueError as exc:
            raise OrgError("fence", f"not JSON: {exc}") from None
    elif circle:
        for name in ("lat", "lon", "radius_m"):
            if name not in circle:
                raise OrgError(name, "missing: a circle needs lat, lon and radius_m")
        doc["fence"] = {"type": "circle"} | {k: _number(k, v) for k, v in circle.items()}
    else:
        raise OrgError("fence", "missing: give lat, lon and radius_m, or a fence")
    return doc


def _csv_doc(kind: Kind, cells: dict[str, str]) -> dict[str, Any]:
    """A row's cells as the JSON object ``from_json`` takes."""
    if kind is Kind.POSTS:
        return _post_doc(cells)
    doc: dict[str, Any] = {k: v for k, v in cells.items() if v != "" and k != ID_FIELD[kind]}
    if kind is Kind.SHIFTS:
        for column, name in (("start", "start_ms"), ("end", "end_ms")):
            if column in doc:
                doc[name] = _time_ms(column, doc.pop(column))
    return doc


def _rows(text: str) -> Iterator[list[str] | csv.Error]:
    """The records, the header first; a record the csv module cannot read ends the file
    (yielded as its error: what follows it cannot be trusted to be split right)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    for n in itertools.count():
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield exc
            return
        if n > MAX_ROWS:  # the header is record 0
            raise ImportRefused(f"more than {MAX_ROWS:,} rows: split the file")
        yield row


def _check_size(text: str) -> None:
    # Characters first (cheap); only a text that might be over needs encoding.
    if len(text) > MAX_BYTES or (len(text) > MAX_BYTES // 4 and len(text.encode()) > MAX_BYTES):
        raise ImportRefused(f"larger than {MAX_BYTES // (1024 * 1024)} MB: split the file")


def import_csv(
    store: OrgStore, kind: Kind | str, text: str, *, at_ms: int, scope: str | None = None
) -> ImportReport:
    """Import one kind of record from CSV text (header row first). ``at_ms`` is when terminal
    hand-overs take effect; ``scope``, when given, confines every row to that unit's subtree
    (a scoped admin's import)."""
    try:
        kind = Kind(kind)
    except ValueError:
        raise ImportRefused(f"no CSV import for {kind!r}: one of {', '.join(COLUMNS)}") from None
    if kind not in COLUMNS:
        raise ImportRefused(f"no CSV import for {kind}: one of {', '.join(COLUMNS)}")
    _check_size(text)
    report = ImportReport(str(kind))
    rows = _rows(text.removeprefix("\ufeff"))  # Excel's UTF-8 files start with a BOM
    first = next(rows, [])
    if isinstance(first, csv.Error):
        report.errors.append(RowError(0, "header", f"not CSV: {first}"))
        return report
    header = [h.strip().lower() for h in first]
    required, optional = COLUMNS[kind]
    for name in required:
        if name not in header:
            report.errors.append(RowError(0, name, "missing column"))
    for name in header:
        if name not in required + optional:
            report.errors.append(RowError(0, name or "(empty)", "unknown column"))
    if len(set(header)) != len(header):
        report.errors.append(RowError(0, "header", "a column is named twice"))
    if report.errors:
        list(rows)  # still refuse an over-long file as such
        return report

    # Blank lines are skipped but still counted, so row numbers match the file.
    numbered = (
        (n, row)
        for n, row in enumerate(rows, start=1)
        if isinstance(row, csv.Error) or any(cell.strip() for cell in row)
    )
    return _apply(
        store,
        report,
        numbered,
        lambda row: _csv_record(kind, header, row),
        at_ms=at_ms,
        scope=scope,
    )


def _csv_record(kind: Kind, header: list[str], row: list[str] | csv.Error) -> Record:
    if isinstance(row, csv.Error):
        raise OrgError("row", f"not readable as CSV ({row}); rows after it were not checked")
    if len(row) != len(header):
        raise OrgError("row", f"{len(row)} cells; the header has {len(header)}")
    cells = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
    try:
        return from_json(kind, _csv_doc(kind, cells), id=cells[ID_FIELD[kind]])
    except OrgError as exc:
        if kind is Kind.POSTS and not cells.get("fence") and exc.field.startswith("fence."):
            # A circle from the lat, lon and radius_m columns: name the column.
            column = exc.field.removeprefix("fence.")
            if column == "center":
                column = "lon" if exc.reason.startswith("lon") else "lat"
            raise OrgError(column, exc.reason) from None
        raise


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def import_geojson(
    store: OrgStore, text: str, *, at_ms: int, scope: str | None = None
) -> ImportReport:
    """Import posts from a GeoJSON FeatureCollection (``docs/import.md``: Point with
    ``radius_m`` → circle, Polygon → polygon, LineString with ``half_width_m`` → corridor).
    GeoJSON writes ``[lon, lat]``; fences are ``[lat, lon]``: the order is swapped here."""
    _check_size(text)
    report = ImportReport(str(Kind.POSTS))
    try:
        doc = json.loads(text.removeprefix("\ufeff"), parse_constant=_no_constant)
        # A lone surrogate ("\ud800") parses but cannot be stored as UTF-8: refuse it here,
        # not in the middle of the import's transaction.
        json.dumps(doc, ensure_ascii=False).encode()
    except RecursionError:
        report.errors.append(RowError(0, "file", "not JSON: nested too deeply"))
        return report
    except ValueError as exc:  # UnicodeEncodeError is one too
        report.errors.append(RowError(0, "file", f"not JSON: {exc}"))
        return report
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        report.errors.append(RowError(0, "type", "expected a GeoJSON FeatureCollection"))
        return report
    features = doc.get("features")
    if not isinstance(features, list):
        report.errors.append(RowError(0, "features", "expected a list of features"))
        return report
    if len(features) > MAX_ROWS:
        raise ImportRefused(f"more than {MAX_ROWS:,} features: split the file")

    return _apply(
        store, report, enumerate(features, start=1), _feature_record, at_ms=at_ms, scope=scope
    )


def _lat_lon(name: str, position: object) -> list[object]:
    if not isinstance(position, list) or len(position) not in (2, 3):
        raise OrgError(name, "expected [lon, lat] (GeoJSON order)")
    return [position[1], position[0]]  # an altitude, if any, is dropped


def _geometry_fence(geometry: object, props: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The fence JSON of a feature, and where its points are in the GeoJSON (for errors)."""
    if not isinstance(geometry, dict):
        raise OrgError("geometry", "missing")
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    where = "geometry.coordinates"
    if kind == "Point":
        lat, lon = _lat_lon(where, coords)
        if "radius_m" not in props:
            raise OrgError("properties.radius_m", "missing: a Point post needs its radius")
        return {"type": "circle", "lat": lat, "lon": lon, "radius_m": props.pop("radius_m")}, where
    if kind == "Polygon":
        if not isinstance(coords, list) or not coords:
            raise OrgError(where, "expected a list of rings")
        if len(coords) > 1:
            raise OrgError(where, "a post's polygon has no holes: give the outer ring only")
        ring = coords[0]
        if not isinstance(ring, list):
            raise OrgError(f"{where}[0]", "expected a list of [lon, lat] positions")
        points = [_lat_lon(f"{where}[0][{i}]", p) for i, p in enumerate(ring)]
        return {"type": "polygon", "points": points}, f"{where}[0]"
    if kind == "LineString":
        if not isinstance(coords, list):
            raise OrgError(where, "expected a list of [lon, lat] positions")
        if "half_width_m" not in props:
            raise OrgError("properties.half_width_m", "missing: a route needs its half width")
        points = [_lat_lon(f"{where}[{i}]", p) for i, p in enumerate(coords)]
        return {
            "type": "corridor",
            "points": points,
            "half_width_m": props.pop("half_width_m"),
        }, where
    raise OrgError("geometry.type", f"{kind!r}: Point, Polygon or LineString")


def _feature_record(feature: object) -> Record:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise OrgError("type", "expected a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise OrgError("properties", "expected an object")
    props = dict(props)
    post_id = props.pop("post_id", feature.get("id"))
    if post_id is None:
        raise OrgError("properties.post_id", "missing (or give the feature an id)")
    fence, where = _geometry_fence(feature.get("geometry"), props)
    if "fence" in props:
        raise OrgError("properties.fence", "the geometry is the fence")
    try:
        return from_json(Kind.POSTS, props | {"fence": fence}, id=post_id)
    except OrgError as exc:
        raise OrgError(_feature_field(exc.field, where), exc.reason) from None


def _feature_field(name: str, where: str) -> str:
    """Where in the feature the record field ``name`` came from."""
    if name in ("fence.radius_m", "fence.half_width_m"):
        return "properties." + name.removeprefix("fence.")
    if name.startswith("fence.points"):
        return where + name.removeprefix("fence.points")
    if name.startswith("fence"):
        return where
    return f"properties.{name}"


def _apply(
    store: OrgStore,
    report: ImportReport,
    items: Iterable[tuple[int, T]],
    make: Callable[[T], Record],
    *,
    at_ms: int,
    scope: str | None,
) -> ImportReport:
    # Parse and check every row on its own first, outside the store's lock: that is half the
    # work, and the live map and the duty engine read the store meanwhile.
    records: list[tuple[int, Record]] = []
    seen: dict[str, int] = {}
    for n, item in items:
        report.rows = n
        try:
            record = make(item)
            first = seen.setdefault(id_of(record), n)
            if first != n:
                field_name = ID_FIELD[Kind(report.kind)]
                raise OrgError(field_name, f"{id_of(record)!r} is also in row {first}")
            records.append((n, record))
        except OrgError as exc:
            report.errors.append(_row_error(n, exc))
    created = updated = 0
    try:
        with store.batch(f"import {report.kind}") as tables:
            for n, record in records:
                try:
                    with tables.savepoint():
                        if _put(tables, record, at_ms=at_ms, scope=scope):
                            created += 1
                        else:
                            updated += 1
                except OrgError as exc:
                    report.errors.append(_row_error(n, exc))
            if report.errors:
                raise _Abort
    except _Abort:
        report.errors.sort(key=lambda e: e.row)  # stable: a row's own errors keep their order
        return report
    report.created, report.updated = created, updated
    return report


def _row_error(n: int, exc: OrgError) -> RowError:
    return RowError(n, _COLUMN_OF_FIELD.get(exc.field, exc.field), exc.reason)


def _put(tables: Tables, record: Record, *, at_ms: int, scope: str | None) -> bool:
    if isinstance(record, Shift) and record.device_id is None:
        # No device_id column (or an empty cell): the terminal already recorded on the shift,
        # or for a new one the terminal the volunteer holds now.
        record = tables.with_terminal(record)
    if scope is not None:
        for unit in tables.write_units(record):
            if unit is None or not tables.within(unit, scope):
                where = "the top of the tree" if unit is None else repr(unit)
                raise OrgError(
                    _SCOPE_FIELD.get(kind_of(record), "unit_id"),
                    f"{where} is outside your scope ({scope!r})",
                )
    return tables.put(record, at_ms=at_ms)
