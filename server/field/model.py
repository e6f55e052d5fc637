"""Tasks, clues, SOS alerts and audit steps: frozen records that check themselves.

Every record names the field that is wrong (``BadRequest.field``), so a request built from
an officer's form and a row read back from ``field.db`` pass the same checks. Times are epoch
milliseconds on the **server's** clock unless the name says otherwise (a clue's ``time_ms`` is
the terminal's, as reported).

Each record has ``to_json``: the document the REST routes answer and the live feed's events
carry (docs/field.md). A document is built from the record alone, except an alert's latest
picture, which comes from the live state when the document is made.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol import Fix, IncidentKind

from .errors import BadRequest

TITLE_MAX = 100  # protocol: Task.title
TEXT_MAX = 1000  # protocol: Task.text, Clue.text
NOTE_MAX = 500
MIN_TTL_S = 60
MAX_TTL_S = 7 * 86_400
DEFAULT_TTL_S = 3_600
DEFAULT_PRIORITY = 2
#: A task event with more targets than this leaves them out (``"targets_omitted": true``):
#: a district-wide task must not push megabytes to every watcher on each acknowledgement.
EVENT_TARGETS_MAX = 500
#: An unacknowledged task is sent again when its terminal is heard from this long after the
#: last send: the terminal was away, and its MQTT session (with the queued task) may be gone.
RESEND_AFTER_MS = 60_000


class TargetKind(enum.StrEnum):
    UNIT = "unit"  # every terminal of the unit's subtree
    POST_KIND = "post_kind"  # every terminal on a shift running now at a post of that kind


class ClueState(enum.StrEnum):
    NEW = "new"
    HANDLED = "handled"


class AlertState(enum.StrEnum):
    OPEN = "open"
    ACKED = "acked"


def check_text(name: str, value: object, max_len: int, *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise BadRequest(name, f"expected text, got {type(value).__name__}")
    if required and not value.strip():
        raise BadRequest(name, "must not be empty")
    if len(value) > max_len:
        raise BadRequest(name, f"longer than {max_len} characters")
    return value


def check_ms(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise BadRequest(name, f"{value!r} is not a time in epoch milliseconds")


def check_place(lat: object, lon: object) -> None:
    """Both or neither, each a finite number in range."""
    if (lat is None) != (lon is None):
        raise BadRequest("lat", "a place needs both lat and lon, or neither")
    for name, value, bound in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not -bound <= value <= bound
        ):
            raise BadRequest(name, f"{value!r} is not a number in [-{bound:g}, {bound:g}]")


def fix_doc(fix: Fix) -> dict[str, Any]:
    """A fix as the live feed shows one (``server.live.TerminalState.to_json``)."""
    return {
        "time_ms": fix.time_ms,
        "lat": fix.lat,
        "lon": fix.lon,
        "accuracy_m": fix.accuracy_m,
        "speed_mps": fix.speed_mps,
        "course_deg": fix.course_deg,
        "source": fix.source.value,
    }


def snapshot_url(sha256_hex: str) -> str:
    return f"/api/v1/snapshots/{sha256_hex}.jpg"


# --- tasks ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskTarget:
    """One terminal a task goes to, with who held it when the task was published.

    ``sent_ms`` is the first send the broker took, ``last_sent_ms`` the latest (a resend);
    ``send_failed``: the latest attempt found the broker link down, so ``tick`` tries again.
    """

    device_id: str
    unit_id: str | None = None
    volunteer_id: str | None = None
    name: str | None = None
    sent_ms: int | None = None
    last_sent_ms: int | None = None
    send_failed: bool = False
    acked_ms: int | None = None

    def __post_init__(self) -> None:
        check_text("device_id", self.device_id, 64)
        for name in ("sent_ms", "last_sent_ms", "acked_ms"):
            check_ms(name, getattr(self, name), optional=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "volunteer_id": self.volunteer_id,
            "name": self.name,
            "sent_ms": self.sent_ms,
            "acked_ms": self.acked_ms,
            "send_failed": self.send_failed,
        }


@dataclass(frozen=True, slots=True)
class FieldTask:
    task_id: str
    title: str
    text: str
    priority: int
    target_kind: TargetKind
    target: str
    unit_id: str | None
    created_ms: int
    created_by: str
    expires_ms: int
    lat: float | None = None
    lon: float | None = None
    targets: tuple[TaskTarget, ...] = ()

    def __post_init__(self) -> None:
        check_text("task_id", self.task_id, 64)
        check_text("title", self.title, TITLE_MAX)
        check_text("text", self.text, TEXT_MAX, required=False)
        if (
            isinstance(self.priority, bool)
            or not isinstance(self.priority, int)
            or self.priority not in (1, 2, 3)
        ):
            raise BadRequest("priority", f"{self.priority!r} is not 1, 2 or 3")
        if not isinstance(self.target_kind, TargetKind):
            raise BadRequest("target_kind", f"{self.target_kind!r}: one of unit, post_kind")
        check_text("target", self.target, 64)
        check_text("created_by", self.created_by, 200)
        check_ms("created_ms", self.created_ms)
        check_ms("expires_ms", self.expires_ms)
        if self.expires_ms <= self.created_ms:
            raise BadRequest("ttl_s", "a task must expire after it is published")
        check_place(self.lat, self.lon)

    @property
    def acked(self) -> int:
        return sum(1 for t in self.targets if t.acked_ms is not None)

    @property
    def total(self) -> int:
        return len(self.targets)

    def to_json(self, now_ms: int, *, max_targets: int | None = None) -> dict[str, Any]:
        """The task document; with ``max_targets``, a task with more targets leaves them out
        (``"targets_omitted": true``)."""
        doc: dict[str, Any] = {
            "task_id": self.task_id,
            "title": self.title,
            "text": self.text,
            "priority": self.priority,
            "target_kind": self.target_kind.value,
            "target": self.target,
            "unit_id": self.unit_id,
            "created_ms": self.created_ms,
            "created_by": self.created_by,
            "expires_ms": self.expires_ms,
            "expired": now_ms >= self.expires_ms,
            "lat": self.lat,
            "lon": self.lon,
            "acked": self.acked,
            "total": self.total,
        }
        if max_targets is not None and self.total > max_targets:
            doc["targets_omitted"] = True
        else:
            doc["targets"] = [t.to_json() for t in self.targets]
        return doc


# --- clues ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClueReport:
    """A clue a volunteer reported, keyed by (device_id, clue_id): the agent names its clues,
    so two terminals may use the same id."""

    device_id: str
    clue_id: str
    time_ms: int  # the terminal's clock, when the volunteer reported it
    received_ms: int
    text: str
    category: IncidentKind
    unit_id: str | None = None
    volunteer_id: str | None = None
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    photo_sha256: str | None = None
    state: ClueState = ClueState.NEW
    handled_by: str | None = None
    handled_ms: int | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        check_text("device_id", self.device_id, 64)
        check_text("clue_id", self.clue_id, 64)
        check_ms("time_ms", self.time_ms)
        check_ms("received_ms", self.received_ms)
        check_text("text", self.text, TEXT_MAX)
        if not isinstance(self.category, IncidentKind):
            raise BadRequest("category", f"{self.category!r}: one of {', '.join(IncidentKind)}")
        check_place(self.lat, self.lon)
        if not isinstance(self.state, ClueState):
            raise BadRequest("state", f"{self.state!r}: one of new, handled")
        if (self.state is ClueState.HANDLED) != (self.handled_ms is not None):
            raise BadRequest("handled_ms", "set exactly when the clue is handled")
        if self.note is not None:
            check_text("note", self.note, NOTE_MAX, required=False)

    @property
    def key(self) -> str:
        """The id the REST routes use: ``<device_id>:<clue_id>`` (an id never holds ':')."""
        return f"{self.device_id}:{self.clue_id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "clue_id": self.clue_id,
            "device_id": self.device_id,
            "volunteer_id": self.volunteer_id,
            "name": self.name,
            "unit_id": self.unit_id,
            "time_ms": self.time_ms,
            "received_ms": self.received_ms,
            "text": self.text,
            "category": self.category.value,
            "lat": self.lat,
            "lon": self.lon,
            "photo_url": snapshot_url(self.photo_sha256) if self.photo_sha256 else None,
            "state": self.state.value,
            "handled_by": self.handled_by,
            "handled_ms": self.handled_ms,
            "note": self.note,
        }


# --- SOS alerts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alert:
    """An SOS, open until an officer acknowledges it. Repeats while open count here;
    ``fix`` is the newest position known (``fix_doc`` shape)."""

    alert_id: str
    device_id: str
    raised_ms: int
    last_ms: int
    count: int = 1
    unit_id: str | None = None
    volunteer_id: str | None = None
    name: str | None = None
    fix: Mapping[str, Any] | None = None
    state: AlertState = AlertState.OPEN
    acked_by: str | None = None
    acked_ms: int | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        check_text("alert_id", self.alert_id, 64)
        check_text("device_id", self.device_id, 64)
        check_ms("raised_ms", self.raised_ms)
        check_ms("last_ms", self.last_ms)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise BadRequest("count", f"{self.count!r} is not a positive whole number")
        if not isinstance(self.state, AlertState):
            raise BadRequest("state", f"{self.state!r}: one of open, acked")
        if (self.state is AlertState.ACKED) != (self.acked_ms is not None):
            raise BadRequest("acked_ms", "set exactly when the alert is acknowledged")
        if self.note is not None:
            check_text("note", self.note, NOTE_MAX, required=False)

    def to_json(self, snapshot: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "device_id": self.device_id,
            "volunteer_id": self.volunteer_id,
            "name": self.name,
            "unit_id": self.unit_id,
            "raised_ms": self.raised_ms,
            "last_ms": self.last_ms,
            "count": self.count,
            "fix": dict(self.fix) if self.fix is not None else None,
            "snapshot": dict(snapshot) if snapshot is not None else None,
            "state": self.state.value,
            "acked_by": self.acked_by,
            "acked_ms": self.acked_ms,
            "note": self.note,
        }


# --- the audit ------------------------------------------------------------------------------


class Subject(enum.StrEnum):
    TASK = "task"
    CLUE = "clue"
    ALERT = "alert"


@dataclass(frozen=True, slots=True)
class Step:
    """One audit row: who (``officer:<name>``, ``terminal:<device>``, ``system``) did what
    to which record. Append-only: the store refuses to change or delete one."""

    at_ms: int
    actor: str
    subject: Subject
    subject_id: str
    step: str
    device_id: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        check_ms("at_ms", self.at_ms)
        check_text("actor", self.actor, 200)
        if not isinstance(self.subject, Subject):
            raise BadRequest("subject", f"{self.subject!r}: one of task, clue, alert")
        check_text("subject_id", self.subject_id, 200)
        check_text("step", self.step, 40)

    def to_json(self) -> dict[str, Any]:
        return {
            "at_ms": self.at_ms,
            "actor": self.actor,
            "step": self.step,
            "device_id": self.device_id,
            "detail": self.detail,
        }


def terminal_actor(device_id: str) -> str:
    return f"terminal:{device_id}"


SYSTEM = "system"
