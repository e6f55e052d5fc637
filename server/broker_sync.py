"""The embedded broker of a one-station install, secured, and kept in step with enrolment.

``yijing server --mqtt-listen HOST:PORT`` runs Mosquitto with only a TLS listener that requires
a certificate from the station CA, takes the MQTT user name from it
(``use_identity_as_username``) and checks every publish and subscribe against an ACL generated
from the store (``provisioning.broker_config``). The server connects to it under its own
certificate (CN ``yijing:server``).

Enrolment and revocation happen in other processes (``yijing provision``), so the server
watches the store: when a terminal is registered (it needs its ACL lines before it can
publish) or revoked (it must lose them, and its certificate must fail the handshake), the ACL
and the CRL are rewritten and Mosquitto is sent SIGHUP, which re-reads both without dropping
anyone else (measured with 2.0.11: ``tests/e2e/test_broker_tls.py``).

Phones (#10) sign in on a second TLS listener with a user name and password. That listener
is ``phone_listen``; by default the terminals' port + 1 on the same address (8884 beside
8883). The phone registry (``DATA/phones.db``, written by ``yijing provision phone``) counts
its changes in ``version()``; when it moves, the password file and the ACL are rewritten and
Mosquitto is sent the same SIGHUP, which re-reads the password file too: a revoked phone
cannot sign in again and a connected one is dropped, while terminals and the other phones
stay connected (measured with 2.0.11: ``tests/e2e/test_phone_broker.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import socket
from dataclasses import dataclass
from pathlib import Path

from provisioning.broker_config import (
    ACL_FILE,
    PASSWORD_FILE,
    mosquitto_tls_conf,
    write_enrolment_files,
)
from provisioning.identity import ProvisioningError
from provisioning.phones import PhoneRegistry
from provisioning.pki import (
    BROKER_CERT_FILE,
    BROKER_KEY_FILE,
    CA_FILE,
    CRL_FILE,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    StationCA,
)
from yijing.broker import BrokerStartError, LocalBroker, start_mosquitto_with, wait_for_port
from yijing.mqtt import TlsFiles

from .store import Store

log = logging.getLogger("yijing.broker_sync")


@dataclass(frozen=True)
class Listen:
    host: str
    port: int


#: The phone listener's port, when not given, is the terminals' port plus this.
PHONE_PORT_OFFSET = 1
PHONES_DB = "phones.db"


def default_phone_listen(listen: Listen) -> Listen:
    """Where phones connect unless told otherwise: the terminals' address, port + 1."""
    if listen.port + PHONE_PORT_OFFSET > 65535:
        raise ProvisioningError(
            f"phone listener: port {listen.port} + {PHONE_PORT_OFFSET} is past 65535; "
            "give the phone listener a port of its own"
        )
    return Listen(listen.host, listen.port + PHONE_PORT_OFFSET)


def broker_hosts(listen_host: str) -> list[str]:
    """The names terminals may use for this machine: the listen address (unless a wildcard),
    the host name and its addresses, and loopback — each a SAN of the broker certificate,
    which a terminal's TLS checks against the host in its bundle."""
    names = [] if listen_host in ("0.0.0.0", "::") else [listen_host]
    hostname = socket.gethostname()
    names.append(hostname)
    with contextlib.suppress(OSError):  # a host name without an address: the rest still do
        names += [str(info[4][0]) for info in socket.getaddrinfo(hostname, None)]
    names += ["localhost", "127.0.0.1"]
    return [n for n in dict.fromkeys(names) if n and "%" not in n]


def station_ca(data_dir: Path) -> StationCA:
    """The station CA in ``<data>/pki``, made on first use (as ``yijing provision ca`` would)."""
    pki = data_dir / "pki"
    return StationCA.load(pki) if StationCA.exists(pki) else StationCA.create(pki)


class BrokerSync:
    """Rewrites the ACL and CRL when terminals are registered or revoked, and the password
    file and ACL when phones are enrolled or revoked (with ``phones``), then reloads."""

    def __init__(
        self, store: Store, ca_dir: Path, folder: Path, phones: PhoneRegistry | None = None
    ) -> None:
        self._store = store
        self._ca_dir = ca_dir
        self.folder = folder
        self.phones = phones
        self.broker: LocalBroker | None = None
        #: Where phones connect (set by ``start_secure_broker``).
        self.phone_listen: Listen | None = None
        self._state: tuple[int, int, int, int] | None = None
        self.reloads = 0

    def write(self) -> bool:
        """Rewrite the files if enrolment changed; True when they were rewritten. One read of
        the store, one of the CA and one of the phone registry's version a call: this runs
        every few seconds."""
        devices = self._store.devices()
        revoked = self._store.revoked()
        ca = StationCA.load(self._ca_dir)
        ca_revoked = ca.revoked_names()
        last_rowid = max((rowid for _, rowid in revoked.values()), default=0)
        phones_version = self.phones.version() if self.phones is not None else -1
        state = (len(devices), last_rowid, len(ca_revoked), phones_version)
        if state == self._state:
            return False
        write_enrolment_files(
            self.folder,
            terminals=[(d.device_id, d.units) for d in devices],
            revoked=set(revoked) | ca_revoked,
            crl_pem=ca.path(CRL_FILE).read_bytes(),  # the CA's signed CRL as it stands
            phones=self.phones.phones() if self.phones is not None else None,
        )
        self._state = state
        return True

    def sync(self) -> bool:
        """Called every few seconds: rewrite and SIGHUP the broker when enrolment changed."""
        if not self.write():
            return False
        if self.broker is not None:
            self.broker.reload()
            self.reloads += 1
            log.info(
                "broker ACL, CRL and passwords reloaded (%d terminals known, phones v%d)",
                self._state[0] if self._state else 0,
                self._state[3] if self._state else 0,
            )
        return True

    def close(self) -> None:
        if self.phones is not None:
            self.phones.close()


def start_secure_broker(
    data_dir: Path, store: Store, listen: Listen, phone_listen: Listen | None = None
) -> tuple[LocalBroker, BrokerSync, TlsFiles]:
    """Start Mosquitto with the terminals' TLS listener (``listen``) and the phones' one
    (``phone_listen``, default ``default_phone_listen(listen)``: same address, port + 1);
    return it, its sync (``sync.phone_listen`` says where phones go) and the server's
    identity. The phone registry is ``data_dir / "phones.db"``, made empty if missing."""
    phone_listen = phone_listen or default_phone_listen(listen)
    ca = station_ca(data_dir)
    if not ca.path(SERVER_CERT_FILE).exists() or not ca.path(SERVER_KEY_FILE).exists():
        ca.issue_server()
    if not ca.path(BROKER_CERT_FILE).exists() or not ca.path(BROKER_KEY_FILE).exists():
        # Made once; `yijing provision ca --broker-host NAME` beforehand names it properly.
        ca.issue_broker(broker_hosts(listen.host))
    folder = data_dir / "broker-tls"
    sync = BrokerSync(store, ca.directory, folder, PhoneRegistry(data_dir / PHONES_DB))
    sync.phone_listen = phone_listen
    sync.write()
    conf = mosquitto_tls_conf(
        port=listen.port,
        host=listen.host,
        cafile=ca.path(CA_FILE),
        certfile=ca.path(BROKER_CERT_FILE),
        keyfile=ca.path(BROKER_KEY_FILE),
        crlfile=folder / CRL_FILE,
        acl_file=folder / ACL_FILE,
        persistence_dir=folder,
        # Started as root, Mosquitto switches to the "mosquitto" user, which cannot read the
        # server's private folders: the embedded broker runs as whoever runs the server.
        run_as=pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None,
        phone_port=phone_listen.port,
        phone_host=phone_listen.host,
        password_file=folder / PASSWORD_FILE,
    )
    connect_host = "127.0.0.1" if listen.host in ("0.0.0.0", "::") else listen.host
    broker = start_mosquitto_with(conf, folder, port=listen.port, host=connect_host)
    phone_host = "127.0.0.1" if phone_listen.host in ("0.0.0.0", "::") else phone_listen.host
    if not wait_for_port(phone_host, phone_listen.port, 10):
        broker.stop()
        raise BrokerStartError(
            f"Mosquitto did not listen for phones on {phone_listen.port}; "
            f"see {folder / 'mosquitto.log'}"
        )
    sync.broker = broker
    identity = TlsFiles(ca.path(CA_FILE), ca.path(SERVER_CERT_FILE), ca.path(SERVER_KEY_FILE))
    return broker, sync, identity
