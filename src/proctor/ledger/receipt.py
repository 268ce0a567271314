"""Proof receipts in the C2SP tlog-proof format (c2sp.org/tlog-proof).

A receipt is self-contained: the header line ``c2sp.org/tlog-proof@v1``, an optional
``extra <base64>`` line, ``index <N>``, the inclusion proof's hashes one per line (base64),
an empty line, then the signed checkpoint note the proof is against. Anyone holding the
ledger's verifier key and the entry's bytes can check it offline; nothing in the receipt is
trusted before its checkpoint signature and the Merkle path are verified.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from proctor.errors import FormatError, VerificationError
from proctor.ledger.checkpoint import Checkpoint, open_checkpoint
from proctor.ledger.merkle import HASH_SIZE, leaf_hash, verify_inclusion
from proctor.ledger.note import MAX_NOTE_BYTES, Verifier, b64decode_strict

__all__ = ["HEADER", "Receipt", "verify_receipt"]

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_HASHES = 64  # a tree of 2**64 leaves has a path of at most 64 hashes


@dataclass(frozen=True)
class Receipt:
    """An inclusion proof of one entry against a signed checkpoint."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def text(self) -> str:
        """The receipt in tlog-proof text form."""
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {base64.b64encode(self.extra).decode()}")
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def parse(cls, data: str | bytes) -> Receipt:
        """Parse a receipt's format only; ``verify_receipt`` checks what it claims."""
        if isinstance(data, bytes):
            if len(data) > 2 * MAX_NOTE_BYTES:
                raise FormatError("receipt is too large")
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError("receipt is not UTF-8 text") from None
        head, sep, checkpoint = data.partition("\n\n")
        if not sep or not checkpoint:
            raise FormatError("receipt has no empty line before its checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise FormatError(f"receipt must start with the line {HEADER!r}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = b64decode_strict(rest[0][6:], "receipt extra data")
            rest = rest[1:]
        if not rest or not rest[0].startswith("index "):
            raise FormatError("receipt has no 'index N' line")
        digits = rest[0][6:]
        if not (digits.isascii() and digits.isdigit()) or (digits != "0" and digits[0] == "0"):
            raise FormatError(f"receipt index {digits!r} is not a decimal without leading 0")
        if len(digits) > 20 or int(digits) >= 1 << 63:
            raise FormatError("receipt index is out of range")
        if len(rest) - 1 > MAX_PROOF_HASHES:
            raise FormatError(f"receipt has more than {MAX_PROOF_HASHES} proof hashes")
        hashes = []
        for n, line in enumerate(rest[1:], start=1):
            h = b64decode_strict(line, f"receipt proof hash {n}")
            if len(h) != HASH_SIZE:
                raise FormatError(f"receipt proof hash {n} is {len(h)} bytes, not {HASH_SIZE}")
            hashes.append(h)
        return cls(int(digits), tuple(hashes), checkpoint, extra)


def verify_receipt(
    receipt: Receipt, entry: bytes, verifiers: Sequence[Verifier], origin: str | None = None
) -> Checkpoint:
    """Raise unless ``entry`` is at ``receipt.index`` in the tree a trusted key signed.

    Returns the verified checkpoint. ``origin`` defaults to the first verifier's name, the
    convention ``proctor keygen`` and ``ledger init`` follow.
    """
    if not verifiers:
        raise VerificationError("no verifier key given")
    want = origin if origin is not None else verifiers[0].name
    cp = open_checkpoint(receipt.checkpoint, verifiers, want)
    if receipt.index >= cp.size:
        raise VerificationError(
            f"receipt index {receipt.index} is outside its checkpoint's tree of size {cp.size}"
        )
    verify_inclusion(receipt.index, cp.size, leaf_hash(entry), receipt.hashes, cp.root)
    return cp
