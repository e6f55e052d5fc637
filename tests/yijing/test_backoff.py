"""Reconnect backoff (capped exponential, full jitter) and MqttLink's checks, with no broker."""

from __future__ import annotations

import pytest

from yijing.mqtt import Backoff, LinkConfigError, LinkError, MqttLink, NotConnected


def test_ceiling_doubles_then_caps() -> None:
    backoff = Backoff(base=0.5, cap=10.0, rng=lambda: 1.0)  # the top of the jitter range
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff.failures == 8


def test_delay_stays_capped_after_very_many_failures() -> None:
    backoff = Backoff(base=1.0, cap=30.0, rng=lambda: 1.0)
    for _ in range(200):
        assert backoff.next_delay() <= 30.0
    assert backoff.next_delay() == 30.0


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    draws = iter([0.0, 0.5, 0.999])
    backoff = Backoff(base=2.0, cap=100.0, rng=lambda: next(draws))
    backoff.failures = 3  # ceiling 2 * 2**3 = 16
    assert backoff.next_delay() == 0.0
    backoff.failures = 3
    assert backoff.next_delay() == 8.0
    backoff.failures = 3
    assert backoff.next_delay() == pytest.approx(15.984)


def test_default_rng_stays_within_the_ceiling() -> None:
    backoff = Backoff(base=0.5, cap=4.0)
    delays = []
    for n in range(50):
        ceiling = min(4.0, 0.5 * 2**n)
        delay = backoff.next_delay()
        assert 0.0 <= delay <= ceiling
        delays.append(delay)
    assert len(set(delays)) > 1  # jittered, not lock-step


def test_stable_connection_resets_short_one_does_not() -> None:
    backoff = Backoff(base=1.0, cap=60.0, stable_after=10.0, rng=lambda: 1.0)
    for _ in range(4):
        backoff.next_delay()
    backoff.connected_for(9.9)  # flapping: keep backing off
    assert backoff.next_delay() == 16.0
    backoff.connected_for(10.0)
    assert backoff.failures == 0
    assert backoff.next_delay() == 1.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_rejects_bad_config(base: float, cap: float) -> None:
    with pytest.raises(LinkConfigError):
        Backoff(base=base, cap=cap)


def test_base_equal_to_cap_is_allowed() -> None:
    backoff = Backoff(base=3.0, cap=3.0, rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(3)] == [3.0, 3.0, 3.0]


def test_config_error_is_a_link_error() -> None:
    assert issubclass(LinkConfigError, LinkError)
    assert issubclass(NotConnected, LinkError)


# --- MqttLink, never started ------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["4", "3.1", "5.0", "", "mqtt"])
def test_link_rejects_unknown_protocol(protocol: str) -> None:
    with pytest.raises(LinkConfigError, match="protocol"):
        MqttLink(client_id="t", protocol=protocol)


@pytest.mark.parametrize("port", [0, -1, 65536, 100_000])
def test_link_rejects_bad_port(port: int) -> None:
    with pytest.raises(LinkConfigError, match="port"):
        MqttLink(client_id="t", port=port)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_publish_while_not_connected_raises(protocol: str) -> None:
    link = MqttLink(client_id="t", port=1, protocol=protocol)
    assert not link.connected
    assert not link.wait_connected(0)
    with pytest.raises(NotConnected):
        link.publish("yj/1/up/dev-1/pos", b"payload", qos=1)
    with pytest.raises(NotConnected):
        link.publish("yj/1/up/dev-1/pos", b"payload", expiry_s=60)
    link.stop()  # never started: a no-op


def test_accepts_edge_ports() -> None:
    for port in (1, 65535):
        assert MqttLink(client_id="t", port=port).port == port
