"""Geofences and the one question the duty engine asks of them: is this fix on the post?

A fix is on the post when the circle of its accuracy touches the fence: its distance to the
fence is at most its accuracy (``docs/metrics.md`` §2). Each fence works in a local plane
around its own origin (equirectangular: metres east and north); over a post's few kilometres
this differs from the geodesic distance by well under a centimetre per kilometre, far below
any fix's accuracy.

The same test is written twice: ``Fence.contains`` for one fix (the incremental path, in the
ingest thread) and ``Fence.contains_many`` over NumPy arrays (the batch recomputation). Both use
only +, -, *, / and comparisons, in the same order, on IEEE doubles — operations that round
identically in Python and NumPy — so the two paths agree bit for bit even on the boundary. The
origin's cosine is computed once, by ``math.cos``, and shared by both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

#: Metres per degree of latitude (WGS 84 mean; the local plane needs no better).
M_PER_DEG = 111_194.92664455873
MAX_VERTICES = 1000
MAX_RADIUS_M = 50_000.0

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


class FenceError(ValueError):
    """A fence that cannot be: ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _lat_lon(name: str, lat: object, lon: object) -> tuple[float, float]:
    for part, value, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not -limit <= value <= limit
        ):
            raise FenceError(name, f"{part} {value!r} is not in [-{limit:g}, {limit:g}]")
    return float(lat), float(lon)  # type: ignore[arg-type]


def _metres(name: str, value: object, lo: float, hi: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not lo < value <= hi
    ):
        raise FenceError(name, f"{value!r} is not a distance in ({lo:g}, {hi:g}] metres")
    return float(value)


@dataclass(frozen=True, slots=True)
class _Plane:
    lat0: float
    lon0: float
    kx: float  # metres per degree of longitude at lat0
    ky: float

    @classmethod
    def at(cls, lat0: float, lon0: float) -> _Plane:
        return cls(lat0, lon0, M_PER_DEG * math.cos(math.radians(lat0)), M_PER_DEG)


def _vertices(name: str, points: object, minimum: int) -> tuple[tuple[float, float], ...]:
    if not isinstance(points, list | tuple):
        raise FenceError(name, "expected a list of [lat, lon] points")
    if not minimum <= len(points) <= MAX_VERTICES:
        raise FenceError(name, f"{len(points)} points; needs {minimum} to {MAX_VERTICES}")
    out = []
    for i, p in enumerate(points):
        if not isinstance(p, list | tuple) or len(p) != 2:
            raise FenceError(f"{name}[{i}]", "expected [lat, lon]")
        out.append(_lat_lon(f"{name}[{i}]", p[0], p[1]))
    return tuple(out)


def _segments_d2(
    xs: tuple[float, ...], ys: tuple[float, ...], x: float, y: float, closed: bool
) -> float:
    """Smallest squared distance from (x, y) to the polyline (closed: the polygon ring)."""
    n = len(xs)
    best = math.inf
    for i in range(n if closed else n - 1):
        j = (i + 1) % n
        xi, yi, dx, dy = xs[i], ys[i], xs[j] - xs[i], ys[j] - ys[i]
        l2 = dx * dx + dy * dy
        t = 0.0 if l2 == 0.0 else ((x - xi) * dx + (y - yi) * dy) / l2
        t = min(max(t, 0.0), 1.0)
        ex = x - (xi + t * dx)
        ey = y - (yi + t * dy)
        d2 = ex * ex + ey * ey
        best = min(best, d2)
    return best


def _segments_d2_many(
    xs: tuple[float, ...], ys: tuple[float, ...], x: Floats, y: Floats, closed: bool
) -> Floats:
    n = len(xs)
    best = np.full(x.shape, np.inf)
    for i in range(n if closed else n - 1):
        j = (i + 1) % n
        xi, yi, dx, dy = xs[i], ys[i], xs[j] - xs[i], ys[j] - ys[i]
        l2 = dx * dx + dy * dy
        t = np.zeros(x.shape) if l2 == 0.0 else ((x - xi) * dx + (y - yi) * dy) / l2
        t = np.minimum(np.maximum(t, 0.0), 1.0)
        ex = x - (xi + t * dx)
        ey = y - (yi + t * dy)
        best = np.minimum(best, ex * ex + ey * ey)
    return best


@dataclass(frozen=True, slots=True)
class Circle:
    lat: float
    lon: float
    radius_m: float
    _plane: _Plane = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lat, lon = _lat_lon("center", self.lat, self.lon)
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        object.__setattr__(self, "radius_m", _metres("radius_m", self.radius_m, 0, MAX_RADIUS_M))
        object.__setattr__(self, "_plane", _Plane.at(lat, lon))

    def contains(self, lat: float, lon: float, allowance_m: float) -> bool:
        p = self._plane
        x = (lon - p.lon0) * p.kx
        y = (lat - p.lat0) * p.ky
        r = self.radius_m + allowance_m
        return x * x + y * y <= r * r

    def contains_many(self, lat: Floats, lon: Floats, allowance_m: Floats) -> Bools:
        p = self._plane
        x = (lon - p.lon0) * p.kx
        y = (lat - p.lat0) * p.ky
        r = self.radius_m + allowance_m
        result: Bools = x * x + y * y <= r * r
        return result


@dataclass(frozen=True, slots=True)
class Polygon:
    """A simple polygon (a post's compound, a grid cell); the ring closes itself."""

    points: tuple[tuple[float, float], ...]
    _xs: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _ys: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _plane: _Plane = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pts = _vertices("points", self.points, 3)
        if len(pts) > 3 and pts[0] == pts[-1]:
            pts = pts[:-1]  # GeoJSON repeats the first point at the end
        if len(pts) < 3:
            raise FenceError("points", "a polygon needs three distinct corners")
        object.__setattr__(self, "points", pts)
        plane = _Plane.at(pts[0][0], pts[0][1])
        object.__setattr__(self, "_plane", plane)
        object.__setattr__(self, "_xs", tuple((lon - plane.lon0) * plane.kx for _, lon in pts))
        object.__setattr__(self, "_ys", tuple((lat - plane.lat0) * plane.ky for lat, _ in pts))

    def _inside(self, x: float, y: float) -> bool:
        # Even-odd ray casting towards +x.
        xs, ys = self._xs, self._ys
        inside = False
        n = len(xs)
        for i in range(n):
            j = i - 1
            xi, yi, xj, yj = xs[i], ys[i], xs[j], ys[j]
            if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
                inside = not inside
        return inside

    def contains(self, lat: float, lon: float, allowance_m: float) -> bool:
        p = self._plane
        x = (lon - p.lon0) * p.kx
        y = (lat - p.lat0) * p.ky
        if self._inside(x, y):
            return True
        return _segments_d2(self._xs, self._ys, x, y, True) <= allowance_m * allowance_m

    def contains_many(self, lat: Floats, lon: Floats, allowance_m: Floats) -> Bools:
        p = self._plane
        x = (lon - p.lon0) * p.kx
        y = (lat - p.lat0) * p.ky
        xs, ys = self._xs, self._ys
        inside = np.zeros(x.shape, dtype=bool)
        n = len(xs)
        for i in range(n):
            j = i - 1
            xi, yi, xj, yj = xs[i], ys[i], xs[j], ys[j]
            crosses = (yi > y) != (yj > y)
            if yj == yi:
                continue  # a horizontal edge never crosses a horizontal ray (crosses is all False)
            hit = crosses & (x < (xj - xi) * (y - yi) / (yj - yi) + xi)
            inside ^= hit
        near: Bools = _segments_d2_many(xs, ys, x, y, True) <= allowance_m * allowance_m
        result: Bools = inside | near
        return result


@dataclass(frozen=True, slots=True)
class Corridor:
    """A patrol route: every point within ``half_width_m`` of the polyline."""

    points: tuple[tuple[float, float], ...]
    half_width_m: float
    _xs: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _ys: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _plane: _Plane = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pts = _vertices("points", self.points, 2)
        object.__setattr__(self, "points", pts)
        object.__setattr__(
            self, "half_width_m", _metres("half_width_m", self.half_width_m, 0, 5_000)
        )
        plane = _Plane.at(pts[0][0], pts[0][1])
        object.__setattr__(self, "_plane", plane)
        object.__setattr__(self, "_xs", tuple((lon - plane.lon0) * plane.kx for _, lon in pts))
        object.__setattr__(self, "_ys", tuple((lat - plane.lat0) * plane.ky for lat, _ in pts))

    def contains(self, lat: float, lon: float, allowance_m: float) -> bool:
        p = self._plane
        x = (lon - p.lon0) * p.kx
        y = (lat - p.lat0) * p.ky
        r = self.half_width_m + allowance_m
        return _segments_d2(self._xs, self._ys, x, y, False) <= r * r

    def contains_many(self, lat: Floats, lon: Floats, allowance_m: Floats) -> Bools:
        p = self._plane
        x = (lon - p.lon0) * p.kx
        y = (lat - p.lat0) * p.ky
        r = self.half_width_m + allowance_m
        result: Bools = _segments_d2_many(self._xs, self._ys, x, y, False) <= r * r
        return result


Fence = Circle | Polygon | Corridor


def fence_from_json(doc: object) -> Fence:
    """``{"type": "circle", "lat", "lon", "radius_m"}``, ``{"type": "polygon", "points"}`` or
    ``{"type": "corridor", "points", "half_width_m"}``; points are ``[lat, lon]`` pairs."""
    if not isinstance(doc, dict):
        raise FenceError("fence", "expected an object with a type")
    kind = doc.get("type")
    try:
        if kind == "circle":
            return Circle(doc["lat"], doc["lon"], doc["radius_m"])
        if kind == "polygon":
            return Polygon(doc["points"])
        if kind == "corridor":
            return Corridor(doc["points"], doc["half_width_m"])
    except KeyError as exc:
        raise FenceError(f"fence.{exc.args[0]}", "missing") from None
    raise FenceError("fence.type", f"{kind!r}: circle, polygon or corridor")


def fence_to_json(fence: Fence) -> dict[str, object]:
    if isinstance(fence, Circle):
        return {"type": "circle", "lat": fence.lat, "lon": fence.lon, "radius_m": fence.radius_m}
    if isinstance(fence, Polygon):
        return {"type": "polygon", "points": [list(p) for p in fence.points]}
    return {
        "type": "corridor",
        "points": [list(p) for p in fence.points],
        "half_width_m": fence.half_width_m,
    }
