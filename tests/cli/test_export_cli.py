"""``proctor export`` and ``proctor forward`` on a real ledger: real processes, files, exits."""

from __future__ import annotations

import json
import socket
import threading
import time
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


class _Receiver:
    """A syslog receiver on 127.0.0.1 in a thread: frames in, messages kept."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.messages: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            decoder = FrameDecoder()
            with conn:
                while data := conn.recv(65536):
                    self.messages += decoder.feed(data)

    def close(self) -> None:
        self.sock.close()


def test_forward_once_then_resume_from_the_state(ledger: Path) -> None:
    receiver = _Receiver()
    try:
        target = f"127.0.0.1:{receiver.port}"
        res = proctor("forward", "--to", target, "--ledger", ledger, "--once", "--json")
        assert res.returncode == 0, res.stderr
        report = json.loads(res.stdout)
        assert report["sent"] == len(RAW) and report["next_index"] == len(RAW)
        state = Path(report["state"])
        assert state.parent == ledger and json.loads(state.read_text())["next"] == len(RAW)
        deadline = time.monotonic() + 10
        while len(receiver.messages) < len(RAW) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [m.split(b" ", 6)[5] for m in receiver.messages] == [
            e.kind.encode() for e in EXAMPLES
        ]  # MSGID: the kinds, in ledger order
        again = proctor("forward", "--to", target, "--ledger", ledger, "--once")
        assert again.returncode == 0, again.stderr
        assert f"next index {len(RAW)}" in again.stdout
        refused = proctor("forward", "--to", target, "--ledger", ledger, "--from", "3")
        assert refused.returncode == 2 and "already records where to resume" in refused.stderr
    finally:
        receiver.close()


def test_forward_to_nobody_stops_with_the_index(ledger: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = proctor(
        "forward", "--to", f"127.0.0.1:{port}", "--ledger", ledger, "--once",
        "--retries", "1", "--backoff-max", "0.5",
    )  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert "gave up after 1 retries" in res.stderr and "resume at ledger index 0" in res.stderr
    bad = proctor("forward", "--to", "nowhere", "--ledger", ledger)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
