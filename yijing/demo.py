"""``yijing demo``: a server and a simulated fleet walking around posts in Futian.

Everything is real but the GPS: a local broker, the server with its SQLite store under
``./var/``, and one agent per terminal with its own durable outbox, keys and MQTT connection.
Re-running reuses the same terminals, store and history.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from agent.agent import Agent
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from provisioning import BrokerAddress, Enrolment, load_enrolment, new_device, write_enrolment
from server.app import Server, ServerConfig
from server.web.access import Principal, Role

from .demo_org import seed_org
from .demo_phones import PhoneFleet, seed_phones
from .demo_volunteer import DemoVolunteer

log = logging.getLogger("yijing.demo")


@dataclass(frozen=True)
class DemoPost:
    name: str
    lat: float
    lon: float


#: Places in Futian district, Shenzhen (approximate centres), where the simulated volunteers
#: patrol: a bar street, a metro hub, the CBD, a port, parks and neighbourhoods.
FUTIAN_POSTS = (
    DemoPost("Huaqiangbei 华强北", 22.5445, 114.0856),
    DemoPost("Futian CBD 中心区", 22.5367, 114.0578),
    DemoPost("Chegongmiao 车公庙", 22.5358, 114.0236),
    DemoPost("Xiangmihu 香蜜湖", 22.5489, 114.0307),
    DemoPost("Futian Port 福田口岸", 22.5177, 114.0663),
    DemoPost("Lianhuashan 莲花山", 22.5556, 114.0575),
    DemoPost("Meilin 梅林", 22.5681, 114.0554),
    DemoPost("Huanggang 皇岗", 22.5236, 114.0734),
)


def _enrolment(server: Server, agents_dir: Path, index: int) -> Enrolment:
    device_id = f"ft-{index + 1:04d}"
    path = agents_dir / device_id / "enrolment.json"
    assert server.broker_address is not None
    broker = BrokerAddress(
        server.broker_address.host, server.broker_address.port, server.broker_address.protocol
    )
    if path.exists():
        enrolment = load_enrolment(path)
        if enrolment.broker != broker:  # the local broker port changes between runs
            enrolment = Enrolment(
                enrolment.identity, enrolment.server_key, enrolment.server_key_id, broker
            )
            write_enrolment(path, enrolment)
        return enrolment
    identity = new_device(device_id, units=("futian",))
    server.register_device(identity, label=f"Volunteer {index + 1}")
    enrolment = Enrolment(identity, server.identity.public_key, server.identity.key_id, broker)
    write_enrolment(path, enrolment)
    return enrolment


def _camera_video(path: Path, seed: int) -> Path:
    """A short looping "body cam" clip for a demo terminal: a street of moving shapes with a
    caption, made with OpenCV once and kept. The pictures the map shows are real JPEGs
    captured from it, as from a real camera."""
    import cv2
    import numpy as np

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height, frames = 320, 180, 120
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (width, height))
    base = rng.integers(40, 120, size=3).tolist()
    try:
        for i in range(frames):
            frame = np.full((height, width, 3), base, np.uint8)
            cv2.rectangle(frame, (0, 120), (width, height), (60, 60, 60), -1)  # the street
            for k in range(4):
                x = int((i * (3 + k) + k * 80) % (width + 40)) - 20
                colour = [int(c) for c in rng.integers(60, 255, size=3)]
                cv2.circle(frame, (x, 130 + 10 * k), 10 + 2 * k, colour, -1)
            cv2.putText(
                frame,
                f"ft-{seed + 1:04d}",
                (8, 24),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.6,
                (255, 255, 255),
                1,
            )
            writer.write(frame)
    finally:
        writer.release()
    return path


async def run_demo(
    data_dir: Path,
    *,
    terminals: int,
    http_host: str,
    http_port: int,
    interval_s: float,
    cameras: int = 0,
    phones: int = 5,
) -> None:
    server = Server(
        ServerConfig(data_dir=data_dir / "server", http_host=http_host, http_port=http_port)
    )
    await server.start()
    token = secrets.token_urlsafe(16)
    server.auth.add(token, Principal("demo officer", Role.OFFICER))
    inspector = secrets.token_urlsafe(16)
    server.auth.add(inspector, Principal("demo inspector", Role.INSPECTOR, scope="futian"))
    now_ms = int(time.time() * 1000)
    shifts = await asyncio.to_thread(seed_org, server.org, FUTIAN_POSTS, terminals, now_ms)
    await asyncio.to_thread(server.duty.refresh)
    agents: list[Agent] = []
    volunteers: list[DemoVolunteer] = []
    workers: list[object] = []
    agents_dir = data_dir / "agents"
    try:
        for i in range(terminals):
            enrolment = _enrolment(server, agents_dir, i)
            post = FUTIAN_POSTS[i % len(FUTIAN_POSTS)]
            walker = SimulatedWalker(post.lat, post.lon, radius_m=250, seed=i)
            agent = Agent(
                enrolment,
                agents_dir / enrolment.identity.device_id,
                source=walker,
                policy=ReportingPolicy(
                    interval_moving_s=interval_s,
                    interval_still_s=max(30.0, interval_s),
                    min_distance_m=2,
                    heartbeat_s=30,
                ),
            )
            volunteers.append(DemoVolunteer(agent, walker, seed=i))
            agent.start()
            agents.append(agent)
            if i < cameras:
                from agent.camera.capture import Camera
                from agent.camera.policy import SnapPolicy
                from agent.camera.worker import CameraWorker

                video = _camera_video(data_dir / "cameras" / f"ft-{i + 1:04d}.avi", i)
                worker = CameraWorker(
                    agent,
                    Camera(source=video, loop=True),
                    policy=SnapPolicy(periodic_s=30, min_interval_s=10),
                    frame_interval_s=1.0,
                )
                worker.start()
                workers.append(worker)
        # Volunteers with only a phone (OwnTracks in HTTP mode, played by a thread).
        demo_phones = await asyncio.to_thread(seed_phones, server, FUTIAN_POSTS, phones, now_ms)
        await asyncio.to_thread(server.duty.refresh)
        fleet = PhoneFleet(server.url, demo_phones, interval_s=max(interval_s, 5.0))
        fleet.start()
        workers.append(fleet)
        print(
            f"yijing demo: {terminals} simulated terminals reporting every {interval_s:g}s, "
            f"{min(cameras, terminals)} with a camera, {phones} volunteers with only a phone "
            "(OwnTracks)"
        )
        print(f"  broker:    {server.broker_address}")
        print(f"  store:     {server.config.store_url or server.config.data_dir / 'yijing.db'}")
        print(f"  dashboard: {server.url}/login?token={token}")
        print(f"  reports:   {server.url}/login?token={inspector}&next=/static/reports.html")
        print(f"             (an inspector of Futian; {shifts} shifts running)")
        print("Press Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()
    finally:
        await asyncio.gather(*(asyncio.to_thread(w.close) for w in workers))  # type: ignore[attr-defined]
        for volunteer in volunteers:
            volunteer.close()
        await asyncio.gather(*(asyncio.to_thread(a.stop) for a in agents))
        await server.stop()
