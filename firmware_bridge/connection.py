"""The host side of the firmware protocol, sans-IO in the style of h11.

::

    conn = BridgeConnection()
    wire = conn.send(SetLight(LightPattern.FLASH_RED_BLUE, 2), now_ms)   # write these bytes
    for event in conn.receive_data(chunk, now_ms):                       # any split
        match event:
            case ButtonEvent(kind=ButtonKind.SOS_LONG_PRESS): ...        # device messages
            case LinkUp() | LinkDown(): ...
            case CommandAcked(seq=seq) | CommandFailed(seq=seq): ...
            case Rejected(reason=reason): ...                            # counted in stats
    events, wire = conn.tick(now_ms)          # call often (every <= 50 ms): retries, timeouts

Nothing here opens a port, starts a thread or reads a clock (``serial_transport`` does).
``receive_data`` and ``tick`` never raise; ``send`` raises only for a non-``Command``.

Reliability. Every command gets a sequence number (u16, starting at a random value so that a
restarted host is not mistaken for a duplicate). Unacked, it is resent every
``retry_interval_ms`` (200), at most ``max_retries`` (3) times; then ``CommandFailed``. A NAK
fails it at once. Device messages repeated with the same sequence number within
``dedup_window_ms`` (1000) are reported once (a device repeats each ButtonEvent for safety).

Link state, a table-driven machine (``_TRANSITIONS``): DOWN until a Heartbeat arrives, UP until
no Heartbeat has arrived for ``link_timeout_ms`` (3000) or the port is lost (``port_lost``).
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from dataclasses import dataclass

from .errors import MessageError, RejectReason
from .framing import Frame, FrameReader, FrameRejected, encode_frame
from .messages import Ack, Command, DeviceMessage, Heartbeat, Nak, decode_device_message

RETRY_INTERVAL_MS = 200
MAX_RETRIES = 3
LINK_TIMEOUT_MS = 3000
DEDUP_WINDOW_MS = 1000


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkUp:
    pass


@dataclass(frozen=True, slots=True)
class LinkDown:
    reason: str = "heartbeat timeout"


@dataclass(frozen=True, slots=True)
class CommandAcked:
    seq: int
    command: Command


@dataclass(frozen=True, slots=True)
class CommandFailed:
    seq: int
    command: Command
    reason: str = "no ack"  # "no ack" after the retries, or "nak: <NakReason>"


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: RejectReason
    detail: str = ""


#: Acks and Naks are consumed (they become CommandAcked / CommandFailed); every other device
#: message is itself an event.
Event = DeviceMessage | LinkUp | LinkDown | CommandAcked | CommandFailed | Rejected


# --- the link state machine ------------------------------------------------------------------


class LinkState(enum.Enum):
    DOWN = "down"
    UP = "up"


class _Input(enum.Enum):
    HEARTBEAT = "heartbeat"
    SILENCE = "silence"  # no heartbeat for link_timeout_ms
    PORT_LOST = "port_lost"


#: (state, input) -> (next state, whether to emit LinkUp/LinkDown). Missing pairs: no change.
_TRANSITIONS: dict[tuple[LinkState, _Input], tuple[LinkState, type[LinkUp] | type[LinkDown]]] = {
    (LinkState.DOWN, _Input.HEARTBEAT): (LinkState.UP, LinkUp),
    (LinkState.UP, _Input.SILENCE): (LinkState.DOWN, LinkDown),
    (LinkState.UP, _Input.PORT_LOST): (LinkState.DOWN, LinkDown),
}


@dataclass(slots=True)
class _Pending:
    command: Command
    wire: bytes
    sent_ms: int
    retries: int = 0


class BridgeConnection:
    """The host end of one device link; see the module docstring."""

    def __init__(
        self,
        *,
        retry_interval_ms: int = RETRY_INTERVAL_MS,
        max_retries: int = MAX_RETRIES,
        link_timeout_ms: int = LINK_TIMEOUT_MS,
        dedup_window_ms: int = DEDUP_WINDOW_MS,
        first_seq: int | None = None,
    ) -> None:
        self.retry_interval_ms = retry_interval_ms
        self.max_retries = max_retries
        self.link_timeout_ms = link_timeout_ms
        self.dedup_window_ms = dedup_window_ms
        self._next_seq = random.randrange(0x10000) if first_seq is None else first_seq & 0xFFFF
        self._reader = FrameReader()
        self._pending: dict[int, _Pending] = {}
        self._seen: dict[int, int] = {}  # device seq -> when first received
        self._last_heartbeat_ms = 0
        self.state = LinkState.DOWN
        self.last_seq: int | None = None  # the sequence number of the last send()
        self.stats: Counter[str] = Counter()

    # --- the public surface ----------------------------------------------------------------------

    @property
    def pending(self) -> dict[int, Command]:
        """Commands sent and neither acked nor failed yet, by sequence number."""
        return {seq: p.command for seq, p in self._pending.items()}

    def send(self, command: Command, now_ms: int) -> bytes:
        """Register ``command`` and return the frame to write. ``last_seq`` is its number."""
        if not isinstance(command, Command):
            raise TypeError(f"expected a Command, got {type(command).__name__}")
        seq = self._next_seq
        while seq in self._pending:  # 65536 commands in flight cannot happen; be safe
            seq = (seq + 1) & 0xFFFF
        self._next_seq = (seq + 1) & 0xFFFF
        wire = encode_frame(command.MSG_ID, seq, command.encode())
        self._pending[seq] = _Pending(command, wire, now_ms)
        self.last_seq = seq
        self.stats["commands_sent"] += 1
        return wire

    def receive_data(self, data: bytes, now_ms: int) -> list[Event]:
        events: list[Event] = []
        for item in self._reader.receive_data(data):
            if isinstance(item, FrameRejected):
                self._reject(events, item.reason, item.detail)
            else:
                self._frame(item, now_ms, events)
        return events

    def tick(self, now_ms: int) -> tuple[list[Event], bytes]:
        """Retransmissions and timeouts due at ``now_ms``: (events, bytes to write)."""
        events: list[Event] = []
        out = bytearray()
        for seq, p in list(self._pending.items()):
            if now_ms - p.sent_ms < self.retry_interval_ms:
                continue
            if p.retries >= self.max_retries:
                del self._pending[seq]
                self.stats["commands_failed"] += 1
                events.append(CommandFailed(seq, p.command))
            else:
                p.retries += 1
                p.sent_ms = now_ms
                self.stats["retransmissions"] += 1
                out += p.wire
        if now_ms - self._last_heartbeat_ms >= self.link_timeout_ms:
            self._input(_Input.SILENCE, events)
        return events, bytes(out)

    def port_lost(self) -> list[Event]:
        """The port closed or failed: forget a partial frame; the link is down."""
        self._reader.reset()
        events: list[Event] = []
        self._input(_Input.PORT_LOST, events, reason="port lost")
        return events

    # --- inside ---------------------------------------------------------------------------------

    def _input(self, what: _Input, events: list[Event], reason: str = "") -> None:
        step = _TRANSITIONS.get((self.state, what))
        if step is None:
            return
        self.state, event_type = step
        self.stats[f"link_{self.state.value}"] += 1
        if event_type is LinkUp:
            events.append(LinkUp())
        else:
            events.append(LinkDown(reason or "heartbeat timeout"))

    def _reject(self, events: list[Event], reason: RejectReason, detail: str) -> None:
        self.stats[reason] += 1
        events.append(Rejected(reason, detail))

    def _frame(self, frame: Frame, now_ms: int, events: list[Event]) -> None:
        try:
            message = decode_device_message(frame.msg_id, frame.payload)
        except MessageError as exc:
            self._reject(events, exc.reason, str(exc))
            return
        self.stats["messages"] += 1
        if isinstance(message, Ack | Nak):
            self._settle(message, events)
            return
        for seq, seen_ms in list(self._seen.items()):
            if now_ms - seen_ms >= self.dedup_window_ms:
                del self._seen[seq]
        if frame.seq in self._seen:
            self.stats["duplicates"] += 1
            return
        self._seen[frame.seq] = now_ms
        if isinstance(message, Heartbeat):
            self._last_heartbeat_ms = now_ms
            self._input(_Input.HEARTBEAT, events)
        events.append(message)

    def _settle(self, message: Ack | Nak, events: list[Event]) -> None:
        pending = self._pending.pop(message.seq, None)
        if pending is None:
            self.stats["late_acks"] += 1  # an ack of a retransmission, or of a failed command
            return
        if isinstance(message, Ack):
            self.stats["commands_acked"] += 1
            events.append(CommandAcked(message.seq, pending.command))
        else:
            self.stats["commands_failed"] += 1
            events.append(
                CommandFailed(message.seq, pending.command, f"nak: {message.reason.name}")
            )
