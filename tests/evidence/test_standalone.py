"""The verify_bundle.py shipped in every bundle: runs with Python and cryptography alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.evidence.conftest import SELECTION, Fixture, members, rewrite


def run_script(made: Fixture, bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the bundle's own script as an auditor would, with Proctor made unimportable."""
    script = bundle.parent / "verify_bundle.py"
    script.write_bytes(members(made.bundle)["verify_bundle.py"])
    code = (
        "import runpy, sys; sys.modules['proctor'] = None; "
        f"sys.argv = {[str(script), str(bundle), *args]!r}; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=bundle.parent,
    )


def vkey_file(made: Fixture, tmp_path: Path) -> str:
    path = tmp_path / "ledger.vkey"
    path.write_text(made.signer.verifier.vkey + "\n")
    return str(path)


def test_the_script_verifies_a_good_bundle(made: Fixture, tmp_path: Path) -> None:
    res = run_script(made, made.bundle, "--key", vkey_file(made, tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"OK: {len(SELECTION)} events verified" in res.stdout
    unpinned = run_script(made, made.bundle)
    assert unpinned.returncode == 0
    assert "note: checked with the bundle's own verifier.vkey" in unpinned.stdout


def test_the_script_names_a_modified_event(made: Fixture, tmp_path: Path) -> None:
    lines = members(made.bundle)["events.jsonl"].split(b"\n")[:-1]
    event = json.loads(lines[3])
    event["actor"]["id"] = "someone-else"
    lines[3] = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
    bad = rewrite(
        made.bundle,
        tmp_path / "bad.zip",
        {"events.jsonl": b"".join(line + b"\n" for line in lines)},
        fix_manifest=True,
    )
    res = run_script(made, bad, "--key", vkey_file(made, tmp_path))
    assert res.returncode == 1
    assert "FAIL: index 17: inclusion proof does not match the signed root" in res.stdout


def test_the_script_catches_non_canonical_json_and_extra_members(
    made: Fixture, tmp_path: Path
) -> None:
    lines = members(made.bundle)["events.jsonl"].split(b"\n")[:-1]
    lines[0] = lines[0].replace(b'"kind"', b' "kind"')
    bad = rewrite(
        made.bundle,
        tmp_path / "bad.zip",
        {"events.jsonl": b"".join(line + b"\n" for line in lines)},
        add=[("../evil", b"x")],
        fix_manifest=True,
    )
    res = run_script(made, bad, "--key", vkey_file(made, tmp_path))
    assert res.returncode == 1
    assert "FAIL: line 1: not canonical (index 3)" in res.stdout
    assert "FAIL: unexpected member '../evil' (not read)" in res.stdout
    assert not (tmp_path.parent / "evil").exists()


def test_the_script_refuses_another_key(made: Fixture, tmp_path: Path) -> None:
    from proctor.ledger.note import Signer

    other = tmp_path / "other.vkey"
    other.write_text(Signer.generate("audit.example/ledger").verifier.vkey + "\n")
    res = run_script(made, made.bundle, "--key", str(other))
    assert res.returncode == 1
    assert "FAIL: checkpoint has no signature by audit.example/ledger+" in res.stdout
