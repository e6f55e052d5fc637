"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioning import BrokerAddress, Enrolment, new_device
from server.app import Server
from yijing.broker import LocalBroker


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def enrol(
    server: Server, device_id: str, broker: LocalBroker, units: tuple[str, ...] = ()
) -> Enrolment:
    identity = new_device(device_id, units=units)
    server.register_device(identity)
    return Enrolment(
        identity,
        server.identity.public_key,
        server.identity.key_id,
        BrokerAddress(broker.host, broker.port, broker.protocol),
    )


def outbox_pending(path: Path) -> int:
    """Rows not yet acknowledged in an agent's outbox, read on a connection of our own.

    Not through the agent's connection: from another thread that could see the middle of
    one of the agent's transactions (a backlog row already gone, its frame not yet written).
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM backlog)"
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def call(server: Any, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """A REST request to a running ``Server`` as its first admin: ``(status, JSON body)``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path,
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {server.first_admin_token}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
