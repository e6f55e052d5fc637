"""``yijing account``: add, list, disable, passwd — with the password from standard input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from server.accounts import Accounts, AccountStore, SignInFailed
from server.accounts.passwords import Passwords
from yijing.cli import main

from .support import CHEAP, PASSWORD


def run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


def test_add_list_disable_passwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data", str(tmp_path)]
    add = ["account", "add", "li", "--role", "officer", "--scope", "ft-s1", "--password-stdin"]
    assert run(monkeypatch, add + data, PASSWORD + "\n") == 0
    assert run(monkeypatch, add + data, PASSWORD + "\n") == 1  # taken
    assert "taken" in capsys.readouterr().err
    short = ["account", "add", "wu", "--role", "admin", "--password-stdin", *data]
    assert run(monkeypatch, short, "short\n") == 1
    assert "password: at least 10" in capsys.readouterr().err
    assert run(monkeypatch, ["account", "list", "--json", *data]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["scope"] == "ft-s1"

    store = AccountStore(tmp_path / "accounts.db")
    accounts = Accounts(store, passwords=Passwords(CHEAP))
    session = accounts.sign_in("li", PASSWORD)
    assert (
        run(
            monkeypatch,
            ["account", "passwd", "li", "--password-stdin", *data],
            "another password\n",
        )
        == 0
    )
    assert accounts.session(session.session_id) is None
    accounts.sign_in("li", "another password")
    assert run(monkeypatch, ["account", "disable", "li", *data]) == 0
    with pytest.raises(SignInFailed):
        accounts.sign_in("li", "another password")
    store.close()
