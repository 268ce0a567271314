"""Verifying bundles: every tampering is caught and named; a hostile zip is never trusted."""

from __future__ import annotations

import base64
import json
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctor.errors import UsageError, VerificationError
from proctor.evidence import BundleLimits, BundleReport, verify_bundle, write_bundle
from proctor.ledger.checkpoint import Checkpoint
from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer, split_note
from tests.evidence.conftest import ORIGIN, SELECTION, Fixture, events, members, rewrite


def kinds(report: BundleReport) -> set[str]:
    return {f.kind for f in report.findings if f.is_failure}


def details(report: BundleReport) -> str:
    return "\n".join(f.detail for f in report.findings)


def lines_of(made: Fixture) -> list[bytes]:
    return members(made.bundle)["events.jsonl"].split(b"\n")[:-1]


def blocks_of(made: Fixture) -> list[str]:
    return members(made.bundle)["proofs.txt"].decode().split("\n\n")[:-1]


def with_lines(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def with_blocks(blocks: list[str]) -> bytes:
    return "".join(block + "\n\n" for block in blocks).encode()


# -- events -------------------------------------------------------------------------------------


def test_a_modified_event_is_named_by_its_index(made: Fixture, tmp_path: Path) -> None:
    lines = lines_of(made)
    event = json.loads(lines[3])  # line 4 is index 17
    event["actor"]["id"] = "someone-else"
    lines[3] = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
    for fix in (False, True):
        bad = rewrite(
            made.bundle,
            tmp_path / f"b{fix}.zip",
            {"events.jsonl": with_lines(lines)},
            fix_manifest=fix,
        )
        report = verify_bundle(bad, key=made.signer.verifier)
        assert not report
        assert "index 17: inclusion proof does not match the signed root" in details(report)
        assert report.verified == len(SELECTION) - 1
        assert ("file-mismatch" in kinds(report)) is not fix
        with pytest.raises(VerificationError, match="does not verify"):
            report.check()


def test_a_non_canonical_line_is_named(made: Fixture, tmp_path: Path) -> None:
    lines = lines_of(made)
    lines[6] = json.dumps(json.loads(lines[6]), indent=1).replace("\n", "").encode()
    bad = rewrite(
        made.bundle, tmp_path / "b.zip", {"events.jsonl": with_lines(lines)}, fix_manifest=True
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"not-canonical", "proof-mismatch"}
    assert "line 7: not canonical (index 252)" in details(report)


def test_a_line_that_is_no_event_is_named(made: Fixture, tmp_path: Path) -> None:
    lines = lines_of(made)
    lines[0] = b'{"schema":"proctor.access/v1","kind":"nonsense"}'
    bad = rewrite(
        made.bundle, tmp_path / "b.zip", {"events.jsonl": with_lines(lines)}, fix_manifest=True
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert "line 1 (index 3): not a proctor.access/v1 event" in details(report)
    assert "bad-event" in kinds(report)


def test_a_removed_line_is_caught(made: Fixture, tmp_path: Path) -> None:
    lines = lines_of(made)
    del lines[2]
    bad = rewrite(
        made.bundle, tmp_path / "b.zip", {"events.jsonl": with_lines(lines)}, fix_manifest=True
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert {"count-mismatch", "proof-mismatch"} <= kinds(report)
    assert "index 5: inclusion proof does not match" in details(report)
    assert f"{len(SELECTION)}: events.jsonl has no line" in details(report)


def test_a_removed_event_with_its_proof_and_manifest_entry_is_caught(
    made: Fixture, tmp_path: Path
) -> None:
    lines, blocks = lines_of(made), blocks_of(made)
    del lines[2], blocks[2]  # index 5
    bad = rewrite(
        made.bundle,
        tmp_path / "b.zip",
        {"events.jsonl": with_lines(lines), "proofs.txt": with_blocks(blocks)},
        fix_manifest=True,
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"index-mismatch", "count-mismatch"}
    assert "line 3: its proof is for index 17, manifest.json lists index 5" in details(report)


def test_an_added_line_is_caught(made: Fixture, tmp_path: Path) -> None:
    lines = lines_of(made)
    with Ledger(made.ledger) as lg:
        lines.append(lg.entry(100))  # a real entry, just not one with a proof here
    bad = rewrite(
        made.bundle, tmp_path / "b.zip", {"events.jsonl": with_lines(lines)}, fix_manifest=True
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"count-mismatch"}
    assert f"line {len(lines)}: proofs.txt has no proof block for it" in details(report)
    assert report.verified == len(SELECTION)


def test_reordered_lines_are_named(made: Fixture, tmp_path: Path) -> None:
    lines = lines_of(made)
    lines[0], lines[1] = lines[1], lines[0]
    bad = rewrite(
        made.bundle, tmp_path / "b.zip", {"events.jsonl": with_lines(lines)}, fix_manifest=True
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"proof-mismatch"}
    assert {f.index for f in report.findings} == {3, 4}


def test_reordered_events_with_their_proofs_are_caught(made: Fixture, tmp_path: Path) -> None:
    lines, blocks = lines_of(made), blocks_of(made)
    lines[0], lines[1] = lines[1], lines[0]
    blocks[0], blocks[1] = blocks[1], blocks[0]
    bad = rewrite(
        made.bundle,
        tmp_path / "b.zip",
        {"events.jsonl": with_lines(lines), "proofs.txt": with_blocks(blocks)},
        fix_manifest=True,
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"index-mismatch"}
    assert "index 3: not ascending after index 4 (line 2)" in details(report)


# -- proofs -------------------------------------------------------------------------------------


def test_a_changed_proof_hash_is_named(made: Fixture, tmp_path: Path) -> None:
    blocks = blocks_of(made)
    parts = blocks[3].split("\n")  # index 17
    parts[3] = base64.b64encode(bytes(32)).decode()
    blocks[3] = "\n".join(parts)
    bad = rewrite(
        made.bundle, tmp_path / "b.zip", {"proofs.txt": with_blocks(blocks)}, fix_manifest=True
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"proof-mismatch"}
    assert details(report).startswith("index 17: inclusion proof does not match the signed root")


def test_a_proof_moved_to_another_index_is_named(made: Fixture, tmp_path: Path) -> None:
    blocks = blocks_of(made)
    blocks[4] = blocks[4].replace("index 250", "index 251")
    bad = rewrite(
        made.bundle, tmp_path / "b.zip", {"proofs.txt": with_blocks(blocks)}, fix_manifest=True
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"index-mismatch", "proof-mismatch"}
    assert "line 5: its proof is for index 251, manifest.json lists index 250" in details(report)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("not a proof", "must start with the line"),
        ("c2sp.org/tlog-proof@v1\nindex 01", "leading 0"),
        ("c2sp.org/tlog-proof@v1\nindex 3\n!!!", "not valid base64"),
        ("c2sp.org/tlog-proof@v1\nindex 3\n" + "\n".join(["AAAA"] * 70), "too long"),
    ],
)
def test_a_garbled_proof_block_is_named(
    made: Fixture, tmp_path: Path, block: str, message: str
) -> None:
    blocks = blocks_of(made)
    blocks[0] = block
    bad = rewrite(
        made.bundle, tmp_path / "b.zip", {"proofs.txt": with_blocks(blocks)}, fix_manifest=True
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert "bad-proof" in kinds(report)
    assert message in details(report)
    assert report.verified == len(SELECTION) - 1  # the next blocks are still read in step


# -- checkpoint and key ---------------------------------------------------------------------------


def resign(made: Fixture, attacker: Signer) -> str:
    """The bundle's checkpoint body signed by another key."""
    note = members(made.bundle)["checkpoint.note"].decode()
    return Checkpoint.parse(split_note(note)[0]).sign([attacker])


def test_a_checkpoint_re_signed_with_another_key_fails_with_the_pinned_key(
    made: Fixture, tmp_path: Path
) -> None:
    attacker = Signer.generate(ORIGIN)  # same name, other key
    bad = rewrite(
        made.bundle,
        tmp_path / "b.zip",
        {
            "checkpoint.note": resign(made, attacker).encode(),
            "verifier.vkey": (attacker.verifier.vkey + "\n").encode(),
        },
        fix_manifest=True,
    )
    pinned = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(pinned) == {"bad-checkpoint"}
    assert "no signature by a known key" in details(pinned)
    assert "key-differs" in {f.kind for f in pinned.findings}
    assert pinned.verified == 0
    # Trusting the bundle's own key is exactly what the warning is about.
    unpinned = verify_bundle(bad)
    assert unpinned and [f.kind for f in unpinned.findings] == ["origin-not-proven"]


def test_a_full_forgery_under_another_key_fails_only_with_the_pinned_key(
    made: Fixture, tmp_path: Path
) -> None:
    attacker = Signer.generate(ORIGIN)
    Ledger.init(tmp_path / "forged", attacker)
    with Ledger(tmp_path / "forged", signer=attacker) as lg:
        lg.append_many(events(300))
        write_bundle(lg, SELECTION, tmp_path / "forged.zip")
    assert verify_bundle(tmp_path / "forged.zip")
    report = verify_bundle(tmp_path / "forged.zip", key=made.signer.verifier)
    assert not report and "bad-checkpoint" in kinds(report)


def test_a_checkpoint_of_another_origin_fails(made: Fixture, tmp_path: Path) -> None:
    other = Signer.generate("other.example/ledger")
    report = verify_bundle(made.bundle, key=other.verifier)
    assert "bad-checkpoint" in kinds(report)


def test_a_garbled_bundled_key_is_named(made: Fixture, tmp_path: Path) -> None:
    bad = rewrite(
        made.bundle, tmp_path / "b.zip", {"verifier.vkey": b"nonsense\n"}, fix_manifest=True
    )
    report = verify_bundle(bad)
    assert {"bad-key", "bad-checkpoint"} <= kinds(report)
    assert verify_bundle(bad, key=made.signer.verifier)  # pinned: the bundled key is unused


def test_a_checkpoint_with_a_bad_signature_still_names_mismatching_events(
    made: Fixture, tmp_path: Path
) -> None:
    note = members(made.bundle)["checkpoint.note"].decode()
    text, _ = split_note(note)
    root = Checkpoint.parse(text).root
    forged = text.replace(base64.b64encode(root).decode(), base64.b64encode(bytes(32)).decode())
    bad_note = forged + note[len(text) :]
    bad = rewrite(
        made.bundle, tmp_path / "b.zip", {"checkpoint.note": bad_note.encode()}, fix_manifest=True
    )
    report = verify_bundle(bad, key=made.signer.verifier)
    assert "bad signature" in details(report)
    assert "does not match the checkpoint's (unverified) root" in details(report)
    assert report.verified == 0


# -- manifest ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "kind", "message"),
    [
        (lambda m: m.update(count=m["count"] + 1), "bad-manifest", "index ranges hold"),
        (
            lambda m: m["indexes"].__setitem__(0, [2, 5]) or m.update(count=m["count"] + 1),
            "index-mismatch",
            "line 1: its proof is for index 3, manifest.json lists index 2",
        ),
        (lambda m: m.update(origin="elsewhere.example/log"), "manifest-mismatch", "origin"),
        (lambda m: m["checkpoint"].update(size=1), "manifest-mismatch", "tree size"),
        (
            lambda m: m["checkpoint"].update(root=base64.b64encode(bytes(32)).decode()),
            "manifest-mismatch",
            "root",
        ),
        (lambda m: m["files"]["README.md"].update(sha256="00" * 32), "file-mismatch", "README.md"),
        (lambda m: m["files"].pop("verify_bundle.py"), "file-mismatch", "not listed"),
        (lambda m: m["files"].update(extra={"sha256": "", "size": 0}), "bad-manifest", "extra"),
        (lambda m: m.update(format="proctor.evidence/v9"), "bad-manifest", "v9"),
        (lambda m: m.update(surprise=1), "bad-manifest", "surprise"),
    ],
)
def test_an_edited_manifest_is_caught(
    made: Fixture, tmp_path: Path, edit: object, kind: str, message: str
) -> None:
    manifest = json.loads(members(made.bundle)["manifest.json"])
    edit(manifest)  # type: ignore[operator]
    bad = rewrite(made.bundle, tmp_path / "b.zip", {"manifest.json": json.dumps(manifest).encode()})
    report = verify_bundle(bad, key=made.signer.verifier)
    assert not report
    assert kind in kinds(report), report.findings
    assert message in details(report)


def test_a_manifest_that_is_not_json_is_named(made: Fixture, tmp_path: Path) -> None:
    bad = rewrite(made.bundle, tmp_path / "b.zip", {"manifest.json": b"{"})
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"bad-manifest"}
    assert report.verified == len(SELECTION)  # the signed parts are still checked


# -- the zip itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.sh", "'..' path component"),
        ("proofs/../../evil", "'..' path component"),
        ("/etc/cron.d/evil", "absolute path"),
        ("C:/evil", "absolute path"),
        ("a\\b", "backslash"),
        ("evil\x01", "control character"),
    ],
)
def test_path_traversal_names_are_refused_and_never_extracted(
    made: Fixture, tmp_path: Path, name: str, why: str
) -> None:
    bad = rewrite(made.bundle, tmp_path / "b.zip", add=[(name, b"#!/bin/sh\n")])
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"unsafe-member"}
    assert why in details(report)
    assert report.verified == len(SELECTION)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zip", "bundle.zip", "ledger"]


def test_an_extra_member_is_reported_and_not_read(made: Fixture, tmp_path: Path) -> None:
    bad = rewrite(made.bundle, tmp_path / "b.zip", add=[("notes.txt", b"trust me")])
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"unexpected-member"}
    assert "'notes.txt' is not part of a bundle" in details(report)


def test_a_duplicated_member_is_refused(made: Fixture, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        bad = rewrite(made.bundle, tmp_path / "b.zip", add=[("events.jsonl", b"{}\n")])
    report = verify_bundle(bad, key=made.signer.verifier)
    assert "'events.jsonl' appears more than once" in details(report)
    assert kinds(report) == {"unsafe-member"}
    assert report.verified == 0  # neither copy is read


def test_a_missing_member_is_named(made: Fixture, tmp_path: Path) -> None:
    bad = rewrite(made.bundle, tmp_path / "b.zip", drop=["proofs.txt"])
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"missing-member"}
    assert "proofs.txt is missing\n" in details(report)
    assert "proofs.txt is listed in manifest.json but absent" in details(report)


def test_an_oversized_member_is_not_read(made: Fixture, tmp_path: Path) -> None:
    big = b"A" * ((1 << 20) + 1)  # over the default limit for README.md, compresses to ~1 KiB
    bad = rewrite(made.bundle, tmp_path / "b.zip", {"README.md": big}, fix_manifest=True)
    assert bad.stat().st_size < 100_000
    report = verify_bundle(bad, key=made.signer.verifier)
    assert kinds(report) == {"oversized-member"}
    assert "'README.md' is 1048577 bytes uncompressed, over the limit" in details(report)


def test_size_limits_are_settings(made: Fixture) -> None:
    small = verify_bundle(
        made.bundle, key=made.signer.verifier, limits=BundleLimits(max_data_bytes=1000)
    )
    assert "oversized-member" in kinds(small) and small.verified == 0
    total = verify_bundle(
        made.bundle, key=made.signer.verifier, limits=BundleLimits(max_total_bytes=1000)
    )
    assert "nothing was read" in details(total) and total.verified == 0
    lines = verify_bundle(
        made.bundle, key=made.signer.verifier, limits=BundleLimits(max_line_bytes=100)
    )
    assert "line 1: longer than 100 bytes" in details(lines) and lines.verified == 0


def test_findings_past_the_cap_are_counted(made: Fixture, tmp_path: Path) -> None:
    lines = [line.replace(b'"kind"', b' "kind"') for line in lines_of(made)]
    bad = rewrite(made.bundle, tmp_path / "b.zip", {"events.jsonl": with_lines(lines)})
    report = verify_bundle(bad, key=made.signer.verifier, limits=BundleLimits(max_findings=5))
    assert len(report.findings) == 5 and report.omitted > 0 and not report
    assert report.to_dict()["omitted_findings"] == report.omitted


def test_a_damaged_member_is_unreadable(made: Fixture, tmp_path: Path) -> None:
    data = bytearray(made.bundle.read_bytes())
    with zipfile.ZipFile(made.bundle) as zf:
        info = zf.getinfo("events.jsonl")
    data[info.header_offset + 30 + len(info.filename) + 100] ^= 0xFF  # inside the deflate data
    bad = tmp_path / "b.zip"
    bad.write_bytes(bytes(data))
    report = verify_bundle(bad, key=made.signer.verifier)
    assert "unreadable" in kinds(report) or "proof-mismatch" in kinds(report)
    assert not report


def test_not_a_zip_is_a_finding_and_no_file_is_a_usage_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    report = verify_bundle(junk)
    assert kinds(report) == {"unreadable"} and not report
    with pytest.raises(UsageError, match="no bundle at"):
        verify_bundle(tmp_path / "absent.zip")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_damage_never_crashes_and_never_passes(
    made: Fixture, tmp_path: Path, data: st.DataObject
) -> None:
    original = made.bundle.read_bytes()
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    if bytes(damaged) == original:
        return
    path = tmp_path / "fuzz.zip"
    path.write_bytes(bytes(damaged))
    report = verify_bundle(path, key=made.signer.verifier)
    assert isinstance(report.to_dict(), dict)
    # A changed byte may land in zip slack (extra fields, times): then it may still verify;
    # it must never verify with a changed event or proof.
    if report:
        with zipfile.ZipFile(path) as zf:
            for name in ("events.jsonl", "proofs.txt", "checkpoint.note", "manifest.json"):
                assert zf.read(name) == members(made.bundle)[name]
