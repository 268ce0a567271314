"""The CLI as users and scripts run it: real processes, real files, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from proctor.cli.demo_gateway import PG_ADMIN

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "events.jsonl"


def proctor(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    if env is None or "PROCTOR_LEDGER" not in env:
        full_env.pop("PROCTOR_LEDGER", None)
    res = subprocess.run(
        [sys.executable, "-m", "proctor", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in res.stderr, res.stderr
    assert "Traceback" not in res.stdout, res.stdout
    return res


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    res = proctor("keygen", "audit.example/log", "--out", tmp_path / "keys")
    assert res.returncode == 0, res.stderr
    skey = tmp_path / "keys" / "audit.example-log.key"
    vkey = tmp_path / "keys" / "audit.example-log.vkey"
    return skey, vkey


@pytest.fixture
def ledger(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    d = tmp_path / "ledger"
    res = proctor("ledger", "init", "--ledger", d, "--signer-key", keys[0])
    assert res.returncode == 0, res.stderr
    return d


def test_keygen_writes_a_private_signer_and_a_vkey(keys: tuple[Path, Path]) -> None:
    skey, vkey = keys
    assert skey.stat().st_mode & 0o777 == 0o600
    assert skey.read_text().startswith("PRIVATE+KEY+audit.example/log+")
    name, key_id, b64 = vkey.read_text().strip().split("+", 2)
    assert name == "audit.example/log" and len(key_id) == 8 and b64
    again = proctor("keygen", "audit.example/log", "--out", skey.parent)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


def test_append_checkpoint_prove_entry_verify_receipt(
    tmp_path: Path, keys: tuple[Path, Path], ledger: Path
) -> None:
    skey, vkey = keys
    env = {"PROCTOR_LEDGER": str(ledger), "PROCTOR_SIGNER_KEY": str(skey)}
    res = proctor("ledger", "append", EXAMPLES, "--json", env=env)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in EXAMPLES.read_text().splitlines() if ln.strip()]
    assert json.loads(res.stdout) == list(range(len(lines)))

    cp = proctor("ledger", "checkpoint", env=env)
    assert cp.returncode == 0 and cp.stdout.splitlines()[:2] == [
        "audit.example/log",
        str(len(lines)),
    ]
    (tmp_path / "saved.cp").write_text(cp.stdout)

    receipt = proctor("ledger", "prove", "3", env=env)
    assert receipt.returncode == 0 and receipt.stdout.startswith(
        "c2sp.org/tlog-proof@v1\nindex 3\n"
    )
    (tmp_path / "r.tlog-proof").write_text(receipt.stdout)
    entry = subprocess.run(
        [sys.executable, "-m", "proctor", "ledger", "entry", "3"],
        capture_output=True,
        env={**os.environ, **env},
        check=True,
    ).stdout
    (tmp_path / "e.json").write_bytes(entry)
    ok = proctor(
        "verify-receipt", tmp_path / "r.tlog-proof", "--key", vkey, "--entry", tmp_path / "e.json"
    )
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr

    other = json.loads(entry)
    other["kind"] = "session.end" if other["kind"] != "session.end" else "session.start"
    (tmp_path / "bad.json").write_text(json.dumps(other))
    bad = proctor(
        "verify-receipt", tmp_path / "r.tlog-proof", "--key", vkey, "--entry", tmp_path / "bad.json"
    )
    assert bad.returncode == 1 and "inclusion proof" in bad.stderr

    v = proctor(
        "verify", "--key", vkey, "--since-checkpoint", tmp_path / "saved.cp", "--json", env=env
    )
    assert v.returncode == 0, v.stdout
    report = json.loads(v.stdout)
    assert report["ok"] is True and report["entries"] == len(lines)

    db = sqlite3.connect(ledger / "ledger.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER entries_append_only_u")
    db.execute("UPDATE entries SET data = CAST('{}' AS BLOB) WHERE idx = 2")
    db.close()
    v = proctor("verify", "--key", vkey, env=env)
    assert v.returncode == 1
    assert "modified-entry" in v.stdout and "FAILED" in v.stdout


def test_one_bad_line_writes_nothing(tmp_path: Path, keys: tuple[Path, Path], ledger: Path) -> None:
    lines = EXAMPLES.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["risk"] = {"score": 55.5, "level": "medium", "factors": [], "model": "m"}
    lines[1] = json.dumps(bad)
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join(lines) + "\n")
    res = proctor("ledger", "append", f, "--ledger", ledger, "--signer-key", keys[0])
    assert res.returncode == 3
    assert f"{f}:2:" in res.stderr and "$.risk" in res.stderr
    con = sqlite3.connect(ledger / "ledger.sqlite")
    assert con.execute("SELECT count(*) FROM entries").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("verify",), 2, "no ledger given"),
        (("verify", "--ledger", "/nonexistent/x"), 2, "no ledger database"),
        (("ledger", "entry", "99", "--ledger", "{ledger}"), 2, "no entry at index 99"),
        (("ledger", "append", "/nonexistent.jsonl", "--ledger", "{ledger}"), 2, "cannot read"),
        (("ledger", "append", "{examples}", "--ledger", "{ledger}"), 2, "no signer key"),
        (("ledger", "prove", "0", "--ledger", "{ledger}"), 2, "no entry at index 0"),
        (("ledger", "checkpoint", "--ledger", "{ledger}"), 2, "no checkpoint yet"),
    ],
)
def test_usage_errors_are_one_line(
    ledger: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    argv = [a.format(ledger=ledger, examples=EXAMPLES) for a in args]
    res = proctor(*argv)
    assert res.returncode == code, res.stderr
    assert message in res.stderr


def test_garbled_receipt_and_key_and_corrupt_database(
    tmp_path: Path, keys: tuple[Path, Path], ledger: Path
) -> None:
    vkey = keys[1]
    (tmp_path / "r").write_text("c2sp.org/tlog-proof@v1\nindex 01\n\nx\n")
    (tmp_path / "e").write_text("{}")
    res = proctor("verify-receipt", tmp_path / "r", "--key", vkey, "--entry", tmp_path / "e")
    assert res.returncode == 3 and "leading 0" in res.stderr
    (tmp_path / "k").write_text("not a key")
    res = proctor(
        "verify-receipt", tmp_path / "r", "--key", tmp_path / "k", "--entry", tmp_path / "e"
    )
    assert res.returncode == 3 and "verifier key" in res.stderr
    (ledger / "ledger.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    res = proctor("verify", "--ledger", ledger, "--key", vkey)
    assert res.returncode in (1, 4), res.stderr
    assert "ledger" in res.stderr + res.stdout


def test_signer_key_readable_by_others_is_refused(
    tmp_path: Path, keys: tuple[Path, Path], ledger: Path
) -> None:
    keys[0].chmod(0o644)
    res = proctor("ledger", "append", EXAMPLES, "--ledger", ledger, "--signer-key", keys[0])
    assert res.returncode == 2 and "chmod 600" in res.stderr


def test_demo_runs_end_to_end_through_a_real_gateway(tmp_path: Path) -> None:
    database = f"proctor_demo_t{os.getpid()}"  # not the default: runs may overlap on a machine
    try:
        res = proctor("demo", "--dir", tmp_path / "demo", "--database", database)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    text = " ".join(res.stdout.split())  # rich wraps long lines
    assert res.returncode == 0, res.stdout + res.stderr
    assert "demo complete" in text and "NOT as expected" not in text
    assert text.count(": as expected") == 10
    assert "impossible_travel" in text and "account_risk" in text and "SESSION CUT" in text
    assert "contract ended" in text and "schema changes need an MFA" in text
    assert "no findings" in text
    assert "modified-entry" in text and "not-an-extension" in text
    # the audit service: sources in, an auditor's export and bundle, an erasure
    assert text.count("✓") == 6 and "✗" not in text
    assert "2 audit events stored, the malformed one refused alone" in text
    assert "type_uid" in text and "every event proven" in text and "proof-mismatch" in text
    assert "now reads 'erased'" in text


def test_demo_refuses_a_database_name_that_is_not_an_identifier(tmp_path: Path) -> None:
    res = proctor("demo", "--dir", tmp_path / "demo", "--database", "x; DROP DATABASE test")
    assert res.returncode == 2 and "--database" in res.stderr


def test_truncated_database_is_a_clear_storage_error(
    tmp_path: Path, keys: tuple[Path, Path], ledger: Path
) -> None:
    skey, vkey = keys
    lines = EXAMPLES.read_text() * 30
    (tmp_path / "many.jsonl").write_text(lines)
    res = proctor(
        "ledger", "append", tmp_path / "many.jsonl", "--ledger", ledger, "--signer-key", skey
    )
    assert res.returncode == 0, res.stderr
    db = ledger / "ledger.sqlite"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    for args in (("verify", "--key", vkey), ("ledger", "entry", "5"), ("ledger", "checkpoint")):
        res = proctor(*args, "--ledger", ledger)
        assert res.returncode == 4, (args, res.stderr)
        assert "malformed" in res.stderr
