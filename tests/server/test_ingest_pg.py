"""The ingest tests of ``test_ingest`` again, with the PostgreSQL store under the harness.

Only the ``harness`` fixture changes (a ``PgStore`` on a database of its own); the tests that
build their own SQLite store are not repeated.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocol import ServerEndpoint
from server.ingest import Ingest
from server.keyring import StoreKeyRing
from server.pg_store import PgStore

from . import test_ingest as base
from .pg_support import fresh_database
from .support import SERVER_KEY, Terminal

alice = base.alice
bob = base.bob

for _name, _test in vars(base).items():
    if _name.startswith("test_") and "harness" in _test.__code__.co_varnames:
        globals()[_name] = _test


@pytest.fixture
def harness(alice: Terminal, bob: Terminal) -> Iterator[base.Harness]:
    with fresh_database() as url:
        store = PgStore(url)
        base.register(store, alice, bob)
        keyring = StoreKeyRing(store)
        published: list = []
        accepted: list = []
        ingest = Ingest(
            store,
            keyring,
            ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
            publish=published.append,
            on_accepted=accepted.append,
            clock=lambda: base.NOW_S,
        )
        yield base.Harness(store, keyring, ingest, published, accepted)  # type: ignore[arg-type]
        store.close()


def test_the_harness_runs_on_postgresql(harness: base.Harness) -> None:
    assert isinstance(harness.store, PgStore)
