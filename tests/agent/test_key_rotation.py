"""Key rotation loses nothing: frames sealed under the old key are still sent, stored and
acknowledged after the terminal restarts with a rotated bundle, and each stays provable under
the key that sealed it. A data folder refuses another terminal's bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.agent import Agent
from agent.errors import KeyArchiveError
from agent.sim_gps import SimulatedWalker
from protocol import Outgoing, Presence, PresenceKind, ServerEndpoint, decode, prove
from provisioning import BrokerAddress, Enrolment, new_device
from server.ingest import Ingest
from server.keyring import StoreKeyRing
from server.sqlite_store import SqliteStore
from tests.server.support import device_key, device_record

T0 = 1_763_900_000_000
SERVER = Ed25519PrivateKey.generate()


class Clock:
    def __init__(self) -> None:
        self.now = T0 / 1000

    def __call__(self) -> float:
        return self.now


def enrolment(identity) -> Enrolment:  # type: ignore[no-untyped-def]
    return Enrolment(identity, SERVER.public_key(), 1, BrokerAddress("127.0.0.1", 1))


def agent(identity, data: Path, clock: Clock) -> Agent:  # type: ignore[no-untyped-def]
    return Agent(enrolment(identity), data, source=SimulatedWalker(22.5431, 114.0579), clock=clock)


def heartbeat() -> Presence:
    return Presence(kind=PresenceKind.HEARTBEAT)


def test_frames_sealed_under_the_old_key_are_stored_once_after_rotation(tmp_path: Path) -> None:
    clock = Clock()
    old_id = new_device("rot-1", key_id=1)
    first = agent(old_id, tmp_path / "agent", clock)
    for _ in range(10):
        first.outbox.put(heartbeat())
    old_items = first.outbox.next_items(100)  # on the wire, never acknowledged
    first.outbox.close()  # the terminal is switched off; the admin rotates its key

    new_id = new_device("rot-1", key_id=2)
    second = agent(new_id, tmp_path / "agent", clock)
    for _ in range(5):
        second.outbox.put(heartbeat())
    items = second.outbox.next_items(100)
    keys = {decode(i.payload).envelope.key_id for i in items}
    assert keys == {1, 2}
    assert {i.seq for i in old_items} <= {i.seq for i in items}
    assert [i.payload for i in items if i.seq <= 10] == [i.payload for i in old_items]

    store = SqliteStore(tmp_path / "server.db")
    store.add_device(device_record(old_id), device_key(old_id))
    store.add_key(device_key(new_id))  # the old key stays: frames sealed under it still verify
    published: list[Outgoing] = []
    ingest = Ingest(
        store,
        StoreKeyRing(store),
        ServerEndpoint(signing_key=SERVER, key_id=1),
        publish=published.append,
        clock=clock,
    )
    ingest.process([(i.topic, i.payload, T0) for i in items])
    assert ingest.stats.rejected == {}
    assert store.frame_count("rot-1") == len(items)
    assert len(published) == 2  # one ack per key generation
    for out in published:  # each verifies on the rotated terminal
        second._handle("msg", out.topic, out.payload)
    assert second.outbox.pending() == 0
    assert second.stats.rejected_downlink == 0

    # An inspector can still prove an old frame: the checkpoint written at the rotation was
    # signed with the old key and lists it.
    checkpoint_payload = store.checkpoint_covering("rot-1", 1)
    assert checkpoint_payload is not None
    checkpoint_frame = decode(checkpoint_payload)
    assert checkpoint_frame.envelope.key_id == 1
    payload = store.frame("rot-1", 1)
    assert payload is not None
    proof = prove(payload, decode(payload), checkpoint_frame.envelope.message, old_id.public_key)
    assert proof.key_id == 1
    second.outbox.close()
    store.close()


def test_a_data_folder_refuses_another_terminals_bundle(tmp_path: Path) -> None:
    clock = Clock()
    agent(new_device("ft-0001"), tmp_path, clock).outbox.close()
    with pytest.raises(KeyArchiveError, match="belongs to terminal 'ft-0001'"):
        agent(new_device("ft-0002"), tmp_path, clock)


def test_a_reissued_bundle_under_the_same_key_id_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    agent(new_device("ft-0001"), tmp_path, clock).outbox.close()
    with pytest.raises(KeyArchiveError, match="must carry a new key id"):
        agent(new_device("ft-0001"), tmp_path, clock)


def test_the_key_archive_is_private(tmp_path: Path) -> None:
    agent(new_device("ft-0001"), tmp_path, Clock()).outbox.close()
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
