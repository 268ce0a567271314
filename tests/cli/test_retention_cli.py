"""``proctor retention …`` as an operator runs it: holds, dry run, run, verify, archives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from proctor.events import canonical_bytes
from tests.retention.conftest import event

RULES = """
[retention]
archive_dir = "arch"

[[retention.rules]]
name = "sessions-7y"
kinds = ["session.*"]
keep_days = 2555

[[retention.rules]]
name = "queries-400d"
kinds = ["query", "decision", "outcome", "retention.*"]
keep_days = 400
"""


def proctor(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("PROCTOR_LEDGER", None)
    res = subprocess.run(
        [sys.executable, "-m", "proctor", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    return res


def test_hold_dry_run_run_verify_release(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    assert proctor("ledger", "init", "--ledger", d).returncode == 0
    events = [event("query", age_days=500) for _ in range(30)]
    events[10] = event("query", age_days=500, actor="u-7")
    lines = tmp_path / "events.jsonl"
    lines.write_bytes(b"".join(canonical_bytes(e) + b"\n" for e in events))
    assert proctor("ledger", "append", lines, "--ledger", d).returncode == 0
    rules = tmp_path / "proctor.toml"
    rules.write_text(RULES)
    run = ("retention", "run", "--ledger", d, "--rules", rules)

    res = proctor(*run, "--as-of", "2030-01-01T00:00:00Z")
    assert res.returncode == 2 and "--as-of is for --dry-run only" in res.stderr

    res = proctor(
        "retention", "hold", "--ledger", d, "--case", "ACME-42", "--query", "actor:u-7",
        "--reason", "litigation", "--by", "legal",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "hold for case ACME-42 placed, recorded at index 30" in res.stdout
    res = proctor("retention", "holds", "--ledger", d)
    assert "ACME-42" in res.stdout and "in force" in res.stdout and "actor:u-7" in res.stdout

    res = proctor(*run, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "would prune entries 0–9 (queries-400d ×10)",
        "stopped at index 10: held by case ACME-42 (litigation)",
        "floor 0 → 10 (dry run: nothing changed)",
    ]
    assert not (tmp_path / "arch").exists()

    res = proctor(*run)
    assert res.returncode == 0, res.stderr
    assert "pruned entries 0–9 (queries-400d ×10) → archive-0-10.zip, recorded at index 31" in (
        res.stdout
    )
    assert "floor 0 → 10; 10 entry bodies deleted" in res.stdout

    res = proctor("verify", "--ledger", d)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "pruned" in res.stdout and "(and 10 pruned by retention)" in res.stdout
    res = proctor("ledger", "entry", "3", "--ledger", d)
    assert res.returncode == 2
    assert (
        "entry 3 was pruned by retention (rule queries-400d, recorded at index 31); "
        "see archive archive-0-10.zip" in res.stderr
    )

    archive = tmp_path / "arch" / "archive-0-10.zip"
    vkey = d / "verifier.vkey"
    res = proctor("retention", "verify-archive", archive, "--key", vkey)
    assert res.returncode == 0, res.stdout
    assert "OK: entries 0–9 of proctor.local/ledger (10 entries" in res.stdout
    bad = tmp_path / "bad.zip"
    shutil.copy(archive, bad)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("extra.txt", "x")
    res = proctor("retention", "verify-archive", bad, "--key", vkey, "--json")
    assert res.returncode == 1
    assert json.loads(res.stdout)["problems"] == ["unexpected members: extra.txt"]

    res = proctor(
        "retention", "release", "--ledger", d, "--case", "ACME-42", "--reason", "closed",
        "--by", "legal",
    )  # fmt: skip
    assert res.returncode == 0 and "recorded at index 32" in res.stdout
    res = proctor(*run, "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    # 10..29 expire; 30 (the hold's decision event, recorded today) is kept 400 days.
    assert [(s["first"], s["below"]) for s in result["steps"]] == [(10, 30)]
    assert result["stop"]["index"] == 30 and "rule queries-400d" in result["stop"]["why"]
    [held] = json.loads(proctor("retention", "holds", "--ledger", d, "--all", "--json").stdout)
    assert held["active"] is False and held["release_reason"] == "closed"
    assert proctor("verify", "--ledger", d).returncode == 0
