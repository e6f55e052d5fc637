"""The protocol's exceptions: the only ones that decoding and validation ever raise.

Exception tree::

    ProtocolError                 base; every instance names .field and .reason
    ├── InvalidField              a value breaks a rule (range, length, pattern, type)
    ├── MalformedFrame            the bytes are not a frame: truncated, not msgpack, wrong shape
    │   └── UnsupportedVersion    a frame version or auth scheme this code does not speak
    ├── TopicError                a topic outside the scheme, or not matching the frame
    ├── PhoneFormatError          a phone app's payload that is not what its documentation says
    └── AuthenticationError       the frame is well formed but not proven genuine
        ├── UnknownKey            no key registered for (party, key id)
        ├── BadTag                MAC or signature does not verify
        ├── Revoked               genuine, but the terminal's enrolment is revoked
        └── Stale                 genuine, but sealed longer ago than the replay window

A caller that handles untrusted input catches ``ProtocolError`` and nothing else: any other
exception escaping a decoder is a bug (the fuzz tests assert exactly that).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of the tree. ``field`` is a dotted path into the message ("" for the frame)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)

    def within(self, prefix: str) -> ProtocolError:
        """The same error with ``prefix`` prepended to its field path (for nested values)."""
        path = f"{prefix}.{self.field}" if self.field else prefix
        return type(self)(path, self.reason)


class InvalidField(ProtocolError):
    """A field's value breaks its rule."""


class MalformedFrame(ProtocolError):
    """The bytes cannot be parsed as a frame of this protocol."""


class UnsupportedVersion(MalformedFrame):
    """A frame version or authentication scheme this implementation does not speak."""


class TopicError(ProtocolError):
    """A topic that is not in the scheme, or that does not match the frame it carries."""


class PhoneFormatError(ProtocolError):
    """A phone app's payload (OwnTracks, Traccar Client) that is not what its documentation
    says: see ``protocol.phone``. Apps sign nothing, so there is no authentication error here:
    who sent a phone report is the transport's business (broker ACL, HTTP auth)."""


class AuthenticationError(ProtocolError):
    """The frame parsed but is not proven to come from who it says."""


class UnknownKey(AuthenticationError):
    """No key is registered for the party and key id the frame names."""


class BadTag(AuthenticationError):
    """The MAC or signature does not verify."""


class Revoked(AuthenticationError):
    """The frame verifies, but its terminal has been revoked (lost, stolen, retired)."""


class Stale(AuthenticationError):
    """The frame verifies, but it was sealed longer ago than ``auth.REPLAY_WINDOW_MS``."""
