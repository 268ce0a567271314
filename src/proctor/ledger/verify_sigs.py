"""Signature checks for verification: which stored checkpoints a trusted key really signed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from proctor.errors import FormatError, VerificationError
from proctor.ledger.checkpoint import Checkpoint, open_checkpoint
from proctor.ledger.note import Verifier, split_note
from proctor.ledger.store import SqliteStore

if TYPE_CHECKING:
    from proctor.ledger.verify import Report

__all__ = ["open_saved", "signed_checkpoints"]


def _why(
    note: str | bytes, verifiers: Sequence[Verifier], exc: Exception
) -> Literal["bad-signature", "unknown-signature"]:
    """'bad-signature' when a trusted key's line is there but wrong, else 'unknown-signature'."""
    try:
        _, sigs = split_note(note)
    except FormatError:
        return "bad-signature"
    known = {(v.name, v.key_id) for v in verifiers}
    if any((s.name, s.key_id) in known for s in sigs):
        return "bad-signature"
    return "unknown-signature" if isinstance(exc, VerificationError) else "bad-signature"


def signed_checkpoints(
    store: SqliteStore, verifiers: Sequence[Verifier], origin: str, report: Report
) -> list[Checkpoint]:
    """Stored checkpoints that verify with a trusted key, smallest first; others reported."""
    out: list[Checkpoint] = []
    stored = store.checkpoints()
    report.checkpoints = len(stored)
    for row in stored:
        try:
            cp = open_checkpoint(row.note, verifiers, origin)
        except (FormatError, VerificationError) as exc:
            kind = _why(row.note, verifiers, exc)
            report.add(kind, None, None, f"checkpoint stored for size {row.size}: {exc}")
            continue
        if cp.size != row.size:
            report.add(
                "bad-signature",
                None,
                None,
                f"checkpoint stored for size {row.size} signs size {cp.size}",
            )
            continue
        out.append(cp)
    report.valid_checkpoints = len(out)
    return out


def open_saved(
    note: str | bytes, verifiers: Sequence[Verifier], origin: str, report: Report
) -> Checkpoint | None:
    """The auditor's saved checkpoint, or None (reported) when no trusted key signed it."""
    try:
        return open_checkpoint(note, verifiers, origin)
    except (FormatError, VerificationError) as exc:
        kind = _why(note, verifiers, exc)
        report.add(kind, None, None, f"saved checkpoint: {exc}")
        return None
