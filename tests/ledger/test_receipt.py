"""C2SP tlog-proof receipts: round trip, strict parsing, and forged receipts rejected."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import FormatError, ProctorError, VerificationError
from proctor.ledger.checkpoint import Checkpoint
from proctor.ledger.merkle import inclusion_proof, leaf_hash, mth
from proctor.ledger.note import Signer
from proctor.ledger.receipt import Receipt, verify_receipt

SIGNER = Signer.generate("receipt.test/log")
ENTRIES = [b"entry %d" % i for i in range(13)]
LEAVES = [leaf_hash(e) for e in ENTRIES]


def _range(start: int, end: int) -> bytes:
    return mth(LEAVES[start:end])


def _receipt(index: int, signer: Signer = SIGNER, extra: bytes | None = None) -> Receipt:
    note = Checkpoint(signer.name, len(ENTRIES), mth(LEAVES)).sign([signer])
    proof = inclusion_proof(index, len(ENTRIES), _range)
    return Receipt(index, tuple(proof), note, extra)


def test_round_trip_and_verify() -> None:
    for i in range(len(ENTRIES)):
        text = _receipt(i, extra=b"ctx" if i % 2 else None).text()
        parsed = Receipt.parse(text)
        assert parsed.text() == text
        assert verify_receipt(parsed, ENTRIES[i], [SIGNER.verifier]).size == len(ENTRIES)


def test_spec_layout() -> None:
    lines = _receipt(3, extra=b"x").text().split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra eA=="
    assert lines[2] == "index 3"
    assert lines[3 + len(inclusion_proof(3, 13, _range))] == ""


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda r: Receipt(r.index + 1, r.hashes, r.checkpoint), VerificationError),
        (lambda r: Receipt(r.index, r.hashes[:-1], r.checkpoint), VerificationError),
        (lambda r: Receipt(r.index, (*r.hashes, b"\0" * 32), r.checkpoint), VerificationError),
        (lambda r: Receipt(r.index, (b"\1" * 32, *r.hashes[1:]), r.checkpoint), VerificationError),
        (lambda r: Receipt(99, r.hashes, r.checkpoint), VerificationError),
    ],
)
def test_forged_receipts_fail(mutate: object, error: type[Exception]) -> None:
    r = _receipt(5)
    with pytest.raises(error):
        verify_receipt(mutate(r), ENTRIES[5], [SIGNER.verifier])  # type: ignore[operator]


def test_wrong_entry_key_or_origin_fails() -> None:
    r = _receipt(5)
    with pytest.raises(VerificationError, match="inclusion proof"):
        verify_receipt(r, ENTRIES[6], [SIGNER.verifier])
    other = Signer.generate("receipt.test/log")
    with pytest.raises(VerificationError):
        verify_receipt(r, ENTRIES[5], [other.verifier])
    with pytest.raises(FormatError, match="expected 'other/log'"):
        verify_receipt(r, ENTRIES[5], [SIGNER.verifier], origin="other/log")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("c2sp.org/tlog-proof@v2\nindex 1\n\ncp\n", "must start with"),
        ("c2sp.org/tlog-proof@v1\nindex 1\n", "no empty line"),
        ("c2sp.org/tlog-proof@v1\n\ncp\n", "no 'index N' line"),
        ("c2sp.org/tlog-proof@v1\nindex 01\n\ncp\n", "leading 0"),
        ("c2sp.org/tlog-proof@v1\nindex -1\n\ncp\n", "leading 0"),
        ("c2sp.org/tlog-proof@v1\nindex 99999999999999999999\n\ncp\n", "out of range"),
        ("c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\ncp\n", "3 bytes"),
        ("c2sp.org/tlog-proof@v1\nindex 1\n!!!!\n\ncp\n", "not valid base64"),
        ("c2sp.org/tlog-proof@v1\nextra ***\nindex 1\n\ncp\n", "not valid base64"),
        ("c2sp.org/tlog-proof@v1\nindex 1\n" + "A" * 43 + "=\n" * 65 + "\ncp\n", "more than"),
    ],
)
def test_malformed_receipts(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        Receipt.parse(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_project_errors(data: bytes) -> None:
    with contextlib.suppress(ProctorError):
        verify_receipt(Receipt.parse(data), b"x", [SIGNER.verifier])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 12), st.integers(0, 2000), st.integers(0, 7))
def test_any_flipped_bit_of_a_real_receipt_fails(index: int, pos: int, bit: int) -> None:
    raw = bytearray(_receipt(index).text().encode())
    pos %= len(raw)
    raw[pos] ^= 1 << bit
    try:
        verify_receipt(Receipt.parse(bytes(raw)), ENTRIES[index], [SIGNER.verifier])
    except ProctorError:
        return
    # Only a change the formats treat as equivalent may pass: none exist in this layout
    # except flipping bits that leave the bytes' meaning intact, which base64 padding can.
    reparsed = Receipt.parse(bytes(raw))
    original = _receipt(index)
    assert (reparsed.index, reparsed.hashes) == (original.index, original.hashes)
