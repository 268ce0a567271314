"""``proctor evidence`` and ``proctor verify-bundle`` as an operator and an auditor run them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from proctor.cli.evidence_cmds import index_ranges
from proctor.errors import UsageError
from tests.cli.test_cli import EXAMPLES, proctor

COUNT = len([line for line in EXAMPLES.read_text().splitlines() if line.strip()])


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    res = proctor("keygen", "audit.example/log", "--out", tmp_path / "keys")
    assert res.returncode == 0, res.stderr
    return tmp_path / "keys" / "audit.example-log.key", tmp_path / "keys" / "audit.example-log.vkey"


@pytest.fixture
def filled(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    """A ledger holding the example events, closed (so a checkpoint covers them all)."""
    d = tmp_path / "ledger"
    res = proctor("ledger", "init", "--ledger", d, "--signer-key", keys[0])
    assert res.returncode == 0, res.stderr
    res = proctor("ledger", "append", EXAMPLES, "--ledger", d, "--signer-key", keys[0])
    assert res.returncode == 0, res.stderr
    return d


def test_write_then_verify_with_the_pinned_key(
    tmp_path: Path, keys: tuple[Path, Path], filled: Path
) -> None:
    out = tmp_path / "bundle.zip"
    res = proctor("evidence", "--index", "1", "--index", "3-5,9", "--ledger", filled, "--out", out)
    assert res.returncode == 0, res.stderr
    assert "5 events (1..9)" in res.stdout
    ok = proctor("verify-bundle", out, "--key", keys[1])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 5/5 events verified against audit.example/log" in ok.stdout
    assert "pinned key" in ok.stdout and "note:" not in ok.stderr
    unpinned = proctor("verify-bundle", out)
    assert unpinned.returncode == 0
    assert "origin not proven" in unpinned.stdout and "--key" in unpinned.stderr
    as_json = proctor("verify-bundle", out, "--key", keys[1], "--json")
    report = json.loads(as_json.stdout)
    assert report["ok"] is True and report["verified"] == 5 and report["findings"] == []


def test_json_summary_of_a_written_bundle(tmp_path: Path, filled: Path) -> None:
    out = tmp_path / "b.zip"
    res = proctor(
        "evidence", "--index", f"0-{COUNT - 1}", "--ledger", filled, "--out", out, "--json"
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["count"] == COUNT and summary["checkpoint_size"] == COUNT


def test_a_tampered_bundle_exits_1_and_names_the_event(
    tmp_path: Path, keys: tuple[Path, Path], filled: Path
) -> None:
    out = tmp_path / "bundle.zip"
    assert proctor("evidence", "--index", "2-4", "--ledger", filled, "--out", out).returncode == 0
    with zipfile.ZipFile(out) as zf:
        contents = {name: zf.read(name) for name in zf.namelist()}
    lines = contents["events.jsonl"].split(b"\n")
    event = json.loads(lines[1])
    event["actor"]["id"] = "mallory"
    lines[1] = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
    contents["events.jsonl"] = b"\n".join(lines)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    res = proctor("verify-bundle", bad, "--key", keys[1])
    assert res.returncode == 1
    assert "index 3: inclusion proof does not match the signed root" in res.stdout
    assert "file-mismatch" in res.stdout and "FAILED" in res.stdout
    as_json = json.loads(proctor("verify-bundle", bad, "--key", keys[1], "--json").stdout)
    assert as_json["ok"] is False
    assert {f["index"] for f in as_json["findings"] if f["kind"] == "proof-mismatch"} == {3}


def test_another_key_exits_1(tmp_path: Path, filled: Path) -> None:
    out = tmp_path / "bundle.zip"
    assert proctor("evidence", "--index", "0", "--ledger", filled, "--out", out).returncode == 0
    assert proctor("keygen", "audit.example/log", "--out", tmp_path / "other").returncode == 0
    res = proctor("verify-bundle", out, "--key", tmp_path / "other" / "audit.example-log.vkey")
    assert res.returncode == 1 and "bad-checkpoint" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--index", "x"], "is not N or N-M"),
        (["--index", "5-2"], "not an ascending range"),
        (["--index", str(COUNT)], f"no entry at index {COUNT}"),
        ([], "select events with --query TEXT or --index"),
        (["--index", "1", "--query", "kind:query"], "(one of them)"),
        (["--query", "actor:nobody-at-all"], "no event matches --query"),
    ],
)
def test_bad_selections_exit_2(tmp_path: Path, filled: Path, args: list[str], message: str) -> None:
    res = proctor("evidence", *args, "--ledger", filled, "--out", tmp_path / "b.zip")
    assert res.returncode == 2 and message in res.stderr
    assert not (tmp_path / "b.zip").exists()


def test_usage_errors_exit_2(tmp_path: Path, filled: Path) -> None:
    out = tmp_path / "b.zip"
    out.write_bytes(b"keep me")
    res = proctor("evidence", "--index", "1", "--ledger", filled, "--out", out)
    assert res.returncode == 2 and "refusing to overwrite" in res.stderr
    assert out.read_bytes() == b"keep me"
    res = proctor("evidence", "--index", "1", "--out", tmp_path / "c.zip")
    assert res.returncode == 2 and "no ledger given" in res.stderr
    res = proctor("verify-bundle", tmp_path / "absent.zip")
    assert res.returncode == 2 and "no bundle at" in res.stderr


def test_not_a_zip_exits_1(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_text("hello")
    res = proctor("verify-bundle", junk)
    assert res.returncode == 1 and "unreadable" in res.stdout


def test_index_ranges_are_sorted_and_merged() -> None:
    assert index_ranges(["40-55", "12", "13,50-60", "62"]) == [(12, 13), (40, 60), (62, 62)]
    with pytest.raises(UsageError):
        index_ranges(["-3"])


def test_a_bundle_of_what_a_search_matches(tmp_path: Path, filled: Path) -> None:
    out = tmp_path / "denied.zip"
    res = proctor(
        "evidence", "--query", "decision:deny", "--ledger", filled, "--out", out, "--json"
    )
    assert res.returncode == 0, res.stderr
    with zipfile.ZipFile(out) as z:
        lines = z.read("events.jsonl").splitlines()
        manifest = json.loads(z.read("manifest.json"))
    assert lines and all(b'"effect":"deny"' in line for line in lines)
    assert manifest["query"] == "decision:deny"
    res = proctor("verify-bundle", out)
    assert res.returncode == 0, res.stdout
    bad = proctor("evidence", "--query", "actr:x", "--ledger", filled, "--out", tmp_path / "x.zip")
    assert bad.returncode == 3 and "unknown field 'actr'" in bad.stderr  # bad input
    exported = proctor("export", "--query", "decision:deny", "--ledger", filled)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.encode().splitlines() == lines
