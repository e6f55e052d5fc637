"""Every command has --help with an example, and bad options say what was wrong."""

from __future__ import annotations

import pytest

from yijing.cli import main

COMMANDS = [
    ["server"],
    ["agent"],
    ["bridge"],
    ["demo"],
    ["provision"],
    ["provision", "device"],
    ["provision", "token"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "yijing " + command[0] in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--port", "http"], "port must be a number"),
        (["agent", "--simulate", "91,0"], "not a valid position"),
        (["agent", "--interval-moving", "-1"], "must not be negative"),
        (["server", "--port", "70000"], "outside 0-65535"),
    ],
)
def test_bad_options_name_the_problem(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_agent_without_enrolment_is_a_clear_error(capsys) -> None:
    assert main(["agent", "--simulate", "22.5,114.0"]) == 1
    assert "enrolment bundle is required" in capsys.readouterr().err


def test_agent_with_a_broken_enrolment_names_the_field(tmp_path, capsys) -> None:
    bundle = tmp_path / "ft.json"
    bundle.write_text('{"format": "yijing-enrolment/1"}')
    assert main(["agent", "--enrolment", str(bundle), "--simulate", "22.5,114.0"]) == 1
    assert "device_id: is missing" in capsys.readouterr().err
