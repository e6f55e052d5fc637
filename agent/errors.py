"""The agent's exceptions.

Exception tree::

    AgentError              base
    ├── OutboxError         the outbox database failed (sqlite3 errors converted here)
    └── SourceError         a position source failed (gpsd, serial, simulator)
"""


class AgentError(Exception):
    """Base of the agent's errors."""


class OutboxError(AgentError):
    """The outbox could not store, read or delete."""


class SourceError(AgentError):
    """A position source failed."""
