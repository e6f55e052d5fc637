"""The sync server, assembled: store, keys, broker link, ingest, live state, web.

Threads: paho's (``yijing.mqtt``) only enqueues into ingest; the ingest thread verifies,
stores and acknowledges; the asyncio loop serves HTTP and WebSockets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from protocol import Message, Outgoing, RollCall, ServerEndpoint, topics
from provisioning import DeviceIdentity, load_or_create_server_identity
from provisioning.identity import ProvisioningError, broker_from_url, raw_public
from provisioning.pki import CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE
from yijing import mqtt_cpub
from yijing.broker import LocalBroker, start_local_broker
from yijing.mqtt import MqttLink, NotConnected, TlsFiles
from yijing.mqtt_csub import find_executable
from yijing.uplink import UplinkClients, uplink_clients

from .accounts import Accounts, AccountStore
from .audit import AuditLog
from .backends import open_store
from .broker_sync import BrokerSync, Listen, start_secure_broker
from .devices import DeviceRegistry
from .dispatch.model import DispatchConfig
from .dispatch.service import Dispatcher
from .duty.service import DutyService
from .errors import ConfigError, StoreError
from .field.service import FieldReports
from .ingest import Accepted, Ingest
from .ingest_workers import IngestWorkers, WorkerConfig
from .keyring import StoreKeyRing
from .live import Hub, LiveState
from .metrics import server_registry
from .org.model import TerminalKind
from .org.store import OrgStore
from .phones.ingress import PhoneIngress
from .phones.link import phone_link
from .phones.service import PhoneEndpoints, Phones
from .reports.service import Reports
from .snapshots import SnapshotFiles
from .spotcheck.service import SpotChecks
from .store import Device, DeviceKey, Store
from .web import (
    config_routes,
    device_routes,
    dispatch_routes,
    duty_routes,
    field_routes,
    metrics_routes,
    org_routes,
    phone_routes,
    report_routes,
    session_routes,
    spotcheck_routes,
)
from .web.access import ACCOUNTS, SECURE_COOKIES, TokenAuthenticator
from .web.app import make_app
from .web.config_routes import SiteConfig
from .web.keys import (
    AUDIT,
    DEVICES,
    DISPATCH,
    DUTY,
    FIELD,
    ORG,
    PHONES,
    REPORTS,
    SITE,
    SPOTCHECKS,
)
from .web.metrics_routes import METRICS

log = logging.getLogger("yijing.server")

#: How often the duty engine looks for new and edited shifts.
DUTY_REFRESH_S = 60
#: How often the live map learns who is on duty, on post, and who holds which terminal.
LIVE_DUTY_S = 5
#: How often dispatch and field reports look at their clocks (expiry, escalation, resends).
TICK_S = 1.0
#: How far back answers, clues and alarms are replayed at start-up (a crash between the
#: store's commit and a service's own write leaves them stored, acked, and not yet applied).
REPLAY_S = 86_400
#: How often the embedded secure broker's ACL and CRL are checked against enrolment.
BROKER_SYNC_S = 2.0


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    protocol: str
    tls: bool = False

    def __str__(self) -> str:
        suffix = "" if self.protocol == "5" else f"?protocol={self.protocol}"
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}{suffix}"


def parse_broker_url(url: str) -> BrokerUrl:
    """``mqtt://host:port`` (MQTT 5), ``mqtts://host:port`` (TLS, the server's certificate
    from ``<data>/pki``), ``...?protocol=3.1.1`` (``provisioning.identity.broker_from_url``)."""
    try:
        broker = broker_from_url(url)
    except ProvisioningError as exc:
        raise ConfigError(str(exc)) from None
    return BrokerUrl(broker.host, broker.port, broker.protocol, broker.tls)


def parse_listen(value: str) -> Listen:
    """``HOST:PORT`` for the embedded broker's TLS listener (``0.0.0.0:8883`` for all)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"--mqtt-listen {value!r}: expected HOST:PORT, e.g. 0.0.0.0:8883")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--mqtt-listen {value!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"--mqtt-listen {value!r}: port {port} is outside 1-65535")
    return Listen(host.strip("[]"), port)


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    data_dir: Path
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    broker_url: str | None = None  # None: start a local broker
    #: With no broker URL: the embedded Mosquitto's TLS listener for terminals (client
    #: certificates, ACL). None: a loopback-only plain listener, for development and the demo.
    mqtt_listen: Listen | None = None
    #: With ``mqtt_listen``: the phones' listener (TLS, passwords); None: its port + 1.
    phone_listen: Listen | None = None
    #: The telemetry store: None → SQLite in DATA/yijing.db; "postgresql://user@host/db" →
    #: PostgreSQL (daily position partitions), for a deployment past one machine.
    store_url: str | None = None
    #: Ingest processes sharing the uplink through an MQTT 5 shared subscription (1: ingest
    #: runs in this process, on a thread).
    workers: int = 1
    #: What does the uplink's MQTT work: "mosquitto" (Mosquitto's C client: mosquitto_sub
    #: receives, yijing.mqtt_csub; libmosquitto publishes the acks, yijing.mqtt_cpub), "paho",
    #: or "auto" (mosquitto when installed).
    mqtt_engine: str = "auto"
    #: Mark session cookies Secure even on plain HTTP: the server sits behind a TLS proxy
    #: (over HTTPS they are Secure anyway).
    secure_cookies: bool = False
    batch_max: int = 1000
    batch_wait_s: float = 0.02
    #: Days to keep snapshots, by trigger: routine pictures go soon, evidence stays longer.
    snapshot_retention_days: tuple[tuple[str, float], ...] = (
        ("periodic", 7),
        ("scene_change", 7),
        ("request", 90),
        ("event", 180),
        ("clue", 180),
    )
    #: Days of fixes (``positions``) to keep; None keeps them all. Frames, the evidence, stay.
    #: At least the replay window (30 days): a fix older than that can still be a backfill.
    position_retention_days: int | None = None
    #: The officer's map: tile source and the walking model of the 1/3/5-minute circles.
    site: SiteConfig = field(default_factory=SiteConfig)
    #: What an enrolled phone is told to connect to (its QR code).
    phones: PhoneEndpoints = field(default_factory=PhoneEndpoints)


ENGINES = ("auto", "mosquitto", "paho")


def resolve_engine(name: str) -> str:
    """``ServerConfig.mqtt_engine`` → what will do the uplink's MQTT work: "mosquitto" or
    "paho"."""
    if name not in ENGINES:
        raise ConfigError(f"MQTT engine must be one of {', '.join(ENGINES)}, got {name!r}")
    missing = [
        what
        for what, ok in (
            ("mosquitto_sub (Debian: mosquitto-clients)", find_executable() is not None),
            ("libmosquitto (Debian: libmosquitto1)", mqtt_cpub.available()),
        )
        if not ok
    ]
    if name == "mosquitto" and missing:
        raise ConfigError(f"--mqtt-engine mosquitto: not installed: {', '.join(missing)}")
    if name == "auto":
        if missing:
            log.info("%s not installed: the uplink runs on paho (slower)", ", ".join(missing))
            return "paho"
        return "mosquitto"
    return name


class Server:
    def __init__(
        self,
        config: ServerConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._clock = clock
        data = config.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.identity = load_or_create_server_identity(data / "server-key.json")
        self.store: Store = open_store(config.store_url, data)
        self.keyring = StoreKeyRing(self.store)
        self.endpoint = ServerEndpoint(
            signing_key=self.identity.signing_key, key_id=self.identity.key_id
        )
        self.snapshot_files = SnapshotFiles(data / "snapshots")
        self.org = OrgStore(data / "org.db")
        self.duty = DutyService(self.store, self.org, clock=clock)
        self.spotchecks = SpotChecks(
            path=data / "spotchecks.db", org=self.org, send=self._send_roll_call, clock=clock
        )
        self.reports = Reports(self.store, self.org, self.duty, self.spotchecks)
        self.hub = Hub()
        self.live = LiveState(self.hub, clock=clock)
        self.live.load(self.store)
        self._directory_generation = -1
        self._refresh_directory()
        site = config.site
        self.dispatcher = Dispatcher(
            path=data / "dispatch.db",
            live=self.live,
            org=self.org,
            store=self.store,
            hub=self.hub,
            send=self._send_command,
            clock=clock,
            config=DispatchConfig(
                walk_speed_mps=site.walk_speed_mps,
                detour=site.detour,
                circles_min=site.circles_min,
            ),
        )
        self.field = FieldReports(
            path=data / "field.db",
            live=self.live,
            org=self.org,
            store=self.store,
            hub=self.hub,
            send=self._send_command,
            clock=clock,
        )
        # Before any tick: an answer stored in time but not yet applied must not let the
        # tick expire its dispatch.
        since_ms = int((clock() - REPLAY_S) * 1000)
        self.dispatcher.replay(since_ms)
        self.field.replay(since_ms)
        self.field.start()
        self.auth, self.first_admin_token = TokenAuthenticator.load_or_create(data / "tokens.json")
        #: Registered terminals for the admin's page: key generations, revocation.
        self.devices = DeviceRegistry(self.store, self.keyring, data / "pki", clock=clock)
        #: People's accounts (argon2id) and their sessions (cookie + CSRF token).
        self.accounts = Accounts(AccountStore(data / "accounts.db"), clock=clock)
        #: Who looked at which terminal, dispatched, checked, exported (``yijing audit``).
        self.audit = AuditLog(data / "audit.db")
        self.broker: LocalBroker | None = None
        self.broker_sync: BrokerSync | None = None
        self.workers: IngestWorkers | None = None
        self.uplink: UplinkClients | None = None
        self.broker_address = (
            parse_broker_url(config.broker_url) if config.broker_url is not None else None
        )
        self.link: MqttLink | None = None
        self.ingest = Ingest(
            self.store,
            self.keyring,
            self.endpoint,
            publish=self._publish,
            on_accepted=self._accepted,
            on_stored=self.duty.tracker.on_stored,
            snapshot_files=self.snapshot_files,
            batch_max=config.batch_max,
            batch_wait_s=config.batch_wait_s,
            clock=clock,
        )
        #: Phones (OwnTracks, Traccar Client): their own ingest thread and doors.
        self.phone_ingress = PhoneIngress(
            self.store,
            data / "phones.db",
            on_stored=self.duty.tracker.on_stored,
            on_accepted=self._accepted,
            publish_cmd=self._publish_phone_cmd,
            clock=clock,
        )
        self.phones = Phones(
            data,
            self.store,
            self.org,
            endpoints=config.phones,
            ingress=self.phone_ingress,
            clock=clock,
        )
        self.phone_link: MqttLink | None = None
        #: What `GET /metrics` (Prometheus) reads at scrape time; nothing on the hot path.
        self.metrics = server_registry(
            self.ingest.stats,
            live=self.live,
            hub=self.hub,
            queue_depth=self._queue_depth,
            status_counts=self.live.status_counts,
        )
        self._runner: web.AppRunner | None = None
        self._retention: asyncio.Future[None] | None = None
        self._duty_loop: asyncio.Future[None] | None = None
        self._loops: list[asyncio.Future[None]] = []
        self.http_port = config.http_port

    def _publish(self, out: Outgoing) -> None:
        """A StoredAck, at QoS 0: the end-to-end protocol already covers its loss (the
        terminal resends after ``ack_timeout_s`` and after every reconnect, and a duplicate
        is acknowledged again), so QoS 1 would only add a PUBACK round and broker-side
        session state per ack — measured as the biggest share of ingest's CPU (#9)."""
        assert self.uplink is not None
        self.uplink.acks.publish(out.topic, out.payload, qos=0)

    def _accepted(self, batch: list[Accepted]) -> None:
        """On the ingest thread, after the commit and the acks: the live map, then spot
        checks (which log their own store failures and never raise them: an exception here
        would stop the ingest thread)."""
        self.live.apply(batch)
        self.dispatcher.on_accepted(batch)
        self.field.on_accepted(batch)
        self.spotchecks.on_accepted(batch)

    def _publish_phone_cmd(self, topic: str, payload: bytes, expiry_s: int) -> None:
        """An OwnTracks command (a roll call's ``reportLocation``), QoS 1 with an MQTT 5
        message expiry (§3.3.2.3.3), kept by the broker for a phone that is away."""
        if self.phone_link is None:
            raise NotConnected("the server's phone link is not started")
        self.phone_link.publish(topic, payload, qos=1, expiry_s=expiry_s)

    def _send_command(self, device: str, message: Message, expiry_s: int) -> None:
        """Dispatches, cancels and tasks: signed, QoS 1, with an MQTT 5 message expiry
        (§3.3.2.3.3) so a broker holding the terminal's session drops them when stale; the
        agent refuses a stale one anyway. Raises ``NotConnected`` while the link is down."""
        terminal = self.org.terminal(device)
        if terminal is not None and terminal.kind is TerminalKind.PHONE:
            # Neither phone app can ring, accept or decline (docs/phones.md): refused at
            # once, so the dispatch records why and the officer calls the volunteer.
            raise NotConnected(f"{device} is a phone: its app cannot take commands; call them")
        if self.link is None:
            raise NotConnected("the server's broker link is not started")
        out = self.endpoint.command(device, message, sent_ms=int(self._clock() * 1000))
        self.link.publish(out.topic, out.payload, qos=1, expiry_s=max(1, expiry_s))

    def _refresh_directory(self) -> None:
        """Who holds which terminal, in which unit (from the organisation; read again only
        when the organisation changed)."""
        generation = self.org.generation
        if generation == self._directory_generation:
            return
        self._directory_generation = generation
        volunteers = {v.volunteer_id: v.name for v in self.org.volunteers()}
        units: dict[str, str] = {}
        kinds: dict[str, str] = {}
        holders: dict[str, tuple[str, str]] = {}
        for terminal in self.org.terminals():
            units[terminal.device_id] = terminal.unit_id
            kinds[terminal.device_id] = terminal.kind.value
            if terminal.holder is not None:
                name = volunteers.get(terminal.holder, terminal.holder)
                holders[terminal.device_id] = (terminal.holder, name)
        self.live.set_directory(units, holders, kinds)

    def _refresh_live_duty(self) -> None:
        # Phones enrolled since (by `yijing provision phone`, another process) join the
        # organisation as phone terminals, then the directory.
        self.phones.sync()
        self._refresh_directory()
        duty = {
            s["device_id"]: (s["shift_id"], s["post_id"], s["state"])
            for s in self.duty.now()
            if s["device_id"] is not None
        }
        self.live.set_duty(duty)
        self.live.tick()

    def _send_roll_call(self, device: str, call: RollCall) -> None:
        terminal = self.org.terminal(device)
        if terminal is not None and terminal.kind is TerminalKind.PHONE:
            try:
                self.phones.roll_call(device, call)
            except LookupError as exc:
                raise NotConnected(str(exc)) from exc
            return
        if self.link is None:
            raise NotConnected("the server's broker link is not started")
        out = self.endpoint.command(device, call, sent_ms=call.sent_ms)
        # MQTT 5 message expiry (§3.3.2.3.3): a terminal that reconnects after the deadline
        # is not handed a roll call it can no longer answer (the agent drops it anyway).
        expiry_s = max(1, -(-(call.deadline_ms - call.sent_ms) // 1000))
        self.link.publish(out.topic, out.payload, qos=1, expiry_s=expiry_s)

    def _queue_depth(self) -> int:
        """Frames received and not yet stored: in the workers, or in this process."""
        return self.workers.queue_depth() if self.workers is not None else self.ingest.queue_depth()

    def register_device(self, identity: DeviceIdentity, *, label: str = "") -> None:
        key = DeviceKey(
            identity.device_id, identity.key_id, identity.mac_key, raw_public(identity.public_key)
        )
        device = Device(identity.device_id, label, identity.units, int(self._clock() * 1000))
        self.store.add_device(device, key)
        self.keyring.add(key)

    async def start(self) -> None:
        tls: TlsFiles | None = None
        if self.broker_address is None and self.config.mqtt_listen is not None:
            secure, self.broker_sync, tls = await asyncio.to_thread(
                start_secure_broker,
                self.config.data_dir,
                self.store,
                self.config.mqtt_listen,
                self.config.phone_listen,
            )
            self.broker = secure
            self.broker_address = BrokerUrl(secure.host, secure.port, "5", tls=True)
            phones = self.broker_sync.phone_listen if self.broker_sync is not None else None
            if phones is not None:
                log.info(
                    "phones (OwnTracks, MQTT over TLS, password) on %s:%d; their codes point "
                    "there with --phone-mqtt mqtts://<public host>:%d",
                    phones.host, phones.port, phones.port,
                )  # fmt: skip
        elif self.broker_address is None:
            self.broker = await asyncio.to_thread(
                start_local_broker, self.config.data_dir / "broker"
            )
            self.broker_address = BrokerUrl(
                self.broker.host, self.broker.port, self.broker.protocol
            )
        elif self.broker_address.tls:
            # An external broker (Mosquitto, EMQX) with the station's certificates: the
            # server is "yijing:server" there too. `yijing provision ca` made them.
            pki = self.config.data_dir / "pki"
            tls = TlsFiles(pki / CA_FILE, pki / SERVER_CERT_FILE, pki / SERVER_KEY_FILE)
        address = self.broker_address
        # MQTT 5 shared subscription: several server processes split the uplink between them.
        topic_filter = (
            topics.shared("yijing", topics.UPLINK_FILTER)
            if address.protocol == "5"
            else topics.UPLINK_FILTER
        )
        engine = resolve_engine(self.config.mqtt_engine)
        # Unique per process: several servers share one broker (shared subscriptions), and
        # a repeated client id would make the broker drop the other (MQTT 5 §3.1.4).
        client_id = f"yijing-server-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.uplink = uplink_clients(
            engine=engine,
            client_id=client_id,
            host=address.host,
            port=address.port,
            protocol=address.protocol,
            tls=tls,
            # With ingest workers this process only sends commands and roll calls: the
            # workers receive the uplink (server.ingest_workers).
            topic_filter=topic_filter if self.config.workers == 1 else None,
            submit=self.ingest.submit,
            submit_many=self.ingest.submit_many,
        )
        self.link = self.uplink.link
        if self.config.workers > 1:
            if address.protocol != "5":
                raise ConfigError("--workers needs an MQTT 5 broker (shared subscriptions)")
            self.workers = IngestWorkers(
                [
                    WorkerConfig(
                        index=i,
                        data_dir=self.config.data_dir,
                        store_url=self.config.store_url,
                        broker_host=address.host,
                        broker_port=address.port,
                        tls=tls,
                        batch_max=self.config.batch_max,
                        batch_wait_s=self.config.batch_wait_s,
                        log_level=logging.getLogger().getEffectiveLevel(),
                        mqtt_engine=engine,
                    )
                    for i in range(self.config.workers)
                ],
                on_stored=self.duty.tracker.on_stored,
                on_accepted=self._accepted,
                stats=self.ingest.stats,
            )
            self.workers.start()
        else:
            self.ingest.start()
        self.uplink.start()
        self.phone_ingress.start()
        self.phone_link = phone_link(
            data_dir=self.config.data_dir,
            host=address.host,
            port=address.port,
            protocol=address.protocol,
            tls=tls,
            on_report=self.phone_ingress.owntracks_mqtt,
        )
        self.phone_link.start()
        await asyncio.to_thread(self.phones.sync)
        app = make_app(
            store=self.store,
            live=self.live,
            hub=self.hub,
            auth=self.auth,
            stats=self.ingest.stats,
            snapshot_files=self.snapshot_files,
            clock=self._clock,
            extra_routes=[
                org_routes.routes,
                duty_routes.routes,
                spotcheck_routes.routes,
                report_routes.routes,
                dispatch_routes.routes,
                field_routes.routes,
                config_routes.routes,
                session_routes.routes,
                device_routes.routes,
                metrics_routes.routes,
                phone_routes.routes,
            ],
            services={
                ORG: self.org,
                DUTY: self.duty,
                SPOTCHECKS: self.spotchecks,
                REPORTS: self.reports,
                DISPATCH: self.dispatcher,
                FIELD: self.field,
                SITE: self.config.site,
                AUDIT: self.audit,
                ACCOUNTS: self.accounts,
                DEVICES: self.devices,
                METRICS: self.metrics,
                PHONES: self.phones,
                SECURE_COOKIES: self.config.secure_cookies,
            },
        )
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http_host, self.config.http_port)
        await site.start()
        if self.config.http_port == 0:
            server = site._server
            assert server is not None and server.sockets  # type: ignore[attr-defined]
            self.http_port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._retention = asyncio.ensure_future(self._retention_loop())
        self._duty_loop = asyncio.ensure_future(self._duty_refresh_loop())
        self._loops = [
            asyncio.ensure_future(self._every(TICK_S, "dispatch", self.dispatcher.tick)),
            asyncio.ensure_future(self._every(TICK_S, "field reports", self.field.tick)),
            asyncio.ensure_future(self._every(LIVE_DUTY_S, "live duty", self._refresh_live_duty)),
            asyncio.ensure_future(self._every(3600, "session sweep", self.accounts.sweep)),
        ]
        if self.broker_sync is not None:
            # New enrolments get their ACL lines, revoked terminals lose them and fail the
            # handshake: within BROKER_SYNC_S of `yijing provision device|revoke`.
            self._loops.append(
                asyncio.ensure_future(
                    self._every(BROKER_SYNC_S, "broker ACL", self.broker_sync.sync)
                )
            )
        await asyncio.to_thread(self.uplink.wait_ready, 10)
        log.info(
            "server on http://%s:%s, broker %s:%s",
            self.config.http_host,
            self.http_port,
            address.host,
            address.port,
        )

    def expire_snapshots(self) -> int:
        """Apply the retention policy; return how many files were removed."""
        now_ms = int(self._clock() * 1000)
        removed = 0
        for trigger, days in self.config.snapshot_retention_days:
            for sha in self.store.expire_snapshots(trigger, now_ms - int(days * 86_400_000)):
                removed += self.snapshot_files.delete(sha)
        removed += self.snapshot_files.remove_orphans(
            self.store.snapshot_hashes(), older_than_s=86_400
        )
        return removed

    def expire_positions(self) -> str | None:
        """Drop the fixes of days before the retention period (whole UTC days: on PostgreSQL
        a partition dropped, not rows deleted); return the first day kept, or None."""
        days = self.config.position_retention_days
        if days is None:
            return None
        day = time.strftime("%Y-%m-%d", time.gmtime(self._clock() - days * 86_400))
        self.store.drop_days_before(day)
        return day

    async def _retention_loop(self) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(self.expire_snapshots)
                if removed:
                    log.info("retention removed %d snapshot files", removed)
            except (StoreError, OSError) as exc:
                log.error("snapshot retention failed: %s", exc)
            try:
                # Pack the last two days' settled hours, so reports read packed fixes.
                since_ms = int((self._clock() - 2 * 86_400) * 1000)
                await asyncio.to_thread(self.store.pack_settled, since_ms)
            except StoreError as exc:
                log.error("packing fixes failed: %s", exc)
            try:
                await asyncio.to_thread(self.expire_positions)
            except StoreError as exc:
                log.error("position retention failed: %s", exc)
            await asyncio.sleep(3600)

    async def _every(self, period_s: float, what: str, step: Callable[[], object]) -> None:
        """Run ``step`` on a worker thread every ``period_s``; a failure is logged and the
        loop goes on (a full disk must not stop expiry or escalation for good)."""
        while True:
            try:
                await asyncio.to_thread(step)
            except Exception:
                log.exception("%s tick failed", what)
            await asyncio.sleep(period_s)

    async def _duty_refresh_loop(self) -> None:
        """Track the shifts near now at start-up — in the background: a station's day of
        fixes takes seconds to load, and a shift registers before its fixes are read, so no
        frame stored meanwhile is missed — then new and edited shifts within a minute."""
        while True:
            try:
                await asyncio.to_thread(self.duty.refresh)
            except (StoreError, LookupError) as exc:
                log.error("duty refresh failed: %s", exc)
            await asyncio.sleep(DUTY_REFRESH_S)

    @property
    def url(self) -> str:
        return f"http://{self.config.http_host}:{self.http_port}"

    async def stop(self) -> None:
        for loop in (self._retention, self._duty_loop, *self._loops):
            if loop is not None:
                loop.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        self.reports.close()  # cancels queued report jobs before the stores close
        if self.phone_link is not None:
            await asyncio.to_thread(self.phone_link.stop)
        await asyncio.to_thread(self.phone_ingress.stop)
        if self.uplink is not None:
            await asyncio.to_thread(self.uplink.stop)
        if self.workers is not None:
            await asyncio.to_thread(self.workers.stop)
        await asyncio.to_thread(self.ingest.stop)
        self.spotchecks.close()  # after ingest: no answer arrives on a closed store
        self.dispatcher.close()
        self.field.close()
        self.audit.close()
        self.accounts.store.close()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        if self.broker_sync is not None:
            self.broker_sync.close()
        self.store.close()
        self.org.close()
