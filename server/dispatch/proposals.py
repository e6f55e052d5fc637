"""Who could go: the walking circles around an incident, and who may be dispatched at all.

The live state (``server.live.LiveState``) knows where every terminal is and whether it is on
duty, online and free; this module asks it and turns straight-line metres into walking time.
Walking distance = straight line × ``detour``; eta = walking distance / ``walk_speed_mps``. A
candidate is in the k-minute circle when eta ≤ 60·k, and rings are exclusive: the 3-minute
circle lists those of 1–3 minutes, not the 1-minute ones again.

``LiveView`` and ``HubView`` are the few calls of the live state and the hub this package
makes, so tests hand in small fakes and the real ones satisfy them as they are.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from ..duty.flag_model import distance_m
from .model import DispatchConfig, Incident


class CandidateView(Protocol):
    """``server.live.Candidate``: a terminal, its straight-line distance, its live doc."""

    @property
    def device_id(self) -> str: ...

    @property
    def distance_m(self) -> float: ...

    @property
    def doc(self) -> dict[str, Any]: ...


class LiveView(Protocol):
    """What dispatch asks of ``server.live.LiveState``."""

    def nearest(
        self,
        lat: float,
        lon: float,
        radius_m: float,
        *,
        limit: int = ...,
        units: Collection[str] | None = ...,
        on_duty_only: bool = ...,
        exclude_engaged: bool = ...,
        max_fix_age_s: float = ...,
    ) -> Sequence[CandidateView]: ...

    def get(self, device_id: str) -> dict[str, Any] | None: ...

    def set_engaged(self, device_id: str, dispatch_id: str | None) -> None: ...


class HubView(Protocol):
    """What dispatch asks of ``server.live.Hub``."""

    def publish_event(self, topic: str, data: dict[str, Any], unit_id: str | None) -> None: ...


#: How many terminals one proposal lists at most: the nearest, across the circles. An officer
#: sends a few; fifty keeps the query under a millisecond over 50,000 live terminals
#: (docs/benchmarks.md), where listing 200 costs ~1.7 ms in copies of their state.
PROPOSAL_LIMIT = 50


def candidate_json(
    device_id: str, straight_m: float, doc: Mapping[str, Any], config: DispatchConfig
) -> dict[str, Any]:
    walk_m, eta_s, _ = config.walk(straight_m)
    volunteer = doc.get("volunteer") or {}
    duty = doc.get("duty") or {}
    return {
        "device_id": device_id,
        "volunteer_id": volunteer.get("volunteer_id"),
        "name": volunteer.get("name"),
        "distance_m": round(straight_m, 1),
        "walk_m": round(walk_m, 1),
        "eta_s": round(eta_s, 1),
        "status": doc.get("status"),
        "post_id": duty.get("post_id"),
        # A phone is listed (the officer can call them) but cannot take a dispatch.
        "kind": doc.get("kind"),
    }


def circles(
    incident: Incident,
    live: LiveView,
    config: DispatchConfig,
    *,
    units: Collection[str] | None,
    asked: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``[{"minutes", "radius_m", "candidates": [...]}, ...]``, one per circle of the config,
    nearest first in each. ``asked`` (device → state of its last dispatch to this incident)
    marks those already asked once (a decline or an expiry), so the officer sees it."""
    asked = asked or {}
    found = live.nearest(
        incident.lat,
        incident.lon,
        config.max_radius_m,
        limit=PROPOSAL_LIMIT,
        units=units,
        on_duty_only=True,
        exclude_engaged=True,
    )
    out: list[dict[str, Any]] = [
        {"minutes": k, "radius_m": round(config.radius_m(k), 1), "candidates": []}
        for k in config.circles_min
    ]
    index = {k: i for i, k in enumerate(config.circles_min)}
    for c in found:
        _, _, circle = config.walk(c.distance_m)
        if circle is None:
            continue
        doc = candidate_json(c.device_id, c.distance_m, c.doc, config)
        doc["asked"] = asked.get(c.device_id)
        out[index[circle]]["candidates"].append(doc)
    return out


def escalation_picks(
    incident: Incident,
    live: LiveView,
    config: DispatchConfig,
    *,
    units: Collection[str] | None,
    exclude: Collection[str],
) -> tuple[int | None, list[CandidateView]]:
    """The next round: up to ``per_round`` nearest candidates not in ``exclude`` within the
    first circle wider than the incident's current one that has any; (None, []) when every
    circle is used up. The circle is cumulative here: someone of the inner ring nobody asked
    is nearer than anyone of the outer one."""
    wider = [k for k in config.circles_min if incident.circle is None or k > incident.circle]
    if not wider:
        return None, []
    found = live.nearest(
        incident.lat,
        incident.lon,
        config.max_radius_m,
        limit=PROPOSAL_LIMIT,
        units=units,
        on_duty_only=True,
        exclude_engaged=True,
    )
    fresh = [c for c in found if c.device_id not in exclude]
    for k in wider:
        inside = [c for c in fresh if c.distance_m <= config.radius_m(k)]
        if inside:
            return k, sorted(inside, key=lambda c: c.distance_m)[: config.per_round]
    return None, []


def ineligible(doc: Mapping[str, Any] | None, units: Collection[str] | None) -> str | None:
    """Why a terminal may not be dispatched now (None: it may). The same conditions as
    ``circles``' candidates, except distance: an officer may send someone from further away."""
    if doc is None:
        return "is not a known terminal"
    if units is not None and doc.get("unit_id") not in units:
        return "is outside your scope"
    if not doc.get("online") or doc.get("status") == "offline":
        return "is offline"
    if doc.get("status") == "sos" or doc.get("sos_ms") is not None:
        return "has raised an SOS"
    if doc.get("dispatch_id") is not None:
        return f"is already engaged on dispatch {doc['dispatch_id']}"
    if doc.get("duty") is None:
        return "is not on duty"
    return None


def straight_m(incident: Incident, doc: Mapping[str, Any]) -> float | None:
    """Straight-line metres from the terminal's latest fix to the incident (None: no fix)."""
    fix = doc.get("fix")
    if not isinstance(fix, Mapping) or fix.get("lat") is None or fix.get("lon") is None:
        return None
    return distance_m(incident.lat, incident.lon, float(fix["lat"]), float(fix["lon"]))
