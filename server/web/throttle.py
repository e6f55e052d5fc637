"""Slowing down guessing: too many failed sign-ins from one address in a minute, and that
address is refused (429 with Retry-After) until the oldest failure leaves the window.

A failure is a credential that was presented and did not check out (a bearer token, the
sign-in cookie, a ``/login?token=`` link). While an address is blocked even a correct
credential is refused, so a guesser cannot learn from the answers. Memory stays bounded: at
most ``max_keys`` addresses are remembered, the least recently failing forgotten first.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

#: Failures allowed from one address within ``WINDOW_S``.
MAX_FAILURES = 10
WINDOW_S = 60.0


class SignInThrottle:
    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError("max_failures must be ≥ 1 and window_s > 0")
        self._max = max_failures
        self._window = window_s
        self._max_keys = max_keys
        self._clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again (None: it may now)."""
        with self._lock:
            times = self._fresh(key)
            if times is None or len(times) < self._max:
                return None
            return max(0.0, times[0] + self._window - self._clock())

    def failed(self, key: str) -> None:
        with self._lock:
            times = self._fresh(key) or collections.deque()
            times.append(self._clock())
            while len(times) > self._max:
                times.popleft()
            self._failures[key] = times
            self._failures.move_to_end(key)
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)

    def _fresh(self, key: str) -> collections.deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        horizon = self._clock() - self._window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times
