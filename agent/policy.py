"""When to record a fix: by motion, distance and time.

- **Moving** (speed above ``moving_speed_mps``, or moved ``min_distance_m`` since the last
  recorded fix): a fix every ``interval_moving_s`` — if it moved at least ``min_distance_m``.
- **Still**: a fix every ``interval_still_s`` anyway, so the station knows the terminal is alive
  and where it rests.
- **Events** (SOS, dispatch accepted, roll call): the agent records the current fix at once,
  whatever the policy says (``Reporter.force``).

Heartbeats are separate (``heartbeat_s``): they prove the terminal is on even with no GNSS fix.
All values can be changed by a ``ConfigPush`` from the server.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from protocol import ConfigPush, Fix, Setting

from .sim_gps import distance_m


@dataclass(frozen=True, kw_only=True)
class ReportingPolicy:
    interval_moving_s: float = 5.0
    interval_still_s: float = 60.0
    min_distance_m: float = 10.0
    moving_speed_mps: float = 0.5
    heartbeat_s: float = 60.0
    ack_timeout_s: float = 20.0
    disk_budget_mb: float = 64.0

    def __post_init__(self) -> None:
        for name in (
            "interval_moving_s",
            "interval_still_s",
            "heartbeat_s",
            "ack_timeout_s",
            "disk_budget_mb",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.min_distance_m < 0 or self.moving_speed_mps < 0:
            raise ValueError("min_distance_m and moving_speed_mps must not be negative")

    def updated(self, push: ConfigPush) -> ReportingPolicy:
        """This policy with a server push applied (the protocol already checked the ranges)."""
        names = {
            Setting.INTERVAL_MOVING_S: "interval_moving_s",
            Setting.INTERVAL_STILL_S: "interval_still_s",
            Setting.MIN_DISTANCE_M: "min_distance_m",
            Setting.HEARTBEAT_S: "heartbeat_s",
            Setting.ACK_TIMEOUT_S: "ack_timeout_s",
            Setting.DISK_BUDGET_MB: "disk_budget_mb",
        }
        changes = {names[k]: float(v) for k, v in push.as_dict().items() if k in names}
        return replace(self, **changes)


class Reporter:
    """Decides, fix by fix, which ones the outbox records."""

    def __init__(self, policy: ReportingPolicy) -> None:
        self.policy = policy
        self._last: Fix | None = None

    def should_record(self, fix: Fix) -> bool:
        last = self._last
        if last is None:
            return True
        elapsed_s = (fix.time_ms - last.time_ms) / 1000
        if elapsed_s <= 0:
            return False  # a repeat or an older fix: the receiver said nothing new
        moved = distance_m(last.lat, last.lon, fix.lat, fix.lon)
        p = self.policy
        if elapsed_s >= p.interval_still_s:
            return True
        moving = (fix.speed_mps or 0.0) > p.moving_speed_mps or moved >= p.min_distance_m
        return moving and elapsed_s >= p.interval_moving_s and moved >= p.min_distance_m

    def recorded(self, fix: Fix) -> None:
        self._last = fix
