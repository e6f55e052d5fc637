"""``yijing account``: people's accounts in the server's ``accounts.db`` (``server.accounts``).

``add`` makes an account with a role and, optionally, a scope (a unit whose subtree the
person may see) and, for a volunteer, their volunteer id; ``list`` shows them; ``disable``
stops an account and ends its sessions; ``passwd`` sets a new password and ends its sessions.
Passwords are asked for twice without echo, or read from the first line of standard input
with ``--password-stdin`` (for scripts; never on the command line, where ``ps`` shows it).
Safe beside a running server (WAL; the server reads accounts at every sign-in).

example:
  yijing account add li --role officer --scope ft-s1 --data ./var/server
  yijing account list --data ./var/server
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

EXAMPLE = (
    "example:\n"
    "  yijing account add li --role officer --scope ft-s1 --name '李警官' --data ./var/server\n"
    "  yijing account add chen --role volunteer --scope ft-s1 --volunteer chen\n"
    "  printf '%s\\n' \"$PASSWORD\" | yijing account add bot-admin --role admin --password-stdin\n"
    "  yijing account list --data ./var/server\n"
    "  yijing account disable li --data ./var/server\n"
    "  yijing account passwd li --data ./var/server"
)
ROLES = ["volunteer", "officer", "inspector", "admin"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``yijing account``, added to the ``yijing`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "account",
        help="people's accounts: add, list, disable, set a password",
        description="People's accounts (role, scope, password) in the server's accounts.db.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")

    def command(name: str, help: str, example: str) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        c.add_argument(
            "--data", type=Path, default=Path("var/server"), help="the server's data folder"
        )
        return c

    a = command("add", "make an account", "yijing account add li --role officer --scope ft-s1")
    a.add_argument("name", help="username: letters, digits, '.', '_', '-'; at most 64")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument(
        "--scope", default=None, help="unit id whose subtree they see (default: everything)"
    )
    a.add_argument("--volunteer", default=None, help="for a volunteer: their volunteer id")
    a.add_argument("--name", dest="display_name", default=None, help="display name")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.set_defaults(func=add)
    ls = command("list", "list the accounts", "yijing account list --json")
    ls.add_argument("--json", action="store_true", help="one JSON object a line")
    ls.set_defaults(func=list_accounts)
    d = command("disable", "disable an account and end its sessions", "yijing account disable li")
    d.add_argument("name")
    d.set_defaults(func=disable)
    pw = command("passwd", "set a new password and end the sessions", "yijing account passwd li")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw.set_defaults(func=passwd)
    return p


def _accounts(data: Path) -> Any:
    from server.accounts import Accounts, AccountStore

    return Accounts(AccountStore(data / "accounts.db"))


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        from server.accounts import InvalidField

        raise InvalidField("password", "the two entries differ")
    return first


def add(args: argparse.Namespace) -> int:
    password = _password(args)
    accounts = _accounts(args.data)
    try:
        account = accounts.create(
            args.name,
            password,
            role=args.role,
            display_name=args.display_name,
            scope=args.scope,
            volunteer_id=args.volunteer,
        )
    finally:
        accounts.store.close()
    scope = account.scope or "the whole organisation"
    print(f"account {account.username} ({account.role.value}, {scope}) added")
    return 0


def list_accounts(args: argparse.Namespace) -> int:
    accounts = _accounts(args.data)
    try:
        found = accounts.store.all()
    finally:
        accounts.store.close()
    for a in found:
        if args.json:
            print(json.dumps(a.to_json(), ensure_ascii=False))
        else:
            state = "disabled" if a.disabled else "active"
            scope = a.scope or "*"
            print(f"{a.username:<20} {a.role.value:<10} {scope:<12} {state:<8} {a.display_name}")
    return 0


def disable(args: argparse.Namespace) -> int:
    accounts = _accounts(args.data)
    try:
        accounts.change(args.name, disabled=True)
    finally:
        accounts.store.close()
    print(f"account {args.name} disabled; its sessions ended")
    return 0


def passwd(args: argparse.Namespace) -> int:
    password = _password(args)
    accounts = _accounts(args.data)
    try:
        accounts.change(args.name, password=password)
    finally:
        accounts.store.close()
    print(f"password of {args.name} changed; its sessions ended")
    return 0
