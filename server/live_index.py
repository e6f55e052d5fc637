"""A uniform grid over latitude and longitude for "who is near this point?" queries.

The dispatch panel asks for the terminals within a few hundred metres of an incident among tens
of thousands across a district, and must answer in well under a millisecond. Cells are
``cell_m`` metres on a side at the index's reference latitude (degrees of longitude shrink
with cos(latitude)), so a query scans only the cells its circle's bounding box overlaps — a
few dozen, not the whole city — and measures the great-circle distance only to the terminals
filed there.

Positions live in NumPy arrays indexed by a slot per terminal, as unit vectors: the straight
chord between two of them is a few multiplications and no trigonometry, it orders points
exactly as the great-circle distance does (d = 2R·asin(chord/2), the haversine), and the
differences of nearby coordinates lose no precision. So the points of those cells are
measured in one vectorised pass and only the ones inside get an arcsine. The cells are plain
arrays of slots with swap-remove, so moving a terminal between cells is a handful of scalar
writes and a query takes views of them, nothing rebuilt. The index is not thread-safe: its owner
(``server.live.LiveState``) holds a lock around every call.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

#: The sphere of the haversine distances (metres), the same as ``server.duty.geo``'s.
EARTH_RADIUS_M = 6_371_008.8
#: Metres per degree of latitude on that sphere.
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180
#: Slack on the bounding box of a query (degrees, ≈ 1 mm): rounding must never drop a point
#: that lies exactly on the circle.
_EPS_DEG = 1e-8

Cell = tuple[int, int]


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (scalar)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def haversine_np(
    lat: float, lon: float, lats: npt.NDArray[np.float64], lons: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Great-circle distances in metres from one point to arrays of points (degrees)."""
    p1 = math.radians(lat)
    p2 = np.radians(lats)
    dp = (p2 - p1) * 0.5
    dl = np.radians(lons - lon) * 0.5
    a = np.sin(dp) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl) ** 2
    out: npt.NDArray[np.float64] = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
    return out


class _Cell:
    """The slots filed in one cell: ``slots[:n]``, in no order."""

    __slots__ = ("n", "slots")

    def __init__(self) -> None:
        self.slots: npt.NDArray[np.intp] = np.empty(8, dtype=np.intp)
        self.n = 0


#: Distances are sorted in chunks: a caller after the nearest 50 eligible terminals among 700
#: in the circle pays for sorting about 64 of them.
_CHUNK = 64


class GridIndex:
    """Points keyed by a string id on a grid of ``cell_m`` cells.

    ``ref_lat`` sets the cells' width in degrees of longitude; ``None`` takes the first point's
    latitude (any reference is correct, one far from the points only scans more cells).
    """

    def __init__(self, cell_m: float = 250.0, ref_lat: float | None = None) -> None:
        if not cell_m > 0:
            raise ValueError(f"cell_m must be positive, not {cell_m}")
        if ref_lat is not None and not -80 <= ref_lat <= 80:
            raise ValueError(f"ref_lat must be within ±80°, not {ref_lat}")
        self._cell_m = cell_m
        self._dlat = cell_m / M_PER_DEG
        self._dlon = 0.0
        if ref_lat is not None:
            self._set_ref(ref_lat)
        self._slots: dict[str, int] = {}
        self._ids: list[str] = []
        self._cell_of: list[Cell | None] = []  # per slot; None: not filed (removed)
        self._pos: list[int] = []  # per slot: its index in its cell's ``slots``
        self._cells: dict[Cell, _Cell] = {}  # filled cells only
        self._xyz = np.zeros((3, 64))
        self._count = 0

    def _set_ref(self, ref_lat: float) -> None:
        self._dlon = self._cell_m / (M_PER_DEG * math.cos(math.radians(ref_lat)))

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        slot = self._slots.get(key) if isinstance(key, str) else None
        return slot is not None and self._cell_of[slot] is not None

    def put(self, key: str, lat: float, lon: float) -> None:
        """File ``key`` at (lat, lon), moving it if it was elsewhere."""
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"{key}: ({lat}, {lon}) is not a position")
        if self._dlon == 0.0:
            self._set_ref(max(-80.0, min(80.0, lat)))
        slot = self._slots.get(key)
        if slot is None:
            slot = len(self._ids)
            self._slots[key] = slot
            self._ids.append(key)
            self._cell_of.append(None)
            self._pos.append(0)
            if slot == self._xyz.shape[1]:  # grow by doubling: amortised O(1) per terminal
                self._xyz = np.concatenate([self._xyz, np.zeros((3, slot))], axis=1)
        phi, lam = math.radians(lat), math.radians(lon)
        cos_phi = math.cos(phi)
        xyz = self._xyz
        xyz[0, slot] = cos_phi * math.cos(lam)
        xyz[1, slot] = cos_phi * math.sin(lam)
        xyz[2, slot] = math.sin(phi)
        cell = (math.floor(lat / self._dlat), math.floor(lon / self._dlon))
        old = self._cell_of[slot]
        if old == cell:
            return
        if old is None:
            self._count += 1
        else:
            self._leave(old, slot)
        into = self._cells.get(cell)
        if into is None:
            into = self._cells[cell] = _Cell()
        if into.n == len(into.slots):
            into.slots = np.concatenate([into.slots, np.empty(into.n, dtype=np.intp)])
        into.slots[into.n] = slot
        self._pos[slot] = into.n
        into.n += 1
        self._cell_of[slot] = cell

    def _leave(self, cell: Cell, slot: int) -> None:
        # Swap-remove: the cell's last slot takes this one's place.
        members = self._cells[cell]
        members.n -= 1
        if members.n == 0:
            del self._cells[cell]
            return
        last = int(members.slots[members.n])
        i = self._pos[slot]
        members.slots[i] = last
        self._pos[last] = i

    def remove(self, key: str) -> None:
        slot = self._slots.get(key)
        if slot is None:
            return
        cell = self._cell_of[slot]
        if cell is not None:
            self._leave(cell, slot)
            self._cell_of[slot] = None
            self._count -= 1

    def _cells_near(self, lat: float, lon: float, radius_m: float) -> list[_Cell]:
        """The filled cells a circle's bounding box overlaps."""
        ang = radius_m / EARTH_RADIUS_M
        dlat = math.degrees(ang) + _EPS_DEG
        lat_lo, lat_hi = lat - dlat, lat + dlat
        # Widest longitude span of a spherical cap: asin(sin r / cos φ). A cap reaching a pole
        # spans every longitude; the grid then has no better answer than every cell.
        s = math.sin(ang) / max(math.cos(math.radians(lat)), 1e-12)
        if s >= 1 or lat_hi >= 90 or lat_lo <= -90:
            return list(self._cells.values())
        dlon = math.degrees(math.asin(s)) + _EPS_DEG
        i_lo, i_hi = math.floor(lat_lo / self._dlat), math.floor(lat_hi / self._dlat)
        j_lo = math.floor((lon - dlon) / self._dlon)
        j_hi = math.floor((lon + dlon) / self._dlon)
        cells = self._cells
        if (i_hi - i_lo + 1) * (j_hi - j_lo + 1) > len(cells):
            # A huge circle: walking the filled cells is cheaper than the empty box.
            return [c for (i, j), c in cells.items() if i_lo <= i <= i_hi and j_lo <= j <= j_hi]
        found = []
        for i in range(i_lo, i_hi + 1):
            for j in range(j_lo, j_hi + 1):
                c = cells.get((i, j))
                if c is not None:
                    found.append(c)
        return found

    def within(self, lat: float, lon: float, radius_m: float) -> Iterator[tuple[str, float]]:
        """``(key, metres)`` of every point within ``radius_m`` of (lat, lon), nearest first.

        A generator, so a caller that wants the nearest few eligible ones stops early; it reads
        the index as it goes, so the caller holds its lock until it is done."""
        if self._dlon == 0.0 or not radius_m >= 0:
            return
        parts = [c.slots[: c.n] for c in self._cells_near(lat, lon, radius_m)]
        if not parts:
            return
        slots = np.concatenate(parts) if len(parts) > 1 else parts[0]
        phi, lam = math.radians(lat), math.radians(lon)
        xyz = self._xyz
        dx = xyz[0].take(slots) - math.cos(phi) * math.cos(lam)
        dy = xyz[1].take(slots) - math.cos(phi) * math.sin(lam)
        dz = xyz[2].take(slots) - math.sin(phi)
        chord2 = dx * dx + dy * dy + dz * dz
        # d ≤ r ⟺ chord ≤ 2·sin(r / 2R) while r ≤ πR; a bigger circle holds the whole sphere.
        # The slack lets rounding keep a point on the circle; the exact test is below.
        half = radius_m / (2 * EARTH_RADIUS_M)
        limit = 4.0 if half >= math.pi / 2 else (2 * math.sin(half)) ** 2
        inside = np.flatnonzero(chord2 <= limit * (1 + 1e-12))
        slots, chord2 = slots.take(inside), chord2.take(inside)
        ids = self._ids
        chunk = _CHUNK
        while len(chord2):
            if len(chord2) > 2 * chunk:  # the nearest ``chunk`` first, the rest stays unsorted
                split = np.argpartition(chord2, chunk - 1)
                head, rest = split[:chunk], split[chunk:]
                chunk *= 4  # a caller that wants them all pays for few rounds
            else:
                head, rest = np.arange(len(chord2)), np.arange(0)
            head = head.take(np.argsort(chord2.take(head), kind="stable"))
            c2 = chord2.take(head)
            dist = (2 * EARTH_RADIUS_M) * np.arcsin(np.minimum(np.sqrt(c2) / 2, 1.0))
            for s, d in zip(slots.take(head).tolist(), dist.tolist(), strict=True):
                if d <= radius_m:
                    yield ids[s], d
            slots, chord2 = slots.take(rest), chord2.take(rest)
