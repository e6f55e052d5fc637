"""A simulated GNSS receiver: a volunteer walking a patrol loop around a post.

Deterministic for a given seed, so demos and tests are repeatable. Positions use a local
equirectangular approximation, accurate to well under a metre over a few hundred metres.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from protocol import Fix, FixSource

EARTH_RADIUS_M = 6_371_000.0


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass
class SimulatedWalker:
    """Walks between random waypoints within ``radius_m`` of a post, pausing now and then."""

    post_lat: float
    post_lon: float
    radius_m: float = 150.0
    speed_mps: float = 1.3
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._north, self._east = self._waypoint()
        self._target = self._waypoint()
        self._pause_s = 0.0
        self._last_s: float | None = None
        self._errand: tuple[float, float] | None = None

    def go_to(self, lat: float, lon: float) -> None:
        """Walk straight to a place and wait there (a dispatch), until ``resume``."""
        k = math.cos(math.radians(self.post_lat))
        north = math.radians(lat - self.post_lat) * EARTH_RADIUS_M
        east = math.radians(lon - self.post_lon) * EARTH_RADIUS_M * k
        self._errand = (north, east)
        self._target, self._pause_s = self._errand, 0.0

    def resume(self) -> None:
        """Back to patrolling around the post."""
        self._errand = None
        self._target = self._waypoint()

    def _waypoint(self) -> tuple[float, float]:
        r = self.radius_m * math.sqrt(self._rng.random())
        a = self._rng.random() * 2 * math.pi
        return r * math.cos(a), r * math.sin(a)

    def read(self, now_ms: int) -> Fix:
        now_s = now_ms / 1000
        dt = 0.0 if self._last_s is None else max(0.0, now_s - self._last_s)
        self._last_s = now_s
        speed, course = 0.0, 0.0
        if self._pause_s > 0:
            self._pause_s -= dt
        else:
            dn, de = self._target[0] - self._north, self._target[1] - self._east
            dist = math.hypot(dn, de)
            step = self.speed_mps * dt
            course = math.degrees(math.atan2(de, dn)) % 360
            if step >= dist:
                self._north, self._east = self._target
                if self._errand is not None:  # arrived: stay on scene
                    self._pause_s = 1.0
                    return self._fix(now_ms, 0.0, course)
                self._target = self._waypoint()
                if self._rng.random() < 0.3:
                    self._pause_s = self._rng.uniform(5, 30)
            elif dist > 0:
                self._north += dn / dist * step
                self._east += de / dist * step
                speed = self.speed_mps
        return self._fix(now_ms, speed, course)

    def _fix(self, now_ms: int, speed: float, course: float) -> Fix:
        lat, lon = offset(self.post_lat, self.post_lon, self._north, self._east)
        return Fix(
            time_ms=now_ms,
            lat=lat,
            lon=lon,
            accuracy_m=round(self._rng.uniform(3, 12), 1),
            speed_mps=speed,
            course_deg=course,
            satellites=self._rng.randint(6, 14),
            source=FixSource.SIMULATED,
        )
