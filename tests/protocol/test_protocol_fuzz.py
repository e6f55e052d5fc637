"""Fuzzing the decoders: hostile bytes only ever raise ProtocolError, with a readable message.

``test_mutation_fuzz`` is deterministic (a seeded ``random.Random``): it feeds well over
100,000 payloads - random bytes, and byte-level and msgpack-level mutations of valid sealed
frames of every message type - to ``protocol.decode``, ``UplinkVerifier.receive`` and
``DeviceEndpoint.receive``. Some mutants are re-sealed with the right key, so the fuzzer also
reaches the code after the MAC (checkpoint signatures, routing). The Hypothesis tests beside it
explore the same surface with shrinking, on fewer examples.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    Clue,
    ConfigPush,
    DeviceEndpoint,
    DispatchCancel,
    DispatchCommand,
    DispatchResponse,
    Event,
    EventKind,
    Fix,
    IncidentKind,
    Position,
    PositionBatch,
    Presence,
    PresenceKind,
    ProtocolError,
    ResponseStatus,
    RollCall,
    RollCallAnswer,
    ServerEndpoint,
    Setting,
    Snapshot,
    SnapshotTrigger,
    Task,
    TaskAck,
    UplinkVerifier,
    decode,
    digest,
    topics,
)
from protocol.auth import mac
from protocol.messages import MESSAGE_TYPES, Direction

from .strategies import (
    DEVICE,
    DEVICE_SIGNING_KEY,
    KEY_ID,
    MAC_KEY,
    NOW_MS,
    SERVER_KEY_ID,
    SERVER_SIGNING_KEY,
    UNIT,
)

#: Payloads the deterministic fuzz feeds; each goes to three entry points.
FUZZ_PAYLOADS = int(os.environ.get("YJ_FUZZ_PAYLOADS", "150000"))
FUZZ_SEED = int(os.environ.get("YJ_FUZZ_SEED", "20251123"))


class _Keys:
    def mac_key(self, party: str, key_id: int) -> bytes | None:
        return MAC_KEY if (party, key_id) == (DEVICE, KEY_ID) else None

    def public_key(self, party: str, key_id: int) -> Any:
        return DEVICE_SIGNING_KEY.public_key() if (party, key_id) == (DEVICE, KEY_ID) else None


DEVICE_END = DeviceEndpoint(
    device_id=DEVICE, key_id=KEY_ID, mac_key=MAC_KEY, signing_key=DEVICE_SIGNING_KEY,
    server_key=SERVER_SIGNING_KEY.public_key(), units=(UNIT,),
)
SERVER_END = ServerEndpoint(signing_key=SERVER_SIGNING_KEY, key_id=SERVER_KEY_ID)
VERIFIER = UplinkVerifier(_Keys())


@dataclass(frozen=True)
class Seed:
    payload: bytes
    topic: str
    direction: Direction


def _corpus() -> list[Seed]:
    """Valid sealed frames of every message type, as the endpoints make them."""
    t = NOW_MS
    full_fix = Fix(
        time_ms=t, lat=31.2304567, lon=121.4737012, accuracy_m=4.8, speed_mps=1.35,
        course_deg=271.5, alt_m=12.3, satellites=9,
    )
    bare_fix = Fix(time_ms=t, lat=-33.8688, lon=151.2093)
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) + b"\xff\xd9"
    uplink = [
        Position(fix=full_fix),
        Position(fix=bare_fix),
        PositionBatch(fixes=tuple(
            Fix(time_ms=t + i * 1000, lat=31.23 + i * 1e-5, lon=121.47, accuracy_m=5.0)
            for i in range(6)
        )),
        Presence(kind=PresenceKind.HEARTBEAT, battery_pct=81, fix=bare_fix),
        Presence(kind=PresenceKind.CHECK_IN, shift_id="shift-2025-11-23.n"),
        Event(kind=EventKind.SOS, time_ms=t, fix=full_fix, detail="有人受伤\n需要救护车"),
        Event(kind=EventKind.BATTERY, time_ms=t, value=14),
        Snapshot(
            captured_ms=t, trigger=SnapshotTrigger.EVENT, width=640, height=480,
            sha256=hashlib.sha256(jpeg).digest(), jpeg=jpeg, fix=bare_fix, request_id="rq-1",
        ),
        DispatchResponse(
            dispatch_id="d-1", status=ResponseStatus.DECLINED, time_ms=t, reason="在另一现场"
        ),
        RollCallAnswer(rollcall_id="rc-3", time_ms=t, fix=full_fix, snapshot_sha256=bytes(32)),
        TaskAck(task_id="task-7", time_ms=t),
        Clue(
            clue_id="c-1", time_ms=t, text="可疑人员在车棚撬锁", category=IncidentKind.THEFT,
            fix=bare_fix, photo_sha256=hashlib.sha256(jpeg).digest(),
        ),
    ]
    seeds: list[Seed] = []
    sealed: list[bytes] = []
    for seq, message in enumerate(uplink, start=1):
        out = DEVICE_END.seal(message, seq=seq, sent_ms=t + seq)
        sealed.append(out.payload)
        seeds.append(Seed(out.payload, out.topic, Direction.UPLINK))
    checkpoint = DEVICE_END.checkpoint(first_seq=1, digests=b"".join(map(digest, sealed)))
    out = DEVICE_END.seal(checkpoint, seq=len(uplink) + 1, sent_ms=t)
    seeds.append(Seed(out.payload, out.topic, Direction.UPLINK))
    will = DEVICE_END.will(sent_ms=t)
    seeds.append(Seed(will.payload, will.topic, Direction.UPLINK))

    command = DispatchCommand(
        dispatch_id="d-1", incident_id="inc-88", kind=IncidentKind.MEDICAL, priority=1,
        lat=31.2311, lon=121.4702, sent_ms=t, expires_ms=t + 900_000, note="东门 3 号楼",
    )
    downlink = [
        SERVER_END.ack(DEVICE, [1, 2, 3, 5, 9, 10], mac_key=MAC_KEY, key_id=KEY_ID, sent_ms=t),
        SERVER_END.command(DEVICE, command, sent_ms=t),
        SERVER_END.broadcast(
            UNIT, RollCall(rollcall_id="rc-3", sent_ms=t, deadline_ms=t + 60_000,
                           want_snapshot=True), sent_ms=t,
        ),
        SERVER_END.command(
            DEVICE, ConfigPush(version=4, settings=((Setting.HEARTBEAT_S, 60),
                                                    (Setting.INTERVAL_MOVING_S, 5))), sent_ms=t,
        ),
        SERVER_END.command(DEVICE, DispatchCancel(dispatch_id="d-1", sent_ms=t, reason="已处置"),
                           sent_ms=t),
        SERVER_END.command(
            DEVICE, Task(task_id="task-7", title="寻找走失老人", sent_ms=t,
                         expires_ms=t + 3_600_000, text="灰色外套, 约 75 岁", lat=31.23,
                         lon=121.47), sent_ms=t,
        ),
    ]
    seeds += [Seed(o.payload, o.topic, Direction.DOWNLINK) for o in downlink]
    covered = {type(decode(s.payload).envelope.message) for s in seeds}
    assert covered == set(MESSAGE_TYPES.values())
    return seeds


CORPUS = _corpus()

# --- msgpack values of every kind, for structural mutations --------------------------------

_INTS = [0, 1, -1, 127, 128, 255, 256, -32, -33, 2**15, 2**16, 2**31 - 1, 2**31, 2**32,
         2**53 - 1, 2**53, 2**63 - 1, -(2**63), 2**64 - 1, 946_684_800_000, 4_102_444_800_000]
_FLOATS = [0.0, -0.0, 1.5, float("nan"), float("inf"), float("-inf"), 1e308, 5e-324, 90.0]


def _deep(rng: random.Random) -> object:
    value: object = rng.choice([1, "x", None])
    for _ in range(rng.choice([10, 500, 1000, 1023, 1100])):
        value = [value] if rng.random() < 0.8 else {"k": value}
    return value


def random_value(rng: random.Random, depth: int = 0) -> object:
    roll = rng.randrange(16 if depth < 3 else 10)
    if roll == 0:
        return None
    if roll == 1:
        return rng.random() < 0.5
    if roll == 2:
        return rng.choice(_INTS)
    if roll == 3:
        return rng.randrange(-(2**63), 2**64)
    if roll == 4:
        return rng.choice(_FLOATS) if rng.random() < 0.7 else rng.uniform(-1e9, 1e9)
    if roll == 5:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(12)))
    if roll == 6:
        return rng.choice(["", "gnss", "sos", "check_in", "heartbeat_s", "\x00", "a/b", "x" * 70])
    if roll == 7:
        return rng.randbytes(rng.choice([0, 1, 2, 16, 31, 32, 33, 64, 100]))
    if roll == 8:
        return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randrange(10)))
    if roll == 9:
        return "y" * rng.choice([201, 501, 5000])
    if roll in (10, 11):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(6))]
    if roll == 12:
        return {f"k{i}": random_value(rng, depth + 1) for i in range(rng.randrange(4))}
    if roll == 13:
        return _deep(rng)
    if roll == 14:
        return msgpack.Timestamp(rng.randrange(2**34), rng.randrange(10**9))
    return [rng.choice(_INTS) for _ in range(rng.randrange(40))]


def _slots(tree: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) position in a decoded msgpack tree."""
    found: list[tuple[Any, Any]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        keys = range(len(node)) if isinstance(node, list) else list(node)
        for key in keys:
            found.append((node, key))
            if isinstance(node[key], (list, dict)):
                stack.append(node[key])
    return found


def _tweak(rng: random.Random, value: object) -> object:
    """A near miss of the same value: the edges of ranges and types."""
    if isinstance(value, bool):
        return int(value) if rng.random() < 0.5 else not value
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, -value, value * 10, float(value), str(value),
                           value // 10, True])
    if isinstance(value, float):
        whole = int(value) if math.isfinite(value) else 0
        return rng.choice([whole, -value, value * 1.0000001, float("nan"), str(value)])
    if isinstance(value, str):
        return rng.choice([value.encode(), value + "/", value[:-1], value.upper(), value * 3])
    if isinstance(value, bytes):
        return rng.choice([value[:-1], value + b"\x00", value.decode("latin-1"), value[::-1]])
    return random_value(rng)


def mutate_tree(rng: random.Random, tree: list[Any]) -> None:
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        slots = _slots(tree)
        container, key = rng.choice(slots)
        action = rng.randrange(8)
        if action == 0:
            container[key] = random_value(rng)
        elif action in (1, 2):
            container[key] = _tweak(rng, container[key])
        elif action == 3 and isinstance(container, list):
            del container[key]
        elif action == 4 and isinstance(container, list):
            container.insert(key, random_value(rng))
        elif action == 5 and isinstance(container, list):
            container.append(random_value(rng))
        elif action == 6 and isinstance(container, list) and len(container) > 1:
            other = rng.randrange(len(container))
            container[key], container[other] = container[other], container[key]
        elif action == 7 and container is tree and key == 0:
            container[0] = rng.choice([*MESSAGE_TYPES, 0, 9, 31, 36, 255, -1])
        else:
            container[key] = random_value(rng)


# --- byte-level mutations ------------------------------------------------------------------


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 8])):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


_INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x90, 0x9F, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC7,
                0xCA, 0xCB, 0xCF, 0xD3, 0xD4, 0xD9, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0]


def _poke(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 2, 3])):
        out[rng.randrange(len(out))] = rng.choice(_INTERESTING)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def _truncate_body(rng: random.Random, data: bytes) -> bytes:
    tag = 16 if len(data) > 1 and data[1] == 1 else 64
    if len(data) <= tag + 3:
        return _truncate(rng, data)
    cut = rng.randrange(2, len(data) - tag)
    return data[:cut] + data[-tag:]


def _insert(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.randbytes(rng.choice([1, 1, 2, 5, 17, 64])) + data[at:]


def _delete(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randrange(1, 9) :]


def _duplicate(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    span = data[at : at + rng.randrange(1, 33)]
    return data[:at] + span + data[at:]


def _random_bytes(rng: random.Random, _: bytes) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 2, 3, 8, 20, 40, 80, 200, 1000]))


def _random_frame(rng: random.Random, _: bytes) -> bytes:
    """A valid header, then noise: gets past the version and scheme checks."""
    return bytes((1, rng.choice([1, 2]))) + rng.randbytes(rng.randrange(0, 160))


def _header(rng: random.Random, data: bytes) -> bytes:
    return bytes((rng.choice([0, 1, 2, 255]), rng.choice([0, 1, 2, 3, 255]))) + data[2:]


def _splice(rng: random.Random, data: bytes) -> bytes:
    other = rng.choice(CORPUS).payload
    return data[: rng.randrange(len(data))] + other[rng.randrange(len(other)) :]


def _structural(rng: random.Random, data: bytes) -> bytes:
    """Mutate the decoded msgpack tree, then re-seal: old tag, right MAC/signature, or noise."""
    scheme = data[1] if len(data) > 1 else 1
    tag_size = 16 if scheme == 1 else 64
    try:
        tree = msgpack.unpackb(data[2:-tag_size], raw=False)
    except (ValueError, TypeError):  # stacked on an earlier byte-level mutation
        return _flip(rng, data)
    if not isinstance(tree, list) or not tree:
        return _flip(rng, data)
    mutate_tree(rng, tree)
    try:
        signed = data[:2] + msgpack.packb(tree, use_bin_type=True)
    except (ValueError, OverflowError, TypeError):  # e.g. an int beyond 64 bits
        signed = data[:-tag_size]
    roll = rng.random()
    if roll < 0.35:
        return signed + data[-tag_size:]
    if roll < 0.85:
        if scheme == 1:
            return signed + mac(MAC_KEY, signed)
        return signed + SERVER_SIGNING_KEY.sign(signed)
    return signed + rng.randbytes(tag_size)


MUTATORS: list[tuple[Callable[[random.Random, bytes], bytes], int]] = [
    (_random_bytes, 8),
    (_random_frame, 8),
    (_flip, 14),
    (_poke, 8),
    (_truncate, 6),
    (_truncate_body, 5),
    (_insert, 6),
    (_delete, 6),
    (_duplicate, 4),
    (_header, 3),
    (_splice, 6),
    (_structural, 26),
]


# --- the harness ---------------------------------------------------------------------------


@dataclass
class Harness:
    outcomes: Counter[str]
    failures: list[str]

    def call(self, where: str, fn: Callable[[bytes], Any], payload: bytes) -> Any:
        """``fn(payload)``, or None when it raised; anything but a ProtocolError is a failure."""
        try:
            result = fn(payload)
        except ProtocolError as exc:
            self.outcomes[f"{where}:{type(exc).__name__}"] += 1
            if not str(exc) or not exc.reason:
                self.failures.append(f"{where}: empty message from {type(exc).__name__}")
            return None
        except Exception as exc:
            self.failures.append(
                f"{where}: {type(exc).__name__}: {str(exc)[:200]} for {payload[:120].hex()}"
            )
            return None
        self.outcomes[f"{where}:ok"] += 1
        return result

    def feed(self, payload: bytes, seed: Seed) -> None:
        frame = self.call("decode", decode, payload)
        # Route by what the frame says when it parses, so mutants reach the MAC and beyond.
        up_topic = down_topic = seed.topic
        if frame is not None:
            envelope = frame.envelope
            message_type = type(envelope.message)
            try:
                if message_type.DIRECTION is Direction.UPLINK:
                    up_topic = topics.uplink(envelope.party, message_type)
                else:
                    down_topic = topics.downlink(envelope.party, message_type)
            except ProtocolError:
                pass
        if seed.direction is Direction.UPLINK or frame is not None:
            self.call("uplink", lambda p: VERIFIER.receive(up_topic, p), payload)
        if seed.direction is Direction.DOWNLINK or frame is not None:
            self.call("device", lambda p: DEVICE_END.receive(down_topic, p), payload)


@pytest.mark.slow
def test_mutation_fuzz() -> None:
    rng = random.Random(FUZZ_SEED)
    harness = Harness(Counter(), [])
    mutators = [m for m, _ in MUTATORS]
    weights = [w for _, w in MUTATORS]
    per_mutator: Counter[str] = Counter()
    started = time.perf_counter()
    for _ in range(FUZZ_PAYLOADS):
        seed = rng.choice(CORPUS)
        mutator = rng.choices(mutators, weights)[0]
        payload = mutator(rng, seed.payload)
        if rng.random() < 0.1:  # stack a second mutation now and then
            payload = rng.choices(mutators, weights)[0](rng, payload) if payload else payload
        per_mutator[mutator.__name__] += 1
        harness.feed(payload, seed)
        if len(harness.failures) >= 20:
            break
    elapsed = time.perf_counter() - started

    assert not harness.failures, "\n".join(harness.failures)
    assert sum(per_mutator.values()) == FUZZ_PAYLOADS
    # The fuzzer must reach every layer, or it proves little.
    expected = {
        "decode:ok", "decode:MalformedFrame", "decode:UnsupportedVersion", "decode:InvalidField",
        "uplink:ok", "uplink:BadTag", "uplink:UnknownKey", "uplink:TopicError",
        "uplink:InvalidField", "device:ok", "device:BadTag", "device:TopicError",
    }
    missing = expected - set(harness.outcomes)
    assert not missing, f"never reached: {missing}; outcomes {harness.outcomes}"
    print(f"\n{FUZZ_PAYLOADS} payloads in {elapsed:.1f} s; {dict(sorted(per_mutator.items()))}")
    print(dict(sorted(harness.outcomes.items())))


def test_corpus_is_valid() -> None:
    for seed in CORPUS:
        if seed.direction is Direction.UPLINK:
            VERIFIER.receive(seed.topic, seed.payload)
        else:
            DEVICE_END.receive(seed.topic, seed.payload)


# --- Hypothesis-driven fuzz ----------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_protocol_errors(payload: bytes) -> None:
    for topic in (f"yj/1/up/{DEVICE}/pos", f"yj/1/down/{DEVICE}/cmd"):
        for fn in (VERIFIER.receive, DEVICE_END.receive):
            try:
                fn(topic, payload)
            except ProtocolError as exc:
                assert str(exc)
    try:
        decode(payload)
    except ProtocolError as exc:
        assert str(exc)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(payload: bytes) -> None:
    _only_protocol_errors(payload)


@FUZZ
@given(st.sampled_from([b"\x01\x01", b"\x01\x02"]), st.binary(max_size=300))
def test_random_bytes_behind_a_valid_header(header: bytes, rest: bytes) -> None:
    _only_protocol_errors(header + rest)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=30,
)


@FUZZ
@given(
    type_code=st.sampled_from(sorted(MESSAGE_TYPES)) | st.integers(-5, 300),
    party=st.sampled_from([DEVICE, UNIT]) | st.text(max_size=5),
    key_id=st.sampled_from([KEY_ID]) | msgpack_values,
    seq=st.integers(0, 3) | msgpack_values,
    body=msgpack_values,
    scheme=st.sampled_from([1, 2]),
)
def test_well_framed_junk_bodies(
    type_code: int, party: Any, key_id: Any, seq: Any, body: Any, scheme: int
) -> None:
    """A right-keyed MAC (or server signature) over a junk body: decoding is the only guard."""
    signed = bytes((1, scheme)) + msgpack.packb(
        [type_code, party, key_id, seq, NOW_MS, body], use_bin_type=True
    )
    tag = mac(MAC_KEY, signed) if scheme == 1 else SERVER_SIGNING_KEY.sign(signed)
    _only_protocol_errors(signed + tag)


@settings(max_examples=150, deadline=None)
@given(seed=st.sampled_from(CORPUS), data=st.data())
def test_structural_mutants_of_valid_frames(seed: Seed, data: st.DataObject) -> None:
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    _only_protocol_errors(_structural(rng, seed.payload))
