"""The durable outbox: numbering, byte-identical frames, acks, lanes, checkpoints, crashes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.outbox import Item, Lane, Outbox
from protocol import (
    BadTag,
    Checkpoint,
    DeviceEndpoint,
    Event,
    EventKind,
    Fix,
    InvalidField,
    Position,
    PositionBatch,
    Presence,
    PresenceKind,
    Snapshot,
    SnapshotTrigger,
    StoredAck,
    UplinkVerifier,
    decode,
    digest,
    prove,
)
from provisioning import BrokerAddress, DeviceIdentity, Enrolment, new_device, write_enrolment

T0 = 1_763_900_000_000
REPO = Path(__file__).resolve().parents[2]


class IdentityKeyRing:
    """A ``protocol.KeyRing`` that knows exactly one terminal."""

    def __init__(self, identity: DeviceIdentity) -> None:
        self._identity = identity

    def _known(self, party: str, key_id: int) -> bool:
        return party == self._identity.device_id and key_id == self._identity.key_id

    def mac_key(self, party: str, key_id: int) -> bytes | None:
        return self._identity.mac_key if self._known(party, key_id) else None

    def public_key(self, party: str, key_id: int) -> Ed25519PublicKey | None:
        return self._identity.public_key if self._known(party, key_id) else None


class Clock:
    def __init__(self, start_ms: int = T0) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        self.now_ms += 1000
        return self.now_ms


def endpoint_for(identity: DeviceIdentity) -> DeviceEndpoint:
    return DeviceEndpoint(
        device_id=identity.device_id,
        key_id=identity.key_id,
        mac_key=identity.mac_key,
        signing_key=identity.signing_key,
        server_key=Ed25519PrivateKey.generate().public_key(),
    )


def fix(k: int) -> Fix:
    return Fix(time_ms=T0 + k * 1000, lat=22.5431 + k * 1e-5, lon=114.0579)


def position(k: int) -> Position:
    return Position(fix=fix(k))


def snapshot(k: int) -> Snapshot:
    jpeg = b"\xff\xd8" + bytes([k % 256]) * 32 + b"\xff\xd9"
    return Snapshot(
        captured_ms=T0 + k,
        trigger=SnapshotTrigger.PERIODIC,
        width=64,
        height=48,
        sha256=hashlib.sha256(jpeg).digest(),
        jpeg=jpeg,
    )


@pytest.fixture
def identity() -> DeviceIdentity:
    return new_device("dev-1")


@pytest.fixture
def open_outbox(tmp_path: Path, identity: DeviceIdentity) -> Iterator[Callable[..., Outbox]]:
    opened: list[Outbox] = []

    def make(checkpoint_every: int = 1024, clock: Callable[[], int] | None = None) -> Outbox:
        box = Outbox(
            tmp_path / "outbox.db",
            endpoint_for(identity),
            clock_ms=clock or Clock(),
            checkpoint_every=checkpoint_every,
        )
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


def all_items(box: Outbox) -> list[Item]:
    return sorted(box.next_items(10**6), key=lambda item: item.seq)


def checkpoints(box: Outbox) -> list[tuple[int, Checkpoint]]:
    found = []
    for item in all_items(box):
        message = decode(item.payload).envelope.message
        if isinstance(message, Checkpoint):
            found.append((item.seq, message))
    return found


# --- numbering --------------------------------------------------------------------------------


def test_sequence_numbers_start_at_one_and_have_no_gaps(open_outbox) -> None:
    box = open_outbox()
    assert box.next_seq == 1
    seqs = [box.put(position(k)) for k in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert box.next_seq == 6
    assert box.pending() == 5


def test_numbering_survives_close_and_reopen(open_outbox) -> None:
    box = open_outbox()
    for k in range(3):
        box.put(position(k))
    box.close()
    again = open_outbox()
    assert again.next_seq == 4
    assert again.pending() == 3
    assert again.put(position(3)) == 4
    assert [item.seq for item in all_items(again)] == [1, 2, 3, 4]


def test_numbering_continues_after_everything_is_acknowledged(open_outbox) -> None:
    box = open_outbox()
    for k in range(3):
        box.put(position(k))
    box.acknowledge(StoredAck.of([1, 2, 3]))
    box.close()
    again = open_outbox()
    assert again.pending() == 0
    assert again.put(position(9)) == 4  # a seq is never reused: the server would call it a dup


def test_a_refused_message_does_not_consume_a_seq_or_block_the_next_put(open_outbox) -> None:
    now = {"ms": 0}  # a terminal without an RTC boots in 1970, before NTP sets the clock
    box = open_outbox(clock=lambda: now["ms"])
    with pytest.raises(InvalidField):
        box.put(position(0))
    now["ms"] = T0
    assert box.put(position(1)) == 1
    assert box.pending() == 1


# --- frames -----------------------------------------------------------------------------------


def test_stored_frames_are_byte_identical_and_verify(open_outbox, identity) -> None:
    box = open_outbox()
    messages = [position(0), Presence(kind=PresenceKind.HEARTBEAT), snapshot(1)]
    for message in messages:
        box.put(message)
    first_read = all_items(box)
    box.close()
    second_read = all_items(open_outbox())
    # A resend after a restart is the very same bytes, so the server sees a duplicate.
    assert [(i.topic, i.payload) for i in first_read] == [(i.topic, i.payload) for i in second_read]

    verifier = UplinkVerifier(IdentityKeyRing(identity))
    for item, message in zip(second_read, messages, strict=True):
        verified = verifier.receive(item.topic, item.payload)
        assert verified.envelope.party == "dev-1"
        assert verified.envelope.seq == item.seq
        assert verified.envelope.message == message
        assert item.topic == f"yj/1/up/dev-1/{message.TOPIC}"


def test_frames_fail_verification_under_another_terminals_key(open_outbox) -> None:
    box = open_outbox()
    box.put(position(0))
    (item,) = all_items(box)
    impostor = new_device("dev-1")  # same name, different keys
    with pytest.raises(BadTag):
        UplinkVerifier(IdentityKeyRing(impostor)).receive(item.topic, item.payload)


# --- acknowledgements -------------------------------------------------------------------------


def test_acknowledge_removes_exactly_the_covered_seqs(open_outbox) -> None:
    box = open_outbox()
    for k in range(10):
        box.put(position(k))
    removed = box.acknowledge(StoredAck(ranges=((2, 4), (7, 7))))
    assert removed == 4
    assert [item.seq for item in all_items(box)] == [1, 5, 6, 8, 9, 10]
    assert box.pending() == 6


def test_acknowledge_is_idempotent_and_ignores_unknown_seqs(open_outbox) -> None:
    box = open_outbox()
    for k in range(3):
        box.put(position(k))
    assert box.acknowledge(StoredAck.of([2])) == 1
    assert box.acknowledge(StoredAck.of([2])) == 0  # the ack for a resent duplicate
    assert box.acknowledge(StoredAck(ranges=((50, 99),))) == 0
    assert [item.seq for item in all_items(box)] == [1, 3]


def test_acknowledgement_survives_reopen(open_outbox) -> None:
    box = open_outbox()
    for k in range(4):
        box.put(position(k))
    box.acknowledge(StoredAck.of([1, 3]))
    box.close()
    assert [item.seq for item in all_items(open_outbox())] == [2, 4]


# --- lanes ------------------------------------------------------------------------------------


@pytest.fixture
def mixed(open_outbox) -> Outbox:
    box = open_outbox()
    box.put(snapshot(0))  # 1
    box.put(PositionBatch(fixes=(fix(0), fix(1))))  # 2
    box.put(position(2))  # 3
    box.put(Event(kind=EventKind.SOS, time_ms=T0))  # 4
    box.put(position(3))  # 5
    box.put(snapshot(1))  # 6
    box.put(Event(kind=EventKind.BUTTON, time_ms=T0 + 1))  # 7
    box.put(PositionBatch(fixes=(fix(4),)))  # 8
    box.put(Presence(kind=PresenceKind.HEARTBEAT))  # 9
    return box


def test_lanes_go_urgent_live_backfill_snapshot(mixed: Outbox) -> None:
    items = mixed.next_items(100)
    assert [(i.lane, i.seq) for i in items] == [
        (Lane.URGENT, 4),
        (Lane.URGENT, 7),  # oldest first
        (Lane.LIVE, 9),
        (Lane.LIVE, 5),
        (Lane.LIVE, 3),  # newest first
        (Lane.BACKFILL, 2),
        (Lane.BACKFILL, 8),  # oldest first
        (Lane.SNAPSHOT, 1),
        (Lane.SNAPSHOT, 6),  # oldest first
    ]


def test_next_items_respects_limit_and_exclude(mixed: Outbox) -> None:
    assert [i.seq for i in mixed.next_items(3)] == [4, 7, 9]
    assert [i.seq for i in mixed.next_items(1)] == [4]
    in_flight = {4, 9, 2}
    assert [i.seq for i in mixed.next_items(4, exclude=in_flight)] == [7, 5, 3, 8]
    assert [i.seq for i in mixed.next_items(100, exclude=set(range(1, 10)))] == []


def test_explicit_lane_overrides_the_default(open_outbox) -> None:
    box = open_outbox()
    box.put(position(0))
    box.put(position(1), lane=Lane.BACKFILL)
    assert [(i.lane, i.seq) for i in box.next_items(10)] == [(Lane.LIVE, 1), (Lane.BACKFILL, 2)]


# --- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_written_after_checkpoint_every_frames(open_outbox, identity) -> None:
    box = open_outbox(checkpoint_every=4)
    seqs = [box.put(position(k)) for k in range(3)]
    assert checkpoints(box) == []
    seqs.append(box.put(position(3)))
    assert seqs == [1, 2, 3, 4]
    assert box.next_seq == 6  # the checkpoint took seq 5

    ((ckpt_seq, ckpt),) = checkpoints(box)
    assert ckpt_seq == 5
    assert (ckpt.first_seq, ckpt.last_seq) == (1, 4)
    items = {item.seq: item for item in all_items(box)}
    assert items[5].lane is Lane.BACKFILL
    for seq in range(1, 5):
        payload = items[seq].payload
        assert ckpt.digest_of(seq) == digest(payload)
        proof = prove(payload, decode(payload), ckpt, identity.public_key)
        assert (proof.party, proof.seq) == ("dev-1", seq)
    # The server accepts the checkpoint frame itself (it checks the signature too).
    UplinkVerifier(IdentityKeyRing(identity)).receive(items[5].topic, items[5].payload)


def test_successive_checkpoints_are_contiguous(open_outbox, identity) -> None:
    box = open_outbox(checkpoint_every=4)
    for k in range(7):
        box.put(position(k))  # 1-4, ckpt 5, 6-8, ckpt 9 (covers 5-8, itself a frame)
    found = checkpoints(box)
    assert [(seq, c.first_seq, c.last_seq) for seq, c in found] == [(5, 1, 4), (9, 5, 8)]
    items = {item.seq: item for item in all_items(box)}
    second = found[1][1]
    for seq in range(5, 9):
        prove(items[seq].payload, decode(items[seq].payload), second, identity.public_key)


def test_flush_checkpoint_covers_the_remainder(open_outbox, identity) -> None:
    box = open_outbox(checkpoint_every=4)
    for k in range(6):
        box.put(position(k))  # 1-4, ckpt 5, 6, 7
    box.flush_checkpoint()
    found = checkpoints(box)
    assert [(seq, c.first_seq, c.last_seq) for seq, c in found] == [(5, 1, 4), (8, 5, 7)]
    items = {item.seq: item for item in all_items(box)}
    for seq in range(5, 8):
        prove(items[seq].payload, decode(items[seq].payload), found[1][1], identity.public_key)
    assert box.next_seq == 9


def test_flush_checkpoint_on_an_empty_outbox_writes_nothing(open_outbox) -> None:
    box = open_outbox()
    box.flush_checkpoint()
    assert box.pending() == 0
    assert box.next_seq == 1


def test_checkpoint_covers_frames_even_after_they_are_acknowledged(open_outbox, identity) -> None:
    box = open_outbox(checkpoint_every=4)
    payloads = {}
    for k in range(2):
        seq = box.put(position(k))
        payloads[seq] = next(i.payload for i in all_items(box) if i.seq == seq)
    box.acknowledge(StoredAck.of([1, 2]))  # the server stored them before the range closed
    box.put(position(2))
    box.put(position(3))
    ((_, ckpt),) = checkpoints(box)
    assert (ckpt.first_seq, ckpt.last_seq) == (1, 4)
    for payload in payloads.values():
        prove(payload, decode(payload), ckpt, identity.public_key)


def test_checkpoint_range_survives_reopen(open_outbox) -> None:
    box = open_outbox(checkpoint_every=4)
    box.put(position(0))
    box.put(position(1))
    box.close()
    again = open_outbox(checkpoint_every=4)
    again.put(position(2))
    again.put(position(3))
    ((seq, ckpt),) = checkpoints(again)
    assert (seq, ckpt.first_seq, ckpt.last_seq) == (5, 1, 4)


# --- durability -------------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from agent.outbox import Outbox
    from protocol import DeviceEndpoint, Fix, Position
    from provisioning import load_enrolment

    enrolment = load_enrolment(Path(sys.argv[1]))
    ident = enrolment.identity
    endpoint = DeviceEndpoint(
        device_id=ident.device_id, key_id=ident.key_id, mac_key=ident.mac_key,
        signing_key=ident.signing_key, server_key=enrolment.server_key,
    )
    box = Outbox(Path(sys.argv[2]), endpoint, clock_ms=lambda: {t0}, checkpoint_every=8)
    count, mode = int(sys.argv[3]), sys.argv[4]
    for k in range(count):
        seq = box.put(Position(fix=Fix(time_ms={t0} + k, lat=22.5, lon=114.0)))
        print(k, seq, flush=True)  # only after put() returned, i.e. after the commit
    if mode == "exit":
        os._exit(0)  # no close(), no atexit, no finalizers
    import time
    time.sleep(60)  # wait for SIGKILL
    """
).format(t0=T0)


def _run_writer(
    tmp_path: Path, identity: DeviceIdentity, count: int, mode: str, kill_after: int | None = None
) -> dict[int, int]:
    """Run the writer; return {k: seq} for every put it reported as committed."""
    enrolment_path = tmp_path / "enrolment.json"
    write_enrolment(
        enrolment_path,
        Enrolment(
            identity, Ed25519PrivateKey.generate().public_key(), 1, BrokerAddress("127.0.0.1", 1883)
        ),
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WRITER,
            str(enrolment_path),
            str(tmp_path / "outbox.db"),
            str(count),
            mode,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    committed: dict[int, int] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            k, seq = map(int, line.split())
            committed[k] = seq
            if kill_after is not None and len(committed) >= kill_after:
                proc.send_signal(signal.SIGKILL)  # mid-stream: it is still putting
                break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        stderr = proc.stderr.read()
        proc.stderr.close()
    if kill_after is None:
        assert proc.returncode == 0, stderr
    else:
        assert proc.returncode == -signal.SIGKILL, stderr
    return committed


def _check_recovered(box: Outbox, identity: DeviceIdentity, committed: dict[int, int]) -> None:
    items = all_items(box)
    seqs = [item.seq for item in items]
    assert seqs == list(range(1, box.next_seq)), "seqs must be gap-free"
    verifier = UplinkVerifier(IdentityKeyRing(identity))
    fix_times = {}
    for item in items:
        message = verifier.receive(item.topic, item.payload).envelope.message
        if isinstance(message, Position):
            fix_times[item.seq] = message.fix.time_ms
    for k, seq in committed.items():
        assert fix_times.get(seq) == T0 + k, f"committed put {k} (seq {seq}) lost or altered"
    # Nothing after the crash is lost either: the checkpoints still line up with the frames.
    by_seq = {item.seq: item for item in items}
    for item in items:
        message = decode(item.payload).envelope.message
        if isinstance(message, Checkpoint):
            for seq in range(message.first_seq, message.last_seq + 1):
                payload = by_seq[seq].payload
                prove(payload, decode(payload), message, identity.public_key)


def test_outbox_survives_process_exit_without_close(
    tmp_path: Path, identity: DeviceIdentity, open_outbox
) -> None:
    committed = _run_writer(tmp_path, identity, 20, "exit")
    assert len(committed) == 20
    box = open_outbox(checkpoint_every=8)
    _check_recovered(box, identity, committed)
    assert box.pending() == 20 + 2  # two checkpoints (after 8 and 16 frames)
    assert box.put(position(99)) == box.next_seq - 1  # numbering carries on


def test_outbox_survives_sigkill_mid_stream(
    tmp_path: Path, identity: DeviceIdentity, open_outbox
) -> None:
    committed = _run_writer(tmp_path, identity, 100_000, "kill", kill_after=30)
    assert len(committed) >= 30
    box = open_outbox(checkpoint_every=8)
    _check_recovered(box, identity, committed)
    last = box.next_seq
    assert box.put(position(99)) == last
