"""RFC 9162 Merkle math: published vectors, a naive reference, and proofs that must not bend."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import VerificationError
from proctor.ledger.merkle import (
    EMPTY_ROOT,
    TreeBuilder,
    consistency_proof,
    hash_pairs,
    inclusion_proof,
    leaf_hash,
    mth,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _hexes(xs: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in xs]


TREE = _load("rfc6962_tree.json")
TREE_LEAVES = [leaf_hash(bytes.fromhex(x)) for x in TREE["leaf_inputs"]]
TREE_ROOTS = _hexes(TREE["roots"])
TDEV_INCLUSION = _load("tdev_inclusion.json")
TDEV_CONSISTENCY = _load("tdev_consistency.json")
SHAPES = _load("proof_shapes.json")
SPECIAL = _load("verify_special.json")


def _tree_hasher(start: int, end: int) -> bytes:
    return mth(TREE_LEAVES[start:end])


# --- a naive reference, written straight from RFC 9162 §2.1 -------------------------------------


class RefTree:
    """MTH, PATH and PROOF over raw entries by the RFC's recursive definitions (memoized)."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.entries = list(entries)
        self.mth = cache(self._mth)

    def _mth(self, start: int, end: int) -> bytes:
        # §2.1.1: MTH({}) = SHA-256(); MTH({d0}) = SHA-256(0x00 || d0);
        # MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest 2^i < n.
        n = end - start
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return hashlib.sha256(b"\x00" + self.entries[start]).digest()
        k = 1
        while k * 2 < n:
            k *= 2
        left, right = self.mth(start, start + k), self.mth(start + k, end)
        return hashlib.sha256(b"\x01" + left + right).digest()

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        """PATH(m, D[start:end]) of §2.1.3.1."""
        n = end - start
        if n == 1:
            return []
        k = 1
        while k * 2 < n:
            k *= 2
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[n]) of §2.1.4.1 (empty for m == 0 or m == n)."""
        if m in (0, n):
            return []
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, start: int, end: int, b: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if b else [self.mth(start, end)]
        k = 1
        while k * 2 < n:
            k *= 2
        if m <= k:
            return [*self._subproof(m, start, start + k, b), self.mth(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.mth(start, start + k)]


MAX_N = 70
REF = RefTree([f"entry {i}".encode() for i in range(MAX_N + 1)])
REF_LEAVES = [leaf_hash(e) for e in REF.entries]


def _ref_hasher(start: int, end: int) -> bytes:
    return REF.mth(start, end)


# --- RFC 6962 hasher and the 8-leaf reference tree ------------------------------------------------


def test_hasher_vectors() -> None:
    h = TREE["hasher"]
    assert bytes.fromhex(h["empty_root"]) == EMPTY_ROOT == mth([])
    assert leaf_hash(b"") == bytes.fromhex(h["empty_leaf"])
    assert leaf_hash(bytes.fromhex(h["leaf"]["data"])) == bytes.fromhex(h["leaf"]["hash"])
    node = h["node"]
    got = node_hash(bytes.fromhex(node["left"]), bytes.fromhex(node["right"]))
    assert got == bytes.fromhex(node["hash"])


@settings(max_examples=300)
@given(st.binary(max_size=300), st.binary(min_size=32, max_size=32), st.binary(max_size=40))
def test_pre_seeded_hashers_equal_the_rfc_definitions(
    data: bytes, left: bytes, right: bytes
) -> None:
    """leaf_hash/node_hash copy a SHA-256 state holding the prefix; the digests must be
    SHA-256(0x00 || d) and SHA-256(0x01 || l || r), and no call may change the shared state."""
    for _ in range(3):  # repeated calls: a prefix state updated by mistake would drift
        assert leaf_hash(data) == hashlib.sha256(b"\x00" + data).digest()
        assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=9))
def test_hash_pairs_hashes_adjacent_pairs_and_drops_an_odd_last(hashes: list[bytes]) -> None:
    want = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes) - 1, 2)]
    assert hash_pairs(b"".join(hashes)) == b"".join(want)


def test_node_hashes_of_the_reference_tree() -> None:
    for level, hashes in enumerate(TREE["node_hashes"]):
        for index, want in enumerate(_hexes(hashes)):
            assert mth(TREE_LEAVES[index << level : (index + 1) << level]) == want, (level, index)


@pytest.mark.parametrize("size", range(9))
def test_reference_tree_root_at_every_size(size: int) -> None:
    builder = TreeBuilder()
    for leaf in TREE_LEAVES[:size]:
        builder.push(leaf)
    assert mth(TREE_LEAVES[:size]) == TREE_ROOTS[size]
    assert builder.root() == TREE_ROOTS[size]
    assert builder.size == size


@pytest.mark.parametrize("case", TREE["inclusion"], ids=lambda c: f"{c['index']}-in-{c['size']}")
def test_reference_tree_inclusion_paths(case: dict[str, Any]) -> None:
    index, size, want = case["index"], case["size"], _hexes(case["proof"])
    assert inclusion_proof(index, size, _tree_hasher) == want
    assert root_from_inclusion(index, size, TREE_LEAVES[index], want) == TREE_ROOTS[size]
    verify_inclusion(index, size, TREE_LEAVES[index], want, TREE_ROOTS[size])


@pytest.mark.parametrize("case", TREE["consistency"], ids=lambda c: f"{c['size1']}-to-{c['size2']}")
def test_reference_tree_consistency_proofs(case: dict[str, Any]) -> None:
    old, new, want = case["size1"], case["size2"], _hexes(case["proof"])
    assert consistency_proof(old, new, _tree_hasher) == want
    verify_consistency(old, new, TREE_ROOTS[old], TREE_ROOTS[new], want)


# --- transparency-dev/merkle testdata: positive and negative probes -------------------------------


def _tdev_id(case: dict[str, Any]) -> str:
    folder: str = case["source"].rsplit("/", 2)[-2]
    return f"{folder}/{case['desc']}"


@pytest.mark.parametrize("case", TDEV_INCLUSION, ids=_tdev_id)
def test_tdev_inclusion_vectors(case: dict[str, Any]) -> None:
    args = (
        case["leaf_index"],
        case["tree_size"],
        bytes.fromhex(case["leaf_hash"]),
        _hexes(case["proof"]),
        bytes.fromhex(case["root"]),
    )
    if case["want_err"]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("case", TDEV_CONSISTENCY, ids=_tdev_id)
def test_tdev_consistency_vectors(case: dict[str, Any]) -> None:
    args = (
        case["size1"],
        case["size2"],
        bytes.fromhex(case["root1"]),
        bytes.fromhex(case["root2"]),
        _hexes(case["proof"]),
    )
    if case["want_err"]:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# The probes of transparency-dev/merkle proof/verify_test.go, restated: each a (desc, change).
_U64 = (1 << 64) - 1
_SOME_HASH = bytes.fromhex(SPECIAL["some_hash"])


def _inclusion_probes(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    i, n, proof, root = c["leaf_index"], c["tree_size"], c["proof"], c["root"]
    probes = {
        "leafIdx - 1": {"leaf_index": (i - 1) & _U64},
        "leafIdx + 1": {"leaf_index": i + 1},
        "leafIdx ^ 2": {"leaf_index": i ^ 2},
        "treeSize * 2": {"tree_size": n * 2},
        "treeSize div 2": {"tree_size": n // 2},
        "wrong leaf": {"leaf_hash": b"WrongLeaf".hex()},
        "empty root": {"root": EMPTY_ROOT.hex()},
        "random root": {"root": _SOME_HASH.hex()},
        "trailing garbage": {"proof": [*proof, ""]},
        "trailing root": {"proof": [*proof, root]},
        "preceding garbage": {"proof": ["", *proof]},
        "preceding root": {"proof": [root, *proof]},
    }
    for k in range(len(proof)):
        flipped = bytearray.fromhex(proof[k])
        flipped[0] ^= 8
        probes[f"modified proof[{k}] bit 3"] = {
            "proof": [*proof[:k], flipped.hex(), *proof[k + 1 :]]
        }
    if proof:
        probes["removed component"] = {"proof": proof[:-1]}
    if len(proof) > 1:
        probes["inserted component"] = {"proof": [proof[0], _SOME_HASH.hex(), *proof[1:]]}
    return {desc: {**c, **change, "desc": desc} for desc, change in probes.items()}


def _consistency_probes(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    m, n, r1, r2, proof = c["size1"], c["size2"], c["root1"], c["root2"], c["proof"]
    wrong = b"WrongRoot".hex()
    probes = {
        "size1 - 1": {"size1": (m - 1) & _U64},
        "size1 + 1": {"size1": m + 1},
        "size1 ^ 2": {"size1": m ^ 2},
        "size2 * 2": {"size2": n * 2},
        "size2 div 2": {"size2": n // 2},
        "wrong root1": {"root1": wrong},
        "wrong root2": {"root2": wrong},
        "swapped roots": {"root1": r2, "root2": r1},
        "empty proof": {"proof": []},
        "trailing garbage": {"proof": [*proof, ""]},
        "trailing root1": {"proof": [*proof, r1]},
        "trailing root2": {"proof": [*proof, r2]},
        "preceding garbage": {"proof": ["", *proof]},
        "preceding root1": {"proof": [r1, *proof]},
        "preceding root2": {"proof": [r2, *proof]},
        "preceding proof[0]": {"proof": [proof[0], *proof]},
        "truncated proof": {"proof": proof[:-1]},
    }
    for k in range(len(proof)):
        flipped = bytearray.fromhex(proof[k])
        flipped[0] ^= 16
        probes[f"modified proof[{k}] bit 4"] = {
            "proof": [*proof[:k], flipped.hex(), *proof[k + 1 :]]
        }
    return {desc: {**c, **change, "desc": desc} for desc, change in probes.items()}


def _happy(cases: list[dict[str, Any]], case: dict[str, Any]) -> dict[str, Any]:
    folder = case["source"].rsplit("/", 1)[0]
    return next(c for c in cases if c["source"] == f"{folder}/happy-path.json")


def test_stored_negative_vectors_are_the_documented_probes() -> None:
    """Guards the transcription: each stored negative is its happy path with the named change."""
    for cases, probes in (
        (TDEV_INCLUSION, _inclusion_probes),
        (TDEV_CONSISTENCY, _consistency_probes),
    ):
        for case in cases:
            if case["want_err"]:
                expected = probes(_happy(cases, case))[case["desc"]]
                assert case == {**expected, "source": case["source"], "want_err": True}


def _inclusion_happy_paths() -> list[dict[str, Any]]:
    from_tree = [
        {
            "leaf_index": c["index"],
            "tree_size": c["size"],
            "leaf_hash": TREE_LEAVES[c["index"]].hex(),
            "proof": c["proof"],
            "root": TREE_ROOTS[c["size"]].hex(),
        }
        for c in TREE["inclusion"]
    ]
    return from_tree + [c for c in TDEV_INCLUSION if not c["want_err"]]


def _consistency_happy_paths() -> list[dict[str, Any]]:
    from_tree = [
        {
            "size1": c["size1"],
            "size2": c["size2"],
            "root1": TREE_ROOTS[c["size1"]].hex(),
            "root2": TREE_ROOTS[c["size2"]].hex(),
            "proof": c["proof"],
        }
        for c in TREE["consistency"]
    ]
    return from_tree + [c for c in TDEV_CONSISTENCY if not c["want_err"]]


@pytest.mark.parametrize("happy", _inclusion_happy_paths())
def test_every_probe_of_every_inclusion_vector_fails(happy: dict[str, Any]) -> None:
    for probe in _inclusion_probes(happy).values():
        with pytest.raises(VerificationError):
            verify_inclusion(
                probe["leaf_index"],
                probe["tree_size"],
                bytes.fromhex(probe["leaf_hash"]),
                _hexes(probe["proof"]),
                bytes.fromhex(probe["root"]),
            )


@pytest.mark.parametrize("happy", [c for c in _consistency_happy_paths() if c["proof"]])
def test_every_probe_of_every_consistency_vector_fails(happy: dict[str, Any]) -> None:
    for probe in _consistency_probes(happy).values():
        with pytest.raises(VerificationError):
            verify_consistency(
                probe["size1"],
                probe["size2"],
                bytes.fromhex(probe["root1"]),
                bytes.fromhex(probe["root2"]),
                _hexes(probe["proof"]),
            )


def _as_hash(x: bytes) -> bytes:
    return x if len(x) == 32 else hashlib.sha256(x).digest()


@pytest.mark.parametrize("case", SPECIAL["consistency"])
def test_go_trivial_consistency_table(case: dict[str, Any]) -> None:
    """Go's table uses short "don't care" roots; we also demand 32-byte roots, so map them."""
    r1, r2 = bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
    args = (case["size1"], case["size2"], _as_hash(r1), _as_hash(r2), _hexes(case["proof"]))
    if case["want_err"]:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
    if len(r1) != 32 or len(r2) != 32:
        with pytest.raises(VerificationError, match="bytes, expected 32"):
            verify_consistency(case["size1"], case["size2"], r1, r2, _hexes(case["proof"]))


@pytest.mark.parametrize(("index", "size"), SPECIAL["inclusion_probes"])
def test_inclusion_in_degenerate_trees_fails(index: int, size: int) -> None:
    for leaf, root in ((_SOME_HASH, b""), (b"", EMPTY_ROOT), (_SOME_HASH, EMPTY_ROOT)):
        with pytest.raises(VerificationError):
            verify_inclusion(index, size, leaf, [], root)


def test_single_entry_tree() -> None:
    leaf = leaf_hash(bytes.fromhex(SPECIAL["single_entry_data"]))
    verify_inclusion(0, 1, leaf, [], leaf)
    for got_leaf, root in ((b"", leaf), (leaf, b""), (b"", b"")):
        with pytest.raises(VerificationError):
            verify_inclusion(0, 1, got_leaf, [], root)


# --- proof shapes: which subtree each proof element covers ----------------------------------------


def _marker(start: int, end: int) -> bytes:
    """A range hasher that records the range instead of hashing it."""
    return start.to_bytes(4, "big") + end.to_bytes(4, "big")


def _ranges(proof: list[bytes]) -> list[tuple[int, int]]:
    return [(int.from_bytes(p[:4], "big"), int.from_bytes(p[4:], "big")) for p in proof]


def _shape_ranges(case: dict[str, Any]) -> list[tuple[int, int]]:
    """Go's node addresses (level, index) as leaf ranges; a rehash group is one element."""
    ranges = [(index << level, (index + 1) << level) for level, index in case["nodes"]]
    if "rehash" in case:
        begin, end = case["rehash"]
        group = ranges[begin:end]
        merged = (min(s for s, _ in group), max(e for _, e in group))
        ranges = [*ranges[:begin], merged, *ranges[end:]]
    return ranges


@pytest.mark.parametrize("case", SHAPES["inclusion"], ids=lambda c: f"{c['index']}-in-{c['size']}")
def test_inclusion_proof_shapes(case: dict[str, Any]) -> None:
    got = _ranges(inclusion_proof(case["index"], case["size"], _marker))
    assert got == _shape_ranges(case)


@pytest.mark.parametrize(
    "case", SHAPES["consistency"], ids=lambda c: f"{c['size1']}-to-{c['size2']}"
)
def test_consistency_proof_shapes(case: dict[str, Any]) -> None:
    got = _ranges(consistency_proof(case["size1"], case["size2"], _marker))
    assert got == _shape_ranges(case)


def test_proof_generation_refuses_impossible_requests() -> None:
    for size, index in SHAPES["inclusion_errors"]:
        with pytest.raises(ValueError):
            inclusion_proof(index, size, _marker)
    for old, new in SHAPES["consistency_errors"]:
        with pytest.raises(ValueError):
            consistency_proof(old, new, _marker)


# --- brute force against the naive reference ------------------------------------------------------


def test_mth_and_tree_builder_match_naive_recursion() -> None:
    builder = TreeBuilder()
    for n in range(MAX_N + 1):
        assert mth(REF_LEAVES[:n]) == REF.mth(0, n), n
        assert builder.root() == REF.mth(0, n), n
        if n < MAX_N:
            builder.push(REF_LEAVES[n])


def test_every_inclusion_proof_matches_the_rfc_path_and_verifies() -> None:
    for size in range(1, MAX_N + 1):
        root = REF.mth(0, size)
        for index in range(size):
            proof = inclusion_proof(index, size, _ref_hasher)
            assert proof == REF.path(index, 0, size), (index, size)
            assert root_from_inclusion(index, size, REF_LEAVES[index], proof) == root
            verify_inclusion(index, size, REF_LEAVES[index], proof, root)


def test_every_consistency_proof_matches_the_rfc_proof_and_verifies() -> None:
    for new in range(MAX_N + 1):
        for old in range(new + 1):
            proof = consistency_proof(old, new, _ref_hasher)
            assert proof == REF.proof(old, new), (old, new)
            verify_consistency(old, new, REF.mth(0, old), REF.mth(0, new), proof)


# --- hypothesis: nothing near a valid proof verifies ----------------------------------------------


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def _inclusion_case(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_N))
    return draw(st.integers(0, size - 1)), size


@st.composite
def _consistency_case(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(1, MAX_N))
    return draw(st.integers(1, new)), new


@settings(max_examples=300, deadline=None)
@given(_inclusion_case(), st.data())
def test_inclusion_rejects_any_single_bit_flip(case: tuple[int, int], data: st.DataObject) -> None:
    index, size = case
    leaf, root = REF_LEAVES[index], REF.mth(0, size)
    proof = REF.path(index, 0, size)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")  # -2 leaf, -1 root
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        leaf = _flip(leaf, bit)
    elif target == -1:
        root = _flip(root, bit)
    else:
        proof[target] = _flip(proof[target], bit)
    with pytest.raises(VerificationError):
        verify_inclusion(index, size, leaf, proof, root)


@settings(max_examples=300, deadline=None)
@given(_inclusion_case(), st.sampled_from([-1, 1]))
def test_inclusion_rejects_an_index_off_by_one(case: tuple[int, int], delta: int) -> None:
    index, size = case
    proof = REF.path(index, 0, size)
    with pytest.raises(VerificationError):
        verify_inclusion(index + delta, size, REF_LEAVES[index], proof, REF.mth(0, size))


@settings(max_examples=300, deadline=None)
@given(_inclusion_case(), st.sampled_from([-1, 1]))
def test_inclusion_proof_does_not_carry_to_a_size_off_by_one(
    case: tuple[int, int], delta: int
) -> None:
    """A proof for size n says nothing about the tree of size n±1 (with that tree's root)."""
    index, size = case
    other = size + delta
    proof = REF.path(index, 0, size)
    with pytest.raises(VerificationError):
        verify_inclusion(index, other, REF_LEAVES[index], proof, REF.mth(0, max(other, 0)))


@settings(max_examples=300, deadline=None)
@given(_consistency_case(), st.data())
def test_consistency_rejects_any_single_bit_flip(
    case: tuple[int, int], data: st.DataObject
) -> None:
    old, new = case
    old_root, new_root = REF.mth(0, old), REF.mth(0, new)
    proof = REF.proof(old, new)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")  # -2 old, -1 new root
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        old_root = _flip(old_root, bit)
    elif target == -1:
        new_root = _flip(new_root, bit)
    else:
        proof[target] = _flip(proof[target], bit)
    with pytest.raises(VerificationError):
        verify_consistency(old, new, old_root, new_root, proof)


@settings(max_examples=300, deadline=None)
@given(_consistency_case(), st.sampled_from(["old", "new"]), st.sampled_from([-1, 1]))
def test_consistency_proof_does_not_carry_to_a_size_off_by_one(
    case: tuple[int, int], which: str, delta: int
) -> None:
    """Shifting either size by one (with the genuine roots of the shifted trees) fails.

    The empty tree is a prefix of every tree, so shifting ``old`` down to 0 is excluded.
    """
    old, new = case
    proof = REF.proof(old, new)
    if which == "old":
        old += delta
    else:
        new += delta
    if old == 0:
        return
    old_root, new_root = REF.mth(0, old), REF.mth(0, new)
    with pytest.raises(VerificationError):
        verify_consistency(old, new, old_root, new_root, proof)
