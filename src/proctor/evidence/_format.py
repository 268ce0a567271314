"""The evidence bundle format ``proctor.evidence/v1``: member names, the manifest, the limits.

Shared by the writer (``bundle``) and the reader (``verify``); the README shipped inside every
bundle (``_readme``) describes the same layout for people.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from proctor.errors import FormatError
from proctor.ledger.note import MAX_NOTE_BYTES

__all__ = [
    "CHECKPOINT",
    "DATA_MEMBERS",
    "EVENTS",
    "FORMAT",
    "KNOWN_MEMBERS",
    "MANIFEST",
    "PROOFS",
    "README",
    "REQUIRED_MEMBERS",
    "SCRIPT",
    "VKEY",
    "BundleLimits",
    "FileDigest",
    "FindingKind",
    "Manifest",
    "SignedTree",
    "decode_manifest",
    "encode_manifest",
    "iter_indexes",
]

FORMAT: Final = "proctor.evidence/v1"

MANIFEST: Final = "manifest.json"
EVENTS: Final = "events.jsonl"
PROOFS: Final = "proofs.txt"
CHECKPOINT: Final = "checkpoint.note"
VKEY: Final = "verifier.vkey"
README: Final = "README.md"
SCRIPT: Final = "verify_bundle.py"

#: Every member name a bundle may hold; anything else is reported and never read.
KNOWN_MEMBERS: Final = frozenset({MANIFEST, EVENTS, PROOFS, CHECKPOINT, VKEY, README, SCRIPT})
#: Members without which nothing can be verified (the README and the script are for people).
REQUIRED_MEMBERS: Final = (MANIFEST, EVENTS, PROOFS, CHECKPOINT, VKEY)
#: Members that grow with the selection, read as streams, never whole.
DATA_MEMBERS: Final = frozenset({EVENTS, PROOFS})

#: What verification can find (``verify.Finding.kind``).
FindingKind = Literal[
    "unreadable",  # not a zip, or a member that cannot be read (bad CRC, truncated)
    "unsafe-member",  # absolute or '..' name, duplicate, encrypted, unknown compression
    "unexpected-member",  # a name bundles do not have; never read
    "missing-member",  # a member the bundle needs or its manifest lists is absent
    "oversized-member",  # over the size limits: not read
    "bad-manifest",  # manifest.json unreadable or in another format
    "file-mismatch",  # a member's SHA-256 or size is not the manifest's, or it is unlisted
    "bad-key",  # verifier.vkey is not a verifier key
    "bad-checkpoint",  # the signature does not verify with the key, or the note is garbled
    "manifest-mismatch",  # the manifest's origin, size, root or count disagree with the rest
    "bad-proof",  # a proof block that is not a tlog-proof
    "proof-mismatch",  # an inclusion proof that does not lead to the signed root
    "index-mismatch",  # a proof's index is not the manifest's, or not ascending
    "count-mismatch",  # a line without a proof block or a block without a line
    "bad-event",  # a line that is not a proctor.access/v1 event
    "not-canonical",  # a valid event, not in its canonical form
    "origin-not-proven",  # warning: checked with the bundle's own key
    "key-differs",  # warning: the bundled key is not the pinned one (the pinned one counts)
]


_MiB: Final = 1 << 20
_GiB: Final = 1 << 30


@dataclass(frozen=True, kw_only=True)
class BundleLimits:
    """What a reader accepts from an untrusted zip; a bundle beyond these is refused, not read.

    The sizes are the uncompressed sizes the zip declares (a zip bomb declares its real size or
    fails its CRC when read); reading never goes past them either.
    """

    max_members: int = 32
    """Central directory entries looked at; more and the rest is reported, not examined."""
    max_data_bytes: int = 16 * _GiB
    """``events.jsonl`` and ``proofs.txt`` each, uncompressed."""
    max_manifest_bytes: int = 64 * _MiB
    """``manifest.json`` (its index ranges grow with a scattered selection)."""
    max_small_bytes: int = MAX_NOTE_BYTES
    """Each of ``checkpoint.note``, ``verifier.vkey``, ``README.md``, ``verify_bundle.py``."""
    max_total_bytes: int = 40 * _GiB
    """All members together, uncompressed."""
    max_line_bytes: int = 16 * _MiB
    """One line of ``events.jsonl`` (an event's ``original.data`` alone may be ~6 MiB escaped)."""
    max_findings: int = 1000
    """Findings kept in a report; the rest are counted, so a wholly bad bundle stays small."""

    def member_limit(self, name: str) -> int:
        """The largest uncompressed size accepted for member ``name``."""
        if name in DATA_MEMBERS:
            return self.max_data_bytes
        if name == MANIFEST:
            return self.max_manifest_bytes
        return self.max_small_bytes


class FileDigest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The SHA-256 (hex) and size in bytes of one bundle member."""

    sha256: str
    size: int


class SignedTree(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The tree ``checkpoint.note`` signs, repeated for people: size and base64 root."""

    size: int
    root: str


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``manifest.json``: what the bundle holds. Not signed: every claim is cross-checked."""

    format: str
    origin: str
    checkpoint: SignedTree
    created: str
    query: str | None = None
    count: int
    indexes: tuple[tuple[int, int], ...]
    """Ledger indexes of the lines of ``events.jsonl``, as ascending inclusive ranges."""
    files: dict[str, FileDigest]
    """Every other member of the bundle by name."""


_ENCODER: Final = msgspec.json.Encoder(order="deterministic")
_DECODER: Final = msgspec.json.Decoder(Manifest)


def encode_manifest(manifest: Manifest) -> bytes:
    """The manifest as indented JSON (people read it), newline-terminated."""
    return msgspec.json.format(_ENCODER.encode(manifest), indent=2) + b"\n"


def decode_manifest(data: bytes) -> Manifest:
    """Parse and check the manifest's shape; FormatError naming what is wrong."""
    try:
        manifest = _DECODER.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise FormatError(f"{MANIFEST}: {exc}") from None
    if manifest.format != FORMAT:
        raise FormatError(f"{MANIFEST}: format {manifest.format!r} is not {FORMAT!r}")
    if manifest.count < 1:
        raise FormatError(f"{MANIFEST}: count {manifest.count} (a bundle holds events)")
    total, previous = 0, -1
    for first, last in manifest.indexes:
        if not previous < first <= last:
            raise FormatError(
                f"{MANIFEST}: index range [{first}, {last}] is not ascending after {previous}"
            )
        total += last - first + 1
        previous = last
    if total != manifest.count:
        raise FormatError(
            f"{MANIFEST}: its index ranges hold {total} indexes, count {manifest.count}"
        )
    unknown = sorted(set(manifest.files) - (KNOWN_MEMBERS - {MANIFEST}))
    if unknown:
        raise FormatError(f"{MANIFEST}: lists members a bundle cannot hold: {', '.join(unknown)}")
    return manifest


def iter_indexes(ranges: Sequence[tuple[int, int]]) -> Iterator[int]:
    """Every index of inclusive ranges, in order."""
    for first, last in ranges:
        yield from range(first, last + 1)
