#!/usr/bin/env python3
"""Why a paho QoS 1 subscriber seemed to stall at a few hundred messages a second.

``shared/MEASUREMENTS.md`` reports a paho QoS 1 subscriber receiving "≈ 100–840 msg/s, CPU
mostly idle" while Mosquitto dropped part of the burst. This script separates the two things
that measurement mixed: how fast the subscriber really receives (first to last arrival) and
how many messages the broker dropped — waiting for dropped messages that never come is what
looks like a stall with an idle CPU.

For each broker config, two paho QoS 1 publisher processes send N 100-byte messages as fast
as their in-flight windows allow; one paho subscriber (QoS 1, then QoS 0 as the reference in
the same run) spends ``--work-us`` of CPU on each message (what ingest does with it: verify,
store, ack) and counts arrivals — a subscriber slower than its publishers, as a loaded server
is:

- ``mosquitto-default``: Mosquitto's defaults (``max_inflight_messages 20``,
  ``max_queued_messages 1000``);
- ``yijing``: what ``yijing/broker.py`` and ``provisioning/broker_config.py`` write
  (``max_inflight_messages 100``, ``max_queued_messages 1000000``; 100000 when the figures
  in docs/benchmarks.md were taken, which makes no difference to a 20,000-message run).

Run: ``.venv/bin/python bench/qos1_bench.py [--messages 20000] [--runs 3]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as paho
from machine_info import cpu_model
from paho.mqtt.enums import CallbackAPIVersion

from yijing.broker import find_mosquitto, free_port, wait_for_port

CONFIGS = {
    "mosquitto-default": "",
    "yijing": "max_inflight_messages 100\nmax_queued_messages 1000000\n",
}
WAIT_S = 5.0  # after the publisher is done: time for the last messages to arrive


def publish(port: int, n: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{os.getpid()}")
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish("t/a", b"x" * 100, qos=1) for _ in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def run(config: str, qos: int, n: int, folder: Path, work_s: float) -> tuple[int, float, float]:
    """(received, first→last arrival s, publisher start→give-up s)."""
    port = free_port()
    conf = folder / f"{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{CONFIGS[config]}")
    exe = find_mosquitto() or "mosquitto"
    broker = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, 5)
        arrivals: list[float] = []
        done = threading.Event()

        def on_message(client: paho.Client, userdata: object, message: object) -> None:
            now = time.perf_counter()
            while time.perf_counter() - now < work_s:
                pass
            arrivals.append(time.perf_counter())
            if len(arrivals) >= n:
                done.set()

        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="sub")
        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe("t/#", qos=qos)
        sub.loop_start()
        time.sleep(0.3)
        began = time.perf_counter()
        publishers = [mp.Process(target=publish, args=(port, n // 2)) for _ in range(2)]
        for publisher in publishers:
            publisher.start()
        for publisher in publishers:
            publisher.join()
        done.wait(WAIT_S)
        gave_up = time.perf_counter() - began
        sub.loop_stop()
        sub.disconnect()
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
        return len(arrivals), span, gave_up
    finally:
        broker.kill()
        broker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work-us", type=float, default=150.0, help="CPU per message received")
    args = parser.parse_args()
    n = args.messages
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"{n:,} messages of 100 B from two paho QoS 1 publishers; the subscriber spends "
        f"{args.work_us:g} µs on each; {args.runs} runs each\n"
    )
    print(f"{'broker config':18} {'sub':5} {'received':>9} {'lost':>6} "
          f"{'real rate/s':>11} {'naive rate/s':>12}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for config in CONFIGS:
            for qos in (1, 0):
                for _ in range(args.runs):
                    got, span, gave_up = run(config, qos, n, Path(tmp), args.work_us / 1e6)
                    real = got / span if span else 0.0
                    naive = got / gave_up
                    print(
                        f"{config:18} QoS {qos} {got:9,} {n - got:6,} {real:11,.0f} {naive:12,.0f}"
                    )
    print("\nreal rate: first to last arrival. naive rate: received / time until the run gave "
          f"up waiting ({WAIT_S:.0f} s after the publisher finished) — the stall that is not one.")


if __name__ == "__main__":
    main()
