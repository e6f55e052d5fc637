"""The one place that owns a paho-mqtt client and its network thread.

Exception tree::

    LinkError                 base of everything this module raises
    ├── LinkConfigError       a setting that cannot work (bad host, port, protocol)
    │   └── LinkTlsError      TLS files that cannot be loaded (missing, not PEM, key ≠ cert)
    └── NotConnected          publish while the link is down; the caller keeps the data

paho's own errors (``OSError`` from the socket, ``ssl.SSLError`` from the TLS handshake,
``ValueError`` from bad arguments, non-zero return codes) are converted here, once, with
``raise ... from exc``. A connection the broker refuses (a revoked or foreign certificate, a
CONNACK failure) is not raised: the link keeps retrying with the backoff below, logs the
reason once as a warning (repeats at debug, so a revoked terminal does not fill its disk with
logs) and exposes it as ``last_failure``.

Reconnects are ours, not paho's: paho's built-in delay doubles without jitter, so a thousand
terminals that lost the same cell tower reconnect in lock-step. ``Backoff`` is capped
exponential with full jitter (delay = uniform(0, min(cap, base * 2**n))), reset after a
connection has held for ``stable_after`` seconds. Its clock and randomness are injectable so
tests run instantly.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode


class LinkError(Exception):
    """Base of this module's errors."""


class LinkConfigError(LinkError):
    """A setting that cannot work."""


class LinkTlsError(LinkConfigError):
    """The TLS files cannot be used."""


class NotConnected(LinkError):
    """The link is down; nothing was sent."""


def check_endpoint(protocol: str, port: int) -> None:
    """The settings every MQTT client here shares: a protocol we speak, a port that exists."""
    if protocol not in ("5", "3.1.1"):
        raise LinkConfigError(f"protocol must be '5' or '3.1.1', got {protocol!r}")
    if not 0 < port < 65536:
        raise LinkConfigError(f"port {port} is outside 1-65535")


class Reasons:
    """Failure reasons already logged as warnings: each is warned once until a connection
    holds (a revoked terminal retrying for days must not fill its disk), at most 16."""

    LIMIT = 16

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def first(self, reason: str) -> bool:
        """True the first time ``reason`` is seen (log it as a warning); False after."""
        if reason in self._seen or len(self._seen) >= self.LIMIT:
            return False
        self._seen.add(reason)
        return True

    def clear(self) -> None:
        self._seen.clear()


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for mutual TLS: the CA that signed the broker, our certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


class Backoff:
    """Capped exponential backoff with full jitter."""

    def __init__(
        self,
        *,
        base: float = 0.5,
        cap: float = 30.0,
        stable_after: float = 10.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if base <= 0 or cap < base:
            raise LinkConfigError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
        self.base, self.cap, self.stable_after = base, cap, stable_after
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 32))
        self.failures += 1
        return float(ceiling * self._rng())

    def connected_for(self, seconds: float) -> None:
        """Report how long the last connection held; a stable one resets the backoff."""
        if seconds >= self.stable_after:
            self.failures = 0


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1


MessageHandler = Callable[[str, bytes], None]
#: ``(topic, payload, ack)``: with ``manual_ack``, the broker's delivery is acknowledged only
#: when the handler's owner calls ``ack()`` (after it has stored the message).
AckedMessageHandler = Callable[[str, bytes, Callable[[], None]], None]


class MqttLink:
    """A client that stays connected, resubscribes, and tells its owner what happens.

    ``on_message`` and ``on_connect`` run on the link's thread; keep them short (hand work to
    a queue).
    """

    def __init__(
        self,
        *,
        client_id: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        protocol: str = "5",
        subscriptions: list[tuple[str, int]] | None = None,
        on_message: MessageHandler | None = None,
        on_acked_message: AckedMessageHandler | None = None,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        will: Will | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        session_expiry_s: int = 0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        check_endpoint(protocol, port)
        self.client_id, self.host, self.port = client_id, host, port
        self.v5 = protocol == "5"
        self._subscriptions = list(subscriptions or [])
        self._on_message = on_message
        self._on_acked_message = on_acked_message
        self._on_connect_cb = on_connect
        self._on_disconnect_cb = on_disconnect
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._log = logger or logging.getLogger("yijing.mqtt")
        self._keepalive = keepalive
        self._session_expiry_s = session_expiry_s
        self._stop = threading.Event()
        self._stop_with_will = False
        self._will = will
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected_at = 0.0
        self.connects = 0
        self.tls = tls
        self._last_failure: str | None = None
        self._warned = Reasons()
        self._paho_error: str | None = None

        if self.v5:
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=paho.MQTTv5,
                # With on_acked_message the PUBACK (MQTT 5 §3.4) waits for our ack(): a crash
                # before it leaves the message with the broker, which sends it again on the
                # next connection of this session (§4.4).
                manual_ack=on_acked_message is not None,
            )
        else:
            # MQTT 3.1.1 §3.1.2.4: clean_session=False keeps the broker-side session.
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=paho.MQTTv311,
                clean_session=session_expiry_s == 0,
                manual_ack=on_acked_message is not None,
            )
        # paho's own log goes through a private logger: its errors become the failure reason
        # (logged once rather than on every retry), its debug lines reach our log only when
        # we log at DEBUG. Not paho's ``on_log``: with it set, paho formats a line for every
        # packet (PUBLISH properties included), measured at 10 % of the server's paho thread.
        client.enable_logger(self._paho_logger())
        if tls is not None:
            self._tls_set(client, tls)
        if username is not None:
            client.username_pw_set(username, password)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos)
        # Our outbox bounds what is unacknowledged; paho's queue only needs to hold one
        # window of in-flight QoS 1 messages (MQTT 5 §4.9 flow control).
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        self._client = client

    def _tls_set(self, client: paho.Client, tls: TlsFiles) -> None:
        # PROTOCOL_TLS_CLIENT: verify the broker's certificate and host name (its SANs).
        try:
            client.tls_set(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file),
                keyfile=str(tls.key_file),
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise LinkTlsError(
                f"TLS files {tls.ca_file}, {tls.cert_file}, {tls.key_file}: {exc}"
            ) from exc

    @property
    def last_failure(self) -> str | None:
        """Why the last attempt to connect failed; None once connected."""
        return self._last_failure

    def _note_failure(self, reason: str, delay: float) -> None:
        # Once per distinct reason until a connection holds: a refused handshake alternates
        # between "reset by peer" and "EOF", and must not log every attempt either way.
        if self._warned.first(reason):
            self._log.warning(
                "%s: cannot connect to %s:%s: %s (retrying with backoff; repeats logged at debug)",
                self.client_id,
                self.host,
                self.port,
                reason,
            )
        self._last_failure = reason
        self._log.debug("%s: %s; retry in %.1fs", self.client_id, reason, delay)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise LinkError("link already started")
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-{self.client_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0, *, with_will: bool = False) -> None:
        """Disconnect and end the thread.

        A normal disconnect suppresses the will. ``with_will`` asks for it anyway, so an orderly
        shutdown tells subscribers "offline" just as a crash would: MQTT 5 DISCONNECT reason
        code 0x04 "Disconnect with Will Message" (§3.14.2.1); on MQTT 3.1.1, which has no such
        code, the will is published by hand before disconnecting.
        """
        self._stop_with_will = with_will
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # --- sending -----------------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, expiry_s: int | None = None
    ) -> None:
        """Hand a message to the broker connection; raises ``NotConnected`` when down."""
        if not self._connected.is_set():
            raise NotConnected(f"{self.client_id}: not connected to {self.host}:{self.port}")
        properties = None
        if expiry_s is not None and self.v5:
            # MQTT 5 §3.3.2.3.3: the broker discards the message if undelivered by then.
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.MessageExpiryInterval = expiry_s
        try:
            info = self._client.publish(topic, payload, qos=qos, properties=properties)
        except (ValueError, OSError) as exc:
            raise LinkError(f"publish to {topic!r} failed: {exc}") from exc
        if info.rc == paho.MQTT_ERR_NO_CONN:
            raise NotConnected(f"{self.client_id}: connection lost during publish")
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_QUEUE_SIZE):
            raise LinkError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")

    # --- the thread ----------------------------------------------------------------------------

    def _connect(self) -> None:
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if self._session_expiry_s:
                # MQTT 5 §3.1.2.11.2: keep the session (and queued QoS 1 downlink) this long.
                props.SessionExpiryInterval = self._session_expiry_s
            self._client.connect(
                self.host,
                self.port,
                keepalive=self._keepalive,
                clean_start=self._session_expiry_s == 0,
                properties=props,
            )
        else:
            self._client.connect(self.host, self.port, keepalive=self._keepalive)

    def _run(self) -> None:
        # Everything that touches the client happens on this thread; stop() only sets a flag.
        while not self._stop.is_set():
            self._paho_error = None
            try:
                self._connect()
            except (OSError, ValueError) as exc:  # refused, unreachable, TLS handshake failed
                delay = self._backoff.next_delay()
                self._note_failure(str(exc) or type(exc).__name__, delay)
                self._stop.wait(delay)
                continue
            rc = paho.MQTT_ERR_SUCCESS
            while not self._stop.is_set() and rc == paho.MQTT_ERR_SUCCESS:
                rc = self._client.loop(timeout=0.2)
            if self._stop.is_set():
                break
            was_up = self._connected.is_set()
            if was_up:
                self._mark_down()
            delay = self._backoff.next_delay()
            if was_up:
                self._log.info(
                    "link %s down (%s); reconnect in %.1fs",
                    self.client_id,
                    paho.error_string(rc),
                    delay,
                )
            else:
                # Never got a CONNACK: with TLS 1.3 the broker rejects a client certificate
                # after the handshake, so the reason surfaces on the first read, via paho's log.
                reason = self._paho_error or paho.error_string(rc)
                self._note_failure(reason, delay)
            self._stop.wait(delay)
        if self._connected.is_set():
            # MQTT 5 §3.14: a normal DISCONNECT, so the broker does not publish our will.
            # paho writes the packet at once when called outside its callbacks.
            with contextlib.suppress(OSError, ValueError):
                self._client.disconnect(reasoncode=self._disconnect_reason())
            if self._connected.is_set():
                self._mark_down()

    def _disconnect_reason(self) -> ReasonCode | None:
        if not (self._stop_with_will and self._will is not None):
            return None
        if self.v5:
            return ReasonCode(PacketTypes.DISCONNECT, identifier=0x04)
        info = self._client.publish(self._will.topic, self._will.payload, qos=self._will.qos)
        for _ in range(20):  # let the PUBACK come back before the socket closes
            if info.is_published() or self._client.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS:
                break
        return None

    def _mark_down(self) -> None:
        self._connected.clear()
        self._backoff.connected_for(self._clock() - self._connected_at)
        if self._on_disconnect_cb is not None:
            self._on_disconnect_cb()

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason_code: object,
        properties: object,
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            self._paho_error = f"broker refused the connection: {reason_code}"
            return
        self._last_failure = None
        self._warned.clear()
        for topic_filter, qos in self._subscriptions:
            client.subscribe(topic_filter, qos=qos)
        self._connected_at = self._clock()
        self.connects += 1
        self._connected.set()
        if self._on_connect_cb is not None:
            self._on_connect_cb()

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason_code: object,
        properties: object,
    ) -> None:
        if self._connected.is_set():
            self._mark_down()

    def _paho_logger(self) -> logging.Logger:
        link = self
        target = self._log.getChild("paho")

        class Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.levelno >= logging.ERROR:
                    link._paho_error = record.getMessage()
                if target.isEnabledFor(logging.DEBUG):
                    target.debug("%s", record.getMessage())

        # Not registered with logging's manager: no parent, no propagation, and a level that
        # keeps paho from formatting what nobody reads.
        logger = logging.Logger(f"paho.{self.client_id}")
        logger.setLevel(logging.DEBUG if target.isEnabledFor(logging.DEBUG) else logging.ERROR)
        logger.addHandler(Capture())
        return logger

    def _handle_message(
        self, client: paho.Client, userdata: object, message: paho.MQTTMessage
    ) -> None:
        if self._on_acked_message is not None:
            mid, qos = message.mid, message.qos

            def ack() -> None:
                if qos > 0:
                    client.ack(mid, qos)

            self._on_acked_message(message.topic, bytes(message.payload), ack)
        elif self._on_message is not None:
            self._on_message(message.topic, bytes(message.payload))
