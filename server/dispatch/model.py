"""Incidents and dispatches as records, the dispatch lifecycle table, and the walking circles.

An **incident** is a place where help is needed (a fight, a fall, a lost child); a
**dispatch** is one terminal asked to go there. A dispatch moves through the states of
``DispatchState`` only as ``TABLE`` allows; nothing else in the package decides a transition,
so the table here is the lifecycle (docs/dispatch.md draws it):

=============  ===========================================  ==============================
from           trigger                                       to
=============  ===========================================  ==============================
sent           delivered (terminal)                          delivered
sent           accepted / declined (terminal)                accepted / declined  (1)
delivered      accepted / declined (terminal)                accepted / declined
sent           expire (server clock reaches expires_ms)      expired
delivered      expire                                        expired
accepted       on_scene (terminal says so, or a fix there)   on_scene
sent/deliv.    close (the incident closes)                   cancelled (DispatchCancel sent)
accepted/o.s.  close                                         closed
any not final  cancel (an officer)                           cancelled (DispatchCancel sent)
=============  ===========================================  ==============================

(1) The agent answers "delivered" at once, but its receipt and the volunteer's answer can
reach the server in one batch or, after a reconnect, the answer alone first; an answer
implies delivery, so ``delivered_ms`` is filled in with it.

Final states (``FINAL``): declined, expired, closed, cancelled. A terminal is *engaged*
while its dispatch is sent, delivered, accepted or on scene (``ENGAGED``).

Records validate on construction and raise ``BadRequest`` naming the field, so a request the
routes pass through unchanged is refused with the same words the API documents.
"""

from __future__ import annotations

import enum
import math
import re
import secrets
from dataclasses import dataclass, fields, replace
from typing import Any

from protocol import IncidentKind
from protocol.messages import ID_PATTERN

from ..duty.flag_model import distance_m
from .errors import BadRequest

_ID = re.compile(ID_PATTERN)
#: A dispatch's ttl: under 30 s a terminal waking from power save may not even ring; over an
#: hour it is no longer a dispatch but a task (``server.field``).
MIN_TTL_S = 30
#: Who may appear in the audit: a person by role (an admin dispatches too), or a terminal.
_ACTORS = ("officer:", "admin:", "terminal:")
MAX_TTL_S = 3600
#: Terminals in one dispatch request: a dispatch is a few volunteers near a place, not a
#: broadcast (that is a task).
MAX_DEVICES = 20
#: The DispatchCommand's note is at most 500 characters on the wire.
MAX_NOTE = 500
#: A fix's own accuracy widens the on-scene radius by at most this much: a 200 m network fix
#: must not put a volunteer "on scene" from the next street.
MAX_ACCURACY_ALLOWANCE_M = 30.0


def new_id(prefix: str) -> str:
    """A short random id (``d-1f2e3d4c5b``): unguessable enough that a terminal cannot answer
    another's dispatch by counting, short enough for a log line."""
    return f"{prefix}-{secrets.token_hex(5)}"


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """How far people walk, how long a dispatch stands, when to widen the circle."""

    walk_speed_mps: float = 1.4
    #: Streets are not straight lines: walking distance = straight line × detour.
    detour: float = 1.3
    circles_min: tuple[int, ...] = (1, 3, 5)
    ttl_s: int = 600
    accept_timeout_s: int = 90
    on_scene_m: float = 50.0
    per_round: int = 2

    def __post_init__(self) -> None:
        if not self.walk_speed_mps > 0:
            raise ValueError(f"walk_speed_mps: {self.walk_speed_mps} is not positive")
        if not self.detour >= 1:
            raise ValueError(f"detour: {self.detour} is below 1 (no path beats a straight line)")
        c = self.circles_min
        if not c or any(k <= 0 for k in c) or list(c) != sorted(set(c)):
            raise ValueError(f"circles_min: {c} is not increasing positive minutes")
        if not MIN_TTL_S <= self.ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl_s: {self.ttl_s} is outside [{MIN_TTL_S}, {MAX_TTL_S}]")
        if self.accept_timeout_s <= 0 or self.on_scene_m <= 0 or self.per_round < 1:
            raise ValueError("accept_timeout_s, on_scene_m and per_round must be positive")

    def radius_m(self, minutes: int) -> float:
        """The straight-line radius of the ``minutes`` circle."""
        return self.walk_speed_mps * 60 * minutes / self.detour

    @property
    def max_radius_m(self) -> float:
        return self.radius_m(self.circles_min[-1])

    def walk(self, straight_m: float) -> tuple[float, float, int | None]:
        """(walk_m, eta_s, circle minutes or None beyond the last) for a straight distance.
        Rings are exclusive: a candidate is in the first circle whose minutes cover its eta."""
        walk_m = straight_m * self.detour
        eta_s = walk_m / self.walk_speed_mps
        # eta ≤ 60·k, compared as distances: the same test as the live state's radius, so a
        # terminal it returns at exactly the radius is not lost to rounding.
        circle = next((k for k in self.circles_min if straight_m <= self.radius_m(k)), None)
        return walk_m, eta_s, circle


# --- the lifecycle ------------------------------------------------------------------------


class DispatchState(enum.StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    ON_SCENE = "on_scene"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Trigger(enum.StrEnum):
    DELIVERED = "delivered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    ON_SCENE = "on_scene"
    EXPIRE = "expire"
    CLOSE = "close"
    CANCEL = "cancel"


S = DispatchState
TABLE: dict[tuple[DispatchState, Trigger], DispatchState] = {
    (S.SENT, Trigger.DELIVERED): S.DELIVERED,
    (S.SENT, Trigger.ACCEPTED): S.ACCEPTED,
    (S.SENT, Trigger.DECLINED): S.DECLINED,
    (S.DELIVERED, Trigger.ACCEPTED): S.ACCEPTED,
    (S.DELIVERED, Trigger.DECLINED): S.DECLINED,
    (S.SENT, Trigger.EXPIRE): S.EXPIRED,
    (S.DELIVERED, Trigger.EXPIRE): S.EXPIRED,
    (S.ACCEPTED, Trigger.ON_SCENE): S.ON_SCENE,
    (S.SENT, Trigger.CLOSE): S.CANCELLED,
    (S.DELIVERED, Trigger.CLOSE): S.CANCELLED,
    (S.ACCEPTED, Trigger.CLOSE): S.CLOSED,
    (S.ON_SCENE, Trigger.CLOSE): S.CLOSED,
    (S.SENT, Trigger.CANCEL): S.CANCELLED,
    (S.DELIVERED, Trigger.CANCEL): S.CANCELLED,
    (S.ACCEPTED, Trigger.CANCEL): S.CANCELLED,
    (S.ON_SCENE, Trigger.CANCEL): S.CANCELLED,
}
FINAL = frozenset({S.DECLINED, S.EXPIRED, S.CLOSED, S.CANCELLED})
ENGAGED = frozenset({S.SENT, S.DELIVERED, S.ACCEPTED, S.ON_SCENE})
#: Final states the terminal is told of (a DispatchCancel): called off, or the incident closed
#: under a volunteer on the way or on scene — they stand down and go back to their post.
TOLD = frozenset({S.CANCELLED, S.CLOSED})
#: Where each state's moment is kept.
_STAMP = {
    S.DELIVERED: "delivered_ms",
    S.ACCEPTED: "accepted_ms",
    S.DECLINED: "declined_ms",
    S.ON_SCENE: "on_scene_ms",
    S.EXPIRED: "expired_ms",
    S.CLOSED: "closed_ms",
    S.CANCELLED: "cancelled_ms",
}
#: A terminal's answers (``protocol.ResponseStatus`` values) as triggers, and where each is
#: kept once recorded.
_ANSWER_STAMP = {
    Trigger.DELIVERED: "delivered_ms",
    Trigger.ACCEPTED: "accepted_ms",
    Trigger.DECLINED: "declined_ms",
    Trigger.ON_SCENE: "on_scene_ms",
}
ANSWERS = {t.value: t for t in _ANSWER_STAMP}


# --- records --------------------------------------------------------------------------------


def _ident(name: str, value: object) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise BadRequest(name, f"{value!r} is not an id ({ID_PATTERN})")


def _ms(name: str, value: object, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(name, f"{value!r} is not a time in ms")


def check_place(lat: object, lon: object) -> tuple[float, float]:
    """A place on the globe, or ``BadRequest`` naming the coordinate."""
    for name, value, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(name, f"{value!r} is not a number")
        if not math.isfinite(value) or not -limit <= value <= limit:
            raise BadRequest(name, f"{value} is outside [-{limit:g}, {limit:g}]")
    assert isinstance(lat, int | float) and isinstance(lon, int | float)
    return float(lat), float(lon)


@dataclass(frozen=True, slots=True)
class Incident:
    incident_id: str
    kind: IncidentKind
    priority: int
    lat: float
    lon: float
    created_ms: int
    created_by: str
    note: str = ""
    unit_id: str | None = None
    state: str = "open"
    closed_ms: int | None = None
    closed_by: str | None = None
    auto_escalate: bool = True
    #: The widest circle asked so far (minutes); None before the first dispatch.
    circle: int | None = None
    #: When the latest round of dispatches went out: escalation's timeout counts from it.
    round_ms: int | None = None
    #: Escalation found nobody left; set until the next round an officer starts.
    exhausted: bool = False

    def __post_init__(self) -> None:
        _ident("incident_id", self.incident_id)
        if not isinstance(self.kind, IncidentKind):
            try:
                object.__setattr__(self, "kind", IncidentKind(self.kind))
            except ValueError:
                kinds = ", ".join(k.value for k in IncidentKind)
                raise BadRequest("kind", f"{self.kind!r} is not one of {kinds}") from None
        if isinstance(self.priority, bool) or self.priority not in (1, 2, 3):
            raise BadRequest("priority", f"{self.priority!r} is not 1, 2 or 3")
        lat, lon = check_place(self.lat, self.lon)
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        if not isinstance(self.note, str) or len(self.note) > MAX_NOTE:
            raise BadRequest("note", f"must be text of at most {MAX_NOTE} characters")
        if self.unit_id is not None:
            _ident("unit_id", self.unit_id)
        if self.state not in ("open", "closed"):
            raise BadRequest("state", f"{self.state!r} is not open or closed")
        if not isinstance(self.created_by, str) or not self.created_by:
            raise BadRequest("created_by", "must name who opened the incident")
        if not isinstance(self.auto_escalate, bool):
            raise BadRequest("auto_escalate", f"{self.auto_escalate!r} is not true or false")
        for name in ("created_ms", "closed_ms", "round_ms"):
            _ms(name, getattr(self, name), optional=name != "created_ms")
        if (self.state == "closed") != (self.closed_ms is not None):
            raise BadRequest("closed_ms", "is set exactly when the incident is closed")

    def to_json(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "kind": self.kind.value,
            "priority": self.priority,
            "lat": self.lat,
            "lon": self.lon,
            "note": self.note,
            "unit_id": self.unit_id,
            "state": self.state,
            "created_ms": self.created_ms,
            "created_by": self.created_by,
            "closed_ms": self.closed_ms,
            "closed_by": self.closed_by,
            "auto_escalate": self.auto_escalate,
            "circle": self.circle,
            "exhausted": self.exhausted,
        }


@dataclass(frozen=True, slots=True)
class Dispatch:
    dispatch_id: str
    incident_id: str
    device_id: str
    sent_ms: int
    expires_ms: int
    state: DispatchState = DispatchState.SENT
    volunteer_id: str | None = None
    name: str | None = None
    circle: int | None = None
    distance_m: float | None = None
    eta_s: float | None = None
    delivered_ms: int | None = None
    accepted_ms: int | None = None
    declined_ms: int | None = None
    on_scene_ms: int | None = None
    expired_ms: int | None = None
    closed_ms: int | None = None
    cancelled_ms: int | None = None
    reason: str | None = None
    #: When the command (or, once cancelled, the cancel) was last handed to the broker.
    last_sent_ms: int | None = None
    #: The command (or the cancel) still has to be handed to the broker: tick retries it.
    pending: bool = True
    #: The last resend by the reconnect rule (at most one per ``RESEND_EVERY_MS``).
    resent_ms: int | None = None

    def __post_init__(self) -> None:
        for name in ("dispatch_id", "incident_id", "device_id"):
            _ident(name, getattr(self, name))
        object.__setattr__(self, "state", DispatchState(self.state))
        for f in fields(self):
            if f.name.endswith("_ms"):
                _ms(f.name, getattr(self, f.name), optional=f.name not in ("sent_ms", "expires_ms"))
        if self.expires_ms <= self.sent_ms:
            raise BadRequest("expires_ms", "must be after sent_ms")

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def has_answered(self, trigger: Trigger) -> bool:
        """Is this answer already recorded? (A repeat, or a receipt an answer implied.)"""
        return getattr(self, _ANSWER_STAMP[trigger]) is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "dispatch_id": self.dispatch_id,
            "incident_id": self.incident_id,
            "device_id": self.device_id,
            "volunteer_id": self.volunteer_id,
            "name": self.name,
            "circle": self.circle,
            "state": self.state.value,
            "sent_ms": self.sent_ms,
            "expires_ms": self.expires_ms,
            "delivered_ms": self.delivered_ms,
            "accepted_ms": self.accepted_ms,
            "declined_ms": self.declined_ms,
            "on_scene_ms": self.on_scene_ms,
            "expired_ms": self.expired_ms,
            "closed_ms": self.closed_ms,
            "cancelled_ms": self.cancelled_ms,
            "reason": self.reason,
            "distance_m": self.distance_m,
            "eta_s": self.eta_s,
            "pending": self.pending,
        }


def advance(
    d: Dispatch, trigger: Trigger, at_ms: int, reason: str | None = None
) -> Dispatch | None:
    """The dispatch after ``trigger`` at ``at_ms``, or None if the table has no such step."""
    to = TABLE.get((d.state, trigger))
    if to is None:
        return None
    changes: dict[str, Any] = {"state": to, _STAMP[to]: at_ms}
    if to in (S.ACCEPTED, S.DECLINED) and d.delivered_ms is None:
        changes["delivered_ms"] = at_ms  # an answer implies the command arrived
    if reason:
        changes["reason"] = reason
    # Once cancelled, the cancel is the command still to hand over; any other step means the
    # command needs no more sending (an answer proves it arrived; expired or closed, it is moot).
    changes["pending"] = to is S.CANCELLED
    return replace(d, **changes)


@dataclass(frozen=True, slots=True)
class Step:
    """One audit row: who did what to which incident or dispatch, when. Append-only."""

    at_ms: int
    actor: str
    incident_id: str
    step: str
    dispatch_id: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        _ms("at_ms", self.at_ms, optional=False)
        if not (self.actor == "system" or self.actor.startswith(_ACTORS)):
            raise BadRequest("actor", f"{self.actor!r} is not system, <role>:… or terminal:…")

    def to_json(self) -> dict[str, Any]:
        return {
            "at_ms": self.at_ms,
            "actor": self.actor,
            "incident_id": self.incident_id,
            "dispatch_id": self.dispatch_id,
            "step": self.step,
            "detail": self.detail,
        }


def arrived(
    incident: Incident, lat: float, lon: float, accuracy_m: float | None, config: DispatchConfig
) -> bool:
    """Is a fix at (lat, lon) on scene? Within ``on_scene_m`` of the incident, widened by the
    fix's own accuracy up to ``MAX_ACCURACY_ALLOWANCE_M``."""
    allowance = min(max(accuracy_m or 0.0, 0.0), MAX_ACCURACY_ALLOWANCE_M)
    return distance_m(incident.lat, incident.lon, lat, lon) <= config.on_scene_m + allowance
