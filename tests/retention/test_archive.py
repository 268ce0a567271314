"""Archives verify with the verifier key alone, anywhere; any change to one is found."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from proctor.errors import StorageError, VerificationError
from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer
from proctor.retention.archive import verify_archive, write_archive
from tests.retention.conftest import event, fill


@pytest.fixture
def archive(tmp_path: Path, ledger_dir: Path, signer: Signer) -> Path:
    """An archive of entries 3..12, moved to another directory, the ledger deleted."""
    fill(ledger_dir, signer, [event("query", age_days=500) for _ in range(20)])
    with Ledger(ledger_dir) as lg:
        note = lg.checkpoint()
        info = write_archive(
            tmp_path / "out" / "a.zip",
            lg.entries(3, 13),
            lambda i: lg.prove(i, note),
            first=3,
            below=13,
            checkpoint=note,
            verifier=lg.verifier,
            meta={"rule": "queries-400d"},
        )
    assert info.checkpoint_size == 20 and len(info.sha256) == 64
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.zip"]  # no temp file left
    elsewhere = tmp_path / "auditor" / "a.zip"
    elsewhere.parent.mkdir()
    shutil.copy(info.path, elsewhere)
    shutil.rmtree(ledger_dir)
    shutil.rmtree(tmp_path / "out")
    return elsewhere


def _rewrite(path: Path, change: Callable[[dict[str, bytes]], None]) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_an_archive_verifies_alone(archive: Path, signer: Signer) -> None:
    report = verify_archive(archive, signer.verifier)
    assert report, report.problems
    assert (report.first, report.below, report.entries) == (3, 13, 10)
    assert report.checkpoint_size == 20 and report.meta["rule"] == "queries-400d"
    report.check()
    with zipfile.ZipFile(archive) as zf:
        lines = zf.read("receipts.jsonl").decode().splitlines()
    assert json.loads(lines[0])["tlog_proof"].startswith("c2sp.org/tlog-proof@v1\nindex 3\n")


def test_another_key_does_not_verify_it(archive: Path) -> None:
    report = verify_archive(archive, Signer.generate("retention.test/ledger").verifier)
    assert not report
    assert report.problems[0].startswith("checkpoint:")
    with pytest.raises(VerificationError, match=r"a\.zip: checkpoint"):
        report.check()


def _edit_entry(members: dict[str, bytes]) -> None:
    lines = members["entries.jsonl"].split(b"\n")
    lines[4] = lines[4].replace(b'"u-1"', b'"u-2"')
    members["entries.jsonl"] = b"\n".join(lines)


def _drop_entry(members: dict[str, bytes]) -> None:
    for name in ("entries.jsonl", "receipts.jsonl"):
        lines = members[name].split(b"\n")
        del lines[9]
        members[name] = b"\n".join(lines)


def _swap(members: dict[str, bytes]) -> None:
    lines = members["entries.jsonl"].split(b"\n")
    lines[0], lines[1] = lines[1], lines[0]
    members["entries.jsonl"] = b"\n".join(lines)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_edit_entry, "1 entries do not verify: entry 7: inclusion proof"),
        (_drop_entry, "9 entries, the range [3, 13) needs 10"),
        (_swap, "2 entries do not verify"),
        (lambda m: m.update({"extra.txt": b"x"}), "unexpected members: extra.txt"),
        (lambda m: m.pop("checkpoint"), "missing members: checkpoint"),
        (
            lambda m: m.update(
                {"manifest.json": m["manifest.json"].replace(b'"first": 3', b'"first": 2')}
            ),
            "range [2, 13) of 10 entries",
        ),
        (
            lambda m: m.update({"verifier.vkey": b"other+key\n"}),
            "verifier.vkey does not match its SHA-256",
        ),
    ],
    ids=[
        "edited entry",
        "dropped entry",
        "swapped entries",
        "extra",
        "no checkpoint",
        "range",
        "vkey",
    ],
)
def test_tampering_is_found(
    archive: Path, signer: Signer, change: Callable[[dict[str, bytes]], None], problem: str
) -> None:
    _rewrite(archive, change)
    report = verify_archive(archive, signer.verifier)
    assert not report
    assert any(problem in p for p in report.problems), report.problems


def test_a_garbage_file_is_a_problem_not_a_crash(tmp_path: Path, signer: Signer) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip" * 50)
    report = verify_archive(junk, signer.verifier)
    assert not report and report.problems[0].startswith("unreadable")


def test_nothing_is_written_for_a_range_with_a_hole(
    tmp_path: Path, ledger_dir: Path, signer: Signer
) -> None:
    fill(ledger_dir, signer, [event("query") for _ in range(5)])
    with Ledger(ledger_dir) as lg:
        note = lg.checkpoint()
        rows = [r for r in lg.entries(0, 5) if r[0] != 2]
        with pytest.raises(StorageError, match="entry 2 is missing; nothing archived"):
            write_archive(
                tmp_path / "x.zip",
                iter(rows),
                lambda i: lg.prove(i, note),
                first=0,
                below=5,
                checkpoint=note,
                verifier=lg.verifier,
            )
    assert list(tmp_path.glob("*.zip")) == [] and list(tmp_path.glob(".*tmp")) == []
