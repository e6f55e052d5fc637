"""Which telemetry store a URL names: SQLite in the data folder, or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .sqlite_store import SqliteStore
from .store import Store


def open_store(url: str | None, data: Path) -> Store:
    """None → SQLite in ``data/yijing.db``; ``postgresql://user@host/db`` → PostgreSQL."""
    if url is None:
        return SqliteStore(data / "yijing.db")
    if url.startswith(("postgresql://", "postgres://")):
        from .pg_store import PgStore  # psycopg is loaded only by those who use it

        return PgStore(url)
    raise ConfigError(f"store URL {url!r}: use postgresql://user@host/db (or none for SQLite)")
