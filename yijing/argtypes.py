"""argparse value types shared by the ``yijing`` subcommands: each says what was wrong."""

from __future__ import annotations

import argparse


def latlon(text: str) -> tuple[float, float]:
    try:
        lat_s, lon_s = text.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LAT,LON (e.g. 22.5431,114.0579), got {text!r}"
        ) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid position")
    return lat, lon


def port(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 0 <= number < 65536:
        raise argparse.ArgumentTypeError(f"port {number} is outside 0-65535")
    return number


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def baud(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"baud rate must be a number, got {text!r}") from None
    if not 300 <= value <= 4_000_000:
        raise argparse.ArgumentTypeError(f"baud rate {value} is outside 300-4000000")
    return value


def retention_days(text: str) -> int:
    """Days of fixes to keep: at least 31, so a backfill within the replay window (30 days)
    is never dropped the hour it is stored."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: days must be a whole number") from None
    if days < 31:
        raise argparse.ArgumentTypeError(f"{days}: keep at least 31 days (the replay window is 30)")
    return days


def worker_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: workers must be a whole number") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{n}: workers must be between 1 and 64")
    return n
