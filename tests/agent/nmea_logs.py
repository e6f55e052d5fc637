"""The real receiver logs in ``shared/data/nmea`` and gpsd's decoding of them (the .chk files).

CI clones the repository with ``shared/`` beside it, so the data is ``<repo>/../shared``;
``YIJING_SHARED`` names another shared directory. Missing data fails the test (a skipped
comparison would look like a passing one).
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import pytest

from protocol import Fix

REPO = Path(__file__).resolve().parents[2]
REAL_LOGS = ("bu353s4.log", "mtk-3301.log", "quectel-eg25-g.log", "telit-pls83-w.log")
FUZZY_LOG = "nmea-fuzzy-cases.log"


def nmea_dir() -> Path:
    shared = Path(os.environ.get("YIJING_SHARED") or REPO.parent / "shared")
    path = shared / "data" / "nmea"
    if not (path / "bu353s4.log").is_file():
        pytest.fail(
            f"NMEA test data not found in {path}: clone the shared data beside the repository "
            "(../shared/data/nmea) or set YIJING_SHARED to the shared directory"
        )
    return path


def receiver_bytes(name: str) -> bytes:
    """What the receiver sent: the log without the '#' lines gpsd's maintainers added."""
    raw = (nmea_dir() / name).read_bytes()
    return b"".join(line for line in raw.splitlines(keepends=True) if not line.startswith(b"#"))


def gpsd_tpvs(name: str) -> list[dict[str, Any]]:
    """gpsd's TPV reports with a fix (mode 2 or 3), in order; ``time_ms`` added when timed."""
    reports = []
    for line in (nmea_dir() / f"{name}.chk").read_text().splitlines():
        if not line.startswith("{"):
            continue  # the .chk interleaves the sentences gpsd read
        report = json.loads(line)
        if report.get("class") == "TPV" and report.get("mode", 0) >= 2:
            if "time" in report:
                report["time_ms"] = iso_ms(report["time"])
            reports.append(report)
    return reports


def iso_ms(text: str) -> int:
    return round(datetime.datetime.fromisoformat(text).timestamp() * 1000)


def iso(time_ms: int) -> str:
    when = datetime.datetime.fromtimestamp(time_ms // 1000, datetime.UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{time_ms % 1000:03d}Z"


def same_place(fix: Fix, tpv: dict[str, Any], tolerance: float = 1e-6) -> bool:
    return bool(abs(fix.lat - tpv["lat"]) <= tolerance and abs(fix.lon - tpv["lon"]) <= tolerance)
