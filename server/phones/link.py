"""The server's MQTT client for OwnTracks phones: their reports in, their commands out.

OwnTracks publishes at QoS 1 (its default) to ``owntracks/<user>/<device>`` and region events
to ``…/event``; it deletes a report from its queue when the broker's PUBACK comes, so here
the server is the broker's subscriber with a session the broker keeps (MQTT 5 §3.1.2.11.2,
a day) and acknowledges each delivery only after the report is stored (``manual_ack``): a
server that is down or crashes leaves the reports with the broker, which sends them again
when the session resumes (§4.4). The client id is therefore stable per host and data folder.

Several servers on one broker share the phones through an MQTT 5 shared subscription
(§4.8.2), as they share the terminals' uplink.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from yijing.mqtt import MqttLink, TlsFiles

#: What OwnTracks publishes: reports, and region transitions (``…/event``).
FILTERS = ("owntracks/+/+", "owntracks/+/+/event")
SHARE_GROUP = "yijing-phones"
#: How long the broker keeps the session (and the reports for it) while the server is away.
SESSION_EXPIRY_S = 86_400


def client_id(data_dir: Path) -> str:
    """Stable across restarts (so the session resumes), distinct per host and data folder."""
    where = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"yijing-phones-{socket.gethostname()[:32]}-{where}"


def phone_link(
    *,
    data_dir: Path,
    host: str,
    port: int,
    protocol: str,
    tls: TlsFiles | None,
    on_report: Callable[[str, bytes, Callable[[], None]], None],
    logger: logging.Logger | None = None,
) -> MqttLink:
    filters = [(f"$share/{SHARE_GROUP}/{f}" if protocol == "5" else f, 1) for f in FILTERS]
    return MqttLink(
        client_id=client_id(data_dir),
        host=host,
        port=port,
        protocol=protocol,
        subscriptions=filters,
        on_acked_message=on_report,
        session_expiry_s=SESSION_EXPIRY_S,
        tls=tls,
        logger=logger or logging.getLogger("yijing.phones.link"),
    )
