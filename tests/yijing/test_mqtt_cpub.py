"""Acks through libmosquitto: what is published arrives byte for byte, a link that is down
says so instead of dropping silently, and a broker that dies and comes back is reconnected."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import wait_until
from yijing.broker import LocalBroker, free_port, start_mosquitto
from yijing.mqtt import LinkConfigError, LinkTlsError, MqttLink, NotConnected, TlsFiles
from yijing.mqtt_cpub import CPublisher, available

pytestmark = pytest.mark.skipif(
    not available(), reason="libmosquitto (Debian libmosquitto1) is not installed"
)


@pytest.fixture
def received(broker: LocalBroker):
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes) -> None:
        with lock:
            got.append((topic, payload))

    link = MqttLink(
        client_id=f"sub-{os.getpid()}",
        host=broker.host,
        port=broker.port,
        subscriptions=[("yj/1/down/+/+", 1)],
        on_message=on_message,
    )
    link.start()
    assert link.wait_connected(10)
    yield got
    link.stop()


def test_settings_that_cannot_work_are_named(tmp_path: Path) -> None:
    with pytest.raises(LinkConfigError, match="port 70000"):
        CPublisher(client_id="x", port=70000)
    with pytest.raises(LinkConfigError, match="protocol"):
        CPublisher(client_id="x", protocol="4")
    tls = TlsFiles(tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(LinkTlsError, match=r"ca\.pem"):
        CPublisher(client_id="x", tls=tls)


def test_what_is_published_arrives_byte_for_byte(
    broker: LocalBroker, received: list[tuple[str, bytes]]
) -> None:
    pub = CPublisher(client_id=f"cpub-{os.getpid()}", host=broker.host, port=broker.port)
    with pytest.raises(NotConnected):
        pub.publish("yj/1/down/ft-1/ack", b"too early")
    pub.start()
    try:
        assert pub.wait_connected(10), pub.last_failure
        sent = [("yj/1/down/ft-1/ack", bytes(range(256))), ("yj/1/down/ft-2/ack", b"")]
        sent += [(f"yj/1/down/ft-{i % 5}/ack", os.urandom(i % 100)) for i in range(1000)]
        for topic, payload in sent:
            pub.publish(topic, payload, qos=1)  # QoS 1: this test must not lose any
        wait_until(lambda: len(received) >= len(sent), 20, "every message")
        assert received == sent
    finally:
        pub.stop()
    with pytest.raises(NotConnected):
        pub.publish("yj/1/down/ft-1/ack", b"after stop")


def test_a_broker_killed_and_back_is_reconnected(
    tmp_path: Path, mosquitto_path: str, broker: LocalBroker
) -> None:
    pub = CPublisher(client_id=f"cpub-{os.getpid()}", host=broker.host, port=broker.port)
    pub.start()
    try:
        assert pub.wait_connected(10)
        broker.kill()
        wait_until(lambda: not pub.connected, 10, "the link to notice the broker is gone")
        with pytest.raises(NotConnected):
            pub.publish("yj/1/down/ft-1/ack", b"while down")
        assert pub.last_failure is not None
        again = start_mosquitto(tmp_path / "again", port=broker.port, executable=mosquitto_path)
        try:
            wait_until(lambda: pub.connected, 40, "libmosquitto to reconnect")
            assert pub.connects == 2
        finally:
            again.stop()
    finally:
        pub.stop()


def test_no_broker_means_not_connected_not_an_exception() -> None:
    pub = CPublisher(client_id=f"cpub-{os.getpid()}", port=free_port())
    pub.start()
    try:
        assert not pub.wait_connected(1.0)
        with pytest.raises(NotConnected, match="not connected"):
            pub.publish("yj/1/down/ft-1/ack", b"x")
    finally:
        pub.stop()


def test_stop_during_publishes_is_safe(broker: LocalBroker) -> None:
    # The ingest thread may still acknowledge while the server stops: stop() must not free
    # libmosquitto's client under a publish in flight (that would crash the process).
    pub = CPublisher(client_id=f"cpub-{os.getpid()}", host=broker.host, port=broker.port)
    pub.start()
    assert pub.wait_connected(10)
    refused: list[int] = []
    done = threading.Event()

    def hammer() -> None:
        while not done.is_set():
            try:
                pub.publish("yj/1/down/ft-1/ack", b"x" * 60)
            except NotConnected:
                refused.append(1)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)  # publishes under way
        pub.stop()
        wait_until(lambda: len(refused) > 100, 10, "publishes after stop refused")
    finally:
        done.set()
        for t in threads:
            t.join(5)
