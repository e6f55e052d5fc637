"""``yijing audit``: read and check the audit trail of people's actions (``server.audit``).

``verify`` walks the hash chain of ``DIR/audit.db`` and prints how many entries hold and the
head hash (write it down: a later head that does not descend from it means entries were cut
off the end); it exits 1 and names the first broken entry if anything was edited, inserted or
removed. ``list`` prints the entries, oldest first. Both read beside a running server (WAL).

example:
  yijing audit verify --data ./var/server
  yijing audit list --data ./var/server --since 120 --limit 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

EXAMPLE = (
    "example:\n"
    "  yijing audit verify --data ./var/server\n"
    "  yijing audit list --data ./var/server --since 120 --limit 50 --json"
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``yijing audit``, added to the ``yijing`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "audit",
        help="check or list the audit trail (who watched, dispatched, checked, exported)",
        description="The server's append-only, hash-chained audit trail of people's actions.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    data = {"type": Path, "default": Path("var/server"), "help": "the server's data folder"}
    v = sub.add_parser("verify", help="check every entry's hash and link; exit 1 if broken")
    v.add_argument("--data", **data)  # type: ignore[arg-type]
    v.set_defaults(func=verify)
    ls = sub.add_parser("list", help="the entries, oldest first")
    ls.add_argument("--data", **data)  # type: ignore[arg-type]
    ls.add_argument("--since", type=int, default=0, metavar="SEQ", help="after this entry")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ls.add_argument("--json", action="store_true", help="one JSON object a line")
    ls.set_defaults(func=list_entries)
    return p


def _open(data: Path) -> Any:
    from server.audit import AuditLog
    from server.errors import ConfigError

    path = data / "audit.db"
    if not path.is_file():
        raise ConfigError(f"no audit trail at {path} (is --data the server's data folder?)")
    return AuditLog(path)


def verify(args: argparse.Namespace) -> int:
    trail = _open(args.data)
    try:
        result = trail.verify()
    finally:
        trail.close()
    if result.ok:
        print(f"audit trail intact: {result.entries} entries, head {result.head}")
        return 0
    print(
        f"audit trail BROKEN at entry {result.broken_at}: {result.reason} "
        f"({result.entries} entries hold before it, last good hash {result.head})",
        file=sys.stderr,
    )
    return 1


def list_entries(args: argparse.Namespace) -> int:
    trail = _open(args.data)
    try:
        entries = trail.entries(since_seq=args.since, limit=max(1, args.limit))
    finally:
        trail.close()
    for e in entries:
        if args.json:
            print(json.dumps(e.to_json(), ensure_ascii=False))
        else:
            when = dt.datetime.fromtimestamp(e.at_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            print(f"{e.seq:>7}  {when}  {e.actor:<28} {e.action:<16} {e.subject}  {e.detail}")
    return 0
