"""The dispatcher's state and the one way it changes: memory, ``dispatch.db``, events, sends.

``DispatchCore`` holds what ``server.dispatch.service.Dispatcher`` works on: every open
incident and all its dispatches, and cancelled dispatches whose cancel is still to be sent
(closed incidents are read from the database when asked for). Every change goes through
``_commit``: the database first (the new state and its audit steps in one transaction), then
memory (and the live state's "engaged" mark), then the events, so a crash never leaves an
event or a memory state that the next start-up would not find again.

Sending (``send(device_id, message, expiry_s)``) happens outside the lock and outside any
transaction (``_deliver``): the broker link may block, and the ingest thread must not wait
on it. A command is recorded ``pending`` before it is handed over and cleared after; a
refusal (``yijing.mqtt.NotConnected``) is audited once as "send_failed" and retried by the
tick.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from protocol import (
    DispatchCancel,
    DispatchCommand,
    Message,
)
from yijing.mqtt import LinkError

from ..errors import StoreError
from ..org.model import Unit
from .errors import Conflict, NotFound, OutOfScope
from .model import (
    ENGAGED,
    TOLD,
    Dispatch,
    DispatchConfig,
    DispatchState,
    Incident,
    Step,
    Trigger,
    advance,
    new_id,
)
from .proposals import HubView, LiveView
from .store import DispatchStore

S = DispatchState
#: The resend rule: a command still "sent" goes out again when its terminal is heard from at
#: least this long after the last send (it reconnected; its MQTT session may be gone) ...
RESEND_AFTER_MS = 5_000
#: ... but not more often than this.
RESEND_EVERY_MS = 10_000
LATE = "late_answer"  # an answer to a dispatch already final
IGNORED = "ignored_answer"  # an answer the table has no step for (declined after accepted)


class OrgView(Protocol):
    """What dispatch asks of the organisation (``server.org.store.OrgStore`` has it)."""

    def unit(self, unit_id: str, /) -> Unit | None: ...

    def subtree(self, unit_id: str, /) -> set[str]: ...


class FrameSource(Protocol):
    """What replay asks of the frame store (``server.store.Store`` has it)."""

    def frames_received(
        self, type_codes: Collection[int], since_ms: int
    ) -> list[tuple[str, int, int, bytes]]: ...


Send = Callable[[str, Message, int], None]


@dataclass(frozen=True, slots=True)
class Out:
    """A command to hand to the broker once the lock is released."""

    dispatch_id: str
    device_id: str
    message: Message
    expiry_s: int
    retry: bool  # a retry after a failed send: audited "resent" when it gets through


class DispatchCore:
    def __init__(
        self,
        *,
        path: Path,
        live: LiveView,
        org: OrgView,
        store: FrameSource,
        hub: HubView,
        send: Send,
        clock: Callable[[], float] = time.time,
        config: DispatchConfig | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._db = DispatchStore(path)
        self._live = live
        self._org = org
        self._frames = store
        self._hub = hub
        self._send = send
        self._clock = clock
        self.config = config or DispatchConfig()
        self._log = logger or logging.getLogger("yijing.dispatch")
        self._lock = threading.RLock()
        self._incidents: dict[str, Incident] = {}
        self._dispatches: dict[str, Dispatch] = {}
        self._active: dict[str, str] = {}  # device → its engaged dispatch
        self._noted: set[tuple[str, str]] = set()  # late/ignored answers already audited
        self._failing: set[str] = set()  # dispatches whose last send failed (audited once)
        self._in_flight: set[str] = set()  # being handed to the broker right now
        #: unknown (no such dispatch in memory), foreign (answered by another device),
        #: errors (a frame whose handling failed; logged).
        self.counts: collections.Counter[str] = collections.Counter()
        self._load()

    def _load(self) -> None:
        incidents = self._db.open_incidents()
        self._incidents = {i.incident_id: i for i in incidents}
        for d in self._db.dispatches_of(list(self._incidents)) + self._db.pending_cancels():
            self._dispatches[d.dispatch_id] = d
            if d.state in ENGAGED:
                self._active[d.device_id] = d.dispatch_id
                # The live state starts empty: tell it again who is engaged.
                self._safely(self._live.set_engaged, d.device_id, d.dispatch_id)
        self._noted = self._db.noted((LATE, IGNORED), list(self._incidents))

    def close(self) -> None:
        self._db.close()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _safely(self, call: Callable[..., None], *args: Any) -> None:
        """The live state and the hub are other parts' code: their failure is logged, never
        allowed to undo a change already written."""
        try:
            call(*args)
        except Exception:
            self._log.exception("dispatch: %s%r failed", getattr(call, "__name__", call), args)

    # --- the one way state changes ------------------------------------------------------------

    def _commit(
        self,
        *,
        incidents: Iterable[Incident] = (),
        dispatches: Iterable[Dispatch] = (),
        steps: Iterable[Step] = (),
        publish: bool = True,
    ) -> None:
        """Database, then memory, then events. Called with the lock held."""
        incidents, dispatches = list(incidents), list(dispatches)
        self._db.save(incidents=incidents, dispatches=dispatches, steps=steps)
        for i in incidents:
            self._incidents[i.incident_id] = i
        for d in dispatches:
            self._remember(d)
        if publish:
            for iid in dict.fromkeys(
                [i.incident_id for i in incidents] + [d.incident_id for d in dispatches]
            ):
                doc = self._doc(iid)
                if doc is not None:
                    self._safely(self._hub.publish_event, "incident", doc, doc["unit_id"])
                    for d in dispatches:
                        if d.incident_id == iid:
                            self._safely(
                                self._hub.publish_event, "dispatch", d.to_json(), doc["unit_id"]
                            )
        for i in incidents:
            if i.state != "open":
                del self._incidents[i.incident_id]
        # A closed incident's dispatches leave memory, except a cancel still to be sent.
        gone = {d.incident_id for d in dispatches} | {i.incident_id for i in incidents}
        gone -= set(self._incidents)
        for d in [d for d in self._dispatches.values() if d.incident_id in gone]:
            if not d.pending:
                del self._dispatches[d.dispatch_id]

    def _remember(self, d: Dispatch) -> None:
        old = self._dispatches.get(d.dispatch_id)
        self._dispatches[d.dispatch_id] = d
        was = old is not None and old.state in ENGAGED
        if d.state in ENGAGED and not was:
            self._active[d.device_id] = d.dispatch_id
            self._safely(self._live.set_engaged, d.device_id, d.dispatch_id)
        elif was and d.state not in ENGAGED and self._active.get(d.device_id) == d.dispatch_id:
            del self._active[d.device_id]
            self._safely(self._live.set_engaged, d.device_id, None)

    def _of(self, incident_id: str) -> list[Dispatch]:
        return sorted(
            (d for d in self._dispatches.values() if d.incident_id == incident_id),
            key=lambda d: (d.sent_ms, d.dispatch_id),
        )

    def _doc(self, incident_id: str) -> dict[str, Any] | None:
        incident = self._incidents.get(incident_id)
        if incident is not None:
            dispatches = self._of(incident_id)
        else:
            incident = self._db.incident(incident_id)
            if incident is None:
                return None
            dispatches = self._db.dispatches_of([incident_id])
        return {**incident.to_json(), "dispatches": [d.to_json() for d in dispatches]}

    def _open(self, incident_id: str, units: Collection[str] | None) -> Incident:
        """The open incident, or NotFound / Conflict / OutOfScope. Lock held."""
        incident = self._incidents.get(incident_id)
        if incident is None:
            stored = self._db.incident(incident_id)
            if stored is None or (units is not None and stored.unit_id not in units):
                raise NotFound(f"no incident {incident_id!r}")
            raise Conflict(f"incident {incident_id} is closed")
        if units is not None and incident.unit_id not in units:
            raise OutOfScope(
                f"incident {incident_id} belongs to {incident.unit_id}, outside your scope"
            )
        return incident

    def _start_round(
        self,
        incident: Incident,
        picks: Sequence[tuple[str, float | None, dict[str, Any]]],
        actor: str,
        ttl_s: int,
        step: str,
        extra: Sequence[Step] = (),
    ) -> list[Out]:
        """Record one round of dispatches (lock held); the commands to send."""
        now = self._now_ms()
        made, steps, out = [], list(extra), []
        circle = incident.circle
        for device, straight, doc in picks:
            walk = self.config.walk(straight) if straight is not None else None
            volunteer = doc.get("volunteer") or {}
            d = Dispatch(
                dispatch_id=new_id("d"),
                incident_id=incident.incident_id,
                device_id=device,
                sent_ms=now,
                expires_ms=now + ttl_s * 1000,
                volunteer_id=volunteer.get("volunteer_id"),
                name=volunteer.get("name"),
                circle=walk[2] if walk else None,
                distance_m=round(straight, 1) if straight is not None else None,
                eta_s=round(walk[1], 1) if walk else None,
            )
            if d.circle is not None:
                circle = max(circle or 0, d.circle)
            made.append(d)
            where = f"{straight:.0f} m, circle {d.circle}" if straight is not None else "no fix"
            steps.append(
                Step(now, actor, incident.incident_id, step, d.dispatch_id, f"{device} ({where})")
            )
            command = DispatchCommand(
                dispatch_id=d.dispatch_id,
                incident_id=incident.incident_id,
                kind=incident.kind,
                priority=incident.priority,
                lat=incident.lat,
                lon=incident.lon,
                sent_ms=now,
                expires_ms=d.expires_ms,
                note=incident.note,
            )
            out.append(Out(d.dispatch_id, device, command, ttl_s, retry=False))
        nxt = replace(incident, circle=circle, round_ms=now, exhausted=False)
        self._commit(incidents=[nxt], dispatches=made, steps=steps)
        return out

    def _cancel_out(self, d: Dispatch, now: int, reason: str) -> Out:
        message = DispatchCancel(dispatch_id=d.dispatch_id, sent_ms=now, reason=reason[:200])
        return Out(d.dispatch_id, d.device_id, message, self.config.ttl_s, retry=False)

    # --- handing commands to the broker ---------------------------------------------------

    def _deliver(self, out: Sequence[Out]) -> None:
        """Send outside the lock; record each outcome (lock taken per outcome)."""
        for o in out:
            with self._lock:
                self._in_flight.add(o.dispatch_id)
            error: str | None = None
            try:
                self._send(o.device_id, o.message, max(1, o.expiry_s))
            except LinkError as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # another part's bug must not lose the outcome
                self._log.exception("dispatch: sending %s to %s failed", o.dispatch_id, o.device_id)
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._in_flight.discard(o.dispatch_id)
                try:
                    self._sent(o, error)
                except StoreError as exc:
                    self._log.error(
                        "dispatch: outcome of sending %s not recorded: %s", o.dispatch_id, exc
                    )

    def _sent(self, o: Out, error: str | None) -> None:
        d = self._dispatches.get(o.dispatch_id)
        if d is None:
            return
        cancel = isinstance(o.message, DispatchCancel)
        if cancel != (d.state in TOLD):
            return  # the dispatch moved on while the command was in flight
        now = self._now_ms()
        what = "cancel" if cancel else "command"
        if error is not None:
            if o.dispatch_id in self._failing:
                return  # audited once per failing spell; tick keeps trying
            self._failing.add(o.dispatch_id)
            step = Step(
                now, "system", d.incident_id, "send_failed", d.dispatch_id, f"{what}: {error}"
            )
            self._commit(dispatches=[replace(d, pending=True)], steps=[step], publish=False)
            return
        steps = []
        if o.retry or o.dispatch_id in self._failing:
            steps.append(
                Step(
                    now,
                    "system",
                    d.incident_id,
                    "resent",
                    d.dispatch_id,
                    f"{what}: after a failed send",
                )
            )
        self._failing.discard(o.dispatch_id)
        self._commit(
            dispatches=[replace(d, pending=False, last_sent_ms=now)], steps=steps, publish=False
        )

    # --- the clock ------------------------------------------------------------------------

    def _expire_one(self, d: Dispatch, now: int) -> Dispatch:
        nxt = advance(d, Trigger.EXPIRE, d.expires_ms)
        assert nxt is not None
        step = Step(
            now,
            "system",
            d.incident_id,
            "expired",
            d.dispatch_id,
            "not answered in time" if d.state is S.DELIVERED else "never delivered",
        )
        self._commit(dispatches=[nxt], steps=[step])
        return nxt

    def _command(self, d: Dispatch) -> DispatchCommand | None:
        """The dispatch's command as first sent (same sent_ms and expiry: a resend is the
        same order, not a new one)."""
        incident = self._incidents.get(d.incident_id)
        if incident is None:
            return None
        return DispatchCommand(
            dispatch_id=d.dispatch_id,
            incident_id=d.incident_id,
            kind=incident.kind,
            priority=incident.priority,
            lat=incident.lat,
            lon=incident.lon,
            sent_ms=d.sent_ms,
            expires_ms=d.expires_ms,
            note=incident.note,
        )
