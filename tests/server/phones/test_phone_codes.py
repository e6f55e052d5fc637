"""What an enrolment code points at: `yijing server --phone-mqtt` / `--public-url`, else
the address the admin's browser used (server.phones.service.configure)."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

from provisioning.phones import PhoneApp, PhoneRegistry
from server.phones.service import PhoneEndpoints, configure

NOW_MS = 1_765_000_000_000


def inline_config(qr: str) -> dict[str, object]:
    query = urllib.parse.urlsplit(qr).query
    inline = urllib.parse.parse_qs(query)["inline"][0]
    doc: dict[str, object] = json.loads(base64.b64decode(inline + "=" * (-len(inline) % 4)))
    return doc


def test_codes_follow_the_servers_phone_endpoints(tmp_path: Path) -> None:
    registry = PhoneRegistry(tmp_path / "phones.db")
    try:
        owntracks, password = registry.enrol(
            volunteer_id="v1", unit_id="ft", app=PhoneApp.OWNTRACKS, now_ms=NOW_MS
        )
        mqtt = PhoneEndpoints(mqtt_host="patrol.example.org", mqtt_port=8884, mqtt_tls=True)
        code = configure(owntracks, password, mqtt, base_url="http://127.0.0.1:8080")
        assert code.config["mode"] == 0  # MQTT
        assert (code.config["host"], code.config["port"], code.config["tls"]) == (
            "patrol.example.org",
            8884,
            True,
        )
        assert inline_config(code.qr) == code.config
        http = configure(owntracks, password, PhoneEndpoints(), base_url="http://10.0.0.5:8080")
        assert http.config["mode"] == 3  # HTTP, to where the admin's browser reached us
        assert http.config["url"] == "http://10.0.0.5:8080/pub/owntracks"
        traccar, _ = registry.enrol(
            volunteer_id="v2", unit_id="ft", app=PhoneApp.TRACCAR, now_ms=NOW_MS
        )
        public = PhoneEndpoints(public_url="https://patrol.example.org/")
        code = configure(traccar, "", public, base_url="http://127.0.0.1:8080")
        assert code.config == {
            "server_url": "https://patrol.example.org/pub/osmand",
            "device_id": traccar.traccar_id,
        }
        assert code.qr.startswith(f"https://patrol.example.org/pub/osmand?id={traccar.traccar_id}")
        assert code.qr_svg.startswith("<svg") and "xmlns" in code.qr_svg
    finally:
        registry.close()
