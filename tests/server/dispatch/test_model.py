"""The lifecycle table, step by step, and the records' validation."""

from __future__ import annotations

import itertools

import pytest

from server.dispatch.errors import BadRequest
from server.dispatch.model import (
    ENGAGED,
    FINAL,
    TABLE,
    Dispatch,
    DispatchConfig,
    DispatchState,
    Incident,
    Step,
    Trigger,
    advance,
    arrived,
)

from .support import LAT, LON, NOW_MS, north

S, T = DispatchState, Trigger
#: The whole lifecycle, written out once more by hand: what the table must say.
LEGAL = {
    (S.SENT, T.DELIVERED): S.DELIVERED,
    (S.SENT, T.ACCEPTED): S.ACCEPTED,
    (S.SENT, T.DECLINED): S.DECLINED,
    (S.DELIVERED, T.ACCEPTED): S.ACCEPTED,
    (S.DELIVERED, T.DECLINED): S.DECLINED,
    (S.SENT, T.EXPIRE): S.EXPIRED,
    (S.DELIVERED, T.EXPIRE): S.EXPIRED,
    (S.ACCEPTED, T.ON_SCENE): S.ON_SCENE,
    (S.SENT, T.CLOSE): S.CANCELLED,
    (S.DELIVERED, T.CLOSE): S.CANCELLED,
    (S.ACCEPTED, T.CLOSE): S.CLOSED,
    (S.ON_SCENE, T.CLOSE): S.CLOSED,
    (S.SENT, T.CANCEL): S.CANCELLED,
    (S.DELIVERED, T.CANCEL): S.CANCELLED,
    (S.ACCEPTED, T.CANCEL): S.CANCELLED,
    (S.ON_SCENE, T.CANCEL): S.CANCELLED,
}
STAMP = {
    S.DELIVERED: "delivered_ms",
    S.ACCEPTED: "accepted_ms",
    S.DECLINED: "declined_ms",
    S.ON_SCENE: "on_scene_ms",
    S.EXPIRED: "expired_ms",
    S.CLOSED: "closed_ms",
    S.CANCELLED: "cancelled_ms",
}


def _in(state: DispatchState) -> Dispatch:
    return Dispatch(
        "d-1", "i-1", "a", sent_ms=NOW_MS, expires_ms=NOW_MS + 600_000, state=state, pending=False
    )


def test_the_table_is_the_lifecycle() -> None:
    assert TABLE == LEGAL
    assert {S.DECLINED, S.EXPIRED, S.CLOSED, S.CANCELLED} == FINAL
    assert set(S) - FINAL == ENGAGED
    # Nothing leaves a final state.
    assert not [k for k in TABLE if k[0] in FINAL]


@pytest.mark.parametrize("state,trigger", sorted(itertools.product(S, T)))
def test_every_pair_steps_as_the_table_says(state: DispatchState, trigger: Trigger) -> None:
    at = NOW_MS + 1234
    got = advance(_in(state), trigger, at, reason="why")
    to = LEGAL.get((state, trigger))
    if to is None:
        assert got is None
        return
    assert got is not None and got.state is to
    assert getattr(got, STAMP[to]) == at
    assert got.reason == "why"
    # Only a cancel leaves something to send (the DispatchCancel).
    assert got.pending is (to is S.CANCELLED)
    if to in (S.ACCEPTED, S.DECLINED):
        assert got.delivered_ms == at  # an answer implies the command arrived


def test_an_answer_keeps_an_earlier_delivery_time() -> None:
    delivered = advance(_in(S.SENT), T.DELIVERED, NOW_MS + 1)
    assert delivered is not None
    accepted = advance(delivered, T.ACCEPTED, NOW_MS + 9)
    assert accepted is not None and accepted.delivered_ms == NOW_MS + 1
    assert accepted.has_answered(T.DELIVERED) and accepted.has_answered(T.ACCEPTED)
    assert not accepted.has_answered(T.ON_SCENE)


def test_records_refuse_bad_fields_naming_them() -> None:
    good = dict(
        incident_id="i-1",
        kind="fight",
        priority=2,
        lat=LAT,
        lon=LON,
        created_ms=NOW_MS,
        created_by="officer:Li",
    )
    assert Incident(**good).kind.value == "fight"  # type: ignore[arg-type]
    for name, value in (
        ("kind", "riot"),
        ("priority", 4),
        ("priority", True),
        ("lat", 91.0),
        ("lon", "east"),
        ("lat", float("nan")),
        ("note", "x" * 501),
        ("incident_id", "no spaces"),
        ("auto_escalate", "yes"),
    ):
        with pytest.raises(BadRequest) as caught:
            Incident(**{**good, name: value})  # type: ignore[arg-type]
        assert caught.value.field == name, (name, value)
    with pytest.raises(BadRequest, match="expires_ms"):
        Dispatch("d-1", "i-1", "a", sent_ms=NOW_MS, expires_ms=NOW_MS)
    with pytest.raises(BadRequest, match="actor"):
        Step(NOW_MS, "somebody", "i-1", "opened")


def test_circles_and_the_on_scene_radius() -> None:
    config = DispatchConfig()
    assert config.radius_m(1) == pytest.approx(1.4 * 60 / 1.3)
    walk_m, eta_s, circle = config.walk(60.0)
    assert walk_m == pytest.approx(78.0) and eta_s == pytest.approx(78 / 1.4) and circle == 1
    assert config.walk(config.radius_m(1))[2] == 1  # eta exactly 60 s is still inside
    assert config.walk(config.radius_m(1) + 0.01)[2] == 3
    assert config.walk(config.radius_m(5) + 0.01)[2] is None
    incident = Incident("i-1", "fight", 2, LAT, LON, NOW_MS, "officer:Li")  # type: ignore[arg-type]
    assert arrived(incident, *north(49.9), None, config)
    assert not arrived(incident, *north(50.5), None, config)
    # The fix's accuracy widens the radius, up to 30 m.
    assert arrived(incident, *north(69.9), 20.0, config)
    assert not arrived(incident, *north(70.5), 20.0, config)
    assert arrived(incident, *north(79.9), 200.0, config)
    assert not arrived(incident, *north(80.5), 200.0, config)
    with pytest.raises(ValueError, match="circles_min"):
        DispatchConfig(circles_min=(3, 1))
