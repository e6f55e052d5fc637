"""Guessing sign-ins is slowed: ten failures a minute from one address, then 429 until the
window moves on — for a correct credential too, so the answers teach a guesser nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.sqlite_store import SqliteStore
from server.web.access import THROTTLE, Principal, Role
from server.web.throttle import SignInThrottle

from .support import api_app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_within_the_window_block_then_age_out() -> None:
    clock = Clock()
    throttle = SignInThrottle(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("10.0.0.1") is None
        throttle.failed("10.0.0.1")
        clock.now += 1
    assert throttle.retry_after("10.0.0.1") == pytest.approx(57)
    assert throttle.retry_after("10.0.0.2") is None  # another address is not held up
    clock.now += 57
    assert throttle.retry_after("10.0.0.1") is None  # the first failure left the window


def test_memory_is_bounded() -> None:
    throttle = SignInThrottle(max_failures=1, max_keys=100, clock=Clock())
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert throttle.retry_after("10.0.3.231") is not None  # the newest are remembered
    assert throttle.retry_after("10.0.0.0") is None  # the oldest forgotten


def test_the_server_answers_429_with_retry_after(tmp_path: Path) -> None:
    clock = Clock()
    throttle = SignInThrottle(max_failures=3, window_s=60, clock=clock)

    async def scenario() -> None:
        store = SqliteStore(tmp_path / "s.db")
        app = api_app(
            tmp_path, store, {"good": Principal("Li", Role.OFFICER)}, routes=[],
            services={THROTTLE: throttle},
        )  # fmt: skip
        try:
            async with TestClient(TestServer(app)) as client:
                assert (await client.get("/api/v1/terminals")).status == 401  # no guess
                for _ in range(2):
                    r = await client.get("/api/v1/terminals", headers={"Authorization": "Bearer x"})
                    assert r.status == 401
                assert (await client.get("/login?token=wrong", allow_redirects=False)).status == 401
                good = {"Authorization": "Bearer good"}
                r = await client.get("/api/v1/terminals", headers=good)
                assert r.status == 429 and r.headers["Retry-After"] == "60"
                assert "too many failed sign-ins" in (await r.json())["error"]
                r = await client.get("/login?token=good", allow_redirects=False)
                assert r.status == 429
                clock.now += 61
                assert (await client.get("/api/v1/terminals", headers=good)).status == 200
                r = await client.get("/login?token=good", allow_redirects=False)
                assert r.status == 302
        finally:
            store.close()

    asyncio.run(scenario())
