"""``yijing bridge``: bench-test a shoulder light / body cam on a serial port.

Prints every event from the device (heartbeats, buttons, battery, tamper, acks) as a line.
With ``--simulate`` a ``DeviceSimulator`` on a pty stands in for the device (it presses
nothing: you see heartbeats and the answers to ``--flash`` / ``--status``).

example:
  yijing bridge --port /dev/ttyUSB0 --status
  yijing bridge --simulate --flash 5 --seconds 8
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from .argtypes import baud, positive

EXAMPLE = (
    "example:\n  yijing bridge --port /dev/ttyUSB0 --status\n  yijing bridge --simulate --flash 5"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial device or pyserial URL (/dev/ttyUSB0, loop://)")
    where.add_argument(
        "--simulate", action="store_true", help="talk to a simulated device on a pty"
    )
    parser.add_argument("--baud", type=baud, default=115200, help="baud rate (115200)")
    parser.add_argument(
        "--flash",
        type=positive,
        metavar="SECONDS",
        help="flash the light red/blue at 2 Hz for SECONDS once the link is up",
    )
    parser.add_argument(
        "--status", action="store_true", help="request a status report once the link is up"
    )
    parser.add_argument(
        "--seconds",
        type=positive,
        metavar="SECONDS",
        help="exit after SECONDS (default: run until Ctrl-C)",
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    import sys

    from firmware_bridge.connection import Event, LinkUp
    from firmware_bridge.messages import LightPattern, RequestStatus, SetLight
    from firmware_bridge.serial_transport import SerialBridge
    from firmware_bridge.simulator import DeviceSimulator

    stream = out or sys.stdout
    link_up = threading.Event()
    started = time.monotonic()

    def show(event: Event) -> None:
        print(f"{time.monotonic() - started:8.3f}  {event}", file=stream, flush=True)
        if isinstance(event, LinkUp):
            link_up.set()

    with contextlib.ExitStack() as stack:
        if args.simulate:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="yijing-sim-")))
            simulator = stack.enter_context(DeviceSimulator(link=tmp / "device"))
            port = simulator.port
            print(f"simulated device on {port}", file=stream, flush=True)
        else:
            port = args.port
        try:
            bridge = SerialBridge(
                port=port,
                baudrate=args.baud,
                on_event=show,
                logger=logging.getLogger("yijing.bridge"),
            )
        except ValueError as exc:
            print(f"yijing bridge: {exc}", file=sys.stderr)
            return 2
        stack.enter_context(bridge)
        deadline = None if args.seconds is None else started + args.seconds
        try:
            if args.flash is not None or args.status:
                wait = 5.0 if deadline is None else max(0.0, deadline - time.monotonic())
                if not link_up.wait(wait):
                    print("yijing bridge: no heartbeat from the device", file=sys.stderr)
                    return 1
                if args.flash is not None:
                    bridge.send(
                        SetLight(LightPattern.FLASH_RED_BLUE, 2, duration_ms=int(args.flash * 1000))
                    )
                if args.status:
                    bridge.send(RequestStatus())
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
    return 0
