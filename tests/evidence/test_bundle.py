"""Writing bundles: layout, one checkpoint for every proof, flat streaming, nothing half-written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from proctor.errors import UsageError, VerificationError
from proctor.evidence import verify_bundle, write_bundle
from proctor.ledger.appender import AppenderConfig
from proctor.ledger.checkpoint import open_checkpoint
from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer
from proctor.ledger.receipt import Receipt, verify_receipt
from tests.evidence.conftest import ORIGIN, SELECTION, SIZE, Fixture, events, members

MEMBERS = {
    "manifest.json",
    "events.jsonl",
    "proofs.txt",
    "checkpoint.note",
    "verifier.vkey",
    "README.md",
    "verify_bundle.py",
}


def test_bundle_verifies_with_the_pinned_key(made: Fixture) -> None:
    report = verify_bundle(made.bundle, key=made.signer.verifier)
    assert report, report.findings
    assert report.findings == []
    assert (report.events, report.verified) == (len(SELECTION), len(SELECTION))
    assert (report.origin, report.checkpoint_size, report.key_pinned) == (ORIGIN, SIZE, True)
    assert report.query == "kind = query"


def test_bundle_verifies_with_its_own_key_but_says_origin_is_not_proven(made: Fixture) -> None:
    report = verify_bundle(made.bundle)
    assert report
    assert [f.kind for f in report.findings] == ["origin-not-proven"]
    assert "--key" in report.findings[0].detail
    assert report.key == made.signer.verifier.vkey


def test_layout_lines_are_the_ledger_entries_and_blocks_are_tlog_proofs(made: Fixture) -> None:
    files = members(made.bundle)
    assert set(files) == MEMBERS
    note = files["checkpoint.note"].decode()
    cp = open_checkpoint(note, [made.signer.verifier], ORIGIN)
    lines = files["events.jsonl"].split(b"\n")
    assert lines[-1] == b""
    blocks = files["proofs.txt"].decode().split("\n\n")
    assert blocks[-1] == ""
    with Ledger(made.ledger) as lg:
        for index, line, block in zip(SELECTION, lines[:-1], blocks[:-1], strict=True):
            assert line == lg.entry(index)
            # A block and the checkpoint note make a standard C2SP tlog-proof receipt.
            receipt = Receipt.parse(block + "\n\n" + note)
            assert receipt.index == index
            assert verify_receipt(receipt, line, [made.signer.verifier]) == cp
    manifest = json.loads(files["manifest.json"])
    assert manifest["format"] == "proctor.evidence/v1"
    assert manifest["origin"] == ORIGIN
    assert manifest["checkpoint"]["size"] == SIZE
    assert manifest["count"] == len(SELECTION)
    assert manifest["indexes"] == [[3, 5], [17, 17], [250, 269], [299, 299]]
    assert manifest["query"] == "kind = query"
    assert set(manifest["files"]) == MEMBERS - {"manifest.json"}
    assert files["verifier.vkey"].decode().strip() == made.signer.verifier.vkey
    assert made.bundle.stat().st_mode & 0o777 == 0o600  # events may hold personal data
    assert [p.name for p in made.bundle.parent.iterdir() if p.name.endswith(".part")] == []


def test_readme_explains_independent_verification_and_the_key_warning(made: Fixture) -> None:
    readme = members(made.bundle)["README.md"].decode()
    key_id = f"{made.signer.key_id:08x}"
    for needle in (
        "proctor verify-bundle",
        "--key",
        "SHA-256(0x00 ‖ line)",
        "RFC 9162",
        "Ed25519",
        "SHA-256(NAME ‖ 0x0A ‖ 0x01 ‖ public key)",
        key_id,
        "out of band",
        ORIGIN,
    ):
        assert needle in readme


def test_a_copy_verifies_elsewhere_with_the_ledger_gone(made: Fixture, tmp_path: Path) -> None:
    elsewhere = tmp_path / "auditor" / "evidence.zip"
    elsewhere.parent.mkdir()
    shutil.copy(made.bundle, elsewhere)
    vkey = made.signer.verifier
    shutil.rmtree(made.ledger)
    made.bundle.unlink()
    report = verify_bundle(elsewhere, key=vkey)
    assert report and report.verified == len(SELECTION)


def test_a_new_checkpoint_is_signed_when_the_latest_does_not_cover_the_selection(
    tmp_path: Path, signer: Signer
) -> None:
    d = tmp_path / "l"
    Ledger.init(d, signer)
    quiet = AppenderConfig(checkpoint_every=0, checkpoint_interval_ms=0)
    with Ledger(d, signer=signer, config=quiet) as lg:
        lg.append_many(events(100))
        lg.checkpoint()
        lg.append_many(events(50))
        assert (latest := lg.latest_checkpoint()) is not None and latest.size == 100
        # Read-only, nothing can sign: the error says what to do.
        with Ledger(d) as reader, pytest.raises(UsageError, match="no signed checkpoint covers"):
            write_bundle(reader, [10, 120], tmp_path / "ro.zip")
        assert not (tmp_path / "ro.zip").exists()
        summary = write_bundle(lg, [10, 120], tmp_path / "b.zip")
    assert summary.checkpoint_size == 150
    assert verify_bundle(tmp_path / "b.zip", key=signer.verifier)


def test_the_latest_covering_checkpoint_is_used_without_signing_another(
    tmp_path: Path, signer: Signer
) -> None:
    d = tmp_path / "l"
    Ledger.init(d, signer)
    quiet = AppenderConfig(checkpoint_every=0, checkpoint_interval_ms=0)
    with Ledger(d, signer=signer, config=quiet) as lg:
        lg.append_many(events(100))
        lg.checkpoint()
        lg.append_many(events(50))
        summary = write_bundle(lg, range(20, 30), tmp_path / "b.zip")
        assert summary.checkpoint_size == 100
        assert (latest := lg.latest_checkpoint()) is not None and latest.size == 100


def test_proofs_stay_on_one_checkpoint_while_the_ledger_grows(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "l"
    Ledger.init(d, signer)
    quiet = AppenderConfig(checkpoint_every=0, checkpoint_interval_ms=0)
    with Ledger(d, signer=signer, config=quiet) as writer, Ledger(d) as reader:
        writer.append_many(events(300))
        writer.checkpoint()
        entries = reader.entries

        def growing(start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
            # Another process appends and signs while the bundle is being written.
            writer.append_many(events(20))
            writer.checkpoint()
            return entries(start, end)

        monkeypatch.setattr(reader, "entries", growing)
        summary = write_bundle(reader, [*range(0, 10), *range(250, 300)], tmp_path / "b.zip")
        assert writer.size() > 300
    assert summary.checkpoint_size == 300
    report = verify_bundle(tmp_path / "b.zip", key=signer.verifier)
    assert report and report.verified == 60, report.findings


def test_selection_is_read_once_from_any_iterator(ledger_dir: Path, tmp_path: Path) -> None:
    with Ledger(ledger_dir) as lg:
        summary = write_bundle(lg, (i for i in range(SIZE) if i % 7 == 0), tmp_path / "b.zip")
    assert summary.count == len(range(0, SIZE, 7))
    assert (summary.first_index, summary.last_index) == (0, 294)


@pytest.mark.parametrize(
    ("indexes", "message"),
    [
        ([], "no events selected"),
        ([5, 3], "ascending and distinct: 3 comes after 5"),
        ([5, 5], "ascending and distinct"),
        ([-1], "no entry at index -1"),
        ([1, SIZE], f"no entry at index {SIZE}"),
        ([True], "not an integer"),
    ],
)
def test_bad_selections_are_refused_and_nothing_is_written(
    ledger_dir: Path, tmp_path: Path, indexes: list[int], message: str
) -> None:
    out = tmp_path / "b.zip"
    with Ledger(ledger_dir) as lg, pytest.raises(UsageError, match=message):
        write_bundle(lg, indexes, out)
    assert not out.exists()


def test_an_existing_bundle_is_not_overwritten(made: Fixture) -> None:
    before = made.bundle.read_bytes()
    with Ledger(made.ledger) as lg, pytest.raises(UsageError, match="refusing to overwrite"):
        write_bundle(lg, [1], made.bundle)
    assert made.bundle.read_bytes() == before


def test_a_bad_entry_fails_closed_with_no_file_left_behind(tmp_path: Path, signer: Signer) -> None:
    d = tmp_path / "l"
    Ledger.init(d, signer)
    with Ledger(d, signer=signer) as lg:
        lg.append_many(events(10))
        lg.append_raw([b'{"not": "an event"}', b'{"kind":"x" }'])
    out = tmp_path / "out" / "b.zip"
    out.parent.mkdir()
    with Ledger(d) as lg:
        with pytest.raises(VerificationError, match="index 10: the stored entry is not a proctor"):
            write_bundle(lg, range(12), out)
        assert list(out.parent.iterdir()) == []
        write_bundle(lg, range(10), out)  # the good ones still can be
    assert verify_bundle(out, key=signer.verifier)
