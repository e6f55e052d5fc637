"""``yijing audit``: read and check the audit trail of people's actions (``server.audit``).

``verify`` walks the hash chain of ``DIR/audit.db`` and prints how many entries hold and the
head hash (write it down: a later head that does not descend from it means entries were cut
off the end); it exits 1 and names the first broken entry if anything was edited, inserted or
removed. ``list`` prints the entries, oldest first. ``prove`` shows, for a stored fix, the
evidence that the terminal's own key produced it: the frame exactly as received, the
checkpoint the terminal signed with Ed25519 listing that frame's digest, and the registered
public key — everything a third party needs to check it without trusting the server. All read
beside a running server (WAL).

example:
  yijing audit verify --data ./var/server
  yijing audit list --data ./var/server --since 120 --limit 50
  yijing audit prove --data ./var/server --device ft-0042 --at 1763900000000
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
    "  yijing audit list --data ./var/server --since 120 --limit 50 --json\n"
    "  yijing audit prove --data ./var/server --device ft-0042 --at 1763900000000\n"
    "  yijing audit prove --data ./var/server --device ft-0042 --seq 4711 --json"
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
    pr = sub.add_parser("prove", help="the terminal-signed evidence behind one stored fix")
    pr.add_argument("--data", **data)  # type: ignore[arg-type]
    pr.add_argument("--device", required=True, help="the terminal's id")
    which = pr.add_mutually_exclusive_group(required=True)
    which.add_argument("--seq", type=int, help="the frame's sequence number")
    which.add_argument("--at", type=int, metavar="MS", help="a fix's time, ms since the epoch")
    pr.add_argument("--json", action="store_true", help="the evidence as one JSON object")
    pr.set_defaults(func=prove)
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


def prove(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from protocol import Checkpoint, ProtocolError, decode
    from protocol.auth import prove as check
    from server.errors import ConfigError
    from server.phones.frames import phone_evidence
    from server.sqlite_store import SqliteStore

    path = args.data / "yijing.db"
    if not path.is_file():
        raise ConfigError(f"no store at {path} (is --data the server's data folder?)")
    store = SqliteStore(path)
    try:
        seq = args.seq
        if seq is None:
            points = store.track(args.device, since_ms=args.at, until_ms=args.at + 1, limit=1)
            if not points:
                print(f"no stored fix of {args.device} at {args.at}", file=sys.stderr)
                return 1
            seq = points[0].seq
        payload = store.frame(args.device, seq)
        if payload is None:
            print(f"no stored frame {args.device} #{seq}", file=sys.stderr)
            return 1
        try:
            frame = decode(payload)
        except ProtocolError as exc:
            app = phone_evidence(bytes(payload))
            if app is not None:
                print(
                    f"NOT PROVEN: {args.device} #{seq} is a phone report ({app}), kept as the "
                    "app sent it: phone apps sign nothing, so it is the phone's word only "
                    "(lower trust, docs/metrics.md). As stored: "
                    f"{bytes(payload).decode(errors='replace')}",
                    file=sys.stderr,
                )
            else:
                print(f"NOT PROVEN: the stored frame does not decode: {exc}", file=sys.stderr)
            return 1
        env = frame.envelope
        if (env.party, env.seq) != (args.device, seq):
            print(
                f"NOT PROVEN: the frame stored as {args.device} #{seq} says it is "
                f"{env.party} #{env.seq}",
                file=sys.stderr,
            )
            return 1
        ckpt_payload = store.checkpoint_covering(args.device, seq)
        if ckpt_payload is None:
            print(
                f"no checkpoint covers {args.device} #{seq} yet: the terminal signs one every "
                "64 frames (and on shutdown); the frame's MAC alone is not proof to a third party",
                file=sys.stderr,
            )
            return 1
        checkpoint = decode(ckpt_payload).envelope.message
        assert isinstance(checkpoint, Checkpoint)
        key = store.key(args.device, frame.envelope.key_id)
        if key is None:
            key_id = frame.envelope.key_id
            print(f"no registered key {key_id} for {args.device}", file=sys.stderr)
            return 1
        public = Ed25519PublicKey.from_public_bytes(key.public_key)
        try:
            proof = check(payload, frame, checkpoint, public)
        except ProtocolError as exc:
            print(f"NOT PROVEN: {exc}", file=sys.stderr)
            return 1
    finally:
        store.close()
    doc = {
        "device": proof.party,
        "key_id": proof.key_id,
        "seq": proof.seq,
        "public_key": key.public_key.hex(),
        "frame": bytes(payload).hex(),
        "frame_digest": proof.frame_digest.hex(),
        "checkpoint_frame": bytes(ckpt_payload).hex(),
        "checkpoint_range": [checkpoint.first_seq, checkpoint.last_seq],
        "signature": checkpoint.signature.hex(),
        "message": type(frame.envelope.message).__name__,
        "verdict": "proven",
    }
    if args.json:
        print(json.dumps(doc))
    else:
        print(
            f"PROVEN: {proof.party} #{proof.seq} ({doc['message']}) was produced by key "
            f"{proof.key_id} ({doc['public_key']}): its digest {doc['frame_digest']} is listed "
            f"in the checkpoint over #{checkpoint.first_seq}-#{checkpoint.last_seq} that this "
            "key signed (Ed25519). --json prints the bytes to check it independently."
        )
    return 0
