"""An organisation store per test, closed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.org.store import OrgStore

from .support import build


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OrgStore]:
    s = OrgStore(tmp_path / "org.db")
    yield s
    s.close()


@pytest.fixture
def org(store: OrgStore) -> OrgStore:
    """The store with ``support.build``'s organisation in it."""
    build(store)
    return store
