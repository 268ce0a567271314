"""Re-hashing the stored entries for verification, a chunk of level-0 tiles at a time.

A level-0 tile (C2SP tlog-tiles) holds the leaf hashes of 256 consecutive entries. Scanning
one re-hashes its entries (RFC 9162 §2.1.1 leaves), compares them with the stored tile (the
hashes written at append time) and hashes the tile's perfect subtrees: the top one is the
tile's level-1 hash, and those left of a checkpoint size that falls inside the tile give that
size's root (MTH splits at the largest power of two below n, so the root of any size folds the
perfect subtrees of its set bits, largest first). ``verify.py`` puts the chunks together in
index order: upper levels, roots at checkpoint sizes, findings.

Below the retention floor (docs/retention.md) the entry bodies are pruned by design: there the
stored level-0 tile stands for the entries. It cannot be forged unnoticed, because the roots it
gives are compared with the signed ones like any other.

This module is also the program a worker process runs (``verify_workers`` starts it as
``python -S -m proctor.ledger.verify_scan``), so it imports only the standard library's
essentials and ``proctor.errors``: a worker is ready in a few tens of milliseconds.
"""

from __future__ import annotations

import bisect
import hashlib
import marshal
import os
import sqlite3
import sys

from proctor.errors import StorageError

# typing costs a worker ~10 ms to import; mypy reads the names under this flag all the same.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, BinaryIO

__all__ = [
    "HASH_SIZE",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Chunk",
    "Scanner",
    "decode",
    "encode",
    "find_gaps",
]

# The specs' constants, repeated rather than imported from merkle and tiles (and their imports)
# to keep a worker's start-up short; tests check they agree.
HASH_SIZE = 32  # SHA-256
TILE_HEIGHT = 8  # C2SP tlog-tiles: a tile holds 2**8 hashes
TILE_WIDTH = 1 << TILE_HEIGHT

_LEAF = hashlib.sha256(b"\x00")  # RFC 9162 §2.1.1 prefixes: copying a seeded hasher is
_NODE = hashlib.sha256(b"\x01")  # cheaper than concatenating the prefix to every input
_DATA = "SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx"
# Slow path: each row's index, and a value stored as TEXT or a number (never by Proctor) read
# as SQLite casts it to a BLOB instead of failing the whole verification.
_ROWS = (
    "SELECT idx, CAST(ifnull(data, x'') AS BLOB) FROM entries "
    "WHERE idx >= ? AND idx < ? ORDER BY idx"
)
_TILES = "SELECT idx, CAST(data AS BLOB) FROM tiles WHERE level = 0 AND idx >= ? AND idx < ?"
_BELOW = "SELECT count(*) FROM entries WHERE idx < ?"


class Chunk:
    """What scanning the level-0 tiles ``[first, end)`` found."""

    __slots__ = ("bad", "end", "first", "gaps", "lost", "mismatches", "parts", "roots")

    def __init__(self, first: int, end: int) -> None:
        self.first = first
        self.end = end
        #: Per tile: the MTH of its 256 leaves (its level-1 hash); None if partial or rows missing.
        self.roots: list[bytes | None] = []
        #: Checkpoint size inside a tile -> the tile's perfect subtrees left of it, largest first.
        self.parts: dict[int, bytes] = {}
        #: Tiles with missing rows or entries whose leaf hash is not the stored one, ascending.
        self.bad: list[int] = []
        #: Missing index ranges ``(first, last)``, ascending, adjacent ones merged.
        self.gaps: list[tuple[int, int]] = []
        #: ``(index, computed leaf)`` where the stored leaf hash differs, ascending.
        self.mismatches: list[tuple[int, bytes]] = []
        #: Tiles below the floor whose stored leaf hashes are missing or short, ascending.
        self.lost: list[int] = []

    def to_plain(self) -> tuple[Any, ...]:
        """The fields as plain data, for ``encode``."""
        return (
            self.first,
            self.end,
            self.roots,
            self.parts,
            self.bad,
            self.gaps,
            self.mismatches,
            self.lost,
        )

    @classmethod
    def from_plain(cls, fields: Any) -> Chunk:
        """The chunk ``to_plain`` gave (from a worker: checked to be plain data by ``decode``)."""
        first, end, roots, parts, bad, gaps, mismatches, lost = fields
        chunk = cls(first, end)
        chunk.roots, chunk.parts, chunk.bad = roots, parts, bad
        chunk.gaps, chunk.mismatches, chunk.lost = gaps, mismatches, lost
        return chunk


def encode(message: Any) -> bytes:
    """A frame for the pipe to or from a worker: 4-byte length, then plain data.

    marshal, not pickle: it is built in (nothing to import), fast, and only knows plain values
    (None, ints, bytes, str, tuples, lists, dicts), so decoding can never build an object of
    any class or run code. Both ends are the same interpreter (``sys.executable``), which
    marshal's format needs.
    """
    body = marshal.dumps(message)
    return len(body).to_bytes(4, "big") + body


def decode(body: bytes) -> Any:
    """The plain data in a frame's body (from this process's own worker or parent)."""
    return marshal.loads(body)  # noqa: S302 -- our own process over a private pipe; see encode


def find_gaps(present: list[int], lo: int, hi: int, gaps: list[tuple[int, int]]) -> None:
    """Add the ranges of [lo, hi) missing from ``present`` (ascending), merging across tiles."""
    expected = lo
    for idx in [*present, hi]:
        if idx != expected:
            if gaps and gaps[-1][1] == expected - 1:
                gaps[-1] = (gaps[-1][0], idx - 1)
            else:
                gaps.append((expected, idx - 1))
        expected = idx + 1


def _leaf_hashes(rows: Sequence[Any]) -> bytes | None:
    """Leaf hashes of rows ``(data,)``, concatenated; None when a value is not bytes."""
    out: list[bytes] = []
    append = out.append
    seed = _LEAF.copy
    try:
        for (data,) in rows:
            h = seed()
            h.update(data)
            append(h.digest())
    except TypeError:  # TEXT or a number where a BLOB belongs: the slow path casts it
        return None
    return b"".join(out)


def _subtrees(leaves: bytes) -> list[bytes]:
    """``levels[h]``: the hashes of the tile's perfect subtrees of ``2**h`` leaves, in order."""
    levels = [leaves]
    row = leaves
    seed = _NODE.copy
    while len(row) >= 2 * HASH_SIZE:
        out: list[bytes] = []
        for i in range(0, len(row) - HASH_SIZE, 2 * HASH_SIZE):  # an odd last node has no pair
            h = seed()
            h.update(row[i : i + 2 * HASH_SIZE])  # left || right are adjacent in the row
            out.append(h.digest())
        row = b"".join(out)
        levels.append(row)
    return levels


def _left_of(levels: list[bytes], k: int) -> bytes:
    """The perfect subtrees covering the tile's first ``k`` leaves, largest first."""
    return b"".join(
        levels[h][((k >> h) - 1) * HASH_SIZE : (k >> h) * HASH_SIZE]
        for h in range(TILE_HEIGHT, -1, -1)
        if k >> h & 1
    )


class Scanner:
    """Scans the tiles of one ledger through a read-only connection of its own.

    ``uri``: the database as an SQLite URI with ``mode=ro``; ``floor``: the retention floor,
    below which entries are pruned and their stored leaf hashes are used instead.
    """

    def __init__(self, uri: str, size: int, floor: int = 0) -> None:
        self.size = size
        self.floor = floor
        try:
            self._db = sqlite3.connect(uri, uri=True)
            self._db.execute("PRAGMA busy_timeout = 5000")
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open ledger database {uri}: {exc}") from None

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def scan(self, first: int, end: int, cuts: Sequence[int]) -> Chunk:
        """Tiles [first, end); ``cuts``: checkpoint sizes in them not on a tile boundary."""
        chunk = Chunk(first, end)
        try:
            stored = dict(self._db.execute(_TILES, (first, end)).fetchall())
            for t in range(first, end):
                self._tile(t, stored.get(t) or b"", cuts, chunk)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot read ledger entries: {exc}") from None
        return chunk

    def rows_below(self, index: int) -> int:
        """Rows stored at indexes below ``index`` (a primary-key range: no table scan)."""
        try:
            return int(self._db.execute(_BELOW, (index,)).fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot read ledger entries: {exc}") from None

    def _tile(self, t: int, ref: bytes, cuts: Sequence[int], chunk: Chunk) -> None:
        lo = t * TILE_WIDTH
        hi = min(lo + TILE_WIDTH, self.size)
        start = min(max(lo, self.floor), hi)  # entries from here on are kept
        kept = ref[: (start - lo) * HASH_SIZE]  # the pruned ones' leaf hashes, as stored
        if len(kept) != (start - lo) * HASH_SIZE:
            chunk.lost.append(t)
            chunk.roots.append(None)  # nothing to rebuild the tree from
            return
        # A query per tile: its 256 rows (~150 KB) are still in the CPU cache when hashed.
        rows = self._db.execute(_DATA, (start, hi)).fetchall() if start < hi else []
        # idx is the primary key: hi - start rows in [start, hi) are all of them, in order.
        complete = len(rows) == hi - start
        fresh = _leaf_hashes(rows) if complete else None
        if fresh is None or fresh != ref[len(kept) : len(kept) + len(fresh)]:
            fresh = self._diagnose(t, lo, start, hi, ref, chunk)
        if not complete:
            chunk.roots.append(None)  # the rebuilt tree stops at the first missing row
            return
        leaves = kept + fresh
        levels = _subtrees(leaves)
        chunk.roots.append(levels[TILE_HEIGHT] if hi - lo == TILE_WIDTH else None)
        for c in cuts[bisect.bisect_right(cuts, lo) : bisect.bisect_right(cuts, hi)]:
            chunk.parts[c] = _left_of(levels, c - lo)

    def _diagnose(self, t: int, lo: int, start: int, hi: int, ref: bytes, chunk: Chunk) -> bytes:
        """Per-entry work, only where something changed: missing rows, leaves not stored.

        Rows ``[start, hi)`` of the tile starting at ``lo`` (those below ``start`` are pruned).
        """
        rows = self._db.execute(_ROWS, (start, hi)).fetchall()
        present = [idx for idx, _ in rows]
        leaves = _leaf_hashes([(data,) for _, data in rows]) or b""
        complete = len(rows) == hi - start
        if not complete:
            find_gaps(present, start, hi, chunk.gaps)
        skip = (start - lo) * HASH_SIZE
        if complete and leaves == ref[skip : skip + len(leaves)]:
            return leaves
        chunk.bad.append(t)
        for k, idx in enumerate(present):
            leaf = leaves[k * HASH_SIZE : (k + 1) * HASH_SIZE]
            off = (idx - lo) * HASH_SIZE
            if ref[off : off + HASH_SIZE] != leaf:
                chunk.mismatches.append((idx, leaf))
        return leaves


def _read(inp: BinaryIO) -> Any:
    """The next message from the parent; None at end of input."""
    head = inp.read(4)
    if len(head) < 4:
        return None
    body = inp.read(int.from_bytes(head, "big"))
    return decode(body) if len(body) == int.from_bytes(head, "big") else None


def serve() -> None:
    """A worker: ``(uri, size, floor)``, then ``(first, end, cuts)`` tasks on stdin, until it
    closes; each answered on stdout with the chunk, in order.

    Runs in its own session (the parent handles Ctrl-C and stops it). Any error ends it
    quietly: the parent scans the chunk itself and reports what it finds.
    """
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by mistake goes to stderr, not into the answers
    job = _read(sys.stdin.buffer)
    if job is None:
        return
    try:
        scanner = Scanner(*job)
    except StorageError:
        return
    try:
        while (task := _read(sys.stdin.buffer)) is not None:
            out.write(encode(scanner.scan(*task).to_plain()))
            out.flush()
    except (StorageError, OSError, ValueError, EOFError):
        return  # an unreadable database, the parent gone (broken pipe), a garbled task
    finally:
        scanner.close()


if __name__ == "__main__":
    serve()
