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

The entries are re-hashed a chunk of level-0 tiles at a time (``verify_scan``), in this process
and, for big ledgers, in worker processes too (``verify_workers``); the chunks are put together
here in index order.

Below the retention floor the bodies are pruned by design: the stored leaf hashes stand for
them (the signed roots still check those), each prune is reported for information, and a floor
that no signed ``retention.pruned`` event accounts for is a failure (``verify_prunes``).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from proctor.errors import ProctorError
from proctor.ledger.checkpoint import Checkpoint
from proctor.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_proof,
    node_hash,
    verify_consistency,
)
from proctor.ledger.note import Verifier
from proctor.ledger.store import SqliteStore
from proctor.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TileHasher
from proctor.ledger.verify_diagnose import classify_mismatches
from proctor.ledger.verify_prunes import check_prunes
from proctor.ledger.verify_scan import Chunk
from proctor.ledger.verify_sigs import open_saved, signed_checkpoints
from proctor.ledger.verify_workers import MAX_WORKERS, Scan, default_workers

__all__ = ["MAX_WORKERS", "PARALLEL_FROM", "Finding", "Report", "verify_ledger"]

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
    "pruned",
    "unrecorded-prune",
]

#: Findings that are worth knowing but do not make a ledger fail verification: entries not
#: signed yet, and entries pruned by a recorded retention prune (absent by design).
WARNINGS = frozenset({"unsigned-entries", "pruned"})
_MAX_MISMATCHES = 1_000_000  # diagnosis holds mismatched positions in memory; cap it
#: Ledgers smaller than this are verified in this process alone. A worker is ready ~50 ms after
#: it is started (an interpreter and a few imports, on another CPU; this process scans
#: meanwhile): on 2 CPUs 32k entries verify ~25% faster with one, 64k ~25%, 256k ~45%, when the
#: second CPU is free. When it is not, a worker only costs: hence a margin.
PARALLEL_FROM = 1 << 16

Progress = Callable[[int, int], None]


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
    pruned: int = 0
    """The retention floor: entries below it are pruned (their leaf hashes are verified)."""
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
            "pruned": self.pruned,
            "findings": [f.to_dict() for f in self.findings],
        }


class _Tree:
    """The tree rebuilt from the entries, one full level-0 tile root at a time.

    Keeps the roots of the perfect subtrees over the tiles pushed so far, one per set bit of
    their count (a compact range), so the root at any size costs O(log n) hashes (RFC 9162
    §2.1.1: MTH folds the perfect subtrees of the set bits of n, largest first). Each hash
    that lands at a tile height (256**L leaves) is compared with the stored level-L tile.
    """

    def __init__(self, store: SqliteStore, report: Report, bad_tiles: list[int]) -> None:
        self.tiles = 0
        self._stack: list[bytes] = []
        self._store = store
        self._report = report
        self._bad = bad_tiles  # level-0 tiles holding a changed entry, ascending
        self._stored: dict[int, tuple[int, bytes]] = {}  # level -> last stored tile read

    def push(self, root: bytes) -> None:
        """Add the root of the next full level-0 tile; check the stored hashes it completes."""
        t = self.tiles
        checking = self._check(1, t, root)
        node, height = root, 0
        while (t >> height) & 1:  # merge equal subtrees, as a binary counter carries
            node = node_hash(self._stack.pop(), node)
            height += 1
            if checking and height % TILE_HEIGHT == 0:
                checking = self._check(height // TILE_HEIGHT + 1, t >> height, node)
        self._stack.append(node)
        self.tiles = t + 1

    def root(self, parts: bytes = b"") -> bytes:
        """Root of the tiles pushed plus ``parts`` (perfect subtrees of the next tile's start)."""
        nodes = [*self._stack, *(parts[i : i + HASH_SIZE] for i in range(0, len(parts), HASH_SIZE))]
        if not nodes:
            return EMPTY_ROOT
        acc = nodes[-1]
        for node in reversed(nodes[:-1]):
            acc = node_hash(node, acc)
        return acc

    def _check(self, level: int, position: int, node: bytes) -> bool:
        """Compare a rebuilt level-``level`` hash with the stored one; False stops the climb.

        Subtrees over changed entries are skipped: those differ because of the entries, which
        are reported as such; what is left to find here is a stored tile that lies about good
        entries.
        """
        lo = position << (TILE_HEIGHT * (level - 1))  # in level-0 tiles
        hi = (position + 1) << (TILE_HEIGHT * (level - 1))
        k = bisect.bisect_left(self._bad, lo)
        if k < len(self._bad) and self._bad[k] < hi:
            return False
        index = position // TILE_WIDTH
        cached = self._stored.get(level)
        if cached is None or cached[0] != index:
            cached = (index, self._store.read_tile(level, index) or b"")
            self._stored[level] = cached
        off = (position % TILE_WIDTH) * HASH_SIZE
        if cached[1][off : off + HASH_SIZE] == node:
            return True
        first = position << (TILE_HEIGHT * level)
        self._report.add(
            "damaged-tiles",
            first,
            first + (1 << (TILE_HEIGHT * level)) - 1,
            f"stored level-{level} tile hash {position} differs from the entries' hash",
        )
        return False


class _Rebuild:
    """The scanned chunks put together in index order: missing rows, changed entries, and the
    roots the entries give at the checkpoint sizes (up to the first missing row)."""

    def __init__(self, store: SqliteStore, size: int, cuts: list[int], report: Report) -> None:
        self.size = size
        self.cuts = cuts  # sizes whose root is wanted, ascending
        self.roots: dict[int, bytes] = {0: EMPTY_ROOT}
        self.gaps: list[tuple[int, int]] = []
        self.mismatches: list[tuple[int, bytes]] = []
        self.bad_tiles: list[int] = []
        self.tree = _Tree(store, report, self.bad_tiles)
        self._cut = bisect.bisect_right(cuts, 0)  # next cut to reach
        self._broken: int | None = None  # first level-0 tile with missing rows or leaf hashes
        self.lost: list[tuple[int, int]] = []  # pruned ranges whose stored leaf hashes are gone

    def add(self, chunk: Chunk) -> None:
        """Take the next chunk (chunks come in tile order)."""
        self.bad_tiles.extend(chunk.bad)
        if chunk.gaps:
            first, last = chunk.gaps[0]
            if self.gaps and self.gaps[-1][1] == first - 1:  # a gap running across chunks
                self.gaps[-1] = (self.gaps[-1][0], last)
                self.gaps.extend(chunk.gaps[1:])
            else:
                self.gaps.extend(chunk.gaps)
            if self._broken is None:
                self._broken = first // TILE_WIDTH
        for t in chunk.lost:
            lo, hi = t * TILE_WIDTH, min((t + 1) * TILE_WIDTH, self.size)
            if self.lost and self.lost[-1][1] == lo - 1:
                self.lost[-1] = (self.lost[-1][0], hi - 1)
            else:
                self.lost.append((lo, hi - 1))
            if self._broken is None or t < self._broken:
                self._broken = t
        self.mismatches.extend(chunk.mismatches[: _MAX_MISMATCHES - len(self.mismatches)])
        for t, root in enumerate(chunk.roots, chunk.first):
            if self._broken is None or t < self._broken:
                self._tile(t, root, chunk.parts)

    def _tile(self, t: int, root: bytes | None, parts: dict[int, bytes]) -> None:
        hi = min((t + 1) * TILE_WIDTH, self.size)
        cuts = self.cuts
        # Sizes inside the tile (or at the end of a partial last tile): the tiles so far plus
        # the tile's subtrees left of the size.
        while self._cut < len(cuts) and cuts[self._cut] <= hi and cuts[self._cut] % TILE_WIDTH:
            self.roots[cuts[self._cut]] = self.tree.root(parts[cuts[self._cut]])
            self._cut += 1
        if root is None:
            return  # a partial last tile: nothing to carry up
        self.tree.push(root)
        if self._cut < len(cuts) and cuts[self._cut] == hi:
            self.roots[hi] = self.tree.root()
            self._cut += 1


def verify_ledger(
    store: SqliteStore,
    verifiers: Sequence[Verifier],
    origin: str,
    *,
    saved_checkpoint: str | bytes | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    parallel_from: int = PARALLEL_FROM,
) -> Report:
    """Verify everything in ``store`` against keys the caller trusts.

    ``workers`` is how many processes re-hash the entries, this one included (default: the
    CPUs available, at most ``MAX_WORKERS``); they are used only for ledgers of at least
    ``parallel_from`` entries, where starting them pays. ``progress(done, total)`` is called
    as entries are verified.
    """
    report = Report()
    count = default_workers() if workers is None else max(1, workers)
    try:
        _verify(
            store,
            verifiers,
            origin,
            saved_checkpoint,
            report,
            progress=progress,
            workers=count,
            parallel_from=parallel_from,
        )
    except ProctorError as exc:
        report.add("unreadable", None, None, str(exc))
    return report


def _verify(
    store: SqliteStore,
    verifiers: Sequence[Verifier],
    origin: str,
    saved_note: str | bytes | None,
    report: Report,
    *,
    progress: Progress | None,
    workers: int,
    parallel_from: int,
) -> None:
    signed = signed_checkpoints(store, verifiers, origin, report)
    saved: Checkpoint | None = None
    if saved_note is not None:
        saved = open_saved(saved_note, verifiers, origin, report)

    size = store.size()
    last = store.last_tile(0)
    tile_size = 0 if last is None else last[0] * TILE_WIDTH + len(last[1]) // HASH_SIZE
    prunes = store.prunes()
    floor = min(size, max((p.below for p in prunes), default=0))

    # Sizes at which the rebuilt root must equal a signed one.
    cuts = sorted({cp.size for cp in signed} | ({saved.size} if saved is not None else set()))
    rebuild = _Rebuild(store, size, cuts, report)
    # Work a chunk of level-0 tiles (256 entries each) at a time: one comparison with the
    # stored leaf hashes when nothing changed, per-entry work only where something did.
    n = workers if size >= parallel_from else 1
    with Scan(store.database_file(), size, cuts, n, floor) as scan:
        for chunk in scan.chunks():
            rebuild.add(chunk)
            if progress is not None:
                progress(scan.scanned, size)
        negative = scan.negative_rows()
    if progress is not None:
        progress(size, size)
    # The stored rows, as count(*) gives them, without its pass over the whole table.
    report.entries = size - floor - sum(b - a + 1 for a, b in rebuild.gaps) + negative
    report.pruned = floor

    for first, last_missing in rebuild.gaps:
        report.add(
            "missing-entry", first, last_missing, f"{last_missing - first + 1} entries are absent"
        )
    for first, last_lost in rebuild.lost:
        report.add(
            "damaged-tiles",
            first,
            last_lost,
            "entries pruned by retention whose stored leaf hashes (level-0 tiles) are missing "
            "or short: nothing is left to verify them by",
        )
    classify_mismatches(rebuild.mismatches, store, tile_size, report)
    _check_roots(signed, saved, rebuild.roots, store, report, size=size, tile_size=tile_size)
    check_prunes(store, prunes, size, report)


def _check_roots(
    signed: list[Checkpoint],
    saved: Checkpoint | None,
    roots: dict[int, bytes],
    store: SqliteStore,
    report: Report,
    *,
    size: int,
    tile_size: int,
) -> None:
    """Each signed root must be the root the entries give at that size."""
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
