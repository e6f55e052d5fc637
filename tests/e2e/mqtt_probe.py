"""A paho client that records every CONNACK, SUBACK, PUBACK and message, for tests that ask
a real Mosquitto what it allows (the secure station's ACL and listeners).

Driven by ``pump`` on the test's own thread (no paho thread), so a test reads the broker's
answers in order: ``publish`` returns the PUBACK's reason code (0x87 "not authorized" for a
topic the ACL refuses, MQTT 5 §3.4.2.1), ``subscribe`` the SUBACK's.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

NO_SUBSCRIBERS = 0x10  # a PUBACK that is a success: nobody subscribed


@dataclass
class Probe:
    paho: paho.Client
    connack: object = None
    subacks: list[list[int]] = field(default_factory=list)
    pubacks: dict[int, int] = field(default_factory=dict)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    failure: str | None = None

    @property
    def connected(self) -> bool:
        connack = self.connack
        return self.failure is None and connack is not None and not connack.is_failure  # type: ignore[attr-defined]

    def pump(self, seconds: float = 0.5) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rc = self.paho.loop(0.05)
            if rc != paho.MQTT_ERR_SUCCESS:
                self.failure = self.failure or paho.error_string(rc)
                return

    def pumped(self, seconds: float) -> Probe:
        """``pump``, then this probe (for a ``wait_until`` condition)."""
        self.pump(seconds)
        return self

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        info = self.paho.publish(topic, payload, qos=1)
        end = time.monotonic() + 5
        while info.mid not in self.pubacks and time.monotonic() < end:
            self.pump(0.1)
        return self.pubacks[info.mid]

    def accepted(self, topic: str, payload: bytes = b"{}") -> bool:
        return self.publish(topic, payload) in (0, NO_SUBSCRIBERS)

    def subscribe(self, topic_filter: str) -> int:
        before = len(self.subacks)
        self.paho.subscribe(topic_filter, qos=1)
        end = time.monotonic() + 5
        while len(self.subacks) == before and time.monotonic() < end:
            self.pump(0.1)
        return self.subacks[-1][0]


def probe_tls(
    host: str,
    port: int,
    *,
    ca: Path,
    client_id: str,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    user: str | None = None,
    password: str | None = None,
) -> Probe:
    """Connect over TLS (MQTT 5) and wait up to 5 s for the CONNACK; a refused handshake is
    ``failure``, a refused CONNECT a failing ``connack``."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.tls_set(
        ca_certs=str(ca),
        certfile=str(certfile) if certfile else None,
        keyfile=str(keyfile) if keyfile else None,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    if user is not None:
        client.username_pw_set(user, password)
    c = Probe(client)

    def on_connect(cl, userdata, flags, rc, props) -> None:  # type: ignore[no-untyped-def]
        c.connack = rc

    client.on_connect = on_connect
    client.on_subscribe = lambda cl, u, mid, rcs, p: c.subacks.append([r.value for r in rcs])
    client.on_publish = lambda cl, u, mid, rc, p: c.pubacks.__setitem__(mid, rc.value)
    client.on_message = lambda cl, u, m: c.messages.append((m.topic, bytes(m.payload)))
    try:
        client.connect(host, port)
    except OSError as exc:  # the TLS handshake refused (a missing or revoked certificate)
        c.failure = str(exc)
        return c
    end = time.monotonic() + 5
    while c.connack is None and c.failure is None and time.monotonic() < end:
        c.pump(0.1)
    return c
