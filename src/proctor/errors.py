"""The one error root of Proctor.

::

    ProctorError
    ├── InputError            untrusted input or the remote side is wrong
    │   ├── EventError        an event failed schema validation (names the field path)
    │   ├── FormatError       a note, key, receipt or tile is garbled
    │   └── VerificationError a signature, proof or ledger check failed
    ├── UsageError            local misuse: bad argument, missing ledger, bad config
    │   └── PrunedError       the entry asked for was pruned by retention (says where it went)
    └── StorageError          the store cannot be read or written (corrupt file, disk, closed)

The CLI maps each branch to an exit code and prints the message; no traceback reaches a user.
"""

from __future__ import annotations

__all__ = [
    "EventError",
    "FormatError",
    "InputError",
    "ProctorError",
    "PrunedError",
    "StorageError",
    "UsageError",
    "VerificationError",
]


class ProctorError(Exception):
    """Root of every error Proctor raises on purpose."""


class InputError(ProctorError):
    """Untrusted input or a remote party is at fault."""


class EventError(InputError):
    """An event does not match the ``proctor.access/v1`` schema."""


class FormatError(InputError):
    """A signed note, key, receipt or tile is not in its specified format."""


class VerificationError(InputError):
    """A signature, Merkle proof or ledger check failed."""


class UsageError(ProctorError):
    """Local misuse: a bad argument, a missing ledger, a bad setting."""


class PrunedError(UsageError):
    """The entry asked for was pruned by retention; the message names the rule and archive."""

    def __init__(
        self,
        message: str,
        *,
        index: int,
        prune_event: int | None = None,
        archive: str | None = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.prune_event = prune_event
        self.archive = archive


class StorageError(ProctorError):
    """The ledger store cannot be read or written."""
