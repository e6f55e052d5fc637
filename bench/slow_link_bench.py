"""How long an SOS waits behind snapshots on a slow uplink, with one picture on the wire at a
time (the agent's rule) against a full window of pictures.

A throttling TCP proxy stands between the agent and a real Mosquitto (a 4G uplink in a crowded
street: default 1 Mbit/s each way); the real server is behind the broker. The agent starts
with pictures in its backlog; once they are flowing, an SOS is raised. Measured: from the SOS
to the server having stored it. Same-run reference: the same SOS with no pictures queued.

    .venv/bin/python bench/slow_link_bench.py [--kbit 1000] [--pictures 10] [--picture-kb 80]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agent.agent as agent_module
from agent.agent import Agent
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from protocol import EventKind, Snapshot, SnapshotTrigger
from provisioning import BrokerAddress, Enrolment, new_device
from server.app import Server, ServerConfig
from yijing.broker import free_port, start_mosquitto


class Throttle:
    """A TCP proxy that forwards at ``bytes_per_s`` in each direction (token bucket)."""

    def __init__(self, target_port: int, bytes_per_s: float) -> None:
        self.target_port, self.rate = target_port, bytes_per_s
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
                await asyncio.sleep(len(data) / self.rate)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(cr, sw), self._pipe(sr, cw))

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", self.port), self.loop
        ).result(5)


def picture(k: int, size: int) -> Snapshot:
    body = b"\xff\xd8\xff\xe0" + os.urandom(size - 6) + b"\xff\xd9"  # synthetic, incompressible
    return Snapshot(
        captured_ms=int(time.time() * 1000) - k, trigger=SnapshotTrigger.PERIODIC, width=1280,
        height=720, sha256=hashlib.sha256(body).digest(), jpeg=body,
    )  # fmt: skip


def sos_latency(
    server: Server,
    loop: asyncio.AbstractEventLoop,
    work: Path,
    *,
    proxy_port: int,
    pictures: int,
    picture_bytes: int,
    in_flight: int,
    tag: str,
) -> float:
    agent_module.SNAPSHOTS_IN_FLIGHT = in_flight
    identity = new_device(f"slow-{tag}")
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result()
    server.register_device(identity)
    enrolment = Enrolment(
        identity, server.identity.public_key, 1, BrokerAddress("127.0.0.1", proxy_port, "5")
    )
    agent = Agent(
        enrolment,
        work / tag,
        source=SimulatedWalker(22.5431, 114.0579),
        policy=ReportingPolicy(heartbeat_s=3600),
    )
    for k in range(pictures):
        agent.outbox.record_snapshot(picture(k, picture_bytes))
    agent.start()
    try:
        deadline = time.monotonic() + 30
        while not agent.link.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)  # let the pictures flow
        raised = time.monotonic()
        agent.submit(lambda: agent.raise_event(EventKind.SOS))
        while time.monotonic() < raised + 120:
            rows = server.store._read(
                "SELECT count(*) FROM frames WHERE device_id=? AND type=4", (identity.device_id,)
            )
            if rows[0][0]:
                return time.monotonic() - raised
            time.sleep(0.01)
        return float("inf")
    finally:
        agent.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kbit", type=float, default=1000, help="link speed, kbit/s each way")
    parser.add_argument("--pictures", type=int, default=10, help="pictures queued (default 10)")
    parser.add_argument("--picture-kb", type=int, default=80, help="picture size, kB (80)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (3)")
    args = parser.parse_args()
    print(
        f"platform {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"link {args.kbit:g} kbit/s each way; {args.pictures} pictures of {args.picture_kb} kB")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = start_mosquitto(work / "broker")
        proxy = Throttle(broker.port, args.kbit * 1000 / 8)
        proxy.start()
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        server = asyncio.run_coroutine_threadsafe(_make(work, broker.url), loop).result(30)
        try:
            cases = [
                ("no pictures queued (reference)", 0, 1),
                ("one picture on the wire", args.pictures, 1),
                ("a full window of pictures", args.pictures, 64),
            ]
            print("| case | SOS raised → stored, s (median / max) |\n|---|---|")
            for n, (name, pictures, in_flight) in enumerate(cases):
                times = [
                    sos_latency(
                        server,
                        loop,
                        work,
                        proxy_port=proxy.port,
                        pictures=pictures,
                        picture_bytes=args.picture_kb * 1000,
                        in_flight=in_flight,
                        tag=f"{n}-{r}",
                    )
                    for r in range(args.repeat)
                ]
                print(f"| {name} | {statistics.median(times):.2f} / {max(times):.2f} |", flush=True)
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
            broker.stop()
    return 0


async def _make(work: Path, url: str) -> Server:
    server = Server(ServerConfig(data_dir=work / "server", http_port=0, broker_url=url))
    await server.start()
    return server


if __name__ == "__main__":
    sys.exit(main())
