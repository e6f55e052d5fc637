"""`make demo` keeps working: `yijing demo` starts a broker, the server and a fleet, and the
dashboard's API shows the terminals moving."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def send(base: str, token: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def test_demo_fleet_moves_sends_pictures_and_is_on_duty(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "yijing.cli", "demo", "--terminals", "4", "--port", "0",
             "--interval", "0.5", "--cameras", "1", "--phones", "2",
             "--data", str(tmp_path / "var")],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until(lambda: "dashboard:" in log.read_text(), 60, "the dashboard link")
            link = re.search(r"dashboard: (http://\S+)/login\?token=(\S+)", log.read_text())
            assert link, log.read_text()
            base, token = link.group(1), link.group(2)

            def api(path: str) -> dict:
                request = urllib.request.Request(
                    base + path, headers={"Authorization": f"Bearer {token}"}
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    return json.load(response)

            def terminals() -> list[dict]:
                return api("/api/v1/terminals")["terminals"]

            wait_until(
                lambda: sum(1 for t in terminals() if t["fix"]) == 6
                and sum(1 for t in terminals() if t["kind"] == "phone") == 2,
                60,
                "four terminals and two phones placed (the directory names phones within 5 s)",
            )
            phones = {t["device"]: t for t in terminals() if t["kind"] == "phone"}
            assert set(phones) == {"ph-pv-001", "ph-pv-002"}
            assert all(t["signed"] is False and t["volunteer"] for t in phones.values())
            before = {t["device"]: (t["fix"]["lat"], t["fix"]["lon"]) for t in terminals()}
            time.sleep(3)
            after = {t["device"]: (t["fix"]["lat"], t["fix"]["lon"]) for t in terminals()}
            assert any(before[d] != after[d] for d in before), "nobody moved"
            # The one terminal with a camera shows a picture.
            wait_until(lambda: any(t.get("snapshot") for t in terminals()), 60, "a camera picture")
            # The demo's organisation: a shift per volunteer, tracked live by the duty engine.
            duty = api("/api/v1/duty/now")
            assert len(duty["shifts"]) == 6
            assert {s["device_id"] for s in duty["shifts"]} == {
                *(f"ft-000{i}" for i in range(1, 5)), "ph-pv-001", "ph-pv-002"
            }
            assert sum(1 for s in duty["shifts"] if s["phone"]) == 2
            assert "reports:" in log.read_text()
            # The demo's volunteers answer a dispatch the way people do.
            wait_until(
                lambda: any(t["status"] in ("on_post", "off_post") for t in terminals()),
                30,
                "a volunteer on duty on the live map",
            )
            someone = next(
                t
                for t in terminals()
                if t["status"] in ("on_post", "off_post") and t["kind"] != "phone"
            )
            incident = send(base, token, "/api/v1/incidents", {
                "kind": "dispute", "priority": 2, "note": "demo",
                "lat": someone["fix"]["lat"], "lon": someone["fix"]["lon"] + 0.0005,
            })  # fmt: skip
            iid = incident["incident_id"]
            circles = api(f"/api/v1/incidents/{iid}/proposals")["circles"]
            nearest = next(
                c for circle in circles for c in circle["candidates"] if c["kind"] != "phone"
            )
            send(base, token, f"/api/v1/incidents/{iid}/dispatches",
                 {"device_ids": [nearest["device_id"]]})  # fmt: skip

            def answered() -> bool:
                state = api(f"/api/v1/incidents/{iid}")["dispatches"][0]["state"]
                return state in ("accepted", "declined", "on_scene")

            wait_until(answered, 30, "the simulated volunteer to answer the dispatch")
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                assert demo.wait(30) == 0, log.read_text()
            finally:
                if demo.poll() is None:
                    demo.kill()
                    demo.wait(10)
