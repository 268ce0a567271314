"""RFC 9162 Merkle tree math as pure functions.

Hashes are SHA-256; a leaf is ``SHA-256(0x00 || data)`` and an interior node
``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1). Proof generation is written against a
*range hasher* ``h(start, end) -> MTH(D[start:end])`` so the same code serves an in-memory
list (tests) and the tile store (production). Verification treats every proof as untrusted:
sizes, index, proof length and each hash's length are checked before any hashing, and a
failure raises :class:`~proctor.errors.VerificationError` naming expected vs computed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final

from proctor.errors import VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "RangeHasher",
    "TreeBuilder",
    "consistency_proof",
    "hash_pairs",
    "inclusion_proof",
    "leaf_hash",
    "mth",
    "node_hash",
    "range_root",
    "root_from_inclusion",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) — RFC 9162 §2.1.1

# SHA-256 states that have already absorbed the RFC 9162 §2.1.1 domain-separation prefix. Copying
# one and feeding it the rest costs less than building ``prefix + data`` and a new hasher (~0.50
# against ~0.60 µs per node hash, ~0.82 against ~0.93 µs per 600-byte leaf, timeit here); the
# digest is the same. They are only ever copied, never updated: private for that reason.
_LEAF_PREFIX: Final = hashlib.sha256(b"\x00")
_NODE_PREFIX: Final = hashlib.sha256(b"\x01")

RangeHasher = Callable[[int, int], bytes]
"""``h(start, end)`` returns MTH(D[start:end]) for the ranges the RFC recursion visits."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    h = _LEAF_PREFIX.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    h = _NODE_PREFIX.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def hash_pairs(row: bytes) -> bytes:
    """The level above ``row`` (concatenated 32-byte hashes): ``node_hash`` of each pair.

    Returns the parents of hashes 0|1, 2|3, … concatenated; an odd last hash has no parent here
    (the caller decides whether it is carried up, as in ``mth``, or not yet complete, as in a
    partial tile). A pair is 64 adjacent bytes, so each parent is one ``update`` of one slice.
    """
    copy = _NODE_PREFIX.copy
    parents = []
    for i in range(0, len(row) - 2 * HASH_SIZE + 1, 2 * HASH_SIZE):
        h = copy()
        h.update(row[i : i + 2 * HASH_SIZE])
        parents.append(h.digest())
    return b"".join(parents)


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): where MTH splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaves: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of a list of *leaf hashes* (RFC 9162 §2.1.1), iteratively."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Pairing left to right and carrying an odd last node up unchanged gives exactly the
    # RFC's split at the largest power of two below n.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def range_root(start: int, end: int, node: Callable[[int, int], bytes]) -> bytes:
    """MTH(D[start:end]) from complete subtrees: ``node(level, index)``.

    ``start`` must be aligned as in the RFC recursion (a multiple of the largest power of two
    not above ``end - start``). The range splits into aligned perfect subtrees of decreasing
    size, folded from the right, which is the RFC's left-complete shape.
    """
    if start >= end:
        raise ValueError(f"empty range [{start}, {end})")
    parts: list[bytes] = []
    while start < end:
        size = 1 << ((end - start).bit_length() - 1)
        if start:
            size = min(size, start & -start)
        level = size.bit_length() - 1
        parts.append(node(level, start >> level))
        start += size
    acc = parts[-1]
    for part in reversed(parts[:-1]):
        acc = node_hash(part, acc)
    return acc


def inclusion_proof(index: int, size: int, h: RangeHasher) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of size {size}")
    out: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            out.append(h(start + k, end))
            end = start + k
        else:
            out.append(h(start, start + k))
            start, m = start + k, m - k
    out.reverse()
    return out


def consistency_proof(old: int, new: int, h: RangeHasher) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1; empty when ``old`` is 0 or equals ``new``."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    if old in (0, new):
        return []
    out: list[bytes] = []
    start, end, m, complete = 0, new, old, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            out.append(h(start + k, end))
            end = start + k
        else:
            out.append(h(start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        out.append(h(start, end))
    out.reverse()
    return out


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for i, x in enumerate(hashes):
        if len(x) != HASH_SIZE:
            raise VerificationError(f"{what}[{i}] is {len(x)} bytes, expected {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root a proof implies, per RFC 9162 §2.1.3.2 steps 1-5 (without the root compare)."""
    if size <= 0 or not 0 <= index < size:
        raise VerificationError(f"index {index} is outside a tree of size {size}")
    _check_hashes("leaf", [leaf])
    _check_hashes("proof", proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError(f"inclusion proof too long: {len(proof)} hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(f"inclusion proof too short: {len(proof)} hashes")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise unless ``proof`` shows leaf ``index`` is in the tree of ``size`` with ``root``."""
    _check_hashes("root", [root])
    got = root_from_inclusion(index, size, leaf, proof)
    if got != root:
        raise VerificationError(
            f"inclusion proof for index {index} in size {size}: "
            f"expected root {root.hex()}, computed {got.hex()}"
        )


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise unless ``proof`` shows tree ``old`` is a prefix of tree ``new`` (RFC 9162 §2.1.4.2)."""
    _check_hashes("old root", [old_root])
    _check_hashes("new root", [new_root])
    _check_hashes("proof", proof)
    if old < 0 or new < old:
        raise VerificationError(f"size {new} cannot extend size {old}")
    if old == new:
        if proof:
            raise VerificationError("equal sizes need an empty consistency proof")
        if old_root != new_root:
            raise VerificationError(
                f"same size {old} with different roots {old_root.hex()} and {new_root.hex()}"
            )
        return
    if old == 0:
        if proof:
            raise VerificationError("a consistency proof from size 0 must be empty")
        return
    if not proof:
        raise VerificationError(f"empty consistency proof from {old} to {new}")
    path = list(proof)
    if old & (old - 1) == 0:  # step 2: old is a power of two
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError(f"consistency proof too long: {len(proof)} hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(f"consistency proof too short: {len(proof)} hashes")
    if fr != old_root:
        raise VerificationError(
            f"consistency {old}->{new}: expected old root {old_root.hex()}, computed {fr.hex()}"
        )
    if sr != new_root:
        raise VerificationError(
            f"consistency {old}->{new}: expected new root {new_root.hex()}, computed {sr.hex()}"
        )


class TreeBuilder:
    """Streaming tree: push leaf hashes, read the root at the current size at any time.

    Keeps one hash per set bit of the size (the "compact range"), so memory is O(log n) and
    each push costs one node hash amortized.
    """

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0

    def push(self, leaf: bytes) -> None:
        """Append one leaf hash."""
        h = leaf
        n = self.size
        while n & 1:
            h = node_hash(self._stack.pop(), h)
            n >>= 1
        self._stack.append(h)
        self.size += 1

    def root(self) -> bytes:
        """MTH of everything pushed so far."""
        if not self._stack:
            return EMPTY_ROOT
        acc = self._stack[-1]
        for part in reversed(self._stack[:-1]):
            acc = node_hash(part, acc)
        return acc
