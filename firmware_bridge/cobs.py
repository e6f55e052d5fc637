"""Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999), without the delimiter.

``encode`` returns bytes that contain no 0x00; the caller appends the 0x00 delimiter.
``decode`` takes the bytes between two delimiters and raises ``CobsError`` for anything that
``encode`` cannot have produced. (The PyPI ``cobs`` package is not a dependency: 30 lines do.)
"""

from __future__ import annotations

from .errors import CobsError


def encode(data: bytes) -> bytes:
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(byte)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    if n == 0:
        raise CobsError("empty COBS block")
    while i < n:
        code = data[i]
        if code == 0:
            raise CobsError(f"zero byte at offset {i}")
        end = i + code
        if end > n:
            raise CobsError(f"code byte {code} at offset {i} runs past the end ({n})")
        block = data[i + 1 : end]
        if 0 in block:
            raise CobsError("zero byte inside a block")
        out += block
        i = end
        if code != 255 and i < n:
            out.append(0)
    return bytes(out)
