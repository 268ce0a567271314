"""What a session asks its shell to do: the I/O steps, as data (sans-IO).

A session's steps are generators that ``yield`` these; the asyncio shell (``proxy.py``) carries
each out and sends the result back in, and tests drive the same generators with a plain loop.
A step that fails (the upstream closed, the ledger refused) is thrown back into the generator
as the exception it raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from proctor.events.schema import Event

if TYPE_CHECKING:
    from proctor.identity.jwks import JwksClient

__all__ = [
    "Command",
    "OpenUpstream",
    "ReadClient",
    "ReadUpstream",
    "Record",
    "SendClient",
    "SendUpstream",
    "SigningKey",
    "StartTLS",
    "WaitCopy",
    "WaitReplies",
]


class Command:
    """Base of every command."""


@dataclass(frozen=True)
class ReadClient(Command):
    """Wait for the client's next message; the result is one ``FrontendMessage``."""


@dataclass(frozen=True)
class SendClient(Command):
    """Write bytes to the client."""

    data: bytes


@dataclass(frozen=True)
class StartTLS(Command):
    """Upgrade the client connection to TLS with the listener's certificate."""


@dataclass(frozen=True)
class OpenUpstream(Command):
    """Connect to the upstream database server."""


@dataclass(frozen=True)
class SendUpstream(Command):
    """Write bytes to the upstream server."""

    data: bytes


@dataclass(frozen=True)
class ReadUpstream(Command):
    """Wait for the upstream's next message during startup; the result is one message."""


@dataclass(frozen=True)
class Record(Command):
    """Append events to the ledger and wait until they are durable: no log, no access."""

    events: tuple[Event, ...]


@dataclass(frozen=True)
class SigningKey(Command):
    """The identity provider's key ``kid``, its key set fetched first when due; a JWK."""

    keys: JwksClient
    kid: str


@dataclass(frozen=True)
class WaitReplies(Command):
    """Wait until the upstream answered everything forwarded before batch ``batch``."""

    batch: int


@dataclass(frozen=True)
class WaitCopy(Command):
    """Wait until the upstream's answers show whether a COPY FROM forwarded copies in."""
