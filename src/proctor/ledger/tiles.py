"""Merkle node storage as C2SP tlog-tiles (c2sp.org/tlog-tiles).

A tile at level ``L`` and index ``N`` holds up to 256 consecutive hashes of the tree's nodes
at height ``8*L``: level-0 tiles hold leaf hashes, a level-1 tile holds the roots of 256
full level-0 tiles, and so on. A tile holding fewer than 256 hashes is *partial*; it grows in
place until full. Every complete subtree hash of any tree size is either stored or computed
from one tile (at most 255 hashes), so roots and proofs need O(log n) tile reads, and an
append touches one tile per level only when that level's tile fills: O(1) amortized.
"""

from __future__ import annotations

from collections.abc import Callable

from proctor.errors import StorageError
from proctor.ledger.merkle import EMPTY_ROOT, HASH_SIZE, mth, node_hash, range_root

__all__ = ["TILE_HEIGHT", "TILE_WIDTH", "EdgeTiles", "TileHasher", "TileReader", "tile_path"]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT

TileReader = Callable[[int, int], bytes | None]
"""``read(level, index)`` returns the stored tile's hashes concatenated, or None."""


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """The tile's path in the C2SP layout, e.g. ``tile/0/x001/234.p/17``."""
    digits = f"{index:d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    name = "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{name}{suffix}"


class TileHasher:
    """Reads complete-subtree hashes of a tree of ``size`` leaves from stored tiles.

    One instance serves one proof or root computation; it caches the tiles it read and the
    interior levels it hashed, so the siblings that share a tile cost one read.
    """

    def __init__(self, read: TileReader, size: int) -> None:
        self._read = read
        self.size = size
        self._levels: dict[tuple[int, int], list[list[bytes]]] = {}

    def _tile_levels(self, level: int, index: int) -> list[list[bytes]]:
        key = (level, index)
        cached = self._levels.get(key)
        if cached is not None:
            return cached
        data = self._read(level, index)
        if data is None or len(data) % HASH_SIZE:
            raise StorageError(f"tile {tile_path(level, index)} is missing or damaged")
        rows = [[data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]]
        while len(rows[-1]) > 1:
            prev = rows[-1]
            rows.append([node_hash(prev[i], prev[i + 1]) for i in range(0, len(prev) - 1, 2)])
        self._levels[key] = rows
        return rows

    def node(self, height: int, index: int) -> bytes:
        """Hash of the perfect subtree of ``2**height`` leaves from leaf ``index << height``."""
        if (index + 1) << height > self.size:
            raise ValueError(f"node {height}/{index} is not complete at size {self.size}")
        level, inner = divmod(height, TILE_HEIGHT)
        first = index << inner  # first node at the tile's base height
        rows = self._tile_levels(level, first // TILE_WIDTH)
        pos = (first % TILE_WIDTH) >> inner
        row = rows[inner] if inner < len(rows) else []
        if pos >= len(row):
            raise StorageError(
                f"tile {tile_path(level, first // TILE_WIDTH)} is shorter than the tree needs"
            )
        return row[pos]

    def range(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the aligned ranges the RFC 9162 recursion visits."""
        return range_root(start, end, self.node)

    def root(self) -> bytes:
        """The tree's root hash."""
        return EMPTY_ROOT if self.size == 0 else self.range(0, self.size)


class EdgeTiles:
    """The right edge of the tree: the partial last tile of every level, kept in memory.

    ``extend`` takes new leaf hashes and returns every tile it changed, ready to be written in
    the same transaction as the entries, plus the edge as it will be after that write; the
    current object is left as it was, so a failed write changes nothing.
    """

    def __init__(self, size: int, edge: dict[int, bytes]) -> None:
        self.size = size
        self._edge = edge  # level -> hashes of that level's partial tile (may be empty)

    @classmethod
    def load(cls, size: int, read: TileReader) -> EdgeTiles:
        """Rebuild the edge for a tree of ``size`` leaves from stored tiles."""
        edge: dict[int, bytes] = {}
        level = 0
        while count := size >> (TILE_HEIGHT * level):
            index, width = divmod(count, TILE_WIDTH)
            if width:
                data = read(level, index)
                if data is None or len(data) < width * HASH_SIZE:
                    raise StorageError(
                        f"tile {tile_path(level, index)} should hold {width} hashes "
                        f"at size {size}; the ledger is damaged (run proctor verify)"
                    )
                edge[level] = data[: width * HASH_SIZE]
            level += 1
        return cls(size, edge)

    def extend(self, leaves: list[bytes]) -> tuple[dict[tuple[int, int], bytes], EdgeTiles]:
        """Tiles to write when ``leaves`` are appended, and the edge after that write."""
        edge = dict(self._edge)
        dirty: dict[tuple[int, int], bytes] = {}
        pending = leaves
        level = 0
        while pending:
            index, width = divmod(self.size >> (TILE_HEIGHT * level), TILE_WIDTH)
            parts = [edge.get(level, b"")]
            completed: list[bytes] = []
            for h in pending:
                parts.append(h)
                width += 1
                if width == TILE_WIDTH:
                    data = b"".join(parts)
                    dirty[(level, index)] = data
                    completed.append(
                        mth([data[i : i + HASH_SIZE] for i in range(0, len(data), 32)])
                    )
                    index, parts, width = index + 1, [], 0
            edge[level] = b"".join(parts)
            if width:
                dirty[(level, index)] = edge[level]
            pending = completed
            level += 1
        return dirty, EdgeTiles(self.size + len(leaves), edge)
