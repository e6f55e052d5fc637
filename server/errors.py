"""The server's exceptions.

Exception tree::

    ServerError                 base
    ├── ConfigError             a setting or file the server cannot use (names it)
    └── StoreError              the store failed (sqlite3 / psycopg errors converted here)
        └── UnknownDevice       a device id the store does not know
"""


class ServerError(Exception):
    """Base of the server's errors."""


class ConfigError(ServerError):
    """A setting the server cannot use."""


class StoreError(ServerError):
    """The store could not read or write."""


class UnknownDevice(StoreError):
    """No such device in the store."""
