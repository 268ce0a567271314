"""``proctor export`` on a real ledger, as a user runs it: real processes, files, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proctor.events import canonical_bytes
from proctor.exports.syslog import FrameDecoder
from tests.cli.test_cli import proctor
from tests.exports.conftest import EXAMPLES, make_ledger

RAW = [canonical_bytes(e) for e in EXAMPLES]


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return make_ledger(tmp_path / "ledger")


@pytest.mark.parametrize("fmt", ["jsonl", "ocsf", "ecs", "cef", "syslog"])
def test_export_to_stdout(ledger: Path, fmt: str) -> None:
    res = proctor("export", "--ledger", ledger, "--format", fmt)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == len(RAW)
    assert f"exported {len(RAW)} events (index 0..20) as {fmt}" in res.stderr
    if fmt == "jsonl":
        assert [line.encode() for line in lines] == RAW
    elif fmt == "cef":
        assert all(line.startswith("CEF:0|Proctor|Proctor|") for line in lines)
    elif fmt == "syslog":
        assert all(line.startswith("<") and " proctor " in line for line in lines)
    else:
        assert all(isinstance(json.loads(line), dict) for line in lines)


def test_export_range_to_a_file_with_a_json_summary(ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.ocsf.jsonl"
    res = proctor(
        "export",
        "--ledger",
        ledger,
        "-f",
        "ocsf",
        "--from",
        "5",
        "--to",
        "9",
        "--out",
        out,
        "--json",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {
        "format": "ocsf",
        "count": 4,
        "first": 5,
        "last": 8,
        "bytes": out.stat().st_size,
        "out": str(out),
        "missing": [],
    }
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["metadata"]["sequence"] for d in docs] == [5, 6, 7, 8]
    assert docs[0]["metadata"]["log_name"] == "test.example/exports"
    assert not list(tmp_path.glob("*.partial"))


def test_octet_framing_and_syslog_options(ledger: Path) -> None:
    res = proctor(
        "export", "--ledger", ledger, "-f", "syslog", "--framing", "octet",
        "--facility", "local3", "--hostname", "gw.example", "--syslog-body", "cef",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    messages = FrameDecoder().feed(res.stdout.encode())
    assert len(messages) == len(RAW)
    assert messages[1].startswith(b"<158>1 ")  # local3 (19) * 8 + informational (6)
    assert b" gw.example proctor " in messages[1] and b"CEF:0|" in messages[1]


def test_bad_arguments_exit_2_with_a_message(ledger: Path, tmp_path: Path) -> None:
    for args, message in (
        (["-f", "xml"], "unknown export format"),
        (["--from", "-1"], "--from must be 0 or more"),
        (["--from", "5", "--to", "2"], "is before --from"),
        (["--facility", "nope"], "unknown syslog facility"),
        (["--framing", "cr"], "--framing must be lf or octet"),
        (["-f", "syslog", "--hostname", "two words"], "HOSTNAME"),
    ):
        res = proctor("export", "--ledger", ledger, *args)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
    res = proctor("export", "--ledger", tmp_path / "nowhere")
    assert res.returncode == 2 and "no ledger" in res.stderr


def test_a_bad_entry_fails_closed_and_leaves_no_file(tmp_path: Path) -> None:
    d = make_ledger(tmp_path / "l", [RAW[0], b'{"schema":"proctor.access/v1"}', RAW[1]])
    out = tmp_path / "x.jsonl"
    res = proctor("export", "--ledger", d, "-f", "ecs", "--out", out)
    assert res.returncode == 3 and "ledger entry 1" in res.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
