"""The server's MQTT clients, on either engine: who receives the uplink, who publishes the
acks, who sends commands, and how readiness is proved — decided here once for the server's
own process (``server.app``) and for each ingest worker (``server.ingest_workers``).

- ``paho``: one ``MqttLink`` does everything.
- ``mosquitto``: ``mosquitto_sub`` receives (``yijing.mqtt_csub``), libmosquitto publishes the
  acks (``yijing.mqtt_cpub``), and the ``MqttLink`` only sends commands and roll calls. The
  subscriber's readiness probe goes out through the ack publisher, so a probe coming back
  proves both directions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .mqtt import MqttLink, TlsFiles
from .mqtt_cpub import CPublisher
from .mqtt_csub import CSubscriber

ENGINES = ("mosquitto", "paho")


@dataclass
class UplinkClients:
    link: MqttLink
    csub: CSubscriber | None = None
    cpub: CPublisher | None = None

    @property
    def acks(self) -> MqttLink | CPublisher:
        """What publishes the ``StoredAck``s."""
        return self.cpub or self.link

    def start(self) -> None:
        self.link.start()
        if self.cpub is not None:
            self.cpub.start()
        if self.csub is not None:
            self.csub.start()

    def wait_ready(self, timeout: float) -> bool:
        """Connected, and (C engine) the subscription proved live by a probe."""
        connected = self.link.wait_connected(timeout)
        subscribed = self.csub is None or self.csub.wait_subscribed(timeout)
        return connected and subscribed

    def stop(self) -> None:
        # The receiver first: nothing new arrives while the publishers still ack.
        if self.csub is not None:
            self.csub.stop()
        if self.cpub is not None:
            self.cpub.stop()
        self.link.stop()


def uplink_clients(
    *,
    engine: str,
    client_id: str,
    host: str,
    port: int,
    protocol: str,
    tls: TlsFiles | None,
    topic_filter: str | None,
    submit: Callable[[str, bytes], None],
    submit_many: Callable[[list[tuple[str, bytes]]], None],
    logger: logging.Logger | None = None,
) -> UplinkClients:
    """The clients of one process. ``topic_filter`` None: this process does not receive the
    uplink (the server's main process when ingest workers do) and only sends commands."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    by_c = engine == "mosquitto" and topic_filter is not None
    link = MqttLink(
        client_id=client_id,
        host=host,
        port=port,
        protocol=protocol,
        subscriptions=[(topic_filter, 1)] if topic_filter is not None and not by_c else [],
        on_message=submit,
        tls=tls,
        logger=logger,
    )
    if not by_c or topic_filter is None:
        return UplinkClients(link)
    cpub = CPublisher(
        client_id=f"{client_id}-pub",
        host=host,
        port=port,
        protocol=protocol,
        tls=tls,
        logger=logger.getChild("cpub") if logger is not None else None,
    )
    csub = CSubscriber(
        client_id=f"{client_id}-sub",
        topic_filters=[topic_filter],
        on_messages=submit_many,
        probe=lambda topic, payload: cpub.publish(topic, payload, qos=0),
        host=host,
        port=port,
        protocol=protocol,
        tls=tls,
        logger=logger.getChild("csub") if logger is not None else None,
    )
    return UplinkClients(link, csub, cpub)
