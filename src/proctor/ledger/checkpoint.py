"""C2SP tlog-checkpoint bodies inside signed notes (c2sp.org/tlog-checkpoint).

Body: the log's origin line, the tree size in decimal, the base64 root hash, then optional
extension lines, each ending in a newline. The body is the text of a signed note.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from proctor.errors import FormatError
from proctor.ledger.merkle import HASH_SIZE
from proctor.ledger.note import Signer, Verifier, b64decode_strict, open_note, sign_note

__all__ = ["Checkpoint", "open_checkpoint"]


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of a tree: origin, size and root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The checkpoint text that gets signed."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "".join(f"{line}\n" for line in (*lines, *self.extensions))

    def sign(self, signers: Sequence[Signer]) -> str:
        """The checkpoint as a signed note."""
        return sign_note(self.body(), signers)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body (already verified note text)."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise FormatError("checkpoint must have origin, size and root lines")
        origin, size_s, root_s, *ext = lines[:-1]
        if not origin:
            raise FormatError("checkpoint origin line is empty")
        if not size_s.isdigit() or not size_s.isascii() or (size_s != "0" and size_s[0] == "0"):
            raise FormatError(f"checkpoint size {size_s!r} is not a decimal without leading 0")
        # Tree sizes are uint64 (RFC 9162 TreeHeadDataV2); checking the length first also keeps
        # int() under Python's 4300-digit limit, past which it raises a bare ValueError.
        if len(size_s) > 20 or int(size_s) >= 1 << 64:
            raise FormatError(f"checkpoint size of {len(size_s)} digits is larger than a uint64")
        root = b64decode_strict(root_s, "checkpoint root hash")
        if len(root) != HASH_SIZE:
            raise FormatError(f"checkpoint root hash is {len(root)} bytes, expected {HASH_SIZE}")
        if any(not e for e in ext):
            raise FormatError("checkpoint extension lines must not be empty")
        return cls(origin=origin, size=int(size_s), root=root, extensions=tuple(ext))


def open_checkpoint(
    note: str | bytes, verifiers: Sequence[Verifier], origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note and parse its body; check its origin if given."""
    cp = Checkpoint.parse(open_note(note, verifiers))
    if origin is not None and cp.origin != origin:
        raise FormatError(f"checkpoint is for log {cp.origin!r}, expected {origin!r}")
    return cp
