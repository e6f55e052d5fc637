"""The terminal's local screen over real HTTP: its guards, and what each button sends."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.agent import Agent
from agent.localui import LocalUI, LocalUIError, bearing_deg
from agent.sim_gps import SimulatedWalker
from protocol import (
    Clue,
    DispatchCancel,
    DispatchCommand,
    DispatchResponse,
    Event,
    EventKind,
    IncidentKind,
    Message,
    ResponseStatus,
    ServerEndpoint,
    Snapshot,
    SnapshotTrigger,
    Task,
    TaskAck,
    decode,
)
from protocol.messages import MAX_JPEG_BYTES
from provisioning import BrokerAddress, Enrolment, new_device

DEVICE = "ft-0001"


@dataclass
class Rig:
    agent: Agent
    server: ServerEndpoint
    ui: LocalUI

    def deliver(self, message: Message) -> None:
        """Through the agent's downlink, as the MQTT link hands it over."""
        out = self.server.command(DEVICE, message, sent_ms=self.agent.now_ms())
        self.agent.call(lambda: self.agent._handle("msg", out.topic, out.payload))

    def sent(self) -> list[Message]:
        items = self.agent.call(lambda: self.agent.outbox.next_items(200))
        return [decode(i.payload).envelope.message for i in items]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        *,
        token: str | None = "right",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        if token == "right":
            all_headers["X-Yijing-UI"] = self.ui.token
        elif token is not None:
            all_headers["X-Yijing-UI"] = token
        data = None
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        elif body is not None:
            data = body
        req = urllib.request.Request(
            self.ui.url.rstrip("/") + path, data=data, method=method, headers=all_headers
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw, status, kind = r.read(), r.status, r.headers.get_content_type()
        except urllib.error.HTTPError as e:
            raw, status, kind = e.read(), e.code, e.headers.get_content_type()
            e.close()
        return status, json.loads(raw) if kind == "application/json" else raw.decode()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    server_key = Ed25519PrivateKey.generate()
    identity = new_device(DEVICE, units=("futian",))
    enrolment = Enrolment(identity, server_key.public_key(), 1, BrokerAddress("127.0.0.1", 1))
    agent = Agent(enrolment, tmp_path, source=SimulatedWalker(22.5431, 114.0579))
    loop = threading.Thread(target=agent.run, daemon=True)  # the loop, without a broker link
    loop.start()
    ui = LocalUI(agent, port=0)
    ui.start()
    try:
        yield Rig(agent, ServerEndpoint(signing_key=server_key, key_id=1), ui)
    finally:
        ui.stop()
        agent._stop.set()
        loop.join(5)
        agent.outbox.close()


def dispatch(agent: Agent, dispatch_id: str) -> DispatchCommand:
    now = agent.now_ms()
    return DispatchCommand(
        dispatch_id=dispatch_id, incident_id="inc-1", kind=IncidentKind.MEDICAL, priority=1,
        lat=22.5461, lon=114.0579, sent_ms=now, expires_ms=now + 300_000, note="man collapsed",
    )  # fmt: skip


def responses(rig: Rig) -> list[tuple[str, ResponseStatus]]:
    return [(m.dispatch_id, m.status) for m in rig.sent() if isinstance(m, DispatchResponse)]


def multipart(fields: dict[str, str], photo: bytes | None = None) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    if photo is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; '
            f'filename="clue.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + photo
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def jpeg() -> bytes:
    image = np.full((30, 40, 3), 90, np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


# --- guards ---------------------------------------------------------------------------------------


def test_the_page_carries_the_token_and_a_strict_content_policy(rig: Rig) -> None:
    req = urllib.request.Request(rig.ui.url)
    with urllib.request.urlopen(req, timeout=10) as r:
        page = r.read().decode()
        policy = r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
    assert f'content="{rig.ui.token}"' in page
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "http://" not in page.replace(rig.ui.url, "") and "https://" not in page  # offline


def test_the_api_refuses_requests_without_the_token(rig: Rig) -> None:
    status, doc = rig.request("GET", "/api/state", token=None)
    assert status == 403 and "X-Yijing-UI" in doc["error"]
    status, _ = rig.request("POST", "/api/sos", {}, token="guessed")
    assert status == 403
    status, _ = rig.request("POST", "/api/sos", {}, token=None)
    assert status == 403
    assert not [m for m in rig.sent() if isinstance(m, Event)]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.nip.io"])
def test_a_foreign_host_name_is_refused_against_dns_rebinding(rig: Rig, host: str) -> None:
    status, doc = rig.request("GET", "/api/state", headers={"Host": host})
    assert status == 403 and "Host" in doc["error"]
    status, _ = rig.request("GET", "/", token=None, headers={"Host": host})
    assert status == 403


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "127.0.0.1"])
def test_loopback_host_names_are_served(rig: Rig, host: str) -> None:
    status, doc = rig.request("GET", "/api/state", headers={"Host": host})
    assert status == 200 and doc["device_id"] == DEVICE


def test_a_body_over_the_limit_is_refused_with_413_naming_it(rig: Rig) -> None:
    body, headers = multipart({"text": "x"}, b"\xff\xd8" + b"\x00" * (700 * 1024))
    status, doc = rig.request("POST", "/api/clues", body, headers=headers)
    assert status == 413 and doc["error"].startswith("body:") and "512 KiB" in doc["error"]
    status, doc = rig.request("POST", "/api/sos", b"{" + b" " * 20_000 + b"}")
    assert status == 413 and doc["error"].startswith("body:")
    assert rig.sent() == [] or not [m for m in rig.sent() if isinstance(m, (Clue, Event))]


def test_a_photo_just_over_512_kib_is_refused_with_413(rig: Rig) -> None:
    body, headers = multipart({"text": "x"}, b"\xff\xd8" + b"\x00" * (MAX_JPEG_BYTES - 1))
    status, doc = rig.request("POST", "/api/clues", body, headers=headers)
    assert status == 413 and doc["error"].startswith("photo:")
    assert not [m for m in rig.sent() if isinstance(m, Clue)]


def test_a_taken_port_is_a_clear_error(rig: Rig) -> None:
    other = LocalUI(rig.agent, port=rig.ui.port)
    with pytest.raises(LocalUIError, match=f"127.0.0.1:{rig.ui.port}"):
        other.start()


def test_port_zero_picks_a_free_port(rig: Rig) -> None:
    assert rig.ui.port > 0 and rig.ui.url == f"http://127.0.0.1:{rig.ui.port}/"
    with socket.create_connection(("127.0.0.1", rig.ui.port), timeout=2):
        pass


# --- dispatch -------------------------------------------------------------------------------------


def test_state_shows_the_ringing_dispatch_with_distance_bearing_and_a_geo_link(rig: Rig) -> None:
    rig.agent.call(rig.agent.sample)
    rig.deliver(dispatch(rig.agent, "d-1"))
    status, doc = rig.request("GET", "/api/state")
    assert status == 200
    ringing = doc["ringing"]
    assert (ringing["dispatch_id"], ringing["kind"], ringing["note"]) == (
        "d-1", "medical", "man collapsed",
    )  # fmt: skip
    fix = rig.agent.latest_fix
    assert fix is not None
    assert 0 < ringing["distance_m"] < 1000
    assert ringing["bearing_deg"] == pytest.approx(
        bearing_deg(fix.lat, fix.lon, 22.5461, 114.0579), abs=0.1
    )
    assert ringing["geo"].startswith("geo:22.5461000,114.0579000")
    assert ringing["expires_ms"] - doc["now_ms"] > 290_000


def test_accept_then_arrived_become_responses_in_the_outbox(rig: Rig) -> None:
    rig.deliver(dispatch(rig.agent, "d-2"))
    status, doc = rig.request("POST", "/api/dispatch/accept", {"dispatch_id": "d-other"})
    assert status == 409 and "d-other" in doc["error"]
    status, _ = rig.request("POST", "/api/dispatch/accept", {"dispatch_id": "d-2"})
    assert status == 200
    _, state = rig.request("GET", "/api/state")
    assert state["ringing"] is None and state["current"]["dispatch_id"] == "d-2"
    assert state["current"]["on_scene_ms"] is None
    status, _ = rig.request("POST", "/api/dispatch/arrived", {"dispatch_id": "d-2"})
    assert status == 200
    status, _ = rig.request("POST", "/api/dispatch/arrived", {"dispatch_id": "d-2"})
    assert status == 409
    _, state = rig.request("GET", "/api/state")
    assert state["current"]["on_scene_ms"] is not None
    assert responses(rig) == [
        ("d-2", ResponseStatus.DELIVERED),
        ("d-2", ResponseStatus.ACCEPTED),
        ("d-2", ResponseStatus.ON_SCENE),
    ]


def test_decline_becomes_a_response_and_bad_bodies_are_named(rig: Rig) -> None:
    rig.deliver(dispatch(rig.agent, "d-3"))
    status, doc = rig.request("POST", "/api/dispatch/decline", {})
    assert status == 400 and doc["error"].startswith("dispatch_id:")
    status, doc = rig.request("POST", "/api/dispatch/decline", b"not json",
                              headers={"Content-Type": "application/json"})  # fmt: skip
    assert status == 400 and doc["error"].startswith("body:")
    status, _ = rig.request(
        "POST", "/api/dispatch/decline", {"dispatch_id": "d-3", "reason": "with a child"}
    )
    assert status == 200
    found = [m for m in rig.sent() if isinstance(m, DispatchResponse)]
    assert [(m.status, m.reason) for m in found] == [
        (ResponseStatus.DELIVERED, None),
        (ResponseStatus.DECLINED, "with a child"),
    ]


def test_a_cancelled_dispatch_leaves_the_screen_with_a_notice(rig: Rig) -> None:
    rig.deliver(dispatch(rig.agent, "d-4"))
    rig.deliver(DispatchCancel(dispatch_id="d-4", sent_ms=rig.agent.now_ms(), reason="resolved"))
    _, state = rig.request("GET", "/api/state")
    assert state["ringing"] is None
    assert state["notice"]["dispatch_id"] == "d-4" and state["notice"]["reason"] == "resolved"
    status, _ = rig.request("POST", "/api/dispatch/accept", {"dispatch_id": "d-4"})
    assert status == 409


# --- tasks, SOS, clues ----------------------------------------------------------------------------


def test_a_task_shows_until_read_and_read_sends_an_ack(rig: Rig) -> None:
    now = rig.agent.now_ms()
    rig.deliver(Task(task_id="t-1", title="Gate duty", sent_ms=now, expires_ms=now + 60_000,
                     lat=22.54, lon=114.05))  # fmt: skip
    _, state = rig.request("GET", "/api/state")
    assert [t["task_id"] for t in state["tasks"]] == ["t-1"]
    assert state["tasks"][0]["geo"].startswith("geo:22.54")
    status, _ = rig.request("POST", "/api/tasks/t-1/ack")
    assert status == 200
    status, doc = rig.request("POST", "/api/tasks/t-1/ack")
    assert status == 404 and doc["error"].startswith("task_id:")
    _, state = rig.request("GET", "/api/state")
    assert state["tasks"] == []
    assert [m.task_id for m in rig.sent() if isinstance(m, TaskAck)] == ["t-1"]


def test_sos_raises_an_sos_event_with_the_position(rig: Rig) -> None:
    rig.agent.call(rig.agent.sample)
    status, _ = rig.request("POST", "/api/sos", {"confirmed": True})
    assert status == 200
    events = [m for m in rig.sent() if isinstance(m, Event)]
    assert [e.kind for e in events] == [EventKind.SOS]
    assert events[0].fix is not None


def test_a_clue_as_json_and_as_a_form_with_a_photo(rig: Rig) -> None:
    status, doc = rig.request("POST", "/api/clues", {"text": "loose dog", "category": "other"})
    assert status == 201
    first = doc["clue_id"]
    photo = jpeg()
    body, headers = multipart({"text": "bag left behind", "category": "search"}, photo)
    status, doc = rig.request("POST", "/api/clues", body, headers=headers)
    assert status == 201
    second = doc["clue_id"]
    messages = rig.sent()
    clues = {m.clue_id: m for m in messages if isinstance(m, Clue)}
    assert clues[first].text == "loose dog" and clues[first].photo_sha256 is None
    assert clues[second].category is IncidentKind.SEARCH
    snaps = [m for m in messages if isinstance(m, Snapshot)]
    assert [(s.trigger, s.request_id, s.jpeg) for s in snaps] == [
        (SnapshotTrigger.CLUE, second, photo)
    ]
    assert clues[second].photo_sha256 == snaps[0].sha256


@pytest.mark.parametrize(
    ("fields", "photo", "says"),
    [
        ({"category": "other"}, None, "text:"),
        ({"text": "   "}, None, "text:"),
        ({"text": "x", "category": "ufo"}, None, "category:"),
        ({"text": "x"}, b"GIF89a" + b"\x00" * 64, "photo: not a JPEG"),
    ],
)
def test_a_bad_clue_is_refused_naming_the_field(
    rig: Rig, fields: dict[str, str], photo: bytes | None, says: str
) -> None:
    body, headers = multipart(fields, photo)
    status, doc = rig.request("POST", "/api/clues", body, headers=headers)
    assert status == 400 and doc["error"].startswith(says), doc
    assert not [m for m in rig.sent() if isinstance(m, Clue)]


def test_an_agent_loop_that_does_not_answer_is_a_503(rig: Rig) -> None:
    rig.agent._stop.set()
    time.sleep(0.5)  # the loop ends; calls now wait in vain
    rig.ui._call_timeout = 0.2
    status, doc = rig.request("POST", "/api/sos", {})
    assert status == 503 and doc["error"].startswith("agent:")


# --- configuration --------------------------------------------------------------------------------


def _resolve(*argv: str):  # type: ignore[no-untyped-def]
    import argparse

    from agent.cli import add_arguments, resolve

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return resolve(parser.parse_args(list(argv)))


def test_the_screen_is_off_unless_asked_for_and_options_win(tmp_path: Path) -> None:
    assert _resolve().ui_port is None
    assert _resolve("--ui-port", "0").ui_port == 0
    path = tmp_path / "agent.toml"
    path.write_text("ui_port = 8765\n")
    assert _resolve("--config", str(path)).ui_port == 8765
    assert _resolve("--config", str(path), "--ui-port", "9000").ui_port == 9000
    assert _resolve("--config", str(path), "--no-ui").ui_port is None
    path.write_text("ui_port = false\n")
    assert _resolve("--config", str(path)).ui_port is None


@pytest.mark.parametrize("value", ["70000", "'8765'", "-1", "true"])
def test_a_bad_ui_port_in_the_config_names_the_key(tmp_path: Path, value: str) -> None:
    from agent.config import ConfigError, load_config

    path = tmp_path / "agent.toml"
    path.write_text(f"ui_port = {value}\n")
    with pytest.raises(ConfigError, match="ui_port"):
        load_config(path)


def test_a_bad_ui_port_option_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _resolve("--ui-port", "http")
    assert "not a port" in capsys.readouterr().err
