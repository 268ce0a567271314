"""``proctor serve --api-only`` and ``proctor tokens …`` as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proctor.events import decode_event, original_bytes
from proctor.ledger.ledger import Ledger
from tests.service.conftest import EXAMPLES

PROCTOR = [str(Path(sys.executable).parent / "proctor")]
POLICIES = Path(__file__).parents[2] / "examples" / "policies"


def _config(tmp_path: Path, api: str = 'address = "127.0.0.1:0"') -> Path:
    path = tmp_path / "proctor.toml"
    path.write_text(
        f'gateway = "api-test"\n[policies]\ndirectory = "{POLICIES}"\n'
        f'[ledger]\ndirectory = "{tmp_path / "ledger"}"\n[api]\n{api}\n'
    )
    return path


def _proctor(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    return subprocess.run(
        [*PROCTOR, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    config = _config(tmp_path)
    proc = subprocess.Popen(
        [*PROCTOR, "serve", "--api-only", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NO_COLOR="1", COLUMNS="200"),
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        match = re.search(r"audit API on (http://127\.0\.0\.1:\d+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield match.group(1), config
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_api_only_serves_tokens_made_by_the_cli(served: tuple[str, Path]) -> None:
    url, config = served
    made = _proctor("tokens", "create", "--config", str(config), "--name", "ci", "--role", "ingest")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert "cannot be shown again" in made.stderr and token not in made.stderr
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    answer = httpx.post(f"{url}/v1/events", content=EXAMPLES.read_bytes(), headers=headers)
    assert answer.status_code == 200
    result = answer.json()
    reserved = ("retention.pruned", "erasure", "checkpoint")  # only the ledger writes these
    assert len(result["accepted"]) == len(EXAMPLES.read_bytes().splitlines()) - len(reserved)
    assert sorted(r["error"] for r in result["rejected"]) == sorted(
        f"kind {kind!r} is written only by the ledger itself - at `$.kind`" for kind in reserved
    )
    listed = _proctor("tokens", "list", "--config", str(config), "--json")
    assert [(t["name"], t["role"], t["state"]) for t in json.loads(listed.stdout)] == [
        ("ci", "ingest", "active")
    ]
    assert token.rsplit("_", 1)[1] not in listed.stdout
    assert _proctor("tokens", "revoke", "ci", "--config", str(config)).returncode == 0
    assert httpx.get(f"{url}/v1/checkpoint", headers=headers).status_code == 401


def test_a_bad_api_section_is_refused_before_anything_starts(tmp_path: Path) -> None:
    config = _config(tmp_path, 'address = "10.1.2.3:8480"\nmax_items = 0')
    res = _proctor("serve", "--api-only", "--config", str(config))
    assert res.returncode == 2
    assert "api.max_items: Expected `int` >= 1" in res.stderr
    config = _config(tmp_path, 'address = "10.1.2.3:8480"')
    res = _proctor("serve", "--api-only", "--config", str(config))
    assert res.returncode == 2
    assert "api.address: 10.1.2.3:8480 is not loopback; add tls_cert and tls_key" in res.stderr


def test_serve_without_listeners_says_to_use_api_only(tmp_path: Path) -> None:
    res = _proctor("serve", "--config", str(_config(tmp_path)))
    assert res.returncode == 2
    assert "listeners: none configured" in res.stderr


def test_proctor_erase_destroys_the_keys_of_a_subject_the_api_sealed(tmp_path: Path) -> None:
    master = tmp_path / "master.key"
    master.write_bytes(bytes(range(32)))
    master.chmod(0o600)
    config = _config(tmp_path, f'address = "127.0.0.1:0"\n[privacy]\nmaster_key_file = "{master}"')
    proc = subprocess.Popen(
        [*PROCTOR, "serve", "--api-only", "--config", str(config)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NO_COLOR="1", COLUMNS="200"),
    )
    assert proc.stdout is not None
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert url
        token = _proctor(
            "tokens", "create", "--config", str(config), "--name", "a", "--role", "admin"
        )
        headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
        event = next(
            json.loads(line)
            for line in EXAMPLES.read_text().splitlines()
            if '"session.start"' in line
        )
        index = httpx.post(f"{url.group()}/v1/events", json=event, headers=headers).json()[
            "accepted"
        ][0]["index"]
        busy = _proctor("erase", "--config", str(config), "--subject", "u-1042", "--reason", "r")
        assert busy.returncode == 2 and "being written by another process" in busy.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    res = _proctor(
        "erase",
        "--config",
        str(config),
        "--subject",
        "u-1042",
        "--reason",
        "art. 17",
        "--by",
        "dpo",
    )
    assert res.returncode == 0, res.stderr
    assert "erased u-1042: 1 key(s) destroyed, recorded at ledger index" in res.stdout
    res = _proctor("erase", "--config", str(config), "--subject", "u-1042", "--reason", "again")
    assert res.returncode == 2 and "no keys held for subject 'u-1042'" in res.stderr
    ledger_dir = tmp_path / "ledger"
    entry = _proctor("ledger", "entry", str(index), "--ledger", str(ledger_dir))
    assert "alice.martin@corp.example" not in entry.stdout and '"sealed"' in entry.stdout
    verify = _proctor("verify", "--ledger", str(ledger_dir))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_serve_ingests_syslog_over_tcp(tmp_path: Path) -> None:
    config = _config(tmp_path, 'address = "127.0.0.1:0"\n[syslog]\naddress = "127.0.0.1:0"')
    proc = subprocess.Popen(
        [*PROCTOR, "serve", "--api-only", "--config", str(config)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, NO_COLOR="1", COLUMNS="200"),
    )
    assert proc.stdout is not None
    try:
        proc.stdout.readline()  # the API
        found = re.search(r"syslog on 127\.0\.0\.1:(\d+) \(TCP\)", proc.stdout.readline())
        assert found
        message = (
            b"<86>1 2026-11-23T11:20:00.000Z bastion-1 sshd 4242 login "
            b'[proctor@32473 actor="alice" target_type="ssh" action_class="auth" outcome="ok"] '
            b"Accepted publickey for alice"
        )
        with socket.create_connection(("127.0.0.1", int(found.group(1)))) as sock:
            sock.sendall(b"%d %s" % (len(message), message))
        ledger = Ledger(tmp_path / "ledger")
        try:
            for _ in range(100):
                if ledger.size():
                    break
                time.sleep(0.05)
            event = decode_event(ledger.entry(0))
        finally:
            ledger.close()
        assert event.kind == "ingest" and event.source is not None
        assert event.source.system == "syslog"
        assert event.original is not None and original_bytes(event.original) == message
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_an_api_that_cannot_listen_stops_the_gateway_it_started(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config(tmp_path, f'address = "127.0.0.1:{port}"')
        gateway = (
            '[[listeners]]\naddress = "127.0.0.1:0"\nupstream = "pg"\n'
            '[[upstreams]]\nname = "pg"\ndatabase = "test"\nuser = "postgres"\n'
        )
        config.write_text(config.read_text() + gateway)
        res = _proctor("serve", "--config", str(config))
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"api.address: cannot listen on 127.0.0.1:{port}" in res.stderr
    assert "listening on 127.0.0.1:" in res.stdout  # the gateway had started, then ended
    assert not (tmp_path / "ledger" / "admin.sock").exists()
