"""A phone's report as the store and the live feed take it: one frame, its fix, what it means.

Phone apps sign nothing, so a phone report cannot be a protocol frame. It is stored as the
bytes the app sent (the decrypted JSON of OwnTracks, the query string or JSON body of
Traccar Client) in the same ``frames`` table, under the phone terminal's id and a type code
of its own, so that everything downstream — deduplication, duty, the live map, reports —
works on it as on a terminal's frame, and the evidence says plainly what it is.

Sequence numbers: a terminal numbers its frames; a phone does not, but every report carries
the time it was made (OwnTracks ``tst``, Traccar's ``timestamp``), and an app resending a
report it was not sure was received resends the same one. So the stored ``seq`` is derived
from that time, in milliseconds, times four plus the report kind: a resend lands on the same
``(device, seq)`` and is a duplicate (same bytes) or a conflict (first kept), exactly as for a
terminal; a location and a region transition made in the same millisecond do not collide.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from protocol import Event, EventKind, Fix, Position, Presence, PresenceKind
from protocol.phone import PhoneKind, PhoneReport

from ..ingest import Accepted
from ..store import FUTURE_TOLERANCE_MS, FixFlag, IncomingFrame

#: Frame type codes of phone reports: outside the protocol's message TYPEs (all below 64), so
#: no code that decodes protocol frames by type ever takes one for a signed message.
OWNTRACKS_TYPE = 0x80
OSMAND_TYPE = 0x81
PHONE_TYPES = frozenset({OWNTRACKS_TYPE, OSMAND_TYPE})
#: The key generation a phone frame is stored under: none (phones have no device key).
NO_KEY = 0

_KIND_CODE = {PhoneKind.LOCATION: 0, PhoneKind.TRANSITION: 1, PhoneKind.LWT: 2}


def phone_evidence(payload: bytes) -> str | None:
    """Which app a stored payload came from, if it is a phone report (for ``yijing audit
    prove``, which must say why such a frame proves nothing); None for anything else."""
    head = payload[:1]
    if head == b"{":
        return "OwnTracks" if b'"_type"' in payload else "Traccar Client (JSON)"
    if b"id=" in payload or b"deviceid=" in payload:
        return "Traccar Client (OsmAnd)"
    return None


def seq_of(report: PhoneReport) -> int:
    """The stored sequence number of a report: its time (ms) × 4 + its kind."""
    return report.time_ms * 4 + _KIND_CODE.get(report.kind, 3)


@dataclass(frozen=True, slots=True)
class PhoneArrival:
    """A decoded, authenticated phone report on its way to the store."""

    phone_id: str
    type_code: int
    #: What is stored as evidence: the report as the app sent it (decrypted).
    payload: bytes
    report: PhoneReport
    received_ms: int

    @property
    def seq(self) -> int:
        return seq_of(self.report)

    @property
    def stored(self) -> bool:
        """A will (``lwt``) is status only: the broker sends it for a connection that broke,
        with the time the phone connected, so it is not evidence of anything at that time."""
        return self.report.kind is not PhoneKind.LWT

    def frame(self) -> IncomingFrame:
        report = self.report
        fixes: tuple[Fix, ...] = ()
        flags: tuple[int, ...] = ()
        if report.kind is PhoneKind.LOCATION and report.fix is not None:
            fixes = (report.fix,)
            # As for a terminal (server.ingest): a fix from the future is kept, flagged, and
            # never moves the marker or counts for duty.
            ahead = report.fix.time_ms > self.received_ms + FUTURE_TOLERANCE_MS
            flags = (int(FixFlag.FUTURE_TIME) if ahead else 0,)
        return IncomingFrame(
            device_id=self.phone_id,
            seq=self.seq,
            key_id=NO_KEY,
            type_code=self.type_code,
            sent_ms=report.time_ms,
            received_ms=self.received_ms,
            payload=self.payload,
            digest=hashlib.sha256(self.payload).digest(),
            fixes=fixes,
            fix_flags=flags,
        )

    def accepted(self) -> list[Accepted]:
        """What the live feed and the services learn, in the terminals' own messages: a
        location is a ``Position`` (and a battery reading a heartbeat), a will is the phone
        going offline."""
        report = self.report
        out: list[Accepted] = []
        if report.kind is PhoneKind.LWT:
            out.append(
                Accepted(self.phone_id, 0, Presence(kind=PresenceKind.OFFLINE), self.received_ms)
            )
            return out
        if report.battery_pct is not None:
            out.append(
                Accepted(
                    self.phone_id,
                    self.seq,
                    Presence(kind=PresenceKind.HEARTBEAT, battery_pct=report.battery_pct),
                    self.received_ms,
                )
            )
        if report.alarm == "sos":
            # Traccar Client's SOS action, raised as a terminal's SOS is (server.field). Not
            # replayed at start-up (the field service replays protocol frames only): a crash
            # between the store's commit and the alert loses the alert, not the report.
            out.append(
                Accepted(
                    self.phone_id,
                    self.seq,
                    Event(
                        kind=EventKind.SOS,
                        time_ms=report.time_ms,
                        fix=report.fix,
                        detail="phone app SOS",
                    ),
                    self.received_ms,
                )
            )
        if report.fix is not None:
            out.append(
                Accepted(self.phone_id, self.seq, Position(fix=report.fix), self.received_ms)
            )
        elif not out:
            out.append(
                Accepted(
                    self.phone_id,
                    self.seq,
                    Presence(kind=PresenceKind.HEARTBEAT),
                    self.received_ms,
                )
            )
        return out
