"""Ingest, driven directly: verify, store once, acknowledge after the commit, reject alone."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from protocol import (
    BadTag,
    Event,
    EventKind,
    Outgoing,
    Position,
    PositionBatch,
    Presence,
    PresenceKind,
    ServerEndpoint,
    StoredAck,
    decode,
    prove,
)
from server.errors import StoreError
from server.ingest import FUTURE_TOLERANCE_MS, Accepted, Ingest
from server.keyring import StoreKeyRing
from server.live import Hub, LiveState
from server.sqlite_store import SqliteStore
from server.store import DeviceKey, FixFlag, IncomingFrame, Outcome
from tests.helpers import wait_until
from yijing.mqtt import NotConnected

from .support import SERVER_KEY, T0, Terminal, device_key, device_record, fix

NOW_S = (T0 + 60_000) / 1000


@dataclass
class Harness:
    store: SqliteStore
    keyring: StoreKeyRing
    ingest: Ingest
    published: list[Outgoing]
    accepted: list[list[Accepted]]

    def process(self, *frames: tuple[str, bytes], received_ms: int = T0 + 500) -> list[Accepted]:
        return self.ingest.process([(topic, payload, received_ms) for topic, payload in frames])

    def acks(self, terminal: Terminal) -> list[StoredAck]:
        """The acks published to ``terminal``, checked as the terminal checks them."""
        found = []
        for out in self.published:
            if out.topic.split("/")[3] != terminal.device_id:
                continue
            message = terminal.endpoint.receive(out.topic, out.payload).message
            assert isinstance(message, StoredAck)
            found.append(message)
        return found


@pytest.fixture
def alice() -> Terminal:
    return Terminal("alice")


@pytest.fixture
def bob() -> Terminal:
    return Terminal("bob")


def register(store, *terminals: Terminal) -> None:
    for t in terminals:
        store.add_device(device_record(t.identity), device_key(t.identity))


@pytest.fixture
def harness(tmp_path: Path, alice: Terminal, bob: Terminal) -> Iterator[Harness]:
    store = SqliteStore(tmp_path / "yijing.db")
    register(store, alice, bob)
    keyring = StoreKeyRing(store)
    published: list[Outgoing] = []
    accepted: list[list[Accepted]] = []
    ingest = Ingest(
        store,
        keyring,
        ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
        publish=published.append,
        on_accepted=accepted.append,
        clock=lambda: NOW_S,
    )
    yield Harness(store, keyring, ingest, published, accepted)
    store.close()


def pos(k: int) -> Position:
    return Position(fix=fix(T0 + k * 1000))


# --- the good path ------------------------------------------------------------------------------


def test_valid_frames_are_stored_and_acknowledged(harness: Harness, alice: Terminal) -> None:
    frames = [alice.frame(pos(k), k) for k in (1, 2, 3, 5)]
    accepted = harness.process(*frames)

    assert [(a.device_id, a.seq) for a in accepted] == [("alice", s) for s in (1, 2, 3, 5)]
    for (_, payload), seq in zip(frames, (1, 2, 3, 5), strict=True):
        assert harness.store.frame("alice", seq) == payload  # the exact bytes
    (ack,) = harness.acks(alice)
    assert ack.ranges == ((1, 3), (5, 5))  # exactly the stored seqs; 4 never came
    assert not ack.covers(4)
    (out,) = harness.published
    assert out.topic == "yj/1/down/alice/ack"
    assert decode(out.payload).envelope.sent_ms == T0 + 60_000
    assert harness.accepted == [accepted]
    stats = harness.ingest.stats
    assert (stats.received, stats.stored, stats.acks_sent, stats.batches) == (4, 4, 1, 1)
    assert not stats.rejected


def test_one_ack_per_terminal_per_batch(harness: Harness, alice: Terminal, bob: Terminal) -> None:
    harness.process(
        alice.frame(pos(1), 1), bob.frame(pos(1), 1), alice.frame(pos(2), 2), bob.frame(pos(3), 7)
    )
    assert [a.ranges for a in harness.acks(alice)] == [((1, 2),)]
    assert [a.ranges for a in harness.acks(bob)] == [((1, 1), (7, 7))]
    assert len(harness.published) == 2
    # An ack is MAC'd under the terminal's own key: another key does not accept it.
    alice_ack = next(o for o in harness.published if "/alice/" in o.topic)
    with pytest.raises(BadTag):
        Terminal("alice").endpoint.receive(alice_ack.topic, alice_ack.payload)


def test_more_gaps_than_one_ack_holds_are_acked_in_several(
    harness: Harness, alice: Terminal
) -> None:
    # 600 odd seqs: 600 one-seq ranges in one batch, past one StoredAck's 512. Every one is
    # acknowledged (in two acks), and the batch is not lost to a validation error.
    seqs = list(range(1, 1201, 2))
    harness.process(*(alice.frame(pos(k), k) for k in seqs))
    acks = harness.acks(alice)
    assert [len(a.ranges) for a in acks] == [512, 88]
    assert all(any(a.covers(s) for a in acks) for s in seqs)
    assert not any(a.covers(2) for a in acks)
    assert harness.ingest.stats.stored == 600


def test_a_failing_batch_does_not_end_the_ingest_thread(
    harness: Harness, alice: Terminal, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []
    real = harness.ingest.process

    def flaky(batch: list[tuple[str, bytes, int]]) -> list[Accepted]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(batch)

    harness.ingest.process = flaky  # type: ignore[method-assign]
    harness.ingest.start()
    try:
        harness.ingest.submit(*alice.frame(pos(1), 1))
        wait_until(lambda: len(calls) == 1, 5, "the first batch")
        harness.ingest.submit(*alice.frame(pos(2), 2))
        wait_until(lambda: harness.store.frame("alice", 2) is not None, 5, "the next batch")
    finally:
        harness.ingest.stop()
    assert "batch of 1 failed" in caplog.text


def test_positions_reach_the_store(harness: Harness, alice: Terminal) -> None:
    batch = PositionBatch(fixes=(fix(T0 + 1000), fix(T0 + 2000)))
    # The agent records an event's fix in its track as well; the event's own copy stays in
    # its frame, so the moment is not counted twice.
    event = Event(kind=EventKind.SOS, time_ms=T0 + 3000, fix=fix(T0 + 3000))
    harness.process(alice.frame(batch, 1), alice.frame(event, 2), alice.frame(pos(9), 3))
    track = harness.store.track("alice")
    assert [(p.seq, p.fix.time_ms - T0) for p in track] == [(1, 1000), (1, 2000), (3, 9000)]
    assert harness.store.frame("alice", 2) is not None


def test_checkpoint_frames_are_stored_for_proofs(harness: Harness, alice: Terminal) -> None:
    outs = [alice.endpoint.seal(pos(k), seq=k, sent_ms=T0) for k in (1, 2, 3)]
    ckpt = alice.endpoint.checkpoint(first_seq=1, digests=b"".join(o.digest for o in outs))
    harness.process(*[(o.topic, o.payload) for o in outs], alice.frame(ckpt, 4))
    stored = harness.store.checkpoint_covering("alice", 2)
    assert stored is not None
    checkpoint = decode(stored).envelope.message
    frame = harness.store.frame("alice", 2)
    assert frame is not None
    proof = prove(frame, decode(frame), checkpoint, alice.identity.public_key)
    assert proof.seq == 2
    assert harness.acks(alice)[0].ranges == ((1, 4),)


# --- duplicates and conflicts ------------------------------------------------------------------


def test_duplicate_batch_is_acknowledged_again_but_stored_once(
    harness: Harness, alice: Terminal
) -> None:
    frames = [alice.frame(pos(k), k) for k in (1, 2, 3)]
    harness.process(*frames)
    again = harness.process(*frames, received_ms=T0 + 90_000)

    assert again == []  # nothing new for the live feed
    assert len(harness.accepted) == 1  # and on_accepted is not called for nothing
    assert [a.ranges for a in harness.acks(alice)] == [((1, 3),), ((1, 3),)]
    assert harness.store.frame_count("alice") == 3
    assert harness.store.fix_count("alice") == 3
    stats = harness.ingest.stats
    assert (stats.stored, stats.duplicates, stats.conflicts, stats.acks_sent) == (3, 3, 0, 2)


def test_duplicate_within_one_batch(harness: Harness, alice: Terminal) -> None:
    frame = alice.frame(pos(1), 1)
    accepted = harness.process(frame, frame)
    assert [a.seq for a in accepted] == [1]
    assert [a.ranges for a in harness.acks(alice)] == [((1, 1),)]
    assert harness.ingest.stats.duplicates == 1


def test_conflict_keeps_the_first_copy_and_is_still_acknowledged(
    harness: Harness, alice: Terminal
) -> None:
    first = alice.frame(pos(1), 1)
    second = alice.frame(pos(2), 1)  # same seq, genuinely sealed, different bytes
    harness.process(first)
    harness.process(second)
    assert harness.store.frame("alice", 1) == first[1]
    assert harness.ingest.stats.conflicts == 1
    assert [a.ranges for a in harness.acks(alice)] == [((1, 1),), ((1, 1),)]


# --- rejections --------------------------------------------------------------------------------


def test_bad_frames_are_rejected_alone_and_counted(
    harness: Harness, alice: Terminal, bob: Terminal
) -> None:
    good1, good2 = alice.frame(pos(1), 1), alice.frame(pos(2), 2)
    topic, payload = alice.frame(pos(3), 3)
    tampered = (topic, payload[:-1] + bytes([payload[-1] ^ 1]))  # one bit of the MAC
    ghost = Terminal("ghost")  # never registered
    unknown = ghost.frame(pos(1), 1)
    wrong_kind = ("yj/1/up/alice/evt", alice.frame(pos(4), 4)[1])  # a Position on evt
    wrong_party = ("yj/1/up/bob/pos", alice.frame(pos(5), 5)[1])  # alice's frame on bob's topic
    not_a_topic = ("somewhere/else", good1[1])
    garbage = ("yj/1/up/alice/pos", b"\x01\x01not msgpack at all, nor a frame")

    accepted = harness.process(
        tampered, good1, unknown, wrong_kind, wrong_party, not_a_topic, garbage, good2
    )

    assert [a.seq for a in accepted] == [1, 2]
    assert [a.ranges for a in harness.acks(alice)] == [((1, 2),)]
    assert harness.acks(bob) == []
    assert harness.store.frame_count() == 2
    rejected = harness.ingest.stats.rejected
    assert rejected == {
        ("alice", "BadTag: tag"): 1,
        ("ghost", "UnknownKey: key_id"): 1,
        ("alice", "TopicError: topic"): 1,
        ("bob", "TopicError: party"): 1,
        ("?", "TopicError: topic"): 1,
        ("alice", "MalformedFrame: "): 1,
    }
    assert harness.ingest.stats.received == 8


def test_rejections_are_counted_every_time(harness: Harness, alice: Terminal) -> None:
    ghost = Terminal("ghost")
    for seq in (1, 2, 3):
        harness.process(ghost.frame(pos(seq), seq))
    assert harness.ingest.stats.rejected[("ghost", "UnknownKey: key_id")] == 3
    assert harness.published == []
    assert harness.accepted == []
    # …and kept in the store per device and day, for the signature-failure flag.
    assert harness.store.rejections(device_id="ghost") == [
        ("ghost", time.strftime("%Y-%m-%d", time.gmtime((T0 + 500) / 1000)),
         "UnknownKey: key_id", 3)
    ]  # fmt: skip


def test_a_batch_of_only_bad_frames_stores_and_acks_nothing(
    harness: Harness, alice: Terminal
) -> None:
    topic, payload = alice.frame(pos(1), 1)
    assert harness.process((topic, payload[:10])) == []
    assert harness.published == []
    assert harness.store.frame_count() == 0


def test_a_device_registered_later_is_accepted(harness: Harness) -> None:
    late = Terminal("late")
    harness.process(late.frame(pos(1), 1))  # unknown: rejected (and the miss is cached)
    register(harness.store, late)
    harness.keyring.add(device_key(late.identity))  # what Server.register_device does
    assert [a.seq for a in harness.process(late.frame(pos(1), 1))] == [1]


# --- the offline will ----------------------------------------------------------------------------


def test_offline_will_reaches_live_feed_but_is_not_stored_or_acked(
    harness: Harness, alice: Terminal
) -> None:
    will = alice.endpoint.will(sent_ms=T0)
    returned = harness.process((will.topic, will.payload), alice.frame(pos(1), 1))

    assert [a.seq for a in returned] == [1]  # what was newly stored
    (batch,) = harness.accepted
    offline = [a for a in batch if a.seq == 0]
    assert len(offline) == 1
    assert offline[0].device_id == "alice"
    assert offline[0].message == Presence(kind=PresenceKind.OFFLINE)
    assert harness.store.frame_count() == 1
    assert harness.store.frame("alice", 0) is None
    assert [a.ranges for a in harness.acks(alice)] == [((1, 1),)]  # seq 0 is never acked


def test_will_alone(harness: Harness, alice: Terminal) -> None:
    will = alice.endpoint.will(sent_ms=T0)
    assert harness.process((will.topic, will.payload)) == []
    assert [[a.seq for a in batch] for batch in harness.accepted] == [[0]]
    assert harness.published == []
    assert harness.store.frame_count() == 0


def test_live_feed_keeps_arrival_order_of_wills_and_frames(
    harness: Harness, alice: Terminal, bob: Terminal
) -> None:
    alice_will = alice.endpoint.will(sent_ms=T0)
    bob_will = bob.endpoint.will(sent_ms=T0)
    heartbeat = Presence(kind=PresenceKind.HEARTBEAT)
    harness.process(
        alice.frame(pos(1), 1),
        (alice_will.topic, alice_will.payload),  # the old connection dropped...
        alice.frame(heartbeat, 2),  # ...and the terminal is back on a new one
        alice.frame(pos(1), 1),  # a resend: a duplicate, not news
        bob.frame(pos(1), 1),
        (bob_will.topic, bob_will.payload),
    )
    (batch,) = harness.accepted
    assert [(a.device_id, a.seq) for a in batch] == [
        ("alice", 1),
        ("alice", 0),
        ("alice", 2),
        ("bob", 1),
        ("bob", 0),
    ]


def test_a_will_then_a_frame_leaves_the_terminal_online(harness: Harness, alice: Terminal) -> None:
    live = LiveState(Hub())
    ingest = Ingest(
        harness.store,
        harness.keyring,
        ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
        publish=harness.published.append,
        on_accepted=live.apply,
    )
    will = alice.endpoint.will(sent_ms=T0)
    heartbeat = Presence(kind=PresenceKind.HEARTBEAT)
    ingest.process([(will.topic, will.payload, T0), (*alice.frame(heartbeat, 1), T0 + 5)])
    (state,) = live.snapshot()
    assert state["online"] is True
    ingest.process([(will.topic, will.payload, T0 + 10)])
    (state,) = live.snapshot()
    assert state["online"] is False


def test_a_forged_will_is_rejected(harness: Harness, alice: Terminal) -> None:
    impostor = Terminal("alice")  # alice's name, someone else's key
    will = impostor.endpoint.will(sent_ms=T0)
    harness.process((will.topic, will.payload))
    assert harness.accepted == []
    assert harness.ingest.stats.rejected == {("alice", "BadTag: tag"): 1}


# --- failures downstream -------------------------------------------------------------------------


class FailingStore:
    """A store that knows keys but cannot write."""

    def __init__(self, inner: SqliteStore) -> None:
        self._inner = inner
        self.attempts = 0

    def keys(self) -> list[DeviceKey]:
        return self._inner.keys()

    def key(self, device_id: str, key_id: int) -> DeviceKey | None:
        return self._inner.key(device_id, key_id)

    def revoked(self, *, after_rowid: int = 0) -> dict[str, tuple[int, int]]:
        return self._inner.revoked(after_rowid=after_rowid)

    def store_frames(self, frames: Sequence[IncomingFrame]) -> list[Outcome]:
        self.attempts += 1
        raise StoreError("disk full")


def test_store_failure_means_no_ack(harness: Harness, alice: Terminal) -> None:
    failing = FailingStore(harness.store)
    published: list[Outgoing] = []
    accepted: list[list[Accepted]] = []
    ingest = Ingest(
        failing,  # type: ignore[arg-type]
        StoreKeyRing(failing),  # type: ignore[arg-type]
        ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
        publish=published.append,
        on_accepted=accepted.append,
        clock=lambda: NOW_S,
    )
    with pytest.raises(StoreError):
        ingest.process([(*alice.frame(pos(1), 1), T0)])
    assert failing.attempts == 1
    assert published == []  # the terminal keeps the frame and sends it again
    assert accepted == []
    assert ingest.stats.acks_sent == 0


def test_store_failure_in_the_ingest_thread_is_survived(harness: Harness, alice: Terminal) -> None:
    failing = FailingStore(harness.store)
    published: list[Outgoing] = []
    ingest = Ingest(
        failing,  # type: ignore[arg-type]
        StoreKeyRing(failing),  # type: ignore[arg-type]
        ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
        publish=published.append,
        batch_wait_s=0,
        clock=lambda: NOW_S,
    )
    ingest.start()
    try:
        ingest.submit(*alice.frame(pos(1), 1))
        wait_until(lambda: failing.attempts == 1, 5, "the first batch")
        ingest.submit(*alice.frame(pos(1), 1))  # the terminal's resend
        wait_until(lambda: failing.attempts == 2, 5, "the thread to take the next batch")
    finally:
        ingest.stop()
    assert published == []


def test_ack_publish_failure_is_counted_not_raised(harness: Harness, alice: Terminal) -> None:
    def down(out: Outgoing) -> None:
        raise NotConnected("link down")

    ingest = Ingest(
        harness.store,
        StoreKeyRing(harness.store),
        ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
        publish=down,
        clock=lambda: NOW_S,
    )
    accepted = ingest.process([(*alice.frame(pos(1), 1), T0), (*alice.frame(pos(2), 2), T0)])
    assert [a.seq for a in accepted] == [1, 2]  # stored regardless: durable before acking
    assert harness.store.frame_count("alice") == 2
    assert ingest.stats.ack_failures == 1
    assert ingest.stats.acks_sent == 0


def test_ack_is_sealed_under_the_frames_key_generation(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "rot.db")
    try:
        old, new = Terminal("rot", key_id=1), Terminal("rot", key_id=2)
        store.add_device(device_record(old.identity), device_key(old.identity))
        store.add_key(device_key(new.identity))
        published: list[Outgoing] = []
        ingest = Ingest(
            store,
            StoreKeyRing(store),
            ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
            publish=published.append,
            clock=lambda: NOW_S,
        )
        ingest.process([(*old.frame(pos(1), 1), T0), (*new.frame(pos(2), 2), T0)])
        assert store.frame_count("rot") == 2
        assert len(published) == 2
        by_key = {decode(o.payload).envelope.key_id: o for o in published}
        assert old.endpoint.receive(by_key[1].topic, by_key[1].payload).message.ranges == ((1, 1),)
        assert new.endpoint.receive(by_key[2].topic, by_key[2].payload).message.ranges == ((2, 2),)
    finally:
        store.close()


def test_submit_and_thread_end_to_end_without_a_broker(harness: Harness, alice: Terminal) -> None:
    published: list[Outgoing] = []
    ingest = Ingest(
        harness.store,
        StoreKeyRing(harness.store),
        ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
        publish=published.append,
        batch_wait_s=0.01,
        clock=lambda: NOW_S,  # the frames were sealed at T0: within the replay window of now
    )
    ingest.start()
    for k in range(1, 21):
        ingest.submit(*alice.frame(pos(k), k))
    ingest.stop()
    assert harness.store.frame_count("alice") == 20
    covered = {
        seq
        for out in published
        for first, last in alice.endpoint.receive(out.topic, out.payload).message.ranges
        for seq in range(first, last + 1)
    }
    assert covered == set(range(1, 21))


# --- timestamps from the future -------------------------------------------------------------------


def test_a_fix_from_the_future_is_stored_flagged_and_counted(
    harness: Harness, alice: Terminal
) -> None:
    """A receiver past a GPS week rollover, or a hand-set clock: kept, shown, not believed."""
    received = T0 + 500
    honest = Position(fix=fix(T0))
    ahead = Position(fix=fix(received + FUTURE_TOLERANCE_MS + 1, lat=22.6))
    harness.process(alice.frame(honest, 1), alice.frame(ahead, 2), received_ms=received)
    points = harness.store.track("alice", since_ms=0, until_ms=2**62)
    assert [(p.seq, p.flags) for p in points] == [(1, 0), (2, FixFlag.FUTURE_TIME)]
    assert harness.ingest.stats.future_fixes == {"alice": 1}
    # Both frames are acknowledged: the terminal must not resend what is stored.
    assert [a.ranges for a in harness.acks(alice)] == [((1, 2),)]
    # The live marker and the restart state keep the believable fix.
    assert harness.store.latest_fixes()["alice"].seq == 1
    live = LiveState(Hub())
    for batch in harness.accepted:
        live.apply(batch)
    [state] = live.snapshot()
    assert state["fix"]["lat"] == 22.5431


def test_a_fix_just_inside_the_tolerance_is_believed(harness: Harness, alice: Terminal) -> None:
    received = T0 + 500
    near = Position(fix=fix(received + FUTURE_TOLERANCE_MS))
    harness.process(alice.frame(near, 1), received_ms=received)
    [point] = harness.store.track("alice", since_ms=0, until_ms=2**62)
    assert point.flags == 0 and not harness.ingest.stats.future_fixes


def test_what_workers_send_the_main_process_survives_pickling(
    harness: Harness, alice: Terminal
) -> None:
    # IncomingFrame and Accepted have their own __reduce__ (ingest workers pickle each one):
    # every field, in order, must come back.
    import pickle

    seen: list[IncomingFrame] = []
    harness.ingest._on_stored = seen.extend
    accepted = harness.process(alice.frame(pos(1), 1), alice.frame(pos(2), 2))
    for obj in [*seen, *accepted]:
        assert pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)) == obj
    frame = IncomingFrame("alice", 9, 2, 3, 4, 5, b"p", b"d", (), (), (1, 2), None, True, -7)
    assert pickle.loads(pickle.dumps(frame)) == frame
