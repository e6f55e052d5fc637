"""Shared fixtures: a real Mosquitto per test session, a running server, enrolled agents."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from server.app import Server, ServerConfig
from yijing.broker import LocalBroker, find_mosquitto, start_mosquitto


@pytest.fixture(scope="session")
def mosquitto_path() -> str:
    path = find_mosquitto()
    if path is None:
        pytest.fail("mosquitto is required (apt-get install mosquitto; .ci/run installs it)")
    return path


@pytest.fixture
def broker(tmp_path: Path, mosquitto_path: str) -> Iterator[LocalBroker]:
    b = start_mosquitto(tmp_path / "broker", executable=mosquitto_path)
    yield b
    b.stop()


class ServerThread:
    """A ``Server`` on its own event loop thread, driven from synchronous tests."""

    def __init__(self, config: ServerConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.call(self._make, config)
        self.run(self.server.start())

    @staticmethod
    async def _make_async(config: ServerConfig) -> Server:
        return Server(config)

    def _make(self, config: ServerConfig) -> Server:
        return self.run(self._make_async(config))

    def call(self, fn: Callable[..., object], *args: object) -> Server:
        return fn(*args)  # type: ignore[return-value]

    def run(self, coro: object) -> object:
        future: Future[object] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(60)

    def stop(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def make(broker: LocalBroker | None = None, **overrides: object) -> ServerThread:
        config = ServerConfig(
            data_dir=tmp_path / "server",
            http_port=0,
            broker_url=broker.url if broker is not None else None,
            **overrides,  # type: ignore[arg-type]
        )
        st = ServerThread(config)
        started.append(st)
        return st

    yield make
    for st in started:
        st.stop()
