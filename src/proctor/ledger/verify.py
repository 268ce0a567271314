"""Full verification of a ledger: every entry re-hashed, the tree rebuilt, every checkpoint checked.

Three independent sources of truth are compared:

1. the stored entries, re-hashed (RFC 9162 §2.1.1 leaves) and rebuilt into tiles;
2. the stored tiles, written at append time in the same transaction as the entries;
3. the signed checkpoints (and, optionally, a checkpoint the auditor saved earlier).

Signatures are checked only with keys the caller trusts. Roots the entries give must equal
every validly signed root; where they differ the stored leaf hashes say which entries
changed and how (modified, missing, inserted, reordered). If the tiles were rewritten too,
the signed roots still bound the damage to a range between two checkpoints. The result is a
``Report`` that is falsy when anything failed.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from proctor.errors import ProctorError
from proctor.ledger.checkpoint import Checkpoint
from proctor.ledger.merkle import (
    HASH_SIZE,
    consistency_proof,
    mth,
    verify_consistency,
)
from proctor.ledger.note import Verifier
from proctor.ledger.store import SqliteStore
from proctor.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TileHasher
from proctor.ledger.verify_diagnose import classify_mismatches
from proctor.ledger.verify_sigs import open_saved, signed_checkpoints

__all__ = ["Finding", "Report", "verify_ledger"]

FindingKind = Literal[
    "modified-entry",
    "missing-entry",
    "inserted-entry",
    "reordered-entries",
    "bad-signature",
    "unknown-signature",
    "inconsistent-checkpoints",
    "root-mismatch",
    "not-an-extension",
    "damaged-tiles",
    "unreadable",
    "unsigned-entries",
]

#: Findings that are worth knowing but do not make a ledger fail verification.
WARNINGS = frozenset({"unsigned-entries"})
_MAX_MISMATCHES = 1_000_000  # diagnosis holds mismatched positions in memory; cap it

Progress = Callable[[int, int], None]
_sha256 = hashlib.sha256


@dataclass(frozen=True)
class Finding:
    """One thing verification found: its kind, the entry index range, and the details."""

    kind: str
    first: int | None
    last: int | None
    detail: str

    @property
    def is_failure(self) -> bool:
        """True unless the finding is only a warning."""
        return self.kind not in WARNINGS

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"kind": self.kind, "first": self.first, "last": self.last, "detail": self.detail}


@dataclass
class Report:
    """What ``verify_ledger`` checked and found; falsy when anything failed."""

    entries: int = 0
    checkpoints: int = 0
    valid_checkpoints: int = 0
    verified_size: int = 0
    findings: list[Finding] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not any(f.is_failure for f in self.findings)

    def add(self, kind: FindingKind, first: int | None, last: int | None, detail: str) -> None:
        """Record a finding."""
        self.findings.append(Finding(kind, first, last, detail))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "ok": bool(self),
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "valid_checkpoints": self.valid_checkpoints,
            "verified_size": self.verified_size,
            "findings": [f.to_dict() for f in self.findings],
        }


class _Rebuilt:
    """Tiles rebuilt from the entries as they stream by: level 0 only for the current tile."""

    def __init__(self) -> None:
        self.size = 0
        self.current = bytearray()  # level-0 tile being filled
        self.upper: dict[int, list[bytes]] = {}  # level >= 1 -> completed-tile hashes in order

    def push(self, leaves: bytes) -> bytes | None:
        """Add leaf hashes (not past the tile's end); the level-0 tile when they fill it."""
        self.current += leaves
        self.size += len(leaves) // HASH_SIZE
        if len(self.current) < TILE_WIDTH * HASH_SIZE:
            return None
        done = bytes(self.current)
        self.current.clear()
        self._carry(1, done)
        return done

    def _carry(self, level: int, tile: bytes) -> None:
        root = mth([tile[i : i + HASH_SIZE] for i in range(0, len(tile), HASH_SIZE)])
        row = self.upper.setdefault(level, [])
        row.append(root)
        if len(row) % TILE_WIDTH == 0:
            self._carry(level + 1, b"".join(row[-TILE_WIDTH:]))

    def read(self, level: int, index: int) -> bytes | None:
        """Tile reader over the rebuilt tree (level 0: only the tile being filled)."""
        if level == 0:
            return bytes(self.current) if index == self.size // TILE_WIDTH else None
        row = self.upper.get(level, [])
        chunk = row[index * TILE_WIDTH : (index + 1) * TILE_WIDTH]
        return b"".join(chunk) if chunk else None

    def root(self) -> bytes:
        """Root of the tree rebuilt so far."""
        return TileHasher(self.read, self.size).root()


def verify_ledger(
    store: SqliteStore,
    verifiers: Sequence[Verifier],
    origin: str,
    *,
    saved_checkpoint: str | bytes | None = None,
    progress: Progress | None = None,
) -> Report:
    """Verify everything in ``store`` against keys the caller trusts."""
    report = Report()
    try:
        _verify(store, verifiers, origin, saved_checkpoint, progress, report)
    except ProctorError as exc:
        report.add("unreadable", None, None, str(exc))
    return report


def _verify(
    store: SqliteStore,
    verifiers: Sequence[Verifier],
    origin: str,
    saved_note: str | bytes | None,
    progress: Progress | None,
    report: Report,
) -> None:
    signed = signed_checkpoints(store, verifiers, origin, report)
    saved: Checkpoint | None = None
    if saved_note is not None:
        saved = open_saved(saved_note, verifiers, origin, report)

    size = store.size()
    rows = store.count()
    report.entries = rows
    last = store.last_tile(0)
    tile_size = 0 if last is None else last[0] * TILE_WIDTH + len(last[1]) // HASH_SIZE

    # Sizes at which the rebuilt root must equal a signed one.
    targets: dict[int, list[tuple[str, Checkpoint]]] = {}
    for cp in signed:
        targets.setdefault(cp.size, []).append(("checkpoint", cp))
    if saved is not None:
        targets.setdefault(saved.size, []).append(("saved", saved))

    rebuilt = _Rebuilt()
    roots: dict[int, bytes] = {}
    if 0 in targets:
        roots[0] = rebuilt.root()
    mismatches: list[tuple[int, bytes]] = []
    bad_tiles: list[int] = []  # level-0 tiles holding a changed entry, ascending
    gaps: list[tuple[int, int]] = []
    cuts = sorted(targets)
    # Work a level-0 tile (256 entries) at a time: one query, one comparison with the stored
    # leaf hashes when nothing changed, per-entry work only where something did.
    for t in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        lo, hi = t * TILE_WIDTH, min((t + 1) * TILE_WIDTH, size)
        tile_rows = list(store.entries(lo, hi))
        leaves = [_sha256(b"\x00" + data).digest() for _, data in tile_rows]  # merkle.leaf_hash
        joined = b"".join(leaves)
        ref = store.read_tile(0, t) or b""
        complete = len(tile_rows) == hi - lo
        if not complete:
            _find_gaps([idx for idx, _ in tile_rows], lo, hi, gaps)
            bad_tiles.append(t)
        if not complete or joined != ref[: len(joined)]:
            for (idx, _), leaf in zip(tile_rows, leaves, strict=True):
                off = (idx - lo) * HASH_SIZE
                if ref[off : off + HASH_SIZE] != leaf and len(mismatches) < _MAX_MISMATCHES:
                    mismatches.append((idx, leaf))
            if not bad_tiles or bad_tiles[-1] != t:
                bad_tiles.append(t)
        if not gaps:
            start = lo
            for cut in cuts[bisect.bisect_right(cuts, lo) : bisect.bisect_right(cuts, hi)]:
                _push(
                    rebuilt,
                    joined[(start - lo) * HASH_SIZE : (cut - lo) * HASH_SIZE],
                    store,
                    report,
                    bad_tiles,
                )
                roots[cut] = rebuilt.root()
                start = cut
            _push(rebuilt, joined[(start - lo) * HASH_SIZE :], store, report, bad_tiles)
        if progress is not None and t % 256 == 255:
            progress(hi, size)
    if progress is not None:
        progress(size, size)

    for first, last_missing in gaps:
        report.add(
            "missing-entry", first, last_missing, f"{last_missing - first + 1} entries are absent"
        )
    classify_mismatches(mismatches, store, tile_size, report)

    # Each signed root must be the root the entries give at that size.
    matched = [cp.size for cp in signed if roots.get(cp.size) == cp.root]
    failing = [cp for cp in signed if cp.size <= size and roots.get(cp.size) != cp.root]
    if failing:
        bad = failing[0]
        since = max((m for m in matched if m < bad.size), default=0)
        got = roots.get(bad.size)
        why = (
            "cannot be rebuilt because entries are missing"
            if got is None
            else f"entries give {got.hex()}, signed {bad.root.hex()}"
        )
        report.add(
            "root-mismatch",
            since,
            failing[-1].size - 1,
            f"{len(failing)} signed checkpoints (sizes {bad.size}..{failing[-1].size}) do not "
            f"match the stored entries; at size {bad.size} the root {why}",
        )
    beyond = max((cp.size for cp in signed), default=0)
    if beyond > size:
        report.add(
            "missing-entry",
            size,
            beyond - 1,
            f"a checkpoint signed {beyond} entries; the ledger has {size} (tail removed)",
        )
    _check_pairs([cp for cp in signed if cp.size not in matched], signed, store, report)
    report.verified_size = max(matched, default=0)

    if saved is not None:
        got = roots.get(saved.size)
        if saved.size > size or got != saved.root:
            report.add(
                "not-an-extension",
                0,
                saved.size - 1,
                f"the ledger is not an append-only extension of the saved checkpoint "
                f"(size {saved.size}, root {saved.root.hex()}); it now holds {size} entries"
                + ("" if got is None else f" and gives root {got.hex()} at that size")
                + ": truncated, rolled back to an older copy, or rewritten",
            )
    latest_signed = max((cp.size for cp in signed), default=0)
    appended = min(size, tile_size)
    if appended > latest_signed:
        report.add(
            "unsigned-entries",
            latest_signed,
            appended - 1,
            f"{appended - latest_signed} entries after the latest checkpoint are not signed yet",
        )


def _find_gaps(present: list[int], lo: int, hi: int, gaps: list[tuple[int, int]]) -> None:
    """Add the ranges of [lo, hi) missing from ``present`` (ascending), merging across tiles."""
    expected = lo
    for idx in [*present, hi]:
        if idx != expected:
            if gaps and gaps[-1][1] == expected - 1:
                gaps[-1] = (gaps[-1][0], idx - 1)
            else:
                gaps.append((expected, idx - 1))
        expected = idx + 1


def _push(
    rebuilt: _Rebuilt, leaves: bytes, store: SqliteStore, report: Report, bad_tiles: list[int]
) -> None:
    """Push leaf hashes (within one tile); when the tile completes, check the upper levels.

    Subtrees over changed entries are skipped: those differ because of the entries, which are
    reported as such; what is left to find here is a stored tile that lies about good entries.
    """
    if not leaves:
        return
    index = rebuilt.size // TILE_WIDTH
    done = rebuilt.push(leaves)
    if done is None:
        return
    # Compare each upper-level hash this tile produced with the stored tile holding it.
    level, position = 1, index
    while level in rebuilt.upper and len(rebuilt.upper[level]) > position:
        lo = position << (TILE_HEIGHT * (level - 1))
        hi = (position + 1) << (TILE_HEIGHT * (level - 1))
        k = bisect.bisect_left(bad_tiles, lo)
        if k < len(bad_tiles) and bad_tiles[k] < hi:
            return
        stored = store.read_tile(level, position // TILE_WIDTH) or b""
        off = (position % TILE_WIDTH) * HASH_SIZE
        if stored[off : off + HASH_SIZE] != rebuilt.upper[level][position]:
            first = position << (TILE_HEIGHT * level)
            report.add(
                "damaged-tiles",
                first,
                first + (1 << (TILE_HEIGHT * level)) - 1,
                f"stored level-{level} tile hash {position} differs from the entries' hash",
            )
            return
        if (position + 1) % TILE_WIDTH:
            return
        level, position = level + 1, position // TILE_WIDTH


def _check_pairs(
    unmatched: list[Checkpoint], signed: list[Checkpoint], store: SqliteStore, report: Report
) -> None:
    """Consecutive checkpoints must describe one append-only tree (RFC 9162 §2.1.4).

    Two checkpoints whose roots the entries both rebuild are consistent by construction;
    for the others the stored tiles must prove it, or the log forked.
    """
    suspect = {cp.size for cp in unmatched}
    for old, new in itertools.pairwise(signed):
        if old.size not in suspect and new.size not in suspect:
            continue
        try:
            hasher = TileHasher(store.read_tile, new.size)
            proof = consistency_proof(old.size, new.size, hasher.range)
            verify_consistency(old.size, new.size, old.root, new.root, proof)
        except ProctorError as exc:
            report.add(
                "inconsistent-checkpoints",
                old.size,
                new.size - 1,
                f"checkpoints at sizes {old.size} and {new.size} are not shown consistent by "
                f"the stored tree: {exc}",
            )
