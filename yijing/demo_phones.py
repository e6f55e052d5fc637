"""The demo's phone volunteers: OwnTracks apps played over real HTTP.

Each is a volunteer with no issued terminal, only a phone enrolled as the admin page does it
(``Phones.enrol``), on an 8-hour shift at one of the demo's posts. A thread walks each phone
around its post and posts OwnTracks' own location JSON, sealed with the phone's secretbox
key, to ``/pub/owntracks`` with the phone's user and password, as the app does in HTTP mode.
So the live map shows phone terminals (marked "phone, lower trust") beside the simulated
handhelds, and the reports show their phone-only share.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from agent.sim_gps import SimulatedWalker
from protocol import owntracks
from provisioning.phones import PhoneApp
from server.app import Server
from server.org.model import Volunteer

from .demo_org import STATIONS, SURNAMES, Place, ensure_shift

log = logging.getLogger("yijing.demo.phones")

#: The demo phones' given names: apart from the handhelds' volunteers.
GIVEN = ("晓", "敏", "磊", "娜", "俊", "婷", "浩", "雪")


@dataclass
class DemoPhone:
    user: str
    password: str
    key: bytes | None
    walker: SimulatedWalker


def seed_phones(
    server: Server, places: Sequence[Place], count: int, now_ms: int
) -> list[DemoPhone]:
    """Enrol ``count`` phone-only volunteers, each on a shift at a post; idempotent (a re-run
    re-issues their credentials, as enrolling again does)."""
    org = server.org
    phones = []
    for i in range(count):
        place_index = (i * 5 + 2) % len(places)
        station = STATIONS[place_index % len(STATIONS)]
        volunteer_id = f"pv-{i + 1:03d}"
        name = SURNAMES[(i * 3 + 1) % len(SURNAMES)] + GIVEN[i % len(GIVEN)]
        org.put_volunteer(Volunteer(volunteer_id, name, station.unit_id))
        enrolled = server.phones.enrol(
            volunteer_id=volunteer_id, app=PhoneApp.OWNTRACKS, base_url=server.url
        )
        password = str(enrolled.config["password"])
        ensure_shift(org, volunteer_id, f"post-{place_index + 1}", now_ms)
        place = places[place_index]
        walker = SimulatedWalker(place.lat, place.lon, radius_m=200, seed=1000 + i)
        phones.append(
            DemoPhone(enrolled.phone.mqtt_user, password, enrolled.phone.secret_key, walker)
        )
    return phones


class PhoneFleet:
    """One thread posting every phone's position every ``interval_s``."""

    def __init__(self, url: str, phones: list[DemoPhone], *, interval_s: float) -> None:
        self._url = url.rstrip("/") + "/pub/owntracks"
        self._phones = phones
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-phones", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _post(self, phone: DemoPhone, now_ms: int) -> None:
        fix = phone.walker.read(now_ms)
        doc = {
            "_type": "location",
            "tid": phone.user[-2:],
            "tst": now_ms // 1000,
            "lat": round(fix.lat, 7),
            "lon": round(fix.lon, 7),
            "acc": 8,
            "vel": round((fix.speed_mps or 0.0) * 3.6),
            "batt": 80,
            "bs": 1,
            "conn": "m",
            "t": "t",
        }
        body = json.dumps(doc).encode()
        if phone.key is not None:
            body = owntracks.encrypt(body, phone.key)
        auth = base64.b64encode(f"{phone.user}:{phone.password}".encode()).decode()
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def _run(self) -> None:
        while not self._stop.is_set():
            now_ms = int(time.time() * 1000)
            for phone in self._phones:
                try:
                    self._post(phone, now_ms)
                except (urllib.error.URLError, OSError) as exc:
                    log.warning("demo phone %s: %s", phone.user, exc)
            self._stop.wait(self._interval_s)
