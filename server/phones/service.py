"""Phones, assembled: enrolment (the QR code), the organisation's phone terminals, ingest.

A phone enrolled with ``yijing provision phone`` or on the admin page is written to the
phone registry (``DATA/phones.db``, ``provisioning.phones``). The server keeps the
organisation in step with it (``sync``, every few seconds): each enrolled phone is a terminal
of kind ``phone`` in the volunteer's unit, held by the volunteer, so the live map names who
carries it and the duty engine counts it for their shifts (at the lower trust
``docs/metrics.md`` describes); a revoked phone is held by nobody.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import RollCall
from provisioning import phones as enrolment
from provisioning.phones import Phone, PhoneApp

from ..org.model import OrgError, Terminal, TerminalKind
from ..org.store import OrgStore
from ..store import Store
from .ingress import PhoneIngress

log = logging.getLogger("yijing.phones")

#: Where phone apps post, under the server's public URL.
OWNTRACKS_PATH = "/pub/owntracks"
OSMAND_PATH = "/pub/osmand"


@dataclass(frozen=True, slots=True, kw_only=True)
class PhoneEndpoints:
    """What a phone is told to connect to (the QR code). None: from the admin's request."""

    #: The broker as phones reach it (OwnTracks MQTT mode), e.g. the phone listener.
    mqtt_host: str | None = None
    mqtt_port: int | None = None
    mqtt_tls: bool = False
    #: The server's URL as phones reach it (OwnTracks HTTP mode, Traccar Client).
    public_url: str | None = None


@dataclass(frozen=True, slots=True)
class Enrolled:
    phone: Phone
    #: What the app is configured with: OwnTracks' .otrc, or Traccar's server URL and id.
    config: dict[str, Any]
    #: What the QR code carries, and the code as SVG.
    qr: str
    qr_svg: str

    def to_json(self) -> dict[str, Any]:
        return {
            "phone": phone_json(self.phone),
            "config": self.config,
            "qr": self.qr,
            "qr_svg": self.qr_svg,
        }


def phone_json(phone: Phone) -> dict[str, Any]:
    """What the admin page shows of a phone: never its password hash or key."""
    return {
        "phone_id": phone.phone_id,
        "volunteer_id": phone.volunteer_id,
        "unit_id": phone.unit_id,
        "app": phone.app.value,
        "created_ms": phone.created_ms,
        "revoked_ms": phone.revoked_ms,
        "mqtt_user": phone.mqtt_user,
        "encrypted": phone.secret_key is not None,
    }


def configure(phone: Phone, password: str, endpoints: PhoneEndpoints, *, base_url: str) -> Enrolled:
    """The app's configuration and its QR code, for a phone just enrolled (or re-issued)."""
    url = (endpoints.public_url or base_url).rstrip("/")
    if phone.app is PhoneApp.OWNTRACKS:
        http = endpoints.mqtt_host is None
        config = enrolment.owntracks_config(
            phone,
            password,
            mqtt_host=endpoints.mqtt_host or "",
            mqtt_port=endpoints.mqtt_port or 0,
            mqtt_tls=endpoints.mqtt_tls,
            http_url=url + OWNTRACKS_PATH if http else None,
        )
        qr = enrolment.owntracks_qr_url(config)
    else:
        server = url + OSMAND_PATH
        config = {"server_url": server, "device_id": phone.traccar_id}
        qr = enrolment.traccar_url(phone, server_url=server)
    return Enrolled(phone, config, qr, enrolment.qr_svg(qr))


class Phones:
    def __init__(
        self,
        data_dir: Path,
        store: Store,
        org: OrgStore,
        *,
        endpoints: PhoneEndpoints,
        ingress: PhoneIngress,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry_path = data_dir / "phones.db"
        self._store = store
        self.org = org
        self.endpoints = endpoints
        self.ingress = ingress
        self._clock = clock
        self._synced_version: int | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- enrolment (the admin page; on worker threads) ------------------------------------------

    def enrol(
        self,
        *,
        volunteer_id: str,
        app: PhoneApp,
        encrypt: bool = True,
        base_url: str,
    ) -> Enrolled:
        """Enrol (or re-issue) the volunteer's phone; ``LookupError`` for an unknown
        volunteer. The password is in the returned code only: shown once."""
        volunteer = self.org.volunteer(volunteer_id)
        if volunteer is None:
            raise LookupError(f"no volunteer {volunteer_id!r}")
        phone, password = self.ingress.registry.enrol(
            volunteer_id=volunteer_id,
            unit_id=volunteer.unit_id,
            app=app,
            now_ms=self._now_ms(),
            encrypt=encrypt,
        )
        self.sync()
        return configure(phone, password, self.endpoints, base_url=base_url)

    def revoke(self, phone_id: str) -> Phone:
        registry = self.ingress.registry
        registry.revoke(phone_id, now_ms=self._now_ms())
        self.sync()
        phone = registry.get(phone_id)
        assert phone is not None
        return phone

    def list(self, units: set[str] | None = None) -> list[Phone]:
        phones = self.ingress.registry.phones()
        return [p for p in phones if units is None or p.unit_id in units]

    def get(self, phone_id: str) -> Phone | None:
        return self.ingress.registry.get(phone_id)

    # --- the organisation ---------------------------------------------------------------------

    def sync(self) -> int:
        """Make the organisation's phone terminals match the registry (when it changed);
        return how many terminals were written."""
        registry = self.ingress.registry
        version = registry.version()
        if version == self._synced_version:
            return 0
        written = 0
        now_ms = self._now_ms()
        for phone in registry.phones():
            holder = None if phone.revoked_ms is not None else phone.volunteer_id
            wanted = Terminal(phone.phone_id, phone.unit_id, TerminalKind.PHONE, holder)
            if self.org.terminal(phone.phone_id) == wanted:
                continue
            try:
                self.org.put_terminal(wanted, at_ms=now_ms)
                written += 1
            except OrgError as exc:
                # A volunteer or unit removed since enrolment, or holding another phone.
                log.error("phone %s not in the organisation: %s", phone.phone_id, exc)
        self._synced_version = version
        return written

    def roll_call(self, phone_id: str, call: RollCall) -> None:
        self.ingress.roll_call(phone_id, call)
