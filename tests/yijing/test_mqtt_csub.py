"""The uplink through Mosquitto's C client: every byte of every payload arrives, the probe
says when the subscription is live, a broker that dies or is not there yet is survived, and a
killed owner takes its mosquitto_sub with it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import wait_until
from yijing.broker import LocalBroker, free_port, start_mosquitto
from yijing.mqtt import Backoff, LinkConfigError, LinkTlsError, MqttLink, TlsFiles
from yijing.mqtt_csub import CSubscriber, find_executable, parse_records

pytestmark = pytest.mark.skipif(
    find_executable() is None, reason="mosquitto_sub (Debian mosquitto-clients) is not installed"
)


# --- the stream format -------------------------------------------------------------------------

topics_st = st.text(
    alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40
)


def encode(records: list[tuple[str, bytes]]) -> bytes:
    """What ``mosquitto_sub -F '%t\\0%x'`` writes."""
    return b"".join(t.encode() + b"\0" + p.hex().encode() + b"\n" for t, p in records)


@given(
    st.lists(st.tuples(topics_st, st.binary(max_size=300)), max_size=30),
    st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=20),
)
def test_records_survive_any_split_of_the_stream(
    records: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    data = encode(records)
    got: list[tuple[str, bytes]] = []
    rest = b""
    i = 0
    for size in cuts * (len(data) // max(1, sum(cuts)) + 1):
        if i >= len(data):
            break
        parsed, rest, skipped = parse_records(rest + data[i : i + size])
        assert skipped == 0
        got += parsed
        i += size
    parsed, rest, _ = parse_records(rest + data[i:])
    got += parsed
    assert got == records
    assert rest == b""


@given(st.binary(max_size=500))
def test_garbage_never_raises_and_is_accounted_for(data: bytes) -> None:
    records, rest, skipped = parse_records(data)
    assert len(rest) + skipped <= len(data)
    for topic, payload in records:
        assert isinstance(topic, str) and isinstance(payload, bytes)


def test_an_odd_hex_record_is_skipped_not_fatal() -> None:
    records, rest, skipped = parse_records(b"a/b\0abc\nc/d\0ff\n")
    assert records == [("c/d", b"\xff")]
    assert skipped == len(b"a/b\0abc\n")
    assert rest == b""


# --- configuration errors ------------------------------------------------------------------------


def make(broker_port: int, got: list[tuple[str, bytes]], link: MqttLink | None, **kw: object):
    lock = threading.Lock()

    def on_messages(batch: list[tuple[str, bytes]]) -> None:
        with lock:
            got.extend(batch)

    def probe(topic: str, payload: bytes) -> None:
        if link is not None:
            link.publish(topic, payload, qos=0)

    options: dict[str, object] = {
        "client_id": f"csub-test-{os.getpid()}-{time.monotonic_ns()}",
        "topic_filters": ["yj/1/up/+/+"],
        "on_messages": on_messages,
        "probe": probe,
        "port": broker_port,
        "probe_every_s": 0.5,
        "backoff": Backoff(base=0.1, cap=0.3),
    }
    options.update(kw)
    return CSubscriber(**options)  # type: ignore[arg-type]


def test_settings_that_cannot_work_are_named(tmp_path: Path) -> None:
    with pytest.raises(LinkConfigError, match="mosquitto_sub not found"):
        make(1883, [], None, executable=str(tmp_path / "no-such-binary"))
    with pytest.raises(LinkConfigError, match="port 0"):
        make(0, [], None)
    with pytest.raises(LinkConfigError, match="topic filter"):
        make(1883, [], None, topic_filters=[])
    tls = TlsFiles(tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(LinkTlsError, match=r"ca\.pem"):
        make(1883, [], None, tls=tls)


# --- against a real Mosquitto --------------------------------------------------------------------


@pytest.fixture
def publisher(broker: LocalBroker) -> MqttLink:
    link = MqttLink(client_id=f"pub-{os.getpid()}", host=broker.host, port=broker.port)
    link.start()
    assert link.wait_connected(10)
    yield link
    link.stop()


def test_every_payload_byte_arrives(broker: LocalBroker, publisher: MqttLink) -> None:
    got: list[tuple[str, bytes]] = []
    sub = make(broker.port, got, publisher)
    sub.start()
    try:
        assert sub.wait_subscribed(10), sub.last_failure
        sent = [
            ("yj/1/up/ft-1/pos", bytes(range(256))),  # every byte value, \0 and \n included
            ("yj/1/up/ft-2/pos", b""),
            ("yj/1/up/a b/pos", b"\n\n\0"),  # a space in the topic
        ] + [(f"yj/1/up/ft-{i % 7}/pos", os.urandom(i % 200)) for i in range(2000)]
        for topic, payload in sent:
            publisher.publish(topic, payload, qos=1)
        wait_until(lambda: len(got) >= len(sent), 20, "every message")
        # One publisher, one subscriber: MQTT keeps the order (§4.6).
        assert got == sent
        assert sub.received == len(sent)
        assert not any(t.startswith("yj/1/sys/") for t, _ in got)  # probes are not messages
    finally:
        sub.stop()


def test_no_probe_back_means_not_subscribed(broker: LocalBroker) -> None:
    sub = make(broker.port, [], None)  # the probe goes nowhere
    sub.start()
    try:
        assert not sub.wait_subscribed(1.5)
        assert sub.pid() is not None  # running, but not proven subscribed
    finally:
        sub.stop()
    assert sub.pid() is None


def test_a_broker_killed_and_back_is_survived(
    broker: LocalBroker, publisher: MqttLink, tmp_path: Path, mosquitto_path: str
) -> None:
    got: list[tuple[str, bytes]] = []
    sub = make(broker.port, got, publisher)
    sub.start()
    try:
        assert sub.wait_subscribed(10)
        publisher.publish("yj/1/up/ft-1/pos", b"before", qos=1)
        wait_until(lambda: ("yj/1/up/ft-1/pos", b"before") in got, 10, "the first message")
        broker.kill()
        again = start_mosquitto(tmp_path / "again", port=broker.port, executable=mosquitto_path)
        assert publisher.wait_connected(15)

        def after_arrived() -> bool:
            # The subscription is not persistent: publish until one arrives after reconnect.
            publisher.publish("yj/1/up/ft-1/pos", b"after", qos=1)
            time.sleep(0.2)
            return ("yj/1/up/ft-1/pos", b"after") in got

        wait_until(after_arrived, 20, "a message after the broker came back")
        wait_until(lambda: sub.subscribed, 10, "the probe to come back")
        again.stop()
    finally:
        sub.stop()


def test_no_broker_yet_is_retried_and_the_reason_kept(
    tmp_path: Path, mosquitto_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    got: list[tuple[str, bytes]] = []
    box: list[MqttLink] = []

    def probe(topic: str, payload: bytes) -> None:
        if box:
            box[0].publish(topic, payload, qos=0)

    caplog.set_level(logging.WARNING, logger="yijing.mqtt_csub")
    sub = make(port, got, None, probe=probe)
    sub.start()
    try:
        wait_until(lambda: sub.starts >= 3, 10, "three starts")
        assert sub.last_failure is not None and "refused" in sub.last_failure.lower()
        # Logged once per distinct reason, not once per restart.
        assert sum("refused" in r.getMessage().lower() for r in caplog.records) == 1
        broker = start_mosquitto(tmp_path / "late", port=port, executable=mosquitto_path)
        link = MqttLink(client_id="late-pub", host=broker.host, port=port)
        link.start()
        box.append(link)
        try:
            assert sub.wait_subscribed(15), sub.last_failure
            assert sub.last_failure is None
            link.publish("yj/1/up/ft-9/pos", b"x", qos=1)
            wait_until(lambda: ("yj/1/up/ft-9/pos", b"x") in got, 10, "the message")
        finally:
            link.stop()
            broker.stop()
    finally:
        sub.stop()


OWNER = """
import sys, time
from yijing.mqtt_csub import CSubscriber
sub = CSubscriber(client_id="owner-test", topic_filters=["yj/1/up/+/+"],
                  on_messages=lambda b: None, probe=lambda t, p: None, port=int(sys.argv[1]))
sub.start()
while sub.pid() is None:
    time.sleep(0.05)
print(sub.pid(), flush=True)
time.sleep(60)
"""


def test_a_killed_owner_takes_its_mosquitto_sub_along(broker: LocalBroker) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(broker.port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            # A zombie of the init process counts as gone: it no longer holds a connection.
            state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
            return state == "Z"

        wait_until(gone, 10, "mosquitto_sub to end with its owner")
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
