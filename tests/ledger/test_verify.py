"""The storage tamper suite: each change to the file is detected and named by verification.

Every test runs twice: in this process alone, and with a worker process scanning tiles too (in
chunks of one tile; a worker starts from the end and its first chunk is never taken over, so
the last tile, where the tail tests tamper, is always the worker's).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proctor.ledger import verify_scan
from proctor.ledger.checkpoint import Checkpoint
from proctor.ledger.merkle import HASH_SIZE, leaf_hash
from proctor.ledger.note import Signer
from proctor.ledger.store import SqliteStore
from proctor.ledger.tiles import TILE_HEIGHT, TILE_WIDTH
from proctor.ledger.verify import Report, verify_ledger
from proctor.ledger.verify_scan import Chunk
from proctor.ledger.verify_workers import Scan
from tests.ledger.conftest import ORIGIN, entry, fill, tamper

N = 1000
MODES: dict[str, dict[str, int]] = {
    "one process": {"workers": 1},
    "two processes": {"workers": 2, "parallel_from": 0},
}
Verify = Callable[..., Report]


@pytest.fixture
def ledger(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "l.sqlite"
    fill(path, signer, N)
    return path


@pytest.fixture(params=list(MODES))
def verify(request: pytest.FixtureRequest, signer: Signer) -> Verify:
    """``verify(path, saved=None, progress=None)`` in one of the MODES."""
    options = MODES[request.param]

    def run(path: Path, saved: str | None = None, **more: object) -> Report:
        store = SqliteStore(path, readonly=True)
        try:
            return verify_ledger(
                store, [signer.verifier], ORIGIN, saved_checkpoint=saved, **options, **more
            )
        finally:
            store.close()

    return run


def _kinds(report: Report) -> list[tuple[str, int | None, int | None]]:
    return [(f.kind, f.first, f.last) for f in report.findings if f.is_failure]


def _latest(path: Path) -> str:
    cp = SqliteStore(path, readonly=True).latest_checkpoint()
    assert cp is not None
    return cp.note


def test_clean_ledger_verifies(verify: Verify, ledger: Path) -> None:
    report = verify(ledger)
    assert report, report.findings
    assert report.entries == N
    assert report.verified_size == N
    assert report.valid_checkpoints == report.checkpoints >= 10
    assert verify(ledger, saved=_latest(ledger))


def test_one_edited_byte_is_a_modified_entry(verify: Verify, ledger: Path) -> None:
    data = bytearray(entry(500))
    data[3] ^= 0x01
    tamper(ledger)("UPDATE entries SET data = ? WHERE idx = 500", (bytes(data),))
    report = verify(ledger)
    assert not report
    assert ("modified-entry", 500, 500) in _kinds(report)
    assert any(k == "root-mismatch" and first == 500 for k, first, _ in _kinds(report))


def test_a_deleted_row_is_a_missing_entry(verify: Verify, ledger: Path) -> None:
    tamper(ledger)("DELETE FROM entries WHERE idx = 300")
    report = verify(ledger)
    assert not report
    assert ("missing-entry", 300, 300) in _kinds(report)


def test_deleted_and_renumbered_is_a_missing_entry(verify: Verify, ledger: Path) -> None:
    run = tamper(ledger)
    run("DELETE FROM entries WHERE idx = 300")
    run("UPDATE entries SET idx = idx - 1 WHERE idx > 300")
    report = verify(ledger)
    assert not report
    assert ("missing-entry", 300, 300) in _kinds(report)
    assert not any(k == "modified-entry" for k, _, _ in _kinds(report))


def test_inserted_and_renumbered_is_an_inserted_entry(verify: Verify, ledger: Path) -> None:
    run = tamper(ledger)
    run("UPDATE entries SET idx = -idx - 1 WHERE idx >= 200")
    run("UPDATE entries SET idx = -idx WHERE idx < 0")  # old i -> i + 1
    run("INSERT INTO entries (idx, data) VALUES (200, ?)", (b'{"forged":true}',))
    report = verify(ledger)
    assert not report
    assert ("inserted-entry", 200, 200) in _kinds(report)
    assert not any(k == "modified-entry" for k, _, _ in _kinds(report))


def test_appended_behind_the_ledgers_back_is_an_inserted_entry(
    verify: Verify, ledger: Path
) -> None:
    tamper(ledger)("INSERT INTO entries (idx, data) VALUES (?, ?)", (N, b'{"forged":true}'))
    assert ("inserted-entry", N, N) in _kinds(verify(ledger))


def test_swapped_entries_are_reordered(verify: Verify, ledger: Path) -> None:
    run = tamper(ledger)
    run("UPDATE entries SET idx = -1 WHERE idx = 10")
    run("UPDATE entries SET idx = 10 WHERE idx = 20")
    run("UPDATE entries SET idx = 20 WHERE idx = -1")
    kinds = _kinds(verify(ledger))
    assert ("reordered-entries", 10, 10) in kinds
    assert ("reordered-entries", 20, 20) in kinds
    assert not any(k == "modified-entry" for k, _, _ in kinds)


def test_truncated_tail_is_missing_entries(verify: Verify, ledger: Path) -> None:
    tamper(ledger)("DELETE FROM entries WHERE idx >= 950")
    report = verify(ledger)
    assert ("missing-entry", 950, N - 1) in _kinds(report)


def test_checkpoint_signed_by_another_key(verify: Verify, ledger: Path) -> None:
    saved = _latest(ledger)
    mallory = Signer.generate(ORIGIN)
    forged = Checkpoint(ORIGIN, N, b"\x11" * 32).sign([mallory])
    tamper(ledger)("UPDATE checkpoints SET note = ? WHERE size = ?", (forged, N))
    report = verify(ledger)
    assert ("unknown-signature", None, None) in _kinds(report)
    # With the auditor's saved checkpoint the replacement cannot hide either.
    assert ("unknown-signature", None, None) in _kinds(verify(ledger, saved))


def test_damaged_signature_is_a_bad_signature(verify: Verify, ledger: Path) -> None:
    note = _latest(ledger)
    body, sig = note.rsplit(" ", 1)
    flipped = sig[:20] + ("A" if sig[20] != "A" else "B") + sig[21:]  # past the key ID
    tamper(ledger)("UPDATE checkpoints SET note = ? WHERE size = ?", (f"{body} {flipped}", N))
    assert ("bad-signature", None, None) in _kinds(verify(ledger))


def test_restored_older_copy_needs_the_saved_checkpoint(
    verify: Verify, tmp_path: Path, ledger: Path, signer: Signer
) -> None:
    old = tmp_path / "old.sqlite"
    shutil.copy(ledger, old)
    fill(ledger, signer, 200)
    saved = _latest(ledger)
    shutil.copy(old, ledger)
    assert verify(ledger), "an older copy is self-consistent on its own"
    report = verify(ledger, saved)
    assert ("not-an-extension", 0, N + 199) in _kinds(report)


def test_rewritten_tiles_still_fail_on_the_signed_root(verify: Verify, ledger: Path) -> None:
    """An attacker who also fixes the leaf hash cannot fix the signed roots."""
    forged = b'{"forged":true}'
    run = tamper(ledger)
    run("UPDATE entries SET data = ? WHERE idx = 5", (forged,))
    tile = SqliteStore(ledger, readonly=True).read_tile(0, 0)
    assert tile is not None
    tile = tile[: 5 * 32] + leaf_hash(forged) + tile[6 * 32 :]
    run("UPDATE tiles SET data = ? WHERE level = 0 AND idx = 0", (tile,))
    kinds = _kinds(verify(ledger))
    assert any(k == "root-mismatch" and first == 0 for k, first, _ in kinds)
    assert any(k == "damaged-tiles" for k, _, _ in kinds)


def test_unsigned_tail_is_only_a_warning(verify: Verify, tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "l.sqlite"
    fill(path, signer, 10)
    tamper(path)("DELETE FROM checkpoints WHERE size = 10")
    report = verify(path)
    assert report
    assert [f.kind for f in report.findings] == ["unsigned-entries"]


def test_garbage_file_is_unreadable_not_a_crash(
    verify: Verify, tmp_path: Path, signer: Signer
) -> None:
    path = tmp_path / "l.sqlite"
    fill(path, signer, 300)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(raw))
    try:
        report = verify(path)
    except Exception as exc:  # opening may already refuse; it must be a ProctorError
        from proctor.errors import ProctorError

        assert isinstance(exc, ProctorError)
    else:
        assert not report


def test_an_entry_stored_as_text_is_a_modified_entry(verify: Verify, ledger: Path) -> None:
    """A value of another SQLite type is read as its bytes, not a crash of the verifier."""
    tamper(ledger)("UPDATE entries SET data = '{\"forged\":true}' WHERE idx = 7")
    assert ("modified-entry", 7, 7) in _kinds(verify(ledger))


def test_progress_reaches_the_end(verify: Verify, ledger: Path) -> None:
    calls: list[tuple[int, int]] = []
    assert verify(ledger, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (N, N)
    assert calls == sorted(calls)


def test_one_and_several_processes_report_the_same(ledger: Path, signer: Signer) -> None:
    run = tamper(ledger)
    run("DELETE FROM entries WHERE idx BETWEEN 600 AND 610")
    run("UPDATE entries SET data = x'7b7d' WHERE idx IN (3, 260, 999)")
    run("INSERT INTO entries (idx, data) VALUES (-4, x'7b7d')")
    store = SqliteStore(ledger, readonly=True)
    try:
        reports = [
            verify_ledger(store, [signer.verifier], ORIGIN, workers=w, parallel_from=0).to_dict()
            for w in (1, 2, 3)
        ]
    finally:
        store.close()
    assert reports[0]["entries"] == N - 11 + 1
    assert reports[1] == reports[0] == reports[2]


# -- the worker processes ------------------------------------------------------------------


def test_the_file_verified_is_the_one_the_store_opened(
    ledger: Path, signer: Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scanning opens the file again: by the store's absolute path, not the relative one."""
    monkeypatch.chdir(ledger.parent)
    store = SqliteStore(Path(ledger.name))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    try:
        for workers in (1, 2):
            report = verify_ledger(
                store, [signer.verifier], ORIGIN, workers=workers, parallel_from=0
            )
            assert report, report.findings
            assert report.entries == N
    finally:
        store.close()


def test_workers_use_the_specs_constants() -> None:
    """verify_scan repeats them to keep a worker's imports few; they must not drift."""
    assert (verify_scan.HASH_SIZE, verify_scan.TILE_HEIGHT, verify_scan.TILE_WIDTH) == (
        HASH_SIZE,
        TILE_HEIGHT,
        TILE_WIDTH,
    )


def _merged(chunks: Iterator[Chunk]) -> tuple[object, ...]:
    """What the chunks say, put end to end."""
    roots: list[bytes | None] = []
    parts: dict[int, bytes] = {}
    bad: list[int] = []
    gaps: list[tuple[int, int]] = []
    mismatches: list[tuple[int, bytes]] = []
    for c in chunks:
        roots += c.roots
        parts.update(c.parts)
        bad += c.bad
        gaps += c.gaps  # a gap across two chunks stays split here, the same way each time
        mismatches += c.mismatches
    return roots, parts, bad, gaps, mismatches


def _running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its (new) parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_a_killed_worker_leaves_its_chunks_to_this_process(ledger: Path) -> None:
    run = tamper(ledger)
    run("DELETE FROM entries WHERE idx = 300")
    run("UPDATE entries SET data = x'7b7d' WHERE idx = 900")
    cuts = list(range(100, N + 1, 100))
    with Scan(ledger, N, cuts, workers=1) as one:
        assert one.pids == []
        alone = _merged(one.chunks())
    with Scan(ledger, N, cuts, workers=3) as scan:
        pids = scan.pids
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        assert _merged(scan.chunks()) == alone
    assert not any(_running(p) for p in pids)


def test_workers_do_not_outlive_an_interrupted_scan(ledger: Path) -> None:
    pids: list[int] = []
    with pytest.raises(KeyboardInterrupt), Scan(ledger, N, [], workers=3) as scan:
        pids = scan.pids
        next(scan.chunks())
        raise KeyboardInterrupt
    assert len(pids) == 2
    assert not any(_running(p) for p in pids)


_ORPHANING = """
import sys, time
from pathlib import Path
from proctor.ledger.verify_workers import Scan
with Scan(Path(sys.argv[1]), int(sys.argv[2]), [], workers=3) as scan:
    next(scan.chunks())
    print(*scan.pids, flush=True)
    time.sleep(60)
"""


def test_workers_exit_when_their_parent_is_killed(ledger: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHANING, str(ledger), str(N)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_running(p) for p in pids)
    parent.kill()  # no cleanup runs in the parent: the workers must notice by themselves
    parent.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(p) for p in pids)
