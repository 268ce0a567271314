"""Merkle node storage as C2SP tlog-tiles (c2sp.org/tlog-tiles).

A tile at level ``L`` and index ``N`` holds up to 256 consecutive hashes of the tree's nodes
at height ``8*L``: level-0 tiles hold leaf hashes, a level-1 tile holds the roots of 256
full level-0 tiles, and so on. A tile holding fewer than 256 hashes is *partial*; it grows in
place until full. Every complete subtree hash of any tree size is either stored or computed
from one tile (at most 255 hashes), so roots and proofs need O(log n) tile reads, and an
append touches one tile per level only when that level's tile fills: O(1) amortized.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from proctor.errors import StorageError
from proctor.ledger.merkle import EMPTY_ROOT, HASH_SIZE, hash_pairs, range_root

__all__ = [
    "DEFAULT_CACHE_TILES",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "EdgeTiles",
    "TileCache",
    "TileHasher",
    "TileReader",
    "tile_path",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
# ~16 KiB per tile, ~16 MiB in all: every full level-1 tile (256**2 leaves each) of a tree of
# up to ~2**26 leaves, which every proof shares, plus the level-0 tiles of recent proofs.
DEFAULT_CACHE_TILES = 1024

TileReader = Callable[[int, int], bytes | None]
"""``read(level, index)`` returns the stored tile's hashes concatenated, or None."""

TileRows = tuple[bytes, ...]
"""A tile's hashes and the interior levels above them: row ``r`` holds, concatenated, the
hashes of the nodes ``r`` levels above the tile's base height that the tile's hashes complete."""


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """The tile's path in the C2SP layout, e.g. ``tile/0/x001/234.p/17``."""
    digits = f"{index:d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    name = "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{name}{suffix}"


def _tile_rows(data: bytes) -> TileRows:
    """The tile's hashes and every complete interior level above them, up to its root.

    A partial tile's odd last hash has no parent yet (its sibling is still to come), so it is not
    carried up: every hash in every row is a complete subtree of the tree.
    """
    rows = [data]
    while len(data) > HASH_SIZE:
        data = hash_pairs(data)
        rows.append(data)
    return tuple(rows)


def _tile_root(data: bytes) -> bytes:
    """MTH of the tile's hashes, as ``merkle.mth`` of the 32-byte slices (an odd last carried)."""
    while len(data) > HASH_SIZE:
        odd = data[-HASH_SIZE:] if len(data) // HASH_SIZE % 2 else b""
        data = hash_pairs(data) + odd
    return data if data else EMPTY_ROOT


class TileCache:
    """The hashed rows of tiles, shared by the ``TileHasher``s of one ledger: an LRU.

    An entry can never be stale, so it needs no invalidation: it is keyed by (level, index,
    width) and holds the hashes of exactly the first ``width`` nodes of that tile, each the hash
    of a complete subtree, which never changes as the tree grows (RFC 9162 §2.1; C2SP
    tlog-tiles: a partial tile only ever grows at its end, a full one never changes). A tree
    of another size needs another width of a partial tile, so it uses another key. Proofs are
    made at the latest checkpoint's size, so between two checkpoints they share the right-edge
    partial tiles too.

    One cache belongs to one ledger database (keys do not name the database). It trusts what it
    read: if someone rewrote a full tile in the file after it was cached, proofs keep using the
    original hashes (``verify`` reads the file, never this cache, and reports the damage).
    Thread-safe; bounded by ``max_tiles`` (0 keeps nothing).
    """

    def __init__(self, max_tiles: int = DEFAULT_CACHE_TILES) -> None:
        if max_tiles < 0:
            raise ValueError(f"max_tiles must be >= 0, not {max_tiles}")
        self.max_tiles = max_tiles
        self.hits = 0  # lookups; a partial tile is looked up too (always a miss)
        self.misses = 0
        self._tiles: OrderedDict[tuple[int, int, int], TileRows] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tiles)

    def get(self, level: int, index: int, width: int = TILE_WIDTH) -> TileRows | None:
        """The rows of tile ``(level, index)`` at ``width`` hashes, if cached."""
        key = (level, index, width)
        with self._lock:
            rows = self._tiles.get(key)
            if rows is None:
                self.misses += 1
                return None
            self.hits += 1
            self._tiles.move_to_end(key)
            return rows

    def put(self, level: int, index: int, width: int, rows: TileRows) -> None:
        """Keep a tile's rows (the least recently used tile goes when the cache is full)."""
        if not 0 < width <= TILE_WIDTH or len(rows[0]) != width * HASH_SIZE:
            raise ValueError(f"rows do not match tile {tile_path(level, index, width)}")
        if not self.max_tiles:
            return
        with self._lock:
            self._tiles[(level, index, width)] = rows
            self._tiles.move_to_end((level, index, width))
            while len(self._tiles) > self.max_tiles:
                self._tiles.popitem(last=False)

    def clear(self) -> None:
        """Forget every tile (and the counters)."""
        with self._lock:
            self._tiles.clear()
            self.hits = self.misses = 0


class TileHasher:
    """Reads complete-subtree hashes of a tree of ``size`` leaves from stored tiles.

    One instance serves one proof or root computation; it keeps the tiles it read and the
    interior levels it hashed, so the siblings that share a tile cost one read. With a
    ``TileCache`` the rows of full tiles are also shared across instances: a cached full tile
    costs neither a read nor a hash.
    """

    def __init__(self, read: TileReader, size: int, cache: TileCache | None = None) -> None:
        self._read = read
        self.size = size
        self._cache = cache
        self._levels: dict[tuple[int, int], TileRows] = {}

    def _tile_levels(self, level: int, index: int) -> TileRows:
        key = (level, index)
        rows = self._levels.get(key)
        if rows is not None:
            return rows
        cache = self._cache
        # The hashes this tree size covers in the tile; a stored tile may hold more (the tree
        # grew since), which belong to a bigger tree and are left out.
        width = min(TILE_WIDTH, (self.size >> (level * TILE_HEIGHT)) - index * TILE_WIDTH)
        if cache is not None and width > 0:
            rows = cache.get(level, index, width)
        if rows is None:
            data = self._read(level, index)
            if data is None or len(data) % HASH_SIZE:
                raise StorageError(f"tile {tile_path(level, index)} is missing or damaged")
            if 0 < width * HASH_SIZE <= len(data):
                data = data[: width * HASH_SIZE]
            rows = _tile_rows(data)
            if cache is not None and len(data) == width * HASH_SIZE:
                cache.put(level, index, width, rows)
        self._levels[key] = rows
        return rows

    def node(self, height: int, index: int) -> bytes:
        """Hash of the perfect subtree of ``2**height`` leaves from leaf ``index << height``."""
        if (index + 1) << height > self.size:
            raise ValueError(f"node {height}/{index} is not complete at size {self.size}")
        level, inner = divmod(height, TILE_HEIGHT)
        first = index << inner  # first node at the tile's base height
        rows = self._tile_levels(level, first // TILE_WIDTH)
        at = ((first % TILE_WIDTH) >> inner) * HASH_SIZE
        row = rows[inner] if inner < len(rows) else b""
        if at + HASH_SIZE > len(row):
            raise StorageError(
                f"tile {tile_path(level, first // TILE_WIDTH)} is shorter than the tree needs"
            )
        return row[at : at + HASH_SIZE]

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
                    completed.append(_tile_root(data))
                    index, parts, width = index + 1, [], 0
            edge[level] = b"".join(parts)
            if width:
                dirty[(level, index)] = edge[level]
            pending = completed
            level += 1
        return dirty, EdgeTiles(self.size + len(leaves), edge)
