"""Revocation and the replay window, at ingest: a revoked terminal's next frame is refused,
a frame sealed longer ago than the window is refused, both counted per terminal; neither
stored nor acknowledged. Forgeries still count as forgeries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import REPLAY_WINDOW_MS, Outgoing, Position, ServerEndpoint
from server.ingest import Ingest
from server.keyring import StoreKeyRing
from server.sqlite_store import SqliteStore

from .support import SERVER_KEY, T0, Terminal, device_key, device_record, fix

NOW_MS = T0 + 60_000


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[SqliteStore, Ingest, list[Outgoing], Terminal]]:
    store = SqliteStore(tmp_path / "yijing.db")
    alice = Terminal("alice")
    store.add_device(device_record(alice.identity), device_key(alice.identity))
    published: list[Outgoing] = []
    ingest = Ingest(
        store,
        StoreKeyRing(store),
        ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
        publish=published.append,
        clock=lambda: NOW_MS / 1000,
    )
    yield store, ingest, published, alice
    store.close()


def send(ingest: Ingest, terminal: Terminal, seq: int, *, sent_ms: int = T0) -> int:
    topic, payload = terminal.frame(Position(fix=fix(T0 + seq)), seq, sent_ms=sent_ms)
    return len(ingest.process([(topic, payload, NOW_MS)]))


def test_revoked_from_another_process_refuses_the_very_next_frame(
    tmp_path: Path, setup: tuple[SqliteStore, Ingest, list[Outgoing], Terminal]
) -> None:
    store, ingest, published, alice = setup
    assert send(ingest, alice, 1) == 1
    # `yijing provision revoke` writes through its own connection to the same file.
    other = SqliteStore(tmp_path / "yijing.db")
    other.revoke_device("alice", at_ms=NOW_MS, reason="lost on patrol")
    other.close()
    acks_before = len(published)

    assert send(ingest, alice, 2) == 0

    assert store.frame("alice", 2) is None
    assert len(published) == acks_before  # not acknowledged: nothing was stored
    assert ingest.stats.rejected[("alice", "Revoked: party")] == 1
    day = store.rejections(device_id="alice", first_day="2000-01-01", last_day="2100-01-01")
    assert [(r[2], r[3]) for r in day] == [("Revoked: party", 1)]


def test_a_forgery_for_a_revoked_terminal_counts_as_a_forgery(
    setup: tuple[SqliteStore, Ingest, list[Outgoing], Terminal],
) -> None:
    store, ingest, _, _ = setup
    store.revoke_device("alice", at_ms=NOW_MS, reason="stolen")
    impostor = Terminal("alice")  # other keys, same name

    assert send(ingest, impostor, 1) == 0

    assert ingest.stats.rejected == {("alice", "BadTag: tag"): 1}


def test_a_frame_sealed_before_the_replay_window_is_refused(
    setup: tuple[SqliteStore, Ingest, list[Outgoing], Terminal],
) -> None:
    store, ingest, published, alice = setup
    old = NOW_MS - REPLAY_WINDOW_MS - 1

    assert send(ingest, alice, 1, sent_ms=old) == 0
    assert send(ingest, alice, 2, sent_ms=NOW_MS - REPLAY_WINDOW_MS + 60_000) == 1

    assert store.frame("alice", 1) is None
    assert ingest.stats.rejected == {("alice", "Stale: sent_ms"): 1}
    assert len(published) == 1  # the one stored frame's ack


def test_revoking_an_unknown_terminal_names_it(
    setup: tuple[SqliteStore, Ingest, list[Outgoing], Terminal],
) -> None:
    store, *_ = setup
    from server.errors import StoreError

    with pytest.raises(StoreError, match="no terminal 'ghost'"):
        store.revoke_device("ghost", at_ms=NOW_MS, reason="")
