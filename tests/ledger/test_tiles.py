"""C2SP tlog-tiles: tile paths, tile contents, and roots and proofs read back through tiles."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import StorageError
from proctor.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    mth,
)
from proctor.ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    EdgeTiles,
    TileCache,
    TileHasher,
    _tile_root,
    tile_path,
)

VECTORS = Path(__file__).parent / "vectors"
FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE
C2SP = json.loads((VECTORS / "c2sp_examples.json").read_text(encoding="utf-8"))


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _ref_hasher(leaves: Sequence[bytes]) -> Callable[[int, int], bytes]:
    """MTH(D[start:end]) straight from the leaf hashes, memoized."""

    @cache
    def h(start: int, end: int) -> bytes:
        return mth(leaves[start:end])

    return h


@dataclass
class TileStore:
    """Tiles in a dict, written the way the ledger writes them: a partial tile grows in place."""

    tiles: dict[tuple[int, int], bytes] = field(default_factory=dict)
    edge: EdgeTiles = field(default_factory=lambda: EdgeTiles(0, {}))

    def read(self, level: int, index: int) -> bytes | None:
        return self.tiles.get((level, index))

    def append(self, batch: list[bytes]) -> None:
        dirty, self.edge = self.edge.extend(batch)
        self.tiles.update(dirty)

    def hasher(self, size: int, cache: TileCache | None = None) -> TileHasher:
        return TileHasher(self.read, size, cache)


# --- tile paths -----------------------------------------------------------------------------------

PATHS = [
    *((e["level"], e["index"], e["width"], e["path"]) for e in C2SP["tile_paths"]["examples"]),
    (0, 0, 256, "tile/0/000"),
    (0, 7, 256, "tile/0/007"),
    (0, 999, 256, "tile/0/999"),
    (0, 1000, 256, "tile/0/x001/000"),
    (1, 1234, 17, "tile/1/x001/234.p/17"),
    (2, 5, 1, "tile/2/005.p/1"),
    (0, 255, 255, "tile/0/255.p/255"),
    (3, 1_000_000, 256, "tile/3/x001/x000/000"),
    (0, 1 << 40, 256, "tile/0/x001/x099/x511/x627/776"),
]


@pytest.mark.parametrize(("level", "index", "width", "path"), PATHS)
def test_tile_path(level: int, index: int, width: int, path: str) -> None:
    assert tile_path(level, index, width) == path


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 63), st.integers(0, 1 << 64), st.integers(1, TILE_WIDTH))
def test_tile_path_is_spec_shaped(level: int, index: int, width: int) -> None:
    """tlog-tiles: zero-padded 3-digit elements, all but the last prefixed with x."""
    prefix, lvl, *elements = tile_path(level, index, width).split("/")
    assert (prefix, lvl) == ("tile", str(level))
    if width < TILE_WIDTH:
        assert elements[-1] == str(width)
        assert elements[-2].endswith(".p")
        elements = [*elements[:-2], elements[-2].removesuffix(".p")]
    *upper, last = elements
    assert all(e[0] == "x" and len(e) == 4 and e[1:].isdigit() for e in upper)
    assert len(last) == 3 and last.isdigit()
    assert int("".join(e.removeprefix("x") for e in elements)) == index
    assert not upper or upper[0] != "x000"


# --- tile contents --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big() -> tuple[list[bytes], TileStore, dict[int, bytes]]:
    """70,000 leaves (the spec's example size), appended in random batches; roots at a sample."""
    leaves = _leaves(70_000)
    store = TileStore()
    rng = random.Random(9162)
    at = 0
    while at < len(leaves):
        step = rng.choice([1, 3, 255, 256, 257, 1000, 4096])
        store.append(leaves[at : at + step])
        at += step
    sample = {1, 255, 256, 257, 65_535, 65_536, 65_537, 65_792, 69_999, 70_000}
    roots = {}
    builder = TreeBuilder()
    for n, leaf in enumerate(leaves, 1):
        builder.push(leaf)
        if n in sample:
            roots[n] = builder.root()
    return leaves, store, roots


@pytest.mark.parametrize("example", C2SP["tile_counts"]["examples"], ids=lambda e: str(e["size"]))
def test_tile_counts_match_the_spec_examples(example: dict[str, Any]) -> None:
    store = TileStore()
    store.append(_leaves(example["size"]))
    assert store.edge.size == example["size"]
    levels = {level for level, _ in store.tiles}
    assert levels == {t["level"] for t in example["tiles"]}
    for want in example["tiles"]:
        sizes = [len(d) for (lv, _), d in sorted(store.tiles.items()) if lv == want["level"]]
        full = [s for s in sizes if s == FULL_TILE_BYTES]
        partial = [s // HASH_SIZE for s in sizes if s != FULL_TILE_BYTES]
        assert len(full) == want["full"]
        assert partial == ([want["partial_width"]] if want["partial_width"] else [])


def test_tiles_hold_the_spec_defined_hashes(big: tuple[list[bytes], TileStore, Any]) -> None:
    """Tile n at level l holds MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l]) for i < 256."""
    leaves, store, _ = big
    h = _ref_hasher(leaves)
    for (level, index), data in store.tiles.items():
        assert len(data) % HASH_SIZE == 0
        assert len(data) <= FULL_TILE_BYTES
        span = TILE_WIDTH**level
        for i in range(len(data) // HASH_SIZE):
            first = (index * TILE_WIDTH + i) * span
            want = h(first, first + span)
            assert data[i * HASH_SIZE : (i + 1) * HASH_SIZE] == want, (level, index, i)


def test_widths_follow_the_tree_size(big: tuple[list[bytes], TileStore, Any]) -> None:
    """The last tile at level l has floor(s / 256**l) mod 256 hashes; all others are full."""
    leaves, store, _ = big
    s = len(leaves)
    for level in range(3):
        count = s // TILE_WIDTH**level
        for index in range(count // TILE_WIDTH):
            assert len(store.tiles[(level, index)]) == FULL_TILE_BYTES
        if count % TILE_WIDTH:
            last = store.tiles[(level, count // TILE_WIDTH)]
            assert len(last) == (count % TILE_WIDTH) * HASH_SIZE
    assert max(level for level, _ in store.tiles) == 2


def test_roots_and_proofs_through_three_levels(
    big: tuple[list[bytes], TileStore, dict[int, bytes]],
) -> None:
    leaves, store, roots = big
    ref = _ref_hasher(leaves)
    for size, root in roots.items():
        tiles = store.hasher(size)
        assert tiles.root() == root, size
        for index in {0, size // 2, size - 1, min(size - 1, 65_535)}:
            assert inclusion_proof(index, size, tiles.range) == inclusion_proof(index, size, ref)
    sizes = sorted(roots)
    for old, new in itertools.pairwise(sizes):
        proof = consistency_proof(old, new, store.hasher(new).range)
        assert proof == consistency_proof(old, new, ref), (old, new)


# --- small trees, every size ----------------------------------------------------------------------

SMALL = 600  # crosses the first level-1 tile boundaries (256, 512)


@pytest.fixture(scope="module")
def small() -> tuple[list[bytes], TileStore, list[TileStore]]:
    """Leaves appended one at a time; keeps a copy of the tiles as they were at every size."""
    leaves = _leaves(SMALL)
    store = TileStore()
    snapshots = [TileStore(dict(store.tiles), store.edge)]
    for leaf in leaves:
        store.append([leaf])
        snapshots.append(TileStore(dict(store.tiles), store.edge))
    return leaves, store, snapshots


def test_root_at_every_size_equals_mth(
    small: tuple[list[bytes], TileStore, list[TileStore]],
) -> None:
    leaves, store, snapshots = small
    for size in range(SMALL + 1):
        want = mth(leaves[:size])
        assert snapshots[size].hasher(size).root() == want, size
        assert store.hasher(size).root() == want, size  # tiles that have since grown


def test_every_inclusion_proof_at_boundary_sizes(
    small: tuple[list[bytes], TileStore, list[TileStore]],
) -> None:
    leaves, _, snapshots = small
    ref = _ref_hasher(leaves)
    for size in (1, 2, 255, 256, 257, 511, 512, 513, SMALL):
        tiles = snapshots[size].hasher(size)
        for index in range(size):
            assert inclusion_proof(index, size, tiles.range) == inclusion_proof(index, size, ref)


def test_every_consistency_proof_between_boundary_sizes(
    small: tuple[list[bytes], TileStore, list[TileStore]],
) -> None:
    leaves, _, snapshots = small
    ref = _ref_hasher(leaves)
    sizes = (0, 1, 2, 3, 128, 255, 256, 257, 300, 511, 512, 513, SMALL)
    for new in sizes:
        tiles = snapshots[new].hasher(new)
        for old in (s for s in sizes if s <= new):
            assert consistency_proof(old, new, tiles.range) == consistency_proof(old, new, ref)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=6), st.data())
def test_random_batches_give_the_same_tree(batches: list[int], data: st.DataObject) -> None:
    """Any batching of extend gives tiles whose roots and proofs are the in-memory ones."""
    leaves = _leaves(sum(batches))
    ref = _ref_hasher(leaves)
    store, at, builder = TileStore(), 0, TreeBuilder()
    boundaries = [0]
    for step in batches:
        store.append(leaves[at : at + step])
        for leaf in leaves[at : at + step]:
            builder.push(leaf)
        at += step
        boundaries.append(at)
        assert store.edge.size == at
        assert store.hasher(at).root() == builder.root() == mth(leaves[:at])
    for size in boundaries:  # older sizes, read from tiles that have grown since
        assert store.hasher(size).root() == ref(0, size)
    size = boundaries[-1]
    if size:
        index = data.draw(st.integers(0, size - 1), label="index")
        old = data.draw(st.integers(0, size), label="old")
        tiles = store.hasher(size)
        assert inclusion_proof(index, size, tiles.range) == inclusion_proof(index, size, ref)
        assert consistency_proof(old, size, tiles.range) == consistency_proof(old, size, ref)


# --- the edge: loading, immutability, damage ------------------------------------------------------


@given(st.integers(0, 300))
def test_tile_root_is_mth(count: int) -> None:
    """extend hashes each completed tile with _tile_root; it must be MTH of its hashes."""
    hashes = _leaves(count)
    assert _tile_root(b"".join(hashes)) == mth(hashes)


def test_extend_leaves_the_old_edge_untouched() -> None:
    edge = EdgeTiles(0, {})
    first_dirty, first_edge = edge.extend(_leaves(300))
    again_dirty, again_edge = edge.extend(_leaves(300))
    assert edge.size == 0
    assert first_dirty == again_dirty
    assert first_edge.size == again_edge.size == 300
    nothing, same = edge.extend([])
    assert nothing == {}
    assert same.size == 0


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 512, 599])
def test_load_rebuilds_the_edge(
    small: tuple[list[bytes], TileStore, list[TileStore]], size: int
) -> None:
    """An edge loaded from stored tiles extends exactly like the one kept in memory."""
    leaves, store, snapshots = small
    rest = leaves[size:]
    kept = snapshots[size].edge
    for read in (snapshots[size].read, store.read):  # tiles as written then, and grown since
        loaded = EdgeTiles.load(size, read)
        assert loaded.size == size
        dirty, after = loaded.extend(rest)
        assert dirty == kept.extend(rest)[0]
        assert after.size == SMALL


def test_load_refuses_missing_or_short_tiles() -> None:
    store = TileStore()
    store.append(_leaves(300))
    with pytest.raises(StorageError):
        EdgeTiles.load(300, lambda level, index: None)
    short = dict(store.tiles)
    short[(0, 1)] = short[(0, 1)][:-HASH_SIZE]
    with pytest.raises(StorageError):
        EdgeTiles.load(300, lambda level, index: short.get((level, index)))


def test_tile_hasher_refuses_missing_damaged_or_short_tiles() -> None:
    store = TileStore()
    store.append(_leaves(300))
    missing = TileHasher(lambda level, index: None, 300)
    with pytest.raises(StorageError):
        missing.root()
    damaged = dict(store.tiles)
    damaged[(0, 1)] = damaged[(0, 1)] + b"\x00"
    with pytest.raises(StorageError):
        TileHasher(lambda level, index: damaged.get((level, index)), 300).root()
    with pytest.raises(StorageError):
        TileHasher(store.read, 301).root()  # the tiles only reach size 300
    with pytest.raises(ValueError):
        store.hasher(300).node(TILE_HEIGHT, 1)  # leaves 256..511 are not all in the tree


# --- the cache of tiles shared across hashers ------------------------------------------------


class CountingStore(TileStore):
    """A TileStore that records every tile read, to see what the cache saved."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[int, int]] = []

    def read(self, level: int, index: int) -> bytes | None:
        self.reads.append((level, index))
        return super().read(level, index)


def _leaf_of_tile(store: TileStore, size: int, cache: TileCache, tile: int) -> bytes:
    return store.hasher(size, cache).node(0, tile * TILE_WIDTH)


def test_cache_keys_tiles_by_width_and_evicts_the_least_recently_used() -> None:
    store = TileStore()
    leaves = _leaves(5 * TILE_WIDTH + 17)
    store.append(leaves)
    size = len(leaves)
    cache = TileCache(max_tiles=3)
    for tile in range(6):  # tiles 0-4 are full; tile 5 holds 17 hashes
        assert _leaf_of_tile(store, size, cache, tile) == leaves[tile * TILE_WIDTH]
    assert len(cache) == 3
    assert [cache.get(0, t) is not None for t in range(5)] == [False, False, False, True, True]
    assert cache.get(0, 5, 17) is not None  # the partial tile, kept under the width it has
    assert cache.get(0, 5) is None and cache.get(0, 5, 18) is None  # never under another
    cache.get(0, 3)  # now the most recently used
    _leaf_of_tile(store, size, cache, 0)
    assert [cache.get(0, t) is not None for t in (0, 3, 4)] == [True, True, False]
    rows = cache.get(0, 0)
    assert rows is not None and rows[0] == store.tiles[(0, 0)] and rows[-1] == mth(leaves[:256])
    with pytest.raises(ValueError, match="rows do not match"):
        cache.put(0, 5, TILE_WIDTH, (store.tiles[(0, 5)],))  # a width that lies
    with pytest.raises(ValueError, match="rows do not match"):
        cache.put(0, 5, 0, (b"",))
    with pytest.raises(ValueError):
        TileCache(-1)
    off = TileCache(0)
    _leaf_of_tile(store, size, off, 1)
    assert len(off) == 0
    cache.clear()
    assert len(cache) == 0 and cache.hits == cache.misses == 0


def test_cached_tiles_are_read_once_per_width() -> None:
    store = CountingStore()
    store.append(_leaves(3 * TILE_WIDTH + 40))
    size = store.edge.size
    cache = TileCache()
    inclusion_proof(TILE_WIDTH + 5, size, store.hasher(size, cache).range)
    assert {(0, 1), (0, 3), (1, 0)} <= set(store.reads)
    for _ in range(2):  # the same size again: every tile comes from the cache
        store.reads.clear()
        inclusion_proof(TILE_WIDTH + 5, size, store.hasher(size, cache).range)
        assert store.reads == []
    store.append(_leaves(3)[:1])  # the tree grows: the partial tiles it needs are other widths
    store.reads.clear()
    inclusion_proof(TILE_WIDTH + 5, size + 1, store.hasher(size + 1, cache).range)
    assert (0, 3) in store.reads and (0, 1) not in store.reads


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 700), min_size=1, max_size=8),
    st.integers(0, 4),
    st.data(),
)
def test_a_shared_cache_gives_the_uncached_hashes_while_the_tree_grows(
    batches: list[int], max_tiles: int, data: st.DataObject
) -> None:
    """Proofs and roots through one small cache, across tile boundaries, between appends.

    A cache that served a tile under the wrong key (a partial tile at another width) would give a
    proof or root that is not the reference one, or a StorageError.
    """
    leaves = _leaves(sum(batches))
    ref = _ref_hasher(leaves)
    store, cache, at = TileStore(), TileCache(max_tiles), 0
    sizes = [0]
    for step in batches:
        store.append(leaves[at : at + step])
        at += step
        sizes.append(at)
        for size in sizes:  # every size so far, from tiles that have grown since
            assert store.hasher(size, cache).root() == (ref(0, size) if size else EMPTY_ROOT)
        for _ in range(3):
            index = data.draw(st.integers(0, at - 1), label="index")
            old = data.draw(st.integers(0, at), label="old")
            tiles = store.hasher(at, cache)
            assert inclusion_proof(index, at, tiles.range) == inclusion_proof(index, at, ref)
            assert consistency_proof(old, at, tiles.range) == consistency_proof(old, at, ref)
    assert len(cache) <= max_tiles
    for level, index in store.tiles:
        rows = cache.get(level, index)
        if rows is not None:
            assert rows[0] == store.tiles[(level, index)]
            assert len(rows[0]) == FULL_TILE_BYTES


def test_a_shared_cache_through_three_levels(
    big: tuple[list[bytes], TileStore, dict[int, bytes]],
) -> None:
    """The first level-1 tile fills at 65,536 leaves; sizes on both sides share one cache, the
    larger sizes first so older sizes read the full tiles cached for newer ones."""
    leaves, store, roots = big
    ref = _ref_hasher(leaves)
    cache = TileCache(max_tiles=64)
    for size in sorted(roots, reverse=True):
        tiles = store.hasher(size, cache)
        assert tiles.root() == roots[size], size
        for index in {i for i in (0, 255, 256, size // 2, size - 1, 65_535, 65_536) if i < size}:
            assert inclusion_proof(index, size, tiles.range) == inclusion_proof(index, size, ref)
    assert cache.get(1, 0) is not None  # the full level-1 tile was cached and used
    sizes = sorted(roots)
    for old, new in itertools.pairwise(sizes):
        proof = consistency_proof(old, new, store.hasher(new, cache).range)
        assert proof == consistency_proof(old, new, ref), (old, new)


def test_a_shared_cache_at_every_small_size(
    small: tuple[list[bytes], TileStore, list[TileStore]],
) -> None:
    """Tiles as they were at each size (partial ones shorter), up and then down, one cache."""
    leaves, _, snapshots = small
    cache = TileCache(max_tiles=2)
    for size in [*range(SMALL + 1), *reversed(range(SMALL + 1))]:
        assert snapshots[size].hasher(size, cache).root() == mth(leaves[:size]), size
