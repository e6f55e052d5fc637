"""The ``yijing`` command: one entry point, a subcommand per job. Every one has --help."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from pathlib import Path

from .argtypes import port, positive, retention_days, worker_count

EXAMPLES = {
    "server": "example:\n  yijing server --data ./var/server --port 8080\n"
    "  yijing server --broker mqtt://10.0.0.5:1883 --host 0.0.0.0\n"
    "  yijing server --tiles-dir /srv/tiles/futian --walk-speed 1.6\n"
    "  yijing server --mqtt-listen 0.0.0.0:8883 --host 0.0.0.0   # terminals over TLS\n"
    "  yijing server --store postgresql://yijing@db.station.lan/yijing --workers 4\n"
    "  yijing server --mqtt-engine paho   # no Mosquitto clients on this host\n"
    "  yijing server --public-url https://patrol.example.org "
    "--phone-mqtt mqtts://patrol.example.org:8884   # what phones' codes point at",
    "demo": "example:\n  yijing demo --terminals 30 --port 8080",
}


def _run_until_signal(coro_factory) -> int:  # type: ignore[no-untyped-def]
    import asyncio  # here, not at the top: `yijing agent` never needs it

    async def main() -> None:
        task = asyncio.ensure_future(coro_factory())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return 0


def _phone_endpoints(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """``--public-url`` and ``--phone-mqtt``: where enrolled phones are told to report."""
    from urllib.parse import urlsplit

    from server.app import parse_broker_url
    from server.errors import ConfigError
    from server.phones.service import PhoneEndpoints

    public_url = args.public_url
    if public_url is not None:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SystemExit(
                f"yijing server: --public-url {public_url!r}: expected http(s)://host[:port]"
            )
    if args.phone_mqtt is None:
        return PhoneEndpoints(public_url=public_url)
    try:
        broker = parse_broker_url(args.phone_mqtt)
    except ConfigError as exc:
        raise SystemExit(f"yijing server: --phone-mqtt: {exc}") from None
    return PhoneEndpoints(
        mqtt_host=broker.host, mqtt_port=broker.port, mqtt_tls=broker.tls, public_url=public_url
    )


def cmd_server(args: argparse.Namespace) -> int:
    import asyncio

    from server.app import Server, ServerConfig, parse_listen
    from server.web.config_routes import SiteConfig

    try:
        site = SiteConfig(
            tiles=args.tiles, tiles_dir=args.tiles_dir, walk_speed_mps=args.walk_speed
        )
    except ValueError as exc:
        raise SystemExit(f"yijing server: {exc}") from None
    mqtt_listen = parse_listen(args.mqtt_listen) if args.mqtt_listen else None
    phone_listen = parse_listen(args.phone_listen) if args.phone_listen else None
    if phone_listen is not None and mqtt_listen is None:
        raise SystemExit("yijing server: --phone-listen goes with --mqtt-listen")
    phones = _phone_endpoints(args)

    async def serve() -> None:
        server = Server(
            ServerConfig(
                data_dir=args.data,
                http_host=args.host,
                http_port=args.port,
                broker_url=args.broker,
                mqtt_listen=mqtt_listen,
                phone_listen=phone_listen,
                secure_cookies=args.secure_cookies,
                store_url=args.store,
                workers=args.workers,
                mqtt_engine=args.mqtt_engine,
                position_retention_days=args.keep_fixes_days,
                site=site,
                phones=phones,
            )
        )
        await server.start()
        try:
            print(f"yijing server on {server.url} (broker {server.broker_address})", flush=True)
            if server.first_admin_token:
                print(
                    f"first start: admin sign-in link {server.url}/login?token="
                    f"{server.first_admin_token}\n(shown once; mint more with "
                    "`yijing provision token`)",
                    flush=True,
                )
            await asyncio.Event().wait()
        finally:
            await server.stop()

    return _run_until_signal(serve)


def cmd_agent(args: argparse.Namespace) -> int:
    from agent.cli import run

    return run(args)


def cmd_bridge(args: argparse.Namespace) -> int:
    from .bridge_cli import run

    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return _run_until_signal(
        lambda: run_demo(
            args.data,
            terminals=args.terminals,
            http_host=args.host,
            http_port=args.port,
            interval_s=args.interval,
            cameras=args.cameras,
            phones=args.phones,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yijing",
        description="Telemetry, duty verification and dispatch for volunteer patrol teams (义警).",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: WARNING",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "server",
        help="run the sync server (ingest, store, web)",
        epilog=EXAMPLES["server"],
        formatter_class=fmt,
    )
    p.add_argument(
        "--data", type=Path, default=Path("var/server"), help="store and keys (default: var/server)"
    )
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (default: 127.0.0.1)")
    p.add_argument("--port", type=port, default=8080, help="HTTP port (default: 8080)")
    p.add_argument(
        "--broker",
        default=None,
        metavar="URL",
        help="mqtt://host:port[?protocol=3.1.1], or mqtts://host:port with the station's "
        "certificates from DATA/pki; default: start a local broker",
    )
    p.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="postgresql://user@host/db: keep telemetry in PostgreSQL (default: SQLite in "
        "DATA/yijing.db)",
    )
    p.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        metavar="N",
        help="ingest in N processes sharing the uplink (MQTT 5 shared subscription); one "
        "process uses about one core (default: 1, ingest on a thread of this process)",
    )
    p.add_argument(
        "--mqtt-engine",
        choices=("auto", "mosquitto", "paho"),
        default="auto",
        help="what does the uplink's MQTT work: mosquitto (Mosquitto's C client: mosquitto_sub "
        "receives, libmosquitto sends the acks; Debian package mosquitto-clients) or paho "
        "(pure Python, slower); auto: mosquitto when installed",
    )
    p.add_argument(
        "--keep-fixes-days",
        type=retention_days,
        default=None,
        metavar="DAYS",
        help="drop fixes older than DAYS (whole days; at least 31, the replay window plus "
        "one); default: keep everything. The signed frames are kept",
    )
    p.add_argument(
        "--secure-cookies",
        action="store_true",
        help="mark sign-in cookies Secure on plain HTTP too: the server is behind a TLS "
        "proxy (over HTTPS they always are)",
    )
    p.add_argument(
        "--mqtt-listen",
        metavar="HOST:PORT",
        help="start the local broker with a TLS listener here for terminals: client "
        "certificates from the station CA (made in DATA/pki on first start), an ACL per "
        "terminal; default: a plain listener on 127.0.0.1 only (development, demo)",
    )
    p.add_argument(
        "--phone-listen",
        metavar="HOST:PORT",
        help="with --mqtt-listen: the listener for OwnTracks phones (TLS with the broker's "
        "certificate, a password per phone); default: the --mqtt-listen port + 1",
    )
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="this server as phones reach it, e.g. https://patrol.example.org: the address "
        "in phones' enrolment codes (Traccar Client, OwnTracks in HTTP mode); default: the "
        "address the admin's browser used",
    )
    p.add_argument(
        "--phone-mqtt",
        metavar="URL",
        help="the broker as OwnTracks phones reach it, e.g. mqtts://patrol.example.org:8884; "
        "with it, OwnTracks codes use MQTT mode, without it HTTP mode (--public-url)",
    )
    p.add_argument(
        "--tiles",
        metavar="TEMPLATE",
        help="map tiles for the officer's page, e.g. http://tiles.lan/{z}/{x}/{y}.png "
        "(default: none; the map draws a metric grid)",
    )
    p.add_argument(
        "--tiles-dir",
        type=Path,
        metavar="DIR",
        help="serve offline tiles from DIR/z/x/y.png at /tiles/ (no internet needed)",
    )
    p.add_argument(
        "--walk-speed",
        type=positive,
        default=1.4,
        metavar="M_PER_S",
        help="walking speed behind the 1/3/5-minute dispatch circles (default: 1.4)",
    )
    p.set_defaults(func=cmd_server)

    from agent.cli import EXAMPLE as AGENT_EXAMPLE
    from agent.cli import add_arguments as add_agent_arguments

    p = sub.add_parser(
        "agent",
        help="run the edge agent for one enrolled terminal",
        epilog=AGENT_EXAMPLE,
        formatter_class=fmt,
    )
    add_agent_arguments(p)
    p.set_defaults(func=cmd_agent)

    from .bridge_cli import EXAMPLE as BRIDGE_EXAMPLE
    from .bridge_cli import add_arguments as add_bridge_arguments

    p = sub.add_parser(
        "bridge",
        help="bench-test a shoulder light / body cam on a serial port: show its live events",
        epilog=BRIDGE_EXAMPLE,
        formatter_class=fmt,
    )
    add_bridge_arguments(p)
    p.set_defaults(func=cmd_bridge)

    p = sub.add_parser(
        "demo",
        help="server plus a simulated fleet in Futian, with the live map",
        epilog=EXAMPLES["demo"],
        formatter_class=fmt,
    )
    p.add_argument("--terminals", type=int, default=30, help="simulated terminals (default: 30)")
    p.add_argument("--data", type=Path, default=Path("var/demo"), help="default: var/demo")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (default: 127.0.0.1)")
    p.add_argument("--port", type=port, default=8080, help="HTTP port (default: 8080)")
    p.add_argument(
        "--interval", type=positive, default=2.0, help="seconds between fixes (default: 2)"
    )
    p.add_argument(
        "--cameras",
        type=int,
        default=6,
        help="how many terminals also send camera pictures from a generated clip (default: 6)",
    )
    p.add_argument(
        "--phones",
        type=int,
        default=5,
        help="how many more volunteers carry only a phone (OwnTracks over HTTP; default: 5)",
    )
    p.set_defaults(func=cmd_demo)

    from .provision_cli import add_parser as add_provision_parser

    add_provision_parser(sub)
    from .account_cli import add_parser as add_account_parser
    from .audit_cli import add_parser as add_audit_parser
    from .report_cli import add_parser as add_report_parser

    add_report_parser(sub)
    add_audit_parser(sub)
    add_account_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from agent.errors import AgentError
    from provisioning import ProvisioningError

    parser = build_parser()
    args = parser.parse_args(argv)
    expected: tuple[type[Exception], ...] = (ProvisioningError, AgentError)
    if args.command != "agent":  # the agent process never loads server or broker code
        from server.errors import ServerError
        from yijing.broker import BrokerError

        expected += (ServerError, BrokerError)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except expected as exc:
        print(f"yijing {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
