"""The agent's configuration: a TOML file, overridden by command-line options.

Every key is optional; errors name the file, the key and what is wrong. Example
(``docs/agent.example.toml`` holds the same, commented)::

    enrolment = "/etc/yijing/ft-0042.json"   # the bundle from `yijing provision device`
    data = "/var/lib/yijing/agent"           # where the outbox lives
    ui_port = 8765                # the volunteer's screen on http://127.0.0.1:8765/
                                  # (0: any free port; leave out or false: no screen)

    [source]
    kind = "gpsd"                 # gpsd | nmea | simulate
    gpsd = "127.0.0.1:2947"
    nmea_port = "/dev/ttyUSB0"    # or a pyserial URL
    nmea_baud = 9600
    simulate = [22.5431, 114.0579]

    [policy]
    interval_moving_s = 5
    interval_still_s = 60
    min_distance_m = 10
    moving_speed_mps = 0.5
    heartbeat_s = 60
    ack_timeout_s = 20
    disk_budget_mb = 64

    [mcu]                         # the shoulder light / body cam, if there is one
    port = "/dev/ttyACM0"
    baud = 115200

    [camera]                      # snapshots, if there is a camera
    source = "/dev/video0"        # or rtsp://..., or a video file
    periodic_s = 300
    bytes_per_hour = 2000000
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AgentError
from .policy import ReportingPolicy

SOURCE_KINDS = ("gpsd", "nmea", "simulate")


class ConfigError(AgentError):
    """A configuration the agent cannot use; the message names the key."""


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    kind: str = "gpsd"
    gpsd: str = "127.0.0.1:2947"
    nmea_port: str = "/dev/ttyUSB0"
    nmea_baud: int = 9600
    simulate: tuple[float, float] = (22.5431, 114.0579)


@dataclass(frozen=True, kw_only=True)
class McuConfig:
    """The shoulder light / body cam microcontroller's serial line (none: no MCU)."""

    port: str | None = None
    baud: int = 115200


@dataclass(frozen=True, kw_only=True)
class CameraConfig:
    """The camera (none: no snapshots): a V4L2 device, an RTSP/HTTP URL or a video file."""

    source: str | None = None
    periodic_s: float = 300.0
    bytes_per_hour: int = 2_000_000


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    enrolment: Path | None = None
    data: Path | None = None
    source: SourceConfig = field(default_factory=SourceConfig)
    policy: ReportingPolicy = field(default_factory=ReportingPolicy)
    mcu: McuConfig = field(default_factory=McuConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    #: The local screen's port on 127.0.0.1 (0: any free port). None: no screen. Off unless
    #: asked for: the same command runs fleets of simulated agents on one host (bench, demo),
    #: where one fixed port would collide; a terminal's config file sets it.
    ui_port: int | None = None


def parse_ui_port(value: object, where: str) -> int | None:
    """A port number 0-65535 (0: any free one), or false / None for no screen."""
    if value is None or value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{where}: expected a port 0-65535 (0: any free port) or false")
    return value


def _number(where: str, key: str, value: object, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key}: expected a number, got {type(value).__name__}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{where}: {key}: expected a whole number, got {value}")
    return value


def parse_hostport(text: str, *, where: str = "gpsd") -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{where}: expected HOST:PORT (e.g. 127.0.0.1:2947), got {text!r}")
    return host, int(port_text)


def _source(where: str, doc: dict[str, Any]) -> SourceConfig:
    known = {f.name for f in dataclasses.fields(SourceConfig)}
    for key in doc:
        if key not in known:
            raise ConfigError(
                f"{where}: source.{key}: unknown key (known: {', '.join(sorted(known))})"
            )
    values: dict[str, Any] = {}
    if "kind" in doc:
        if doc["kind"] not in SOURCE_KINDS:
            raise ConfigError(f"{where}: source.kind: {doc['kind']!r} is not one of {SOURCE_KINDS}")
        values["kind"] = doc["kind"]
    if "gpsd" in doc:
        parse_hostport(str(doc["gpsd"]), where=f"{where}: source.gpsd")
        values["gpsd"] = str(doc["gpsd"])
    if "nmea_port" in doc:
        if not isinstance(doc["nmea_port"], str) or not doc["nmea_port"]:
            raise ConfigError(f"{where}: source.nmea_port: expected a device path or URL")
        values["nmea_port"] = doc["nmea_port"]
    if "nmea_baud" in doc:
        values["nmea_baud"] = int(
            _number(where, "source.nmea_baud", doc["nmea_baud"], integer=True)
        )
    if "simulate" in doc:
        point = doc["simulate"]
        if not isinstance(point, list) or len(point) != 2:
            raise ConfigError(f"{where}: source.simulate: expected [LAT, LON]")
        lat = _number(where, "source.simulate[0]", point[0])
        lon = _number(where, "source.simulate[1]", point[1])
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ConfigError(f"{where}: source.simulate: {point} is not a position")
        values["simulate"] = (float(lat), float(lon))
    return SourceConfig(**values)


def _policy(where: str, doc: dict[str, Any]) -> ReportingPolicy:
    known = {f.name for f in dataclasses.fields(ReportingPolicy)}
    values: dict[str, float] = {}
    for key, value in doc.items():
        if key not in known:
            raise ConfigError(
                f"{where}: policy.{key}: unknown key (known: {', '.join(sorted(known))})"
            )
        values[key] = float(_number(where, f"policy.{key}", value))
    try:
        return ReportingPolicy(**values)
    except ValueError as exc:
        raise ConfigError(f"{where}: policy: {exc}") from None


def _mcu(where: str, doc: dict[str, Any]) -> McuConfig:
    for key in doc:
        if key not in ("port", "baud"):
            raise ConfigError(f"{where}: mcu.{key}: unknown key (known: baud, port)")
    port = doc.get("port")
    if port is not None and (not isinstance(port, str) or not port):
        raise ConfigError(f"{where}: mcu.port: expected a device path or pyserial URL")
    baud = int(_number(where, "mcu.baud", doc.get("baud", 115200), integer=True))
    return McuConfig(port=port, baud=baud)


def _camera(where: str, doc: dict[str, Any]) -> CameraConfig:
    for key in doc:
        if key not in ("source", "periodic_s", "bytes_per_hour"):
            raise ConfigError(
                f"{where}: camera.{key}: unknown key (known: bytes_per_hour, periodic_s, source)"
            )
    source = doc.get("source")
    if source is not None and (not isinstance(source, (str, int)) or source == ""):
        raise ConfigError(f"{where}: camera.source: expected a device, URL or file")
    periodic = _number(where, "camera.periodic_s", doc.get("periodic_s", 300.0))
    budget = _number(
        where, "camera.bytes_per_hour", doc.get("bytes_per_hour", 2_000_000), integer=True
    )
    if periodic <= 0 or budget <= 0:
        raise ConfigError(f"{where}: camera: periodic_s and bytes_per_hour must be positive")
    return CameraConfig(
        source=None if source is None else str(source),
        periodic_s=float(periodic),
        bytes_per_hour=int(budget),
    )


def load_config(path: Path | None) -> AgentConfig:
    if path is None:
        return AgentConfig()
    where = str(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not TOML ({exc})") from None
    known = {"enrolment", "data", "source", "policy", "mcu", "camera", "ui_port"}
    for key in doc:
        if key not in known:
            raise ConfigError(f"{where}: {key}: unknown key (known: {', '.join(sorted(known))})")
    for key in ("enrolment", "data"):
        if key in doc and not isinstance(doc[key], str):
            raise ConfigError(f"{where}: {key}: expected a path")
    for key in ("source", "policy", "mcu", "camera"):
        if key in doc and not isinstance(doc[key], dict):
            raise ConfigError(f"{where}: {key}: expected a table [{key}]")
    return AgentConfig(
        enrolment=Path(doc["enrolment"]) if "enrolment" in doc else None,
        data=Path(doc["data"]) if "data" in doc else None,
        source=_source(where, doc.get("source", {})),
        policy=_policy(where, doc.get("policy", {})),
        mcu=_mcu(where, doc.get("mcu", {})),
        camera=_camera(where, doc.get("camera", {})),
        ui_port=parse_ui_port(doc.get("ui_port"), f"{where}: ui_port"),
    )
