"""CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR.

The check value (the CRC of ASCII "123456789") is 0x29B1.
"""

from __future__ import annotations

POLY = 0x1021
INIT = 0xFFFF
CHECK = 0x29B1


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ POLY) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _table()


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = INIT) -> int:
    """The CRC of ``data``; pass a previous result as ``crc`` to continue over more data."""
    for byte in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc
