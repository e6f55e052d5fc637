"""The camera in the running agent: a thread that reads frames and records the snapshots.

Its own thread, because a network camera (RTSP/HTTP) can block inside OpenCV's read; the agent
loop must never wait on it. Frames are read a few times a second (a scene change is noticed
within that) and offered to the ``Snapper``, which decides whether a picture is worth its
bytes. A snapshot is handed to the agent's thread (``Agent.submit``), which owns the outbox,
and goes into its lowest lane, evicted first when the disk budget is tight.

Triggers from elsewhere: an SOS or tamper event (``Agent.event_listeners``), a dispatch
accepted or reached (``Agent.answer_listeners``), and a spot check that asks for a picture
(``RollCall.want_snapshot``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

from protocol import EventKind, ResponseStatus, Snapshot

from ..agent import Agent
from .capture import Camera
from .policy import Snapper, SnapPolicy


class CameraWorker:
    def __init__(
        self,
        agent: Agent,
        camera: Camera,
        *,
        policy: SnapPolicy | None = None,
        frame_interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self._agent = agent
        self._camera = camera
        self.snapper = Snapper(policy)
        self._interval = frame_interval_s
        self._clock = clock
        self._log = logger or logging.getLogger(f"yijing.agent.{agent.device_id}.camera")
        self._lock = threading.Lock()  # the snapper is told of triggers from other threads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recorded = 0
        agent.event_listeners.append(self._on_event)
        agent.answer_listeners.append(self._on_answer)
        agent.snapshot_requests.append(self.request)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._camera.close()

    def request(self, request_id: str) -> None:
        with self._lock:
            self.snapper.request(request_id)

    def _on_event(self, kind: EventKind) -> None:
        if kind in (EventKind.SOS, EventKind.TAMPER):
            with self._lock:
                self.snapper.event(kind.value)

    def _on_answer(self, status: ResponseStatus) -> None:
        if status in (ResponseStatus.ACCEPTED, ResponseStatus.ON_SCENE):
            with self._lock:
                self.snapper.event(f"dispatch_{status.value}")

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            now_ms = int(self._clock() * 1000)
            frame = self._camera.read(now_ms)
            if frame is None:
                continue
            with self._lock:
                snapshot = self.snapper.offer(frame, now_ms, fix=self._agent.latest_fix)
            if snapshot is not None:
                self._agent.submit(functools.partial(self._record, snapshot))

    def _record(self, snapshot: Snapshot) -> None:
        self._agent.outbox.record_snapshot(snapshot)
        self.recorded += 1
