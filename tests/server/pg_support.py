"""A fresh PostgreSQL database per test, for the store tests that run on both back ends.

The server is ``YIJING_TEST_PG`` (default: the trust-auth one CI runs on 127.0.0.1:5432). If it
cannot be reached the PostgreSQL cases fail, naming it: CI has one, so skipping would hide a
back end that no longer works.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

ADMIN_URL = os.environ.get("YIJING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the postgresql store tests and is not reachable at "
            f"{ADMIN_URL} (set YIJING_TEST_PG; .ci/run installs it): {exc}",
            pytrace=False,
        )


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """Create ``yj_test_<random>``, yield its URL, drop it (closing what still uses it)."""
    name = f"yj_test_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo("", **info)
    finally:
        with _admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
