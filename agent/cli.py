"""``yijing agent``: options, config file, position source, and the run until a signal."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from pathlib import Path

from yijing.argtypes import baud, latlon, non_negative

from .config import (
    AgentConfig,
    ConfigError,
    SourceConfig,
    load_config,
    parse_hostport,
    parse_ui_port,
)

EXAMPLE = """\
examples:
  yijing agent --enrolment ft-0042.json --gpsd 127.0.0.1:2947
  yijing agent --enrolment ft-0042.json --nmea /dev/ttyUSB0 --baud 9600
  yijing agent --enrolment ft-0042.json --simulate 22.5431,114.0579 --interval-moving 2
  yijing agent --config /etc/yijing/agent.toml
  yijing agent --enrolment ft-0042.json --gpsd 127.0.0.1:2947 --mcu /dev/ttyACM0
  yijing agent --enrolment ft-0042.json --gpsd 127.0.0.1:2947 --ui-port 8765
      (the volunteer's screen: open the printed http://127.0.0.1:8765/ on the terminal)

config file (TOML; every key optional; options given on the command line win):
  enrolment = "/etc/yijing/ft-0042.json"
  data = "/var/lib/yijing/agent"
  ui_port = 8765                 # the volunteer's screen on 127.0.0.1 (0: any free port)
  [source]
  kind = "gpsd"                  # gpsd | nmea | simulate
  gpsd = "127.0.0.1:2947"
  nmea_port = "/dev/ttyUSB0"
  nmea_baud = 9600
  simulate = [22.5431, 114.0579]
  [policy]
  interval_moving_s = 5          # a fix this often while moving ...
  min_distance_m = 10            # ... if it moved this far
  interval_still_s = 60          # a fix this often anyway
  moving_speed_mps = 0.5
  heartbeat_s = 60               # presence, with or without a fix
  ack_timeout_s = 20             # resend a frame the server has not acknowledged by then
  disk_budget_mb = 64            # outbox size; snapshots go first, then fixes are thinned
  [mcu]                          # shoulder light / body cam microcontroller, if fitted
  port = "/dev/ttyACM0"
  baud = 115200
  [camera]                       # snapshots: a V4L2 device, rtsp:// or http:// URL, or a file
  source = "/dev/video0"
  periodic_s = 300               # a picture this often (and on scene change, SOS, dispatch)
  bytes_per_hour = 2000000       # the 4G budget for pictures
"""

POLICY_OPTIONS = {
    "interval_moving": ("interval_moving_s", "seconds between fixes while moving (default 5)"),
    "interval_still": ("interval_still_s", "seconds between fixes while still (default 60)"),
    "min_distance": ("min_distance_m", "metres moved before a moving fix is kept (default 10)"),
    "moving_speed": ("moving_speed_mps", "speed above which it is moving, m/s (default 0.5)"),
    "heartbeat": ("heartbeat_s", "seconds between presence heartbeats (default 60)"),
    "ack_timeout": (
        "ack_timeout_s",
        "seconds before an unacknowledged frame is resent (default 20)",
    ),
    "disk_budget_mb": ("disk_budget_mb", "outbox disk budget in MB (default 64)"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file (see below)")
    p.add_argument("--enrolment", type=Path, help="enrolment bundle from `yijing provision device`")
    p.add_argument("--data", type=Path, help="outbox folder (default: var/agents/DEVICE)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--gpsd", metavar="HOST:PORT", help="read fixes from gpsd (the default source)"
    )
    src.add_argument(
        "--nmea", metavar="PORT", help="read NMEA 0183 from a serial port or pyserial URL"
    )
    src.add_argument(
        "--simulate",
        type=latlon,
        metavar="LAT,LON",
        help="simulate a volunteer walking around this point",
    )
    p.add_argument("--baud", type=baud, help="serial speed for --nmea (default 9600)")
    p.add_argument(
        "--mcu", metavar="PORT", help="the shoulder light / body cam MCU's serial port (optional)"
    )
    p.add_argument("--mcu-baud", type=baud, help="serial speed for --mcu (default 115200)")
    p.add_argument(
        "--camera",
        metavar="SOURCE",
        help="camera for snapshots: /dev/video0, an rtsp:// or http:// URL, or a video file",
    )
    ui = p.add_mutually_exclusive_group()
    ui.add_argument(
        "--ui-port",
        type=_port,
        metavar="N",
        help="serve the volunteer's screen (dispatch, tasks, SOS, clues) on http://127.0.0.1:N/"
        " (0: any free port; default: no screen)",
    )
    ui.add_argument(
        "--no-ui", action="store_true", help="no screen, even if the config file sets ui_port"
    )
    for option, (_, text) in POLICY_OPTIONS.items():
        p.add_argument(
            f"--{option.replace('_', '-')}", type=non_negative, dest=option, metavar="N", help=text
        )


def _port(text: str) -> int:
    try:
        port = parse_ui_port(int(text), "--ui-port")
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port 0-65535 (0: any free port)"
        ) from None
    assert port is not None
    return port


def resolve(args: argparse.Namespace) -> AgentConfig:
    """The config file, with command-line options laid over it."""
    config = load_config(args.config)
    source = config.source
    if args.gpsd:
        parse_hostport(args.gpsd, where="--gpsd")
        source = dataclasses.replace(source, kind="gpsd", gpsd=args.gpsd)
    elif args.nmea:
        source = dataclasses.replace(source, kind="nmea", nmea_port=args.nmea)
    elif args.simulate:
        source = dataclasses.replace(source, kind="simulate", simulate=args.simulate)
    if args.baud is not None:
        source = dataclasses.replace(source, nmea_baud=args.baud)
    overrides = {
        field: getattr(args, option)
        for option, (field, _) in POLICY_OPTIONS.items()
        if getattr(args, option) is not None
    }
    try:
        policy = dataclasses.replace(config.policy, **overrides)
    except ValueError as exc:
        raise ConfigError(f"policy: {exc}") from None
    mcu = config.mcu
    if args.mcu:
        mcu = dataclasses.replace(mcu, port=args.mcu)
    if args.mcu_baud is not None:
        mcu = dataclasses.replace(mcu, baud=args.mcu_baud)
    camera = config.camera
    if args.camera:
        camera = dataclasses.replace(camera, source=args.camera)
    ui_port = config.ui_port
    if args.no_ui:
        ui_port = None
    elif args.ui_port is not None:
        ui_port = args.ui_port
    return AgentConfig(
        enrolment=args.enrolment or config.enrolment,
        data=args.data or config.data,
        source=source,
        policy=policy,
        mcu=mcu,
        camera=camera,
        ui_port=ui_port,
    )


def make_source(config: SourceConfig, device_id: str):  # type: ignore[no-untyped-def]
    if config.kind == "simulate":
        from .sim_gps import SimulatedWalker

        seed = sum(device_id.encode())  # stable across runs, unlike hash()
        return SimulatedWalker(*config.simulate, seed=seed)
    if config.kind == "nmea":
        from .sources.serial_nmea import SerialNmeaSource

        return SerialNmeaSource(port=config.nmea_port, baudrate=config.nmea_baud)
    from .sources.gpsd_source import GpsdSource

    host, port = parse_hostport(config.gpsd)
    return GpsdSource(host=host, port=port)


def run(args: argparse.Namespace) -> int:
    from provisioning import load_enrolment

    from .agent import Agent

    config = resolve(args)
    if config.enrolment is None:
        raise ConfigError("an enrolment bundle is required: --enrolment FILE or enrolment = ...")
    enrolment = load_enrolment(config.enrolment)
    device_id = enrolment.identity.device_id
    data = config.data or Path("var/agents") / device_id
    source = make_source(config.source, device_id)
    agent = Agent(enrolment, data, source=source, policy=config.policy)
    mcu = None
    if config.mcu.port:
        from .mcu import McuLink

        mcu = McuLink(agent, port=config.mcu.port, baudrate=config.mcu.baud)
    camera = None
    if config.camera.source:
        # Imported only with a camera: OpenCV and numpy are most of a camera agent's memory.
        from .camera.capture import Camera
        from .camera.policy import SnapPolicy
        from .camera.worker import CameraWorker

        camera = CameraWorker(
            agent,
            Camera(source=config.camera.source, loop=Path(config.camera.source).is_file()),
            policy=SnapPolicy(
                periodic_s=config.camera.periodic_s, bytes_per_hour=config.camera.bytes_per_hour
            ),
        )
    stopped = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    agent.start()
    if mcu is not None:
        mcu.start()
    if camera is not None:
        camera.start()
    print(
        f"agent {device_id}: source {config.source.kind}, outbox {data}/outbox.db, "
        f"broker {enrolment.broker.host}:{enrolment.broker.port}",
        flush=True,
    )
    ui = None
    if config.ui_port is not None:
        from .localui import LocalUI, LocalUIError

        ui = LocalUI(agent, port=config.ui_port)
        try:
            ui.start()
            print(f"agent {device_id}: volunteer's screen at {ui.url}", flush=True)
        except LocalUIError as exc:
            # Tracking and SOS (the MCU's button) matter more than the screen: run on without.
            print(f"agent {device_id}: {exc}; running without a screen", file=sys.stderr)
            ui = None
    stopped.wait()
    if ui is not None:
        ui.stop()
    if camera is not None:
        camera.close()
    if mcu is not None:
        mcu.close()
    agent.stop()
    close = getattr(source, "close", None)
    if close is not None:
        close()
    return 0
