"""The organisation, as the duty engine and the inspectors see it: frozen, validating records.

Units form one tree (city → district → station → grid levels → teams). Volunteers belong to a
unit; terminals are issued to a unit and held by a volunteer; posts belong to a unit and each
has a geofence; a shift puts one volunteer on one post for a time window, with the terminal
the volunteer held when the shift was made. Rosters generate shifts. Every record checks itself
on construction and names the field that is wrong (``OrgError.field``).

Times are epoch milliseconds (UTC); a roster's times of day are local to its ``tz``.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field

from ..duty.geo import Circle, Corridor, Fence, Polygon

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_SHIFT_MS = 24 * 3_600_000  # a shift longer than a day is a data-entry mistake


class OrgError(ValueError):
    """A record that cannot be: ``field`` names what is wrong, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise OrgError(name, f"{value!r} is not an id (letters, digits, _ . -; at most 64)")


def check_text(name: str, value: object, *, max_len: int = 200, required: bool = True) -> None:
    if not isinstance(value, str):
        raise OrgError(name, f"expected text, got {type(value).__name__}")
    if required and not value.strip():
        raise OrgError(name, "must not be empty")
    if len(value) > max_len:
        raise OrgError(name, f"longer than {max_len} characters")


class UnitLevel(enum.StrEnum):
    CITY = "city"
    DISTRICT = "district"
    STATION = "station"
    GRID = "grid"
    TEAM = "team"


#: Which levels a unit of each level may hang under (None: a root).
PARENT_LEVELS: dict[UnitLevel, frozenset[UnitLevel | None]] = {
    UnitLevel.CITY: frozenset({None}),
    UnitLevel.DISTRICT: frozenset({UnitLevel.CITY}),
    UnitLevel.STATION: frozenset({UnitLevel.DISTRICT}),
    # Yulin's grids come in three levels, each inside the one above or the station.
    UnitLevel.GRID: frozenset({UnitLevel.STATION, UnitLevel.GRID}),
    UnitLevel.TEAM: frozenset({UnitLevel.STATION, UnitLevel.GRID}),
}


@dataclass(frozen=True, slots=True)
class Unit:
    unit_id: str
    name: str
    level: UnitLevel
    parent_id: str | None = None

    def __post_init__(self) -> None:
        check_id("unit_id", self.unit_id)
        check_text("name", self.name)
        if not isinstance(self.level, UnitLevel):
            raise OrgError("level", f"{self.level!r}: one of {', '.join(UnitLevel)}")
        if self.parent_id is not None:
            check_id("parent_id", self.parent_id)
        if (self.parent_id is None) != (self.level is UnitLevel.CITY):
            raise OrgError("parent_id", "a city has no parent; every other unit has one")


class VolunteerKind(enum.StrEnum):
    DUTY = "duty"  # duty-type: guards, property staff, village security, building heads
    VOLUNTARY = "voluntary"  # couriers, riders, shop owners, bank and school staff


@dataclass(frozen=True, slots=True)
class Volunteer:
    volunteer_id: str
    name: str
    unit_id: str
    kind: VolunteerKind = VolunteerKind.VOLUNTARY
    phone: str = ""

    def __post_init__(self) -> None:
        check_id("volunteer_id", self.volunteer_id)
        check_text("name", self.name)
        check_id("unit_id", self.unit_id)
        if not isinstance(self.kind, VolunteerKind):
            raise OrgError("kind", f"{self.kind!r}: one of {', '.join(VolunteerKind)}")
        check_text("phone", self.phone, max_len=32, required=False)


class TerminalKind(enum.StrEnum):
    HANDHELD = "handheld"
    BODYCAM = "bodycam"
    SHOULDER_LIGHT = "shoulder_light"
    PHONE = "phone"


@dataclass(frozen=True, slots=True)
class Terminal:
    """A terminal issued to a unit; ``holder`` is the volunteer who carries it now. A
    volunteer holds at most one ``PHONE`` (a phone app's reports: no device signature) and
    one terminal of another kind at a time."""

    device_id: str
    unit_id: str
    kind: TerminalKind = TerminalKind.HANDHELD
    holder: str | None = None

    def __post_init__(self) -> None:
        check_id("device_id", self.device_id)
        check_id("unit_id", self.unit_id)
        if not isinstance(self.kind, TerminalKind):
            raise OrgError("kind", f"{self.kind!r}: one of {', '.join(TerminalKind)}")
        if self.holder is not None:
            check_id("holder", self.holder)


class PostKind(enum.StrEnum):
    """The seven kinds of post. Futian's articles name five (内保外巡, 内部防范, 重点防控区域,
    治安严管区域, 邻里守望执勤点) "among seven"; the last two are the fixed duty point and the
    patrol segment that the same article assigns to every volunteer (值守点, 巡段)."""

    GUARD_AND_PATROL = "guard_and_patrol"  # 内保外巡
    INTERNAL_PREVENTION = "internal_prevention"  # 内部防范
    KEY_PREVENTION_AREA = "key_prevention_area"  # 重点防控区域
    STRICT_ORDER_AREA = "strict_order_area"  # 治安严管区域
    NEIGHBOURHOOD_WATCH = "neighbourhood_watch"  # 邻里守望执勤点
    DUTY_POINT = "duty_point"  # 值守点
    PATROL_SEGMENT = "patrol_segment"  # 巡段


class PostMode(enum.StrEnum):
    FIXED = "fixed"  # stand at a place: circle or polygon geofence
    PATROL = "patrol"  # walk an area: a route corridor or a grid polygon


@dataclass(frozen=True, slots=True)
class Post:
    post_id: str
    name: str
    kind: PostKind
    unit_id: str
    fence: Fence
    mode: PostMode = PostMode.FIXED

    def __post_init__(self) -> None:
        check_id("post_id", self.post_id)
        check_text("name", self.name)
        if not isinstance(self.kind, PostKind):
            raise OrgError("kind", f"{self.kind!r}: one of {', '.join(PostKind)}")
        check_id("unit_id", self.unit_id)
        if not isinstance(self.mode, PostMode):
            raise OrgError("mode", f"{self.mode!r}: one of {', '.join(PostMode)}")
        if not isinstance(self.fence, Circle | Polygon | Corridor):
            raise OrgError("fence", "a circle, polygon or corridor")
        if self.mode is PostMode.FIXED and isinstance(self.fence, Corridor):
            raise OrgError("fence", "a fixed post is a circle or a polygon; a route is a patrol")
        if self.mode is PostMode.PATROL and isinstance(self.fence, Circle):
            raise OrgError("fence", "a patrol post is a route corridor or a grid polygon")


class ShiftRole(enum.StrEnum):
    MEMBER = "member"
    CAPTAIN = "captain"  # the week's rotating captain (轮值队长)


@dataclass(frozen=True, slots=True)
class Shift:
    """One volunteer on one post from ``start_ms`` to ``end_ms`` (end excluded).

    ``device_id`` is the terminal the volunteer held when the shift was made — the non-phone
    one if they held a phone too — (None: no terminal). Fixed at creation, so a terminal
    changing hands later does not rewrite the past. Phones the volunteer holds during the
    shift count beside it, while held (docs/metrics.md, "Phones and trust"); with neither,
    every second counts offline.
    """

    shift_id: str
    volunteer_id: str
    post_id: str
    start_ms: int
    end_ms: int
    device_id: str | None = None
    role: ShiftRole = ShiftRole.MEMBER
    roster_id: str | None = None

    def __post_init__(self) -> None:
        check_id("shift_id", self.shift_id)
        check_id("volunteer_id", self.volunteer_id)
        check_id("post_id", self.post_id)
        for name in ("start_ms", "end_ms"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 2**53:
                raise OrgError(name, f"{v!r} is not a time in epoch milliseconds")
        if self.start_ms % 1000 or self.end_ms % 1000:
            raise OrgError("start_ms", "shifts start and end on whole seconds")
        if self.end_ms <= self.start_ms:
            raise OrgError("end_ms", "must be after start_ms")
        if self.end_ms - self.start_ms > MAX_SHIFT_MS:
            raise OrgError("end_ms", "a shift is at most 24 hours")
        if self.device_id is not None:
            check_id("device_id", self.device_id)
        if not isinstance(self.role, ShiftRole):
            raise OrgError("role", f"{self.role!r}: one of {', '.join(ShiftRole)}")
        if self.roster_id is not None:
            check_id("roster_id", self.roster_id)


class Rotation(enum.StrEnum):
    ALL = "all"  # every member, every scheduled day
    WEEKLY_ONE = "weekly_one"  # "ten stalls a group, one person a week": one member per week


_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True, slots=True)
class Roster:
    """A recurring shift pattern at one post: the days of the week (0 = Monday), a local start
    and end time (an end at or before the start runs past midnight, as the bar-street night
    patrol 20:00–02:00 does), and its members in rotation order."""

    roster_id: str
    post_id: str
    members: tuple[str, ...]
    start: str  # "HH:MM", local
    end: str  # "HH:MM", local
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    rotation: Rotation = Rotation.ALL
    #: The week (Monday's date, ISO) in which ``members[0]`` is the one on duty / captain.
    anchor_week: str = "2026-01-05"
    tz: str = "Asia/Shanghai"
    name: str = field(default="")

    def __post_init__(self) -> None:
        check_id("roster_id", self.roster_id)
        check_id("post_id", self.post_id)
        if not self.members:
            raise OrgError("members", "a roster needs at least one member")
        for m in self.members:
            check_id("members", m)
        if len(set(self.members)) != len(self.members):
            raise OrgError("members", "a member is listed twice")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _HHMM.fullmatch(value):
                raise OrgError(name, f"{getattr(self, name)!r} is not HH:MM (24-hour)")
        if self.start == self.end:
            raise OrgError("end", "equal to start: a shift needs a length")
        if not self.weekdays or any(
            isinstance(d, bool) or not isinstance(d, int) or d not in range(7)
            for d in self.weekdays
        ):
            raise OrgError("weekdays", "days of the week as 0 (Monday) to 6 (Sunday)")
        if not isinstance(self.rotation, Rotation):
            raise OrgError("rotation", f"{self.rotation!r}: one of {', '.join(Rotation)}")
        if not isinstance(self.anchor_week, str) or not re.fullmatch(
            r"\d{4}-\d{2}-\d{2}", self.anchor_week
        ):
            raise OrgError("anchor_week", f"{self.anchor_week!r} is not YYYY-MM-DD")
        check_text("name", self.name, required=False)


def finite(name: str, value: object) -> float:
    """``value`` as a finite float, or an ``OrgError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OrgError(name, f"{value!r} is not a finite number")
    return float(value)
