"""Fixes as one packed NumPy array: what the duty recomputation reads.

A station-day is about seven million fixes. Reading them row by row costs a Python object per
value; a packed array of an hour costs one ``bytes``. The store keeps such packs as a cache
(``fix_packs``), dropped whenever a fix of that hour is stored, and builds missing ones from
``positions`` on demand. Rows are in ``(time_ms, seq, idx)`` order, as ``Store.fix_rows``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

HOUR_MS = 3_600_000

FIX_DTYPE = np.dtype(
    [
        ("time_ms", "<i8"),
        ("seq", "<i8"),
        ("idx", "<i8"),
        ("lat", "<f8"),
        ("lon", "<f8"),
        ("accuracy_m", "<f8"),  # NaN: none given
        ("flags", "<i8"),
        ("received_ms", "<i8"),
    ]
)

FixArray = npt.NDArray[Any]  # a 1-d array of FIX_DTYPE


def pack(rows: Sequence[Sequence[Any]]) -> bytes:
    """``fix_rows`` tuples → packed bytes (accuracy ``None`` becomes NaN)."""
    # NumPy turns None into NaN in a float field of a structured array.
    return np.array([tuple(r) for r in rows], dtype=FIX_DTYPE).tobytes()


def unpack(data: bytes) -> FixArray:
    return np.frombuffer(data, dtype=FIX_DTYPE)


def window(parts: Sequence[bytes], since_ms: int, until_ms: int) -> FixArray:
    """Consecutive hours' packs joined and cut to ``since_ms <= time_ms < until_ms``."""
    arr = unpack(b"".join(parts))
    times = arr["time_ms"]
    lo = int(np.searchsorted(times, since_ms, side="left"))
    hi = int(np.searchsorted(times, until_ms, side="left"))
    return arr[lo:hi]


def to_rows(arr: FixArray) -> list[tuple[Any, ...]]:
    """Back to ``fix_rows`` tuples (tests and small callers)."""
    return [
        (
            int(r["time_ms"]),
            int(r["seq"]),
            int(r["idx"]),
            float(r["lat"]),
            float(r["lon"]),
            None if np.isnan(r["accuracy_m"]) else float(r["accuracy_m"]),
            int(r["flags"]),
            int(r["received_ms"]),
        )
        for r in arr
    ]
