"""Field rules: how one value is checked, and how it looks on the wire.

Every message field is declared with one of these codecs (see ``protocol.messages``). The same
rule runs when a message is built in Python and when it is decoded from the wire, so a value
that could not have been constructed can never be decoded either.

Wire forms are chosen for msgpack's compact encodings: floats with a known resolution travel as
scaled integers (a latitude to 1e-7 degree, ~1 cm, is a 5-byte int32 instead of a 9-byte
float64), enums as their short string values.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Sequence, Sized
from typing import Any, ClassVar, Generic, TypeVar, cast

from .errors import InvalidField, MalformedFrame, ProtocolError

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
M = TypeVar("M", bound="Record")

#: Timestamps are milliseconds since the Unix epoch, UTC. The window admits real receivers'
#: week-rollover dates (gpsd's mtk-3301 log decodes to 2028) while refusing garbage.
MIN_TIME_MS = 946_684_800_000  # 2000-01-01
MAX_TIME_MS = 4_102_444_800_000  # 2100-01-01


def _type_name(value: object) -> str:
    return type(value).__name__


def _show(value: object, limit: int = 40) -> str:
    """A short rendering of an untrusted value for an error message.

    Never recurses into containers (a 1000-deep msgpack list would exhaust ``repr``'s
    recursion limit) and never prints a huge integer (``int.__str__`` refuses beyond 4300
    digits), so building the message of an ``InvalidField`` cannot itself fail.
    """
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"a {value.bit_length()}-bit integer"
    if isinstance(value, (str, bytes)):
        text = repr(value[:limit])
        return text + "..." if len(value) > limit else text
    if isinstance(value, Sized):
        return f"a {_type_name(value)} of length {len(value)}"
    return f"a {_type_name(value)}"


class Codec(Generic[T]):
    """Checks a Python value (``check``) and converts it to and from its wire form."""

    def check(self, value: object, name: str) -> T:
        raise NotImplementedError  # abstract: every concrete codec overrides it

    def to_wire(self, value: T) -> object:
        return value

    def from_wire(self, raw: object, name: str) -> T:
        return self.check(raw, name)


class Int(Codec[int]):
    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def check(self, value: object, name: str) -> int:
        # bool is an int subclass in Python; a True where a count belongs is a bug upstream.
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidField(name, f"expected an integer, got {_type_name(value)}")
        if not self.lo <= value <= self.hi:
            raise InvalidField(name, f"{_show(value)} is outside [{self.lo}, {self.hi}]")
        return value


class Bool(Codec[bool]):
    def check(self, value: object, name: str) -> bool:
        if not isinstance(value, bool):
            raise InvalidField(name, f"expected true or false, got {_type_name(value)}")
        return value


class Scaled(Codec[float]):
    """A float with a fixed resolution ``1/scale``, sent as an integer count of that unit.

    Construction rounds to the resolution, so decode(encode(x)) == x exactly.
    """

    def __init__(self, scale: int, lo: float, hi: float, *, hi_open: bool = False) -> None:
        self.scale, self.lo, self.hi, self.hi_open = scale, lo, hi, hi_open
        self._wire = Int(math.floor(lo * scale), math.ceil(hi * scale))

    def check(self, value: object, name: str) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise InvalidField(name, f"expected a number, got {_type_name(value)}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            raise InvalidField(name, f"{_show(value)} is outside [{self.lo}, {self.hi}]") from None
        if not math.isfinite(number):
            raise InvalidField(name, f"{number} is not a finite number")
        above = number >= self.hi if self.hi_open else number > self.hi
        if number < self.lo or above:
            bracket = ")" if self.hi_open else "]"
            raise InvalidField(name, f"{number} is outside [{self.lo}, {self.hi}{bracket}")
        quantized = round(number * self.scale) / self.scale
        if self.hi_open and quantized >= self.hi:
            quantized = self.lo  # 359.99996° rounds to 360.0, which is 0°
        return quantized

    def to_wire(self, value: float) -> int:
        return round(value * self.scale)

    def from_wire(self, raw: object, name: str) -> float:
        return self.check(self._wire.check(raw, name) / self.scale, name)


class Str(Codec[str]):
    def __init__(self, max_len: int, *, pattern: str | None = None, min_len: int = 0) -> None:
        self.max_len, self.min_len = max_len, min_len
        self.pattern = re.compile(pattern) if pattern else None

    def check(self, value: object, name: str) -> str:
        if not isinstance(value, str):
            raise InvalidField(name, f"expected text, got {_type_name(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise InvalidField(
                name, f"length {len(value)} is outside [{self.min_len}, {self.max_len}]"
            )
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise InvalidField(name, f"{value!r} does not match {self.pattern.pattern}")
        if any(ord(ch) < 0x20 and ch not in "\n\t" for ch in value):
            raise InvalidField(name, "contains control characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: msgpack could not encode it
                raise InvalidField(name, "is not valid Unicode (lone surrogate)") from None
        return value


class Bytes(Codec[bytes]):
    def __init__(self, max_len: int, *, min_len: int = 0, multiple_of: int = 1) -> None:
        self.max_len, self.min_len, self.multiple_of = max_len, min_len, multiple_of

    def check(self, value: object, name: str) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise InvalidField(name, f"expected bytes, got {_type_name(value)}")
        data = bytes(value)
        if not self.min_len <= len(data) <= self.max_len:
            raise InvalidField(
                name, f"{len(data)} bytes is outside [{self.min_len}, {self.max_len}]"
            )
        if len(data) % self.multiple_of:
            raise InvalidField(name, f"{len(data)} bytes is not a multiple of {self.multiple_of}")
        return data


class Choice(Codec[E]):
    """A member of a ``str``-valued enum, sent as its value."""

    def __init__(self, enum_type: type[E]) -> None:
        self.enum_type = enum_type

    def check(self, value: object, name: str) -> E:
        if isinstance(value, self.enum_type):
            return value
        if isinstance(value, str):
            try:
                return self.enum_type(value)
            except ValueError:
                pass
        allowed = ", ".join(str(m.value) for m in self.enum_type)
        raise InvalidField(name, f"{_show(value)} is not one of: {allowed}")

    def to_wire(self, value: E) -> object:
        return value.value


class Maybe(Codec[T | None]):
    """An optional value: ``None`` on the wire is msgpack nil."""

    def __init__(self, inner: Codec[T]) -> None:
        self.inner = inner

    def check(self, value: object, name: str) -> T | None:
        return None if value is None else self.inner.check(value, name)

    def to_wire(self, value: T | None) -> object:
        return None if value is None else self.inner.to_wire(value)

    def from_wire(self, raw: object, name: str) -> T | None:
        return None if raw is None else self.inner.from_wire(raw, name)


class ListOf(Codec[tuple[T, ...]]):
    """A bounded sequence, held as a tuple so the containing dataclass stays immutable."""

    def __init__(self, inner: Codec[T], *, max_len: int, min_len: int = 0) -> None:
        self.inner, self.max_len, self.min_len = inner, max_len, min_len

    def _length(self, value: object, name: str) -> Sequence[object]:
        if not isinstance(value, (list, tuple)):
            raise InvalidField(name, f"expected a list, got {_type_name(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise InvalidField(
                name, f"{len(value)} items is outside [{self.min_len}, {self.max_len}]"
            )
        return value

    def check(self, value: object, name: str) -> tuple[T, ...]:
        items = self._length(value, name)
        return tuple(self.inner.check(v, f"{name}[{i}]") for i, v in enumerate(items))

    def to_wire(self, value: tuple[T, ...]) -> object:
        return [self.inner.to_wire(v) for v in value]

    def from_wire(self, raw: object, name: str) -> tuple[T, ...]:
        items = self._length(raw, name)
        return tuple(self.inner.from_wire(v, f"{name}[{i}]") for i, v in enumerate(items))


class Nested(Codec[M]):
    """Another record, sent as its own positional list."""

    def __init__(self, record_type: type[M]) -> None:
        self.record_type = record_type

    def check(self, value: object, name: str) -> M:
        if not isinstance(value, self.record_type):
            raise InvalidField(
                name, f"expected {self.record_type.__name__}, got {_type_name(value)}"
            )
        return value

    def to_wire(self, value: M) -> object:
        return value.to_wire()

    def from_wire(self, raw: object, name: str) -> M:
        try:
            return self.record_type.from_wire(raw)
        except ProtocolError as exc:
            raise exc.within(name) from None


REQUIRED = object()
"""Marks a field without a default in a record's layout."""


def wire(codec: Codec[Any], *, default: object = dataclasses.MISSING) -> Any:
    """Declare a dataclass field with its codec (and optional default)."""
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={"codec": codec})
    return dataclasses.field(default=default, metadata={"codec": codec})


class Record:
    """Base of frozen, validating dataclasses with a positional wire form.

    Wire form: a list of the fields in declaration order. Decoders accept a shorter list when
    the missing trailing fields have defaults (an older sender) and ignore extra trailing items
    (a newer sender): fields are only ever appended, never reordered or removed, within a
    protocol version.
    """

    _layout: ClassVar[tuple[tuple[str, Codec[Any], object], ...]] = ()

    @classmethod
    def _fields(cls) -> tuple[tuple[str, Codec[Any], object], ...]:
        """(name, codec, default) per field; default is ``REQUIRED`` for required fields."""
        layout = cls.__dict__.get("_layout_cache")
        if layout is None:
            layout = tuple(
                (
                    f.name,
                    cast(Codec[Any], f.metadata["codec"]),
                    REQUIRED if f.default is dataclasses.MISSING else f.default,
                )
                for f in dataclasses.fields(cast(Any, cls))
            )
            cls._layout_cache = layout  # type: ignore[attr-defined]
        return cast(tuple[tuple[str, Codec[Any], object], ...], layout)

    def __post_init__(self) -> None:
        for name, codec, _ in self._fields():
            value = codec.check(getattr(self, name), name)
            object.__setattr__(self, name, value)
        self.validate()

    def validate(self) -> None:
        """Rules across fields; subclasses override and raise ``InvalidField``."""

    def to_wire(self) -> list[object]:
        layout = self._fields()
        values = [getattr(self, name) for name, _, _ in layout]
        # Trailing fields at their defaults are left off: the decoder restores them, and a fix
        # without speed, course, altitude and satellites is 5 bytes shorter.
        end = len(values)
        while end and layout[end - 1][2] is not REQUIRED and values[end - 1] == layout[end - 1][2]:
            end -= 1
        return [layout[i][1].to_wire(values[i]) for i in range(end)]

    @classmethod
    def from_wire(cls: type[M], raw: object) -> M:
        if not isinstance(raw, (list, tuple)):
            raise MalformedFrame("", f"{cls.__name__} must be a list, got {_type_name(raw)}")
        layout = cls._fields()
        required = sum(1 for _, _, default in layout if default is REQUIRED)
        if len(raw) < required:
            raise MalformedFrame("", f"{cls.__name__} needs {required} fields, got {len(raw)}")
        # Each codec's from_wire already ran the field's check, so the record is filled in
        # directly rather than through __init__, which would check every field a second time
        # (decoding is the server's hot path). Rules across fields still run: validate().
        record = cls.__new__(cls)
        for i, (name, codec, default) in enumerate(layout):
            value = codec.from_wire(raw[i], name) if i < len(raw) else default
            object.__setattr__(record, name, value)
        record.validate()
        return record


def replace(record: M, **changes: object) -> M:
    """``dataclasses.replace`` for records, re-running validation."""
    return cast(M, dataclasses.replace(cast(Any, record), **changes))


