"""The agent's exceptions.

Exception tree::

    AgentError              base
    ├── OutboxError         the outbox database failed (sqlite3 errors converted here)
    ├── SourceError         a position source failed (gpsd, serial, simulator)
    ├── ReportError         a clue cannot be sent as it is (also a ValueError)
    ├── KeyArchiveError     the data folder's keys: unreadable, another terminal's, or a TLS
    │                       key that is missing or not the certificate's
    └── AgentNotRunning     ``Agent.call`` got no answer: the loop is stopped or stuck
"""


class AgentError(Exception):
    """Base of the agent's errors."""


class OutboxError(AgentError):
    """The outbox could not store, read or delete."""


class SourceError(AgentError):
    """A position source failed."""


class ReportError(AgentError, ValueError):
    """A report the volunteer made cannot be sent as it is (a photo that is not a JPEG)."""


class KeyArchiveError(AgentError):
    """The key archive (``keys.json`` in the data folder) cannot be used."""


class AgentNotRunning(AgentError):
    """``Agent.call`` timed out: the agent's loop is not running or is stuck."""
