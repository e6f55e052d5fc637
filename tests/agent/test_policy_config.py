"""The reporting policy and the agent's configuration: file, options, and clear errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.cli import add_arguments, resolve
from agent.config import ConfigError, load_config
from agent.policy import Reporter, ReportingPolicy
from agent.sim_gps import offset
from protocol import ConfigPush, Fix, Setting

T0 = 1_763_900_000_000


def at(second: float, north_m: float = 0.0, speed: float | None = None) -> Fix:
    lat, lon = offset(22.5431, 114.0579, north_m, 0.0)
    return Fix(time_ms=int(T0 + second * 1000), lat=lat, lon=lon, speed_mps=speed)


def kept(policy: ReportingPolicy, fixes: list[Fix]) -> list[int]:
    reporter = Reporter(policy)
    out = []
    for f in fixes:
        if reporter.should_record(f):
            reporter.recorded(f)
            out.append((f.time_ms - T0) // 1000)
    return out


def test_walking_is_reported_at_the_moving_interval() -> None:
    walk = [at(s, north_m=1.3 * s, speed=1.3) for s in range(0, 31)]
    assert kept(ReportingPolicy(interval_moving_s=5, min_distance_m=5), walk) == [
        0,
        5,
        10,
        15,
        20,
        25,
        30,
    ]


def test_standing_still_is_reported_at_the_still_interval() -> None:
    still = [at(s, speed=0.0) for s in range(0, 181)]
    assert kept(ReportingPolicy(interval_moving_s=5, interval_still_s=60), still) == [
        0,
        60,
        120,
        180,
    ]


def test_jitter_below_the_minimum_distance_is_not_movement() -> None:
    jitter = [at(s, north_m=(s % 2) * 3.0, speed=0.1) for s in range(0, 61)]
    assert kept(ReportingPolicy(min_distance_m=10, interval_still_s=60), jitter) == [0, 60]


def test_repeated_or_older_fixes_are_not_recorded_again() -> None:
    assert kept(ReportingPolicy(), [at(10), at(10), at(5)]) == [10]


def test_a_config_push_changes_the_policy() -> None:
    push = ConfigPush(
        version=3,
        settings=((Setting.INTERVAL_MOVING_S, 2), (Setting.DISK_BUDGET_MB, 8)),
    )
    policy = ReportingPolicy().updated(push)
    assert policy.interval_moving_s == 2 and policy.disk_budget_mb == 8
    assert policy.interval_still_s == ReportingPolicy().interval_still_s


def test_policy_refuses_non_positive_intervals() -> None:
    with pytest.raises(ValueError, match="interval_moving_s"):
        ReportingPolicy(interval_moving_s=0)


# --- configuration ------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_config_file_is_read_and_options_win(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        'enrolment = "/etc/yijing/ft-1.json"\n'
        '[source]\nkind = "nmea"\nnmea_port = "/dev/ttyS1"\nnmea_baud = 4800\n'
        "[policy]\ninterval_moving_s = 3\nheartbeat_s = 30\n"
    )
    config = resolve(parse("--config", str(path), "--heartbeat", "10"))
    assert config.enrolment == Path("/etc/yijing/ft-1.json")
    assert (config.source.kind, config.source.nmea_port, config.source.nmea_baud) == (
        "nmea",
        "/dev/ttyS1",
        4800,
    )
    assert config.policy.interval_moving_s == 3 and config.policy.heartbeat_s == 10
    config = resolve(parse("--config", str(path), "--gpsd", "10.0.0.2:2947"))
    assert (config.source.kind, config.source.gpsd) == ("gpsd", "10.0.0.2:2947")


def test_the_documented_example_config_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "agent.example.toml"
    config = load_config(example)
    assert config.source.kind in ("gpsd", "nmea", "simulate")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[policy]\ninterval_moving_s = 'fast'\n", "policy.interval_moving_s"),
        ("[policy]\nbogus = 1\n", "policy.bogus"),
        ("[policy]\nheartbeat_s = -1\n", "heartbeat_s"),
        ("[source]\nkind = 'radio'\n", "source.kind"),
        ("[source]\ngpsd = 'nohost'\n", "source.gpsd"),
        ("[source]\nsimulate = [99, 0]\n", "source.simulate"),
        ("[source]\nnmea_baud = 9600.5\n", "source.nmea_baud"),
        ("colour = 'red'\n", "colour"),
        ("source = 3\n", "source"),
        ("this is not toml", "not TOML"),
    ],
)
def test_bad_config_names_what_is_wrong(tmp_path: Path, text: str, names: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=names.replace("[", r"\[")) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "absent.toml")


def test_mcu_from_file_and_option(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[mcu]\nport = "/dev/ttyACM0"\nbaud = 57600\n')
    config = resolve(parse("--config", str(path)))
    assert (config.mcu.port, config.mcu.baud) == ("/dev/ttyACM0", 57600)
    config = resolve(parse("--config", str(path), "--mcu", "/dev/ttyACM1", "--mcu-baud", "9600"))
    assert (config.mcu.port, config.mcu.baud) == ("/dev/ttyACM1", 9600)
    assert resolve(parse()).mcu.port is None
    path.write_text("[mcu]\nspeed = 1\n")
    with pytest.raises(ConfigError, match=r"mcu\.speed"):
        load_config(path)


def test_camera_from_file_and_option(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[camera]\nsource = "/dev/video0"\nperiodic_s = 60\nbytes_per_hour = 500000\n')
    config = resolve(parse("--config", str(path)))
    assert (config.camera.source, config.camera.periodic_s, config.camera.bytes_per_hour) == (
        "/dev/video0",
        60.0,
        500_000,
    )
    assert resolve(parse("--config", str(path), "--camera", "rtsp://cam/1")).camera.source == (
        "rtsp://cam/1"
    )
    path.write_text("[camera]\nperiodic_s = 0\n")
    with pytest.raises(ConfigError, match="must be positive"):
        load_config(path)
