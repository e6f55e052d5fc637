"""The decoder's and sealer's fast paths give exactly what the plain rules give.

Ingest runs ``protocol`` once or twice per frame, so some steps take a shortcut for the common
case (an exact ``int`` in range, a wire integer already on a field's grid, an ack built from
valid sequence numbers, HMAC spelt out over ``hashlib``, records filled in by a generated
function). Each test here holds a shortcut to the straightforward code it replaced, kept below
as the reference: the same value, or the same exception type, field and reason.
"""

from __future__ import annotations

import dataclasses
import hmac
import random
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import Fix, Message, ProtocolError, StoredAck
from protocol.auth import mac
from protocol.errors import InvalidField, MalformedFrame
from protocol.fields import REQUIRED, Int, Maybe, Record, Scaled, Str, _show, _type_name
from protocol.messages import MAX_SEQ, MESSAGE_TYPES

from .strategies import MESSAGE_STRATEGIES


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What ``fn(*args)`` gives: its value, or its ProtocolError as (type, field, reason)."""
    try:
        return ("value", fn(*args))
    except ProtocolError as exc:
        return ("error", (type(exc), exc.field, exc.reason))


# --- HMAC -------------------------------------------------------------------------------------


def reference_mac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")[:16]


@given(key=st.binary(max_size=200), data=st.binary(max_size=2000))
def test_mac_is_truncated_hmac_sha256(key: bytes, data: bytes) -> None:
    assert mac(key, data) == reference_mac(key, data)


def test_mac_at_the_block_size_boundaries() -> None:
    key = bytes(range(256)) * 4
    for size in (0, 1, 31, 32, 33, 63, 64, 65, 128, 1000):
        assert mac(key[:size], b"yijing") == reference_mac(key[:size], b"yijing"), size


def test_mac_takes_any_bytes_like_key() -> None:
    key = bytes(range(32))
    assert mac(bytearray(key), b"x") == reference_mac(key, b"x")  # type: ignore[arg-type]
    assert mac(memoryview(key), b"x") == reference_mac(key, b"x")  # type: ignore[arg-type]


def test_mac_rfc_4231_case_2() -> None:
    """RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?"."""
    tag = mac(b"Jefe", b"what do ya want for nothing?")
    assert tag == bytes.fromhex("5bdcc146bf60754e6a042426089575c7")


# --- scalar codecs ----------------------------------------------------------------------------


def reference_int(codec: Int, value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidField(name, f"expected an integer, got {_type_name(value)}")
    if not codec.lo <= value <= codec.hi:
        raise InvalidField(name, f"{_show(value)} is outside [{codec.lo}, {codec.hi}]")
    return value


class Sub(int):
    """An int subclass other than bool: accepted, as before."""


@given(st.one_of(st.integers(-(2**70), 2**70), st.booleans(), st.floats(), st.text(max_size=3),
                 st.integers(-5, 5).map(Sub)))  # fmt: skip
def test_int_check_accepts_and_refuses_as_before(value: object) -> None:
    for codec in (Int(0, 100), Int(-(2**31), 2**31 - 1), Int(1, MAX_SEQ)):
        got = outcome(codec.check, value, "f")
        assert got == outcome(reference_int, codec, value, "f")
        if got[0] == "value":
            assert got[1] is value


def scaled_codecs() -> list[Scaled]:
    found: list[Scaled] = []
    types: list[type[Any]] = [Fix, *MESSAGE_TYPES.values()]
    for cls in types:
        for f in dataclasses.fields(cls):
            codec = f.metadata["codec"]
            codec = codec.inner if isinstance(codec, Maybe) else codec
            if isinstance(codec, Scaled):
                found.append(codec)
    return found


SCALED = scaled_codecs()


def test_every_scaled_field_is_covered() -> None:
    assert len(SCALED) >= 8  # Fix's five, DispatchCommand's and Task's lat/lon


def slow_scaled(codec: Scaled, raw: object) -> float:
    return codec.check(codec._wire.check(raw, "x") / codec.scale, "x")


def test_scaled_from_wire_is_check_of_the_scaled_integer() -> None:
    rng = random.Random(7)
    for codec in SCALED:
        lo, hi = codec._wire.lo, codec._wire.hi
        samples: list[object] = [lo, hi, lo - 1, hi + 1, 0, -1, 1, (lo + hi) // 2, True, 1.0,
                                 None, "1", 2**64, -(2**64)]  # fmt: skip
        samples += [rng.randint(lo, hi) for _ in range(20_000)]
        samples += [rng.randint(lo - 10, lo + 10) for _ in range(50)]
        samples += [rng.randint(hi - 10, hi + 10) for _ in range(50)]
        for raw in samples:
            got = outcome(codec.from_wire, raw, "x")
            assert got == outcome(slow_scaled, codec, raw), (codec.scale, raw)


# --- text -------------------------------------------------------------------------------------


def reference_str(codec: Str, value: object, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidField(name, f"expected text, got {_type_name(value)}")
    if not codec.min_len <= len(value) <= codec.max_len:
        raise InvalidField(
            name, f"length {len(value)} is outside [{codec.min_len}, {codec.max_len}]"
        )
    if codec.pattern is not None and not codec.pattern.fullmatch(value):
        raise InvalidField(name, f"{value!r} does not match {codec.pattern.pattern}")
    if any(ord(ch) < 0x20 and ch not in "\n\t" for ch in value):
        raise InvalidField(name, "contains control characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidField(name, "is not valid Unicode (lone surrogate)") from None
    return value


@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=30) | st.text(max_size=30))
def test_str_check_refuses_control_characters_as_before(value: str) -> None:
    for codec in (Str(200), Str(64, pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", min_len=1)):
        assert outcome(codec.check, value, "t") == outcome(reference_str, codec, value, "t")


def test_every_control_character_but_newline_and_tab_is_refused() -> None:
    for code in range(0x80):
        ch = chr(code)
        refused = outcome(Str(10).check, f"a{ch}b", "t")[0] == "error"
        assert refused == (code < 0x20 and ch not in "\n\t"), hex(code)


# --- records ----------------------------------------------------------------------------------


def reference_from_wire(cls: type[Record], raw: object) -> Record:
    """Record.from_wire before the generated builders: a loop over the fields."""
    if not isinstance(raw, (list, tuple)):
        raise MalformedFrame("", f"{cls.__name__} must be a list, got {_type_name(raw)}")
    layout = cls._fields()
    required = sum(1 for _, _, default in layout if default is REQUIRED)
    if len(raw) < required:
        raise MalformedFrame("", f"{cls.__name__} needs {required} fields, got {len(raw)}")
    record = cls.__new__(cls)
    for i, (name, codec, default) in enumerate(layout):
        value = codec.from_wire(raw[i], name) if i < len(raw) else default
        object.__setattr__(record, name, value)
    record.validate()
    return record


def reference_to_wire(record: Record) -> list[object]:
    layout = record._fields()
    values = [getattr(record, name) for name, _, _ in layout]
    end = len(values)
    while end and layout[end - 1][2] is not REQUIRED and values[end - 1] == layout[end - 1][2]:
        end -= 1
    return [layout[i][1].to_wire(values[i]) for i in range(end)]


def mutants(wire: list[object], rng: random.Random) -> list[object]:
    """The wire list, shortened, lengthened, and with one item replaced by junk."""
    junk: list[object] = [None, True, -1, 0, 2**40, 1.5, "", "x", b"", [], [1], {"a": 1}]
    out: list[object] = [wire, wire[:-1], wire[:1], [], [*wire, 1, "extra"], tuple(wire), "x"]
    for _ in range(6):
        if wire:
            changed = list(wire)
            changed[rng.randrange(len(changed))] = rng.choice(junk)
            out.append(changed)
    return out


@settings(max_examples=300)
@given(message=st.one_of(*MESSAGE_STRATEGIES.values()), seed=st.integers(0, 2**32))
def test_generated_builders_decode_as_the_field_loop(message: Message, seed: int) -> None:
    cls = type(message)
    wire: list[object] = msgpack.unpackb(msgpack.packb(message.to_wire()), raw=False)
    assert message.to_wire() == reference_to_wire(message)
    rng = random.Random(seed)
    for raw in mutants(wire, rng):
        assert outcome(cls.from_wire, raw) == outcome(reference_from_wire, cls, raw), raw
    short: list[object] = [1_700_000_000_000, 1, 2]
    full: list[object] = [1_700_000_000_000, 1, 2, None, None, 3599, 5, 3, "sim"]
    for raw in [short, *mutants(full, rng)]:
        assert outcome(Fix.from_wire, raw) == outcome(reference_from_wire, Fix, raw), raw


# --- acknowledgements -------------------------------------------------------------------------


def reference_of(seqs: list[Any]) -> StoredAck:
    ordered = sorted(set(seqs))
    ranges: list[tuple[int, int]] = []
    for seq in ordered:
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return StoredAck(ranges=tuple(ranges))


@given(
    st.lists(
        st.one_of(st.integers(-3, 3000), st.sampled_from([MAX_SEQ, MAX_SEQ + 1, 0, -1])),
        max_size=40,
    )
)
def test_stored_ack_of_builds_what_validation_builds(seqs: list[int]) -> None:
    got = outcome(StoredAck.of, seqs)
    assert got == outcome(reference_of, seqs)
    if got[0] == "value":
        ack = got[1]
        assert ack.to_wire() == reference_to_wire(ack)
        assert StoredAck.from_wire(ack.to_wire()) == ack


def test_stored_ack_of_refuses_as_validation_does() -> None:
    for seqs in ([], [True], [1, 2.0], list(range(1, 2 * 513, 2)), list(range(1, 2 * 512, 2))):
        assert outcome(StoredAck.of, seqs) == outcome(reference_of, seqs)
    with pytest.raises(ProtocolError, match="ranges"):
        StoredAck.of(list(range(1, 2 * 513, 2)))  # 513 ranges
