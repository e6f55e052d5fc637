"""A minimal MQTT 3.1.1 publisher over a plain TCP socket, for load generation only.

Why it exists: ``bench/ingest_bench.py`` measures how many fixes per second the server stores
from a real Mosquitto on a small machine (2 cores). With paho, every ``publish`` costs about
130 µs of Python CPU at QoS 1, so the publisher processes took about a whole core at
10,000 messages/s: the CPU the measured server and broker need. Here the load generator
builds every PUBLISH packet before the timed run, and during it writes the bytes due with
one ``sendall`` per tick: a few µs of Python per tick however many messages it carries.

This is bench-only code, not a client library: no reconnect, no session resume, no QoS 2,
no receiving of PUBLISHes. The product's terminals and server use paho and libmosquitto.

Wire format, OASIS MQTT Version 3.1.1 (29 October 2014):

- §2.2.3 Remaining Length: 7 bits per byte, least significant group first, the top bit set
  on every byte but the last; at most 4 bytes (268,435,455).
- §1.5.3 UTF-8 strings: a 2-byte big-endian length, then the UTF-8 bytes.
- §3.1 CONNECT, §3.2 CONNACK, §3.3 PUBLISH, §3.4 PUBACK, §3.12/§3.13 PINGREQ/PINGRESP,
  §3.14 DISCONNECT.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

# Fixed-header first bytes (packet type << 4 | flags).
CONNACK = 0x20
PUBLISH = 0x30  # | DUP << 3 | QoS << 1 | RETAIN
PUBACK = 0x40
PINGRESP = 0xD0
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

MAX_REMAINING_LENGTH = 268_435_455
MAX_PACKET_ID = 65_535

CONNACK_CODES = {  # §3.2.2.3
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MQTTError(RuntimeError):
    pass


def remaining_length(n: int) -> bytes:
    """The variable-byte "Remaining Length" of §2.2.3."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def decode_remaining_length(buf: bytes | bytearray, at: int) -> tuple[int, int] | None:
    """(value, offset of the first byte after it) of the Remaining Length starting at ``at``,
    or None if ``buf`` ends before it does."""
    value, shift = 0, 0
    for i in range(at, min(at + 4, len(buf))):
        value |= (buf[i] & 0x7F) << shift
        if not buf[i] & 0x80:
            return value, i + 1
        shift += 7
    if len(buf) >= at + 4:
        raise MQTTError("malformed remaining length (more than 4 bytes)")
    return None


def mqtt_string(s: str) -> bytes:
    """A UTF-8 encoded string with its 2-byte length prefix (§1.5.3)."""
    data = s.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("string longer than 65,535 bytes")
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, keepalive: int, clean_session: bool = True) -> bytes:
    """CONNECT (§3.1), protocol level 4 (3.1.1), no will, no user name or password."""
    flags = 0x02 if clean_session else 0x00
    variable = mqtt_string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body = variable + mqtt_string(client_id)
    return bytes([0x10]) + remaining_length(len(body)) + body


def publish_packet(topic_field: bytes, payload: bytes, qos: int, packet_id: int = 0) -> bytes:
    """PUBLISH (§3.3), DUP 0, RETAIN 0. ``topic_field`` is ``mqtt_string(topic)``, encoded
    once per topic by the caller. The packet identifier is present for QoS 1 and 2 only
    (§3.3.2.2) and must be 1..65535."""
    if qos:
        if not 1 <= packet_id <= MAX_PACKET_ID:
            raise ValueError(f"packet id {packet_id} out of range")
        variable = topic_field + struct.pack("!H", packet_id)
    else:
        variable = topic_field
    return (
        bytes([PUBLISH | qos << 1])
        + remaining_length(len(variable) + len(payload))
        + variable
        + payload
    )


def packet_id_for(i: int) -> int:
    """Packet ids for the i-th message (from 0) of a connection: 1..65535, then again. Safe
    while fewer than 65,535 messages are un-acknowledged (``RawPublisher.max_outstanding``)."""
    return i % MAX_PACKET_ID + 1


class RawPublisher:
    """One MQTT connection that sends pre-built packets and counts the PUBACKs.

    A background thread reads the socket (so a blocking ``sendall`` can never deadlock
    against a broker waiting for us to read its PUBACKs) and counts PUBACKs. Mosquitto
    handles one connection's packets in order, so ``acked`` acknowledged messages are the
    first ``acked`` sent ones.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        keepalive: int = 60,
        timeout: float = 10.0,
        read_pause: float = 0.005,
    ) -> None:
        self.keepalive = keepalive
        # The reader sleeps this long after each read, so that it wakes a few hundred times a
        # second at most whatever the message rate (a wake-up costs tens of µs of CPU on a
        # VM); PUBACKs wait in the socket buffer meanwhile (4 bytes each).
        self.read_pause = read_pause
        # Mosquitto leaves Nagle on (set_tcp_nodelay false): it holds small PUBACKs until we
        # ACK the previous ones, which our kernel delays up to 40 ms when we have nothing to
        # send. While publishing that only batches PUBACKs (fewer packets, good); waiting for
        # the last ones it would add 40 ms, so ``wait_acked`` turns on TCP_QUICKACK, renewed
        # after every read (the kernel clears it).
        self.quickack = False
        self.acked = 0
        self.last_ack_at = 0.0  # time.time() the latest PUBACK was read (within read_pause)
        self.pingresps = 0
        self.unexpected: dict[int, int] = {}  # packet type → count
        self.error: BaseException | None = None
        self.closed = False
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.sendall(connect_packet(client_id, keepalive))
        connack = self._recv_exactly(4)
        if connack[0] != CONNACK or connack[1] != 2:
            raise MQTTError(f"expected CONNACK from {host}:{port}, got {connack.hex()}")
        if connack[3] != 0:
            reason = CONNACK_CODES.get(connack[3], "unknown return code")
            raise MQTTError(f"broker {host}:{port} refused the connection: {connack[3]} {reason}")
        self._sock.settimeout(None)
        self._last_send = time.monotonic()
        self._reader = threading.Thread(target=self._read, name="rawpub-reader", daemon=True)
        self._reader.start()

    def _quickack(self) -> None:
        if hasattr(socket, "TCP_QUICKACK"):  # Linux only
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def _recv_exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self._sock.recv(n - len(out))
            if not chunk:
                raise MQTTError("connection closed by the broker")
            out += chunk
        return out

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                if self.quickack:
                    self._quickack()
                buf += chunk
                at, acked = 0, 0
                while at + 2 <= len(buf):
                    first = buf[at]
                    if first == PUBACK and buf[at + 1] == 2:  # the common case, 4 bytes
                        if at + 4 > len(buf):
                            break
                        acked += 1
                        at += 4
                        continue
                    decoded = decode_remaining_length(buf, at + 1)
                    if decoded is None:
                        break
                    length, body = decoded
                    if body + length > len(buf):
                        break
                    if first == PINGRESP:
                        self.pingresps += 1
                    else:
                        self.unexpected[first >> 4] = self.unexpected.get(first >> 4, 0) + 1
                    at = body + length
                buf = buf[at:]
                if acked:
                    self.last_ack_at = time.time()
                    self.acked += acked  # the only writer; readers see whole ints (GIL)
                if self.read_pause:
                    time.sleep(self.read_pause)
        except OSError as exc:
            if not self.closed:
                self.error = exc
        finally:
            self.closed = True

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Write pre-built packets (any number, concatenated)."""
        self._sock.sendall(data)
        self._last_send = time.monotonic()

    def ping_if_idle(self) -> None:
        """PINGREQ when nothing was sent for half the keepalive (§3.1.2.10)."""
        if time.monotonic() - self._last_send > self.keepalive / 2:
            self.send(PINGREQ_PACKET)

    def check(self) -> None:
        if self.error is not None:
            raise MQTTError(f"connection lost: {self.error}") from self.error
        if self.closed:
            raise MQTTError("connection closed by the broker")

    def wait_acked(self, n: int, timeout: float) -> bool:
        """Until ``n`` PUBACKs arrived (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        self.quickack = True
        self._quickack()  # also sends an ACK now if one is pending
        while self.acked < n:
            if time.monotonic() > deadline:
                return False
            self.check()
            self.ping_if_idle()
            time.sleep(0.002)
        return True

    def disconnect(self) -> None:
        """DISCONNECT (§3.14) and close the socket."""
        already_closed = self.closed
        self.closed = True
        try:
            if not already_closed:
                self._sock.sendall(DISCONNECT_PACKET)
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._reader.join(5)
