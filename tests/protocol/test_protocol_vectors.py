"""The test vectors printed in docs/protocol.md: if these change, the wire format changed."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import DeviceEndpoint, Envelope, Fix, Position, decode, digest, prove
from protocol.auth import _checkpoint_bytes, make_checkpoint, seal_mac

MAC_KEY = bytes(range(32))
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
T = 1_763_900_000_000

POSITION_FRAME = bytes.fromhex(
    "0101"
    "96"  # array of 6
    "01"  # type 1 (Position)
    "a97465726d2d30303432"  # "term-0042"
    "01"  # key_id 1
    "cd04d2"  # seq 1234
    "cf0000019ab0a20778"  # sent_ms 1763900000120
    "91"  # body: array of 1
    "96"  # Fix: array of 6 (trailing defaults left off)
    "cf0000019ab0a20700"  # time_ms 1763900000000
    "ce129d63b7"  # lat 312304567 = 31.2304567°
    "ce48676a74"  # lon 1214737012 = 121.4737012°
    "30"  # accuracy 48 dm = 4.8 m
    "cc87"  # speed 135 cm/s = 1.35 m/s
    "cd0a9b"  # course 2715 = 271.5°
    "7ab15f728f4584040b17805349ea22d3"  # HMAC-SHA256(key, bytes before)[:16]
)
WILL_FRAME = bytes.fromhex(
    "01019603a97465726d2d303034320100cf0000019ab0a2070091a76f66666c696e65"
    "ef6208735a29961d1a0a491d6d096d2a"
)


def test_position_frame_vector() -> None:
    fix = Fix(
        time_ms=T, lat=31.2304567, lon=121.4737012, accuracy_m=4.8, speed_mps=1.35,
        course_deg=271.5,
    )
    envelope = Envelope("term-0042", 1, 1234, T + 120, Position(fix=fix))
    assert seal_mac(envelope, MAC_KEY) == POSITION_FRAME
    assert decode(POSITION_FRAME).envelope == envelope
    assert digest(POSITION_FRAME).hex() == "ef6799c457c0a76bdb30e8339fac05e1"


def test_will_vector() -> None:
    device = DeviceEndpoint(
        device_id="term-0042", key_id=1, mac_key=MAC_KEY, signing_key=SIGNING_KEY,
        server_key=SIGNING_KEY.public_key(),
    )
    assert device.will(sent_ms=T).payload == WILL_FRAME


def test_checkpoint_vector() -> None:
    public = SIGNING_KEY.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw.hex() == "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    digests = digest(POSITION_FRAME)
    signed = _checkpoint_bytes("term-0042", 1, 1234, 1234, digests)
    assert signed.hex() == (
        "79696a696e672f636865636b706f696e742f763100"  # "yijing/checkpoint/v1\0"
        "09" "7465726d2d30303432"  # len(party), party
        "00000001"  # key_id, u32 big-endian
        "00000000000004d2" "00000000000004d2"  # first_seq, last_seq, u64 big-endian
        "ef6799c457c0a76bdb30e8339fac05e1"  # digests
    )
    checkpoint = make_checkpoint(
        SIGNING_KEY, party="term-0042", key_id=1, first_seq=1234, digests=digests
    )
    assert checkpoint.signature.hex() == (
        "8b376d92d9f0531874e999235ab9475c3dc00d77152f982d875768e32c71e99e"
        "8d334a01f7e535d2f5fc91a1d7bc7ee2a1046275acc3711122c89bbc92841c0f"
    )
    prove(POSITION_FRAME, decode(POSITION_FRAME), checkpoint, public)
