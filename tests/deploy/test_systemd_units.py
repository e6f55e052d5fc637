"""The systemd units in deploy/systemd: well formed (``systemd-analyze verify`` where the
machine has it), hardened, and starting ``yijing server`` / ``yijing agent`` with flags that
exist — a renamed flag must fail here, not on a station's first boot."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/yijing/venv/bin/yijing"  # where the units expect the installed command
HARDENING = {
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "Restart": "on-failure",
}
CASES = [
    ("yijing-server.service", "server", "/var/lib/yijing", "server.env.example"),
    ("yijing-agent.service", "agent", "/var/lib/yijing-agent", "agent.env.example"),
]


def unit(name: str) -> configparser.RawConfigParser:
    # strict=False: a repeated key (DeviceAllow=, SystemCallFilter=) is legal in a unit.
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def flags_of(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text))


def help_of(command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "yijing.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def args_in_env_example(name: str, variable: str) -> list[list[str]]:
    """Every ``VARIABLE=…`` line of an environment file example, commented out or not."""
    found = []
    for line in (UNITS / name).read_text().splitlines():
        match = re.match(rf"#?\s*{variable}=(.*)$", line.strip())
        if match:
            found.append(shlex.split(match.group(1)))
    return found


@pytest.mark.parametrize(("name", "command", "data", "env_example"), CASES)
def test_unit_is_hardened_and_runs_the_command(
    name: str, command: str, data: str, env_example: str
) -> None:
    parsed = unit(name)
    assert parsed.sections() == ["Unit", "Service", "Install"]
    service = parsed["Service"]
    assert parsed["Unit"]["Description"]
    assert parsed["Install"]["WantedBy"] == "multi-user.target"
    for key, value in HARDENING.items():
        assert service.get(key) == value, (name, key)
    assert service["User"] == "yijing"
    assert service["ReadWritePaths"] == data
    assert f"/var/lib/{service['StateDirectory']}" == data
    assert int(service["LimitNOFILE"]) >= 4096
    assert service["CapabilityBoundingSet"] == ""
    argv = shlex.split(service["ExecStart"])
    assert argv[:2] == [INSTALLED, command]
    assert argv[argv.index("--data") + 1] == data
    assert service["EnvironmentFile"].lstrip("-") == f"/etc/yijing/{command}.env"


def test_agent_reaches_serial_ports_and_the_camera_only() -> None:
    service = unit("yijing-agent.service")["Service"]
    assert set(service["SupplementaryGroups"].split()) == {"dialout", "video"}
    assert service["DevicePolicy"] == "closed"
    text = (UNITS / "yijing-agent.service").read_text()
    allowed = set(re.findall(r"^DeviceAllow=(\S+) rw$", text, re.MULTILINE))
    assert allowed == {"char-ttyUSB", "char-ttyACM", "char-ttyS", "char-video4linux"}
    assert unit("yijing-server.service")["Service"]["PrivateDevices"] == "yes"


@pytest.mark.parametrize(("name", "command", "data", "env_example"), CASES)
def test_every_flag_used_exists(name: str, command: str, data: str, env_example: str) -> None:
    known = flags_of(help_of(command))
    assert "--data" in known  # the help parsed at all
    variable = f"YIJING_{command.upper()}_ARGS"
    argv = shlex.split(unit(name)["Service"]["ExecStart"])
    assert f"${variable}" in argv
    examples = args_in_env_example(env_example, variable)
    assert examples, f"{env_example} shows no {variable}"
    for args in [argv[2:], *examples]:
        used = {a.split("=", 1)[0] for a in args if a.startswith("--")}
        assert used <= known, f"{name}/{env_example}: unknown flags {sorted(used - known)}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify wants ExecStart's program to exist: point it at this checkout's command.
    command = Path(sys.executable).with_name("yijing")
    assert command.exists(), command
    for name, *_ in CASES:
        text = (UNITS / name).read_text().replace(INSTALLED, str(command))
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / name) for name, *_ in CASES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Warnings about our own units (an unknown key, a bad value) fail too, not only errors;
    # lines about the host's other units are not ours to judge.
    ours = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if any(name in line for name, *_ in CASES)
    ]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr
