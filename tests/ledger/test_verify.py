"""The storage tamper suite: each change to the file is detected and named by verification."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from proctor.ledger.checkpoint import Checkpoint
from proctor.ledger.merkle import leaf_hash
from proctor.ledger.note import Signer
from proctor.ledger.store import SqliteStore
from proctor.ledger.verify import Report, verify_ledger
from tests.ledger.conftest import ORIGIN, entry, fill, tamper

N = 1000


@pytest.fixture
def ledger(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "l.sqlite"
    fill(path, signer, N)
    return path


def _verify(path: Path, signer: Signer, saved: str | None = None) -> Report:
    store = SqliteStore(path, readonly=True)
    try:
        return verify_ledger(store, [signer.verifier], ORIGIN, saved_checkpoint=saved)
    finally:
        store.close()


def _kinds(report: Report) -> list[tuple[str, int | None, int | None]]:
    return [(f.kind, f.first, f.last) for f in report.findings if f.is_failure]


def _latest(path: Path) -> str:
    cp = SqliteStore(path, readonly=True).latest_checkpoint()
    assert cp is not None
    return cp.note


def test_clean_ledger_verifies(ledger: Path, signer: Signer) -> None:
    report = _verify(ledger, signer)
    assert report, report.findings
    assert report.entries == N
    assert report.verified_size == N
    assert report.valid_checkpoints == report.checkpoints >= 10
    assert _verify(ledger, signer, saved=_latest(ledger))


def test_one_edited_byte_is_a_modified_entry(ledger: Path, signer: Signer) -> None:
    data = bytearray(entry(500))
    data[3] ^= 0x01
    tamper(ledger)("UPDATE entries SET data = ? WHERE idx = 500", (bytes(data),))
    report = _verify(ledger, signer)
    assert not report
    assert ("modified-entry", 500, 500) in _kinds(report)
    assert any(k == "root-mismatch" and first == 500 for k, first, _ in _kinds(report))


def test_a_deleted_row_is_a_missing_entry(ledger: Path, signer: Signer) -> None:
    tamper(ledger)("DELETE FROM entries WHERE idx = 300")
    report = _verify(ledger, signer)
    assert not report
    assert ("missing-entry", 300, 300) in _kinds(report)


def test_deleted_and_renumbered_is_a_missing_entry(ledger: Path, signer: Signer) -> None:
    run = tamper(ledger)
    run("DELETE FROM entries WHERE idx = 300")
    run("UPDATE entries SET idx = idx - 1 WHERE idx > 300")
    report = _verify(ledger, signer)
    assert not report
    assert ("missing-entry", 300, 300) in _kinds(report)
    assert not any(k == "modified-entry" for k, _, _ in _kinds(report))


def test_inserted_and_renumbered_is_an_inserted_entry(ledger: Path, signer: Signer) -> None:
    run = tamper(ledger)
    run("UPDATE entries SET idx = -idx - 1 WHERE idx >= 200")
    run("UPDATE entries SET idx = -idx WHERE idx < 0")  # old i -> i + 1
    run("INSERT INTO entries (idx, data) VALUES (200, ?)", (b'{"forged":true}',))
    report = _verify(ledger, signer)
    assert not report
    assert ("inserted-entry", 200, 200) in _kinds(report)
    assert not any(k == "modified-entry" for k, _, _ in _kinds(report))


def test_appended_behind_the_ledgers_back_is_an_inserted_entry(
    ledger: Path, signer: Signer
) -> None:
    tamper(ledger)("INSERT INTO entries (idx, data) VALUES (?, ?)", (N, b'{"forged":true}'))
    assert ("inserted-entry", N, N) in _kinds(_verify(ledger, signer))


def test_swapped_entries_are_reordered(ledger: Path, signer: Signer) -> None:
    run = tamper(ledger)
    run("UPDATE entries SET idx = -1 WHERE idx = 10")
    run("UPDATE entries SET idx = 10 WHERE idx = 20")
    run("UPDATE entries SET idx = 20 WHERE idx = -1")
    kinds = _kinds(_verify(ledger, signer))
    assert ("reordered-entries", 10, 10) in kinds
    assert ("reordered-entries", 20, 20) in kinds
    assert not any(k == "modified-entry" for k, _, _ in kinds)


def test_truncated_tail_is_missing_entries(ledger: Path, signer: Signer) -> None:
    tamper(ledger)("DELETE FROM entries WHERE idx >= 950")
    report = _verify(ledger, signer)
    assert ("missing-entry", 950, N - 1) in _kinds(report)


def test_checkpoint_signed_by_another_key(ledger: Path, signer: Signer) -> None:
    saved = _latest(ledger)
    mallory = Signer.generate(ORIGIN)
    forged = Checkpoint(ORIGIN, N, b"\x11" * 32).sign([mallory])
    tamper(ledger)("UPDATE checkpoints SET note = ? WHERE size = ?", (forged, N))
    report = _verify(ledger, signer)
    assert ("unknown-signature", None, None) in _kinds(report)
    # With the auditor's saved checkpoint the replacement cannot hide either.
    assert ("unknown-signature", None, None) in _kinds(_verify(ledger, signer, saved))


def test_damaged_signature_is_a_bad_signature(ledger: Path, signer: Signer) -> None:
    note = _latest(ledger)
    body, sig = note.rsplit(" ", 1)
    flipped = sig[:20] + ("A" if sig[20] != "A" else "B") + sig[21:]  # past the key ID
    tamper(ledger)("UPDATE checkpoints SET note = ? WHERE size = ?", (f"{body} {flipped}", N))
    assert ("bad-signature", None, None) in _kinds(_verify(ledger, signer))


def test_restored_older_copy_needs_the_saved_checkpoint(
    tmp_path: Path, ledger: Path, signer: Signer
) -> None:
    old = tmp_path / "old.sqlite"
    shutil.copy(ledger, old)
    fill(ledger, signer, 200)
    saved = _latest(ledger)
    shutil.copy(old, ledger)
    assert _verify(ledger, signer), "an older copy is self-consistent on its own"
    report = _verify(ledger, signer, saved)
    assert ("not-an-extension", 0, N + 199) in _kinds(report)


def test_rewritten_tiles_still_fail_on_the_signed_root(ledger: Path, signer: Signer) -> None:
    """An attacker who also fixes the leaf hash cannot fix the signed roots."""
    forged = b'{"forged":true}'
    run = tamper(ledger)
    run("UPDATE entries SET data = ? WHERE idx = 5", (forged,))
    tile = SqliteStore(ledger, readonly=True).read_tile(0, 0)
    assert tile is not None
    tile = tile[: 5 * 32] + leaf_hash(forged) + tile[6 * 32 :]
    run("UPDATE tiles SET data = ? WHERE level = 0 AND idx = 0", (tile,))
    kinds = _kinds(_verify(ledger, signer))
    assert any(k == "root-mismatch" and first == 0 for k, first, _ in kinds)
    assert any(k == "damaged-tiles" for k, _, _ in kinds)


def test_unsigned_tail_is_only_a_warning(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "l.sqlite"
    fill(path, signer, 10)
    tamper(path)("DELETE FROM checkpoints WHERE size = 10")
    report = _verify(path, signer)
    assert report
    assert [f.kind for f in report.findings] == ["unsigned-entries"]


def test_garbage_file_is_unreadable_not_a_crash(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "l.sqlite"
    fill(path, signer, 300)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(raw))
    try:
        report = _verify(path, signer)
    except Exception as exc:  # opening may already refuse; it must be a ProctorError
        from proctor.errors import ProctorError

        assert isinstance(exc, ProctorError)
    else:
        assert not report
