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
import types
from collections.abc import Callable, Sequence, Sized
from typing import Any, Generic, TypeVar, cast

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
        if type(value) is int and self.lo <= value <= self.hi:  # the common case, first
            return value
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
        # Below 2**50 units, raw / scale rounds back to raw exactly (the error of the division
        # is far below half a unit), so a wire integer in range needs no quantizing.
        self._exact = max(abs(self._wire.lo), abs(self._wire.hi)) < 2**50

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
        # The common case first: an int within the wire range whose value is within the field's
        # range is already on the grid, so check() would return raw / scale unchanged.
        if type(raw) is int and self._exact and self._wire.lo <= raw <= self._wire.hi:
            number = raw / self.scale
            if self.lo <= number and (number < self.hi if self.hi_open else number <= self.hi):
                return number
        return self.check(self._wire.check(raw, name) / self.scale, name)


#: Control characters other than newline and tab (C0, U+0000 to U+001F).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")


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
        if _CONTROL.search(value):
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
        #: Items whose wire form is themselves (ints, text, bytes) are copied, not converted.
        self._plain_items = type(inner).to_wire is Codec.to_wire

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
        if self._plain_items:
            return list(value)
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

#: (name, codec, default) of one field; default is ``REQUIRED`` for a required field.
Field = tuple[str, Codec[Any], object]
#: Stores a field's value into a new record, past the frozen dataclass's ``__setattr__``.
Setter = Callable[[Any, Any], None]


def wire(codec: Codec[Any], *, default: object = dataclasses.MISSING) -> Any:
    """Declare a dataclass field with its codec (and optional default)."""
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={"codec": codec})
    return dataclasses.field(default=default, metadata={"codec": codec})


def _plain(codec: Codec[Any]) -> bool:
    """Whether a codec's wire form of every value is the value itself."""
    if type(codec) is Maybe:
        return _plain(codec.inner)
    return type(codec).to_wire is Codec.to_wire


def _setter(cls: type[Any], name: str) -> Setter:
    """The slot's own descriptor where the record has slots (what ``object.__setattr__``
    would find and call), else ``object.__setattr__`` itself."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            slot = klass.__dict__[name]
            if isinstance(slot, types.MemberDescriptorType):
                return slot.__set__
            break
    return lambda record, value: object.__setattr__(record, name, value)


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """How one record type is decoded and encoded, worked out once per type."""

    fields: tuple[Field, ...]
    required: int
    #: Builds a record from a wire list that has at least ``required`` items.
    build: Callable[[Sequence[object]], Any]
    names: tuple[str, ...]
    defaults: tuple[object, ...]
    #: The codec's to_wire per field, ``None`` where the value is its own wire form.
    encode: tuple[Callable[[Any], object] | None, ...]


_PLANS: dict[type[Any], _Plan] = {}


def _builder(cls: type[Any], fields: tuple[Field, ...]) -> Callable[[Sequence[object]], Any]:
    """A function that fills in a new record from its wire list, one statement per field
    (as ``dataclasses`` writes ``__init__``): a loop over the fields costs as much again.

    Each codec's from_wire runs the field's check, so the record is filled in directly rather
    than through ``__init__``, which would check every field a second time (decoding is the
    server's hot path); rules across fields still run (``validate``). Fields beyond the end of
    the list take their defaults; items beyond the last field (a newer sender's) are ignored.
    Only the field's index and its name (an identifier, as ``repr``) go into the source.
    """
    env: dict[str, Any] = {"new": cls.__new__, "cls": cls}
    lines = ["def build(raw):", "    n = len(raw)", "    record = new(cls)"]
    for i, (name, codec, default) in enumerate(fields):
        env[f"set{i}"], env[f"decode{i}"], env[f"default{i}"] = (
            _setter(cls, name), codec.from_wire, default
        )  # fmt: skip
        value = f"decode{i}(raw[{i}], {name!r})"
        if default is not REQUIRED:
            value += f" if n > {i} else default{i}"
        lines.append(f"    set{i}(record, {value})")
    if cls.validate is not Record.validate:
        lines.append("    record.validate()")
    lines.append("    return record")
    exec("\n".join(lines), env)
    build: Callable[[Sequence[object]], Any] = env["build"]
    return build


def _plan(cls: type[Any]) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    fields = tuple(
        (
            f.name,
            cast(Codec[Any], f.metadata["codec"]),
            REQUIRED if f.default is dataclasses.MISSING else f.default,
        )
        for f in dataclasses.fields(cls)
    )
    plan = _Plan(
        fields=fields,
        required=sum(1 for _, _, d in fields if d is REQUIRED),
        build=_builder(cls, fields),
        names=tuple(n for n, _, _ in fields),
        defaults=tuple(d for _, _, d in fields),
        encode=tuple(None if _plain(c) else c.to_wire for _, c, _ in fields),
    )
    _PLANS[cls] = plan
    return plan


class Record:
    """Base of frozen, validating dataclasses with a positional wire form.

    Wire form: a list of the fields in declaration order. Decoders accept a shorter list when
    the missing trailing fields have defaults (an older sender) and ignore extra trailing items
    (a newer sender): fields are only ever appended, never reordered or removed, within a
    protocol version.
    """

    @classmethod
    def _fields(cls) -> tuple[Field, ...]:
        """(name, codec, default) per field; default is ``REQUIRED`` for required fields."""
        return _plan(cls).fields

    def __post_init__(self) -> None:
        for name, codec, _ in self._fields():
            value = codec.check(getattr(self, name), name)
            object.__setattr__(self, name, value)
        self.validate()

    def validate(self) -> None:
        """Rules across fields; subclasses override and raise ``InvalidField``."""

    def to_wire(self) -> list[object]:
        plan = _plan(type(self))
        values = [getattr(self, name) for name in plan.names]
        # Trailing fields at their defaults are left off: the decoder restores them, and a fix
        # without speed, course, altitude and satellites is 5 bytes shorter.
        defaults = plan.defaults
        end = len(values)
        while end and defaults[end - 1] is not REQUIRED and values[end - 1] == defaults[end - 1]:
            end -= 1
        return [
            value if encode is None else encode(value)
            for value, encode in zip(values[:end], plan.encode, strict=False)
        ]

    @classmethod
    def from_wire(cls: type[M], raw: object) -> M:
        if not isinstance(raw, (list, tuple)):
            raise MalformedFrame("", f"{cls.__name__} must be a list, got {_type_name(raw)}")
        plan = _plan(cls)
        if len(raw) < plan.required:
            raise MalformedFrame("", f"{cls.__name__} needs {plan.required} fields, got {len(raw)}")
        record: M = plan.build(raw)  # see _builder
        return record


def replace(record: M, **changes: object) -> M:
    """``dataclasses.replace`` for records, re-running validation."""
    return cast(M, dataclasses.replace(cast(Any, record), **changes))


