"""The dispatcher: open incidents, send terminals to them, follow their answers, widen the circle.

Threads: ``on_accepted`` runs on the ingest thread, ``tick`` on a worker thread once a second,
the rest on web worker threads. One re-entrant lock (``DispatchCore``) makes each change one
step: read the record in memory, decide with ``model.advance``, then ``_commit`` (database,
memory, events). Sends happen after the lock is released.

- ``tick``: expiry at ``expires_ms`` on the server's clock, retries of refused sends, and
  escalation: when no dispatch of an open incident with ``auto_escalate`` is accepted within
  ``accept_timeout_s`` of its last round, or every dispatch of that round was declined or
  expired, up to ``per_round`` nearest candidates not yet asked, in the next circle that has
  any, are dispatched ("escalated"); none left: "escalation_exhausted", once.
- ``on_accepted``: answers (``DispatchResponse``) step the table; a fix near the incident puts
  an accepted dispatch on scene; any frame from a terminal whose dispatch is still "sent"
  may resend it (``RESEND_AFTER_MS``, ``RESEND_EVERY_MS``).
- ``replay``: the answers stored while the service was down, applied again; applying an
  answer twice changes nothing (a repeat is recognised by its recorded time; a late or
  ignored answer is audited once).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from protocol import (
    DispatchResponse,
    Fix,
    Message,
    Position,
    PositionBatch,
    decode,
)

from ..ingest import Accepted
from . import proposals
from .core import IGNORED, LATE, RESEND_AFTER_MS, RESEND_EVERY_MS, DispatchCore, Out, S
from .errors import BadRequest, Conflict, NotEligible, NotFound, OutOfScope, UnknownUnit
from .model import (
    ANSWERS,
    MAX_DEVICES,
    MAX_TTL_S,
    MIN_TTL_S,
    TOLD,
    Dispatch,
    Incident,
    Step,
    Trigger,
    advance,
    arrived,
    new_id,
)


def _fixes(message: Message) -> Sequence[Fix]:
    if isinstance(message, Position):
        return (message.fix,)
    if isinstance(message, PositionBatch):
        return message.fixes
    fix = getattr(message, "fix", None)
    return (fix,) if isinstance(fix, Fix) else ()


class Dispatcher(DispatchCore):
    # --- incidents ------------------------------------------------------------------------

    def create_incident(
        self,
        *,
        kind: str,
        priority: int,
        lat: float,
        lon: float,
        actor: str,
        note: str = "",
        unit_id: str | None = None,
        auto_escalate: bool = True,
    ) -> dict[str, Any]:
        """Open an incident; its doc. ``BadRequest`` names a field that cannot be used."""
        if unit_id is not None and (
            not isinstance(unit_id, str) or self._org.unit(unit_id) is None
        ):
            raise UnknownUnit("unit_id", f"no unit {unit_id!r}")
        now = self._now_ms()
        incident = Incident(
            incident_id=new_id("i"),
            kind=kind,  # type: ignore[arg-type]  # validated (and converted) by Incident
            priority=priority,
            lat=lat,
            lon=lon,
            created_ms=now,
            created_by=actor,
            note=note,
            unit_id=unit_id,
            auto_escalate=auto_escalate,
        )
        step = Step(
            now, actor, incident.incident_id, "opened", detail=f"{incident.kind} p{priority}"
        )
        with self._lock:
            self._commit(incidents=[incident], steps=[step])
            doc = self._doc(incident.incident_id)
        assert doc is not None
        return doc

    def incident(self, incident_id: str, *, steps: bool = True) -> dict[str, Any] | None:
        """An incident's doc with its dispatches and (``steps``) its audit trail."""
        with self._lock:
            doc = self._doc(incident_id)
        if doc is not None and steps:
            doc["steps"] = [s.to_json() for s in self._db.steps(incident_id)]
        return doc

    def incidents(
        self, *, state: str = "open", units: Collection[str] | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Incidents (``state``: open, closed or all) of ``units`` (None: any), newest first."""
        if state not in ("open", "closed", "all"):
            raise BadRequest("state", f"{state!r} is not open, closed or all")
        found = self._db.incidents(
            state=None if state == "all" else state, units=units, limit=limit
        )
        by_incident: dict[str, list[Dispatch]] = {}
        for d in self._db.dispatches_of([i.incident_id for i in found]):
            by_incident.setdefault(d.incident_id, []).append(d)
        return [
            {**i.to_json(), "dispatches": [d.to_json() for d in by_incident.get(i.incident_id, [])]}
            for i in found
        ]

    def close_incident(
        self, incident_id: str, actor: str, note: str = "", *, units: Collection[str] | None = None
    ) -> dict[str, Any]:
        """Close an incident: accepted and on-scene dispatches close with it, those still
        sent or delivered are cancelled; the terminals of both are told (a DispatchCancel:
        stop ringing, or stand down); declined and expired stay."""
        if not isinstance(note, str) or len(note) > 500:
            raise BadRequest("note", "must be text of at most 500 characters")
        out: list[Out] = []
        with self._lock:
            incident = self._open(incident_id, units)
            now = self._now_ms()
            changed, steps = [], []
            for d in self._of(incident_id):
                nxt = advance(d, Trigger.CLOSE, now, reason="incident closed")
                if nxt is None:
                    continue
                changed.append(nxt)
                steps.append(
                    Step(now, actor, incident_id, nxt.state.value, d.dispatch_id, "incident closed")
                )
                if nxt.state in TOLD:  # ringing: stop; on the way or on scene: stand down
                    out.append(self._cancel_out(nxt, now, "incident closed"))
            closed = replace(incident, state="closed", closed_ms=now, closed_by=actor)
            steps.append(Step(now, actor, incident_id, "closed", detail=note))
            self._commit(incidents=[closed], dispatches=changed, steps=steps)
        self._deliver(out)
        doc = self.incident(incident_id, steps=False)
        assert doc is not None
        return doc

    # --- proposals and dispatching ------------------------------------------------------------

    def propose(self, incident_id: str, units: Collection[str] | None = None) -> dict[str, Any]:
        """``{"circles": [...]}`` for an open incident: who is on duty, free and near."""
        with self._lock:
            incident = self._open(incident_id, units)
            asked = {d.device_id: d.state.value for d in self._of(incident_id)}
        found = proposals.circles(incident, self._live, self.config, units=units, asked=asked)
        return {"circles": found}

    def dispatch(
        self,
        incident_id: str,
        device_ids: Sequence[str],
        actor: str,
        ttl_s: int | None = None,
        units: Collection[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Send these terminals to the incident; their dispatch docs. Every device must be a
        current candidate (``proposals.ineligible``): otherwise ``NotEligible`` names the first
        that is not, and nothing is sent."""
        if isinstance(device_ids, str) or not isinstance(device_ids, Sequence) or not device_ids:
            raise BadRequest("device_ids", "a non-empty list of device ids")
        if len(device_ids) > MAX_DEVICES:
            raise BadRequest("device_ids", f"at most {MAX_DEVICES} in one dispatch")
        if len(set(device_ids)) != len(device_ids):
            raise BadRequest("device_ids", "a device is listed twice")
        if ttl_s is None:
            ttl_s = self.config.ttl_s
        if (
            isinstance(ttl_s, bool)
            or not isinstance(ttl_s, int)
            or not MIN_TTL_S <= ttl_s <= MAX_TTL_S
        ):
            raise BadRequest(
                "ttl_s", f"{ttl_s!r} is not a whole number in [{MIN_TTL_S}, {MAX_TTL_S}]"
            )
        with self._lock:
            incident = self._open(incident_id, units)
            picks = []
            for device in device_ids:
                if not isinstance(device, str):
                    raise BadRequest("device_ids", f"{device!r} is not a device id")
                doc = self._live.get(device)
                why = proposals.ineligible(doc, units)
                if why is None and device in self._active:
                    why = f"is already engaged on dispatch {self._active[device]}"
                if why is not None:
                    raise NotEligible(device, why)
                assert doc is not None
                picks.append((device, proposals.straight_m(incident, doc), doc))
            out = self._start_round(incident, picks, actor, ttl_s, "dispatched")
            ids = [o.dispatch_id for o in out]
        self._deliver(out)
        with self._lock:
            return [self._dispatches[i].to_json() for i in ids if i in self._dispatches]

    def cancel(
        self,
        dispatch_id: str,
        actor: str,
        reason: str = "",
        *,
        units: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """An officer calls one dispatch off: cancelled, and the terminal is told."""
        if not isinstance(reason, str) or len(reason) > 200:
            raise BadRequest("reason", "must be text of at most 200 characters")
        with self._lock:
            d = self._dispatches.get(dispatch_id) or self._db.dispatch(dispatch_id)
            if d is None:
                raise NotFound(f"no dispatch {dispatch_id!r}")
            incident = self._incidents.get(d.incident_id) or self._db.incident(d.incident_id)
            if units is not None and (incident is None or incident.unit_id not in units):
                raise OutOfScope(f"dispatch {dispatch_id} is outside your scope")
            now = self._now_ms()
            nxt = advance(d, Trigger.CANCEL, now, reason=reason or "cancelled by an officer")
            if nxt is None:
                raise Conflict(f"dispatch {dispatch_id} is already {d.state.value}")
            step = Step(now, actor, d.incident_id, "cancelled", dispatch_id, reason)
            self._commit(dispatches=[nxt], steps=[step])
            out = [self._cancel_out(nxt, now, reason)]
        self._deliver(out)
        with self._lock:
            return (self._dispatches.get(dispatch_id) or nxt).to_json()

    def tick(self) -> None:
        """Expire what is due, retry what the broker refused, escalate what waited too long.
        Runs on a worker thread once a second; never raises (logs)."""
        try:
            with self._lock:
                now = self._now_ms()
                self._expire(now)
                out = self._retries(now)
                out += self._escalate(now)
            self._deliver(out)
        except Exception:
            self._log.exception("dispatch tick failed")

    def _expire(self, now: int) -> None:
        for d in list(self._dispatches.values()):
            if d.state in (S.SENT, S.DELIVERED) and now >= d.expires_ms:
                self._expire_one(d, now)

    def _retries(self, now: int) -> list[Out]:
        out = []
        for d in list(self._dispatches.values()):
            if not d.pending or d.dispatch_id in self._in_flight:
                continue
            if d.state is S.SENT:
                command = self._command(d)
                if command is not None:
                    out.append(
                        Out(
                            d.dispatch_id,
                            d.device_id,
                            command,
                            -(-(d.expires_ms - now) // 1000),
                            retry=True,
                        )
                    )
            elif d.state in TOLD:
                told_ms = d.cancelled_ms if d.state is S.CANCELLED else d.closed_ms
                assert told_ms is not None
                if now < told_ms + self.config.ttl_s * 1000:
                    o = self._cancel_out(d, now, d.reason or "")
                    out.append(replace(o, retry=True))
                else:
                    step = Step(
                        now,
                        "system",
                        d.incident_id,
                        "send_abandoned",
                        d.dispatch_id,
                        "cancel: the broker never took it",
                    )
                    self._failing.discard(d.dispatch_id)
                    self._commit(
                        dispatches=[replace(d, pending=False)], steps=[step], publish=False
                    )
        return out

    def _escalate(self, now: int) -> list[Out]:
        out: list[Out] = []
        timeout = self.config.accept_timeout_s * 1000
        for incident in list(self._incidents.values()):
            if not incident.auto_escalate or incident.round_ms is None or incident.exhausted:
                continue
            ds = self._of(incident.incident_id)
            if any(d.state in (S.ACCEPTED, S.ON_SCENE) for d in ds):
                continue
            this_round = [d for d in ds if d.sent_ms >= incident.round_ms]
            refused = bool(this_round) and all(
                d.state in (S.DECLINED, S.EXPIRED) for d in this_round
            )
            if not refused and now < incident.round_ms + timeout:
                continue
            why = "all declined or expired" if refused else "nobody accepted in time"
            units = self._org.subtree(incident.unit_id) if incident.unit_id is not None else None
            circle, picks = proposals.escalation_picks(
                incident,
                self._live,
                self.config,
                units=units,
                exclude={d.device_id for d in ds},
            )
            if not picks:
                step = Step(
                    now,
                    "system",
                    incident.incident_id,
                    "escalation_exhausted",
                    detail=f"{why}; nobody left within {self.config.circles_min[-1]} min",
                )
                self._commit(incidents=[replace(incident, exhausted=True)], steps=[step])
                continue
            step = Step(
                now,
                "system",
                incident.incident_id,
                "escalated",
                detail=f"{why}; circle {circle} min",
            )
            incident = replace(incident, circle=circle)
            out += self._start_round(
                incident,
                [(c.device_id, c.distance_m, c.doc) for c in picks],
                "system",
                self.config.ttl_s,
                "dispatched",
                extra=[step],
            )
        return out

    # --- what terminals say ------------------------------------------------------------------

    def on_accepted(self, batch: Sequence[Accepted]) -> None:
        """Answers, positions and signs of life from newly stored frames (ingest thread).
        Never raises: a frame whose handling fails is logged and counted."""
        out: list[Out] = []
        with self._lock:
            for a in batch:
                try:
                    if isinstance(a.message, DispatchResponse):
                        self._answer(a, a.message)
                    if a.device_id in self._active:
                        self._arrival(a)
                        out += self._resend(a)
                except Exception:
                    self.counts["errors"] += 1
                    self._log.exception("dispatch: frame %s/%d not handled", a.device_id, a.seq)
        try:
            self._deliver(out)
        except Exception:
            self._log.exception("dispatch: resend failed")

    def _answer(self, a: Accepted, m: DispatchResponse) -> None:
        d = self._dispatches.get(m.dispatch_id)
        if d is None:
            self.counts["unknown"] += 1
            return
        if d.device_id != a.device_id:
            # Dispatch ids are not secret; another terminal answering one is worth a look.
            self.counts["foreign"] += 1
            self._log.warning(
                "%s answered dispatch %s, which went to %s; ignored",
                a.device_id,
                d.dispatch_id,
                d.device_id,
            )
            return
        trigger = ANSWERS[m.status.value]
        if d.has_answered(trigger):
            return  # a repeat (a resent frame, a replay): nothing new
        if d.state in (S.SENT, S.DELIVERED) and a.received_ms >= d.expires_ms:
            d = self._expire_one(d, self._now_ms())  # the server's clock decides, not the tick's
        at = max(d.sent_ms, min(m.time_ms, a.received_ms))
        nxt = advance(d, trigger, at, reason=m.reason)
        actor = f"terminal:{a.device_id}"
        if nxt is None:
            kind = LATE if d.final else IGNORED
            if (d.dispatch_id, trigger.value) in self._noted:
                return
            step = Step(self._now_ms(), actor, d.incident_id, kind, d.dispatch_id, trigger.value)
            self._commit(steps=[step], publish=False)
            self._noted.add((d.dispatch_id, trigger.value))
            return
        step = Step(at, actor, d.incident_id, nxt.state.value, d.dispatch_id, m.reason or "")
        self._commit(dispatches=[nxt], steps=[step])

    def _arrival(self, a: Accepted) -> None:
        """A fix within reach of the incident puts an accepted dispatch on scene."""
        d = self._dispatches.get(self._active[a.device_id])
        if d is None or d.state is not S.ACCEPTED:
            return
        incident = self._incidents.get(d.incident_id)
        if incident is None:
            return
        for fix in _fixes(a.message):
            # A fix from before the dispatch says nothing about going there.
            if fix.time_ms < d.sent_ms or fix.time_ms > a.received_ms:
                continue
            if arrived(incident, fix.lat, fix.lon, fix.accuracy_m, self.config):
                at = max(fix.time_ms, d.accepted_ms or d.sent_ms)
                nxt = advance(d, Trigger.ON_SCENE, at)
                assert nxt is not None
                step = Step(
                    at,
                    f"terminal:{a.device_id}",
                    d.incident_id,
                    "on_scene",
                    d.dispatch_id,
                    "by position",
                )
                self._commit(dispatches=[nxt], steps=[step])
                return

    def _resend(self, a: Accepted) -> list[Out]:
        """The resend rule: see ``RESEND_AFTER_MS``."""
        d = self._dispatches.get(self._active[a.device_id])
        if d is None or d.state is not S.SENT or d.pending or d.dispatch_id in self._in_flight:
            return []
        now = self._now_ms()
        if now >= d.expires_ms or d.last_sent_ms is None or now - d.last_sent_ms < RESEND_AFTER_MS:
            return []
        if d.resent_ms is not None and now - d.resent_ms < RESEND_EVERY_MS:
            return []
        command = self._command(d)
        if command is None:
            return []
        step = Step(
            now,
            "system",
            d.incident_id,
            "resent",
            d.dispatch_id,
            "command: the terminal reconnected",
        )
        self._commit(
            dispatches=[replace(d, resent_ms=now, last_sent_ms=now)], steps=[step], publish=False
        )
        return [
            Out(d.dispatch_id, d.device_id, command, -(-(d.expires_ms - now) // 1000), retry=False)
        ]

    def replay(self, since_ms: int) -> int:
        """Re-apply the answers stored since ``since_ms`` (start-up: nothing stored while the
        service was down is missed). Applying an answer twice changes nothing. Returns how
        many frames were read."""
        frames = self._frames.frames_received((DispatchResponse.TYPE,), since_ms)
        for device, seq, received_ms, payload in frames:
            try:
                message = decode(payload).envelope.message
                if isinstance(message, DispatchResponse):
                    with self._lock:
                        self._answer(Accepted(device, seq, message, received_ms), message)
            except Exception:
                self.counts["errors"] += 1
                self._log.exception("dispatch: replay of %s/%d failed", device, seq)
        return len(frames)
