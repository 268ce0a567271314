"""Ingest 100,000 events, kill -9 the service mid-stream: every acknowledged event is there."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from proctor.events import new_event_id
from proctor.ledger.ledger import Ledger
from tests.service.conftest import example_events
from tests.service.test_cli import PROCTOR, _config, _proctor

TOTAL, BATCH, CLIENTS = 100_000, 1_000, 2


@pytest.mark.slow
def test_every_acknowledged_event_survives_kill_9(tmp_path: Path) -> None:
    config = _config(tmp_path)
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    proc = subprocess.Popen(
        [*PROCTOR, "serve", "--api-only", "--config", str(config)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    match = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
    assert match, "the service did not start"
    url = match.group()
    token = _proctor(
        "tokens", "create", "--config", str(config), "--name", "load", "--role", "ingest"
    )
    headers = {
        "Authorization": f"Bearer {token.stdout.strip()}",
        "Content-Type": "application/x-ndjson",
    }
    template = next(e for e in example_events() if e["kind"] == "decision")
    acknowledged: set[str] = set()
    sent = 0
    lock = threading.Lock()
    killed = threading.Event()

    def client() -> None:
        nonlocal sent
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            while not killed.is_set():
                with lock:
                    if sent >= TOTAL:
                        return
                    sent += BATCH
                ids = [new_event_id() for _ in range(BATCH)]
                body = "\n".join(json.dumps(dict(template, id=i)) for i in ids)
                try:
                    answer = c.post("/v1/events", content=body)
                except httpx.TransportError:
                    return  # killed while in flight: not acknowledged
                assert answer.status_code == 200, answer.text
                accepted = answer.json()["accepted"]
                assert len(accepted) == BATCH
                with lock:
                    acknowledged.update(a["id"] for a in accepted)
                    if len(acknowledged) >= TOTAL // 2 and not killed.is_set():
                        killed.set()
                        proc.send_signal(signal.SIGKILL)  # with other requests in flight

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) >= TOTAL // 2

    ledger = Ledger(tmp_path / "ledger")  # read-only: no signer needed
    try:
        stored = {json.loads(data)["id"] for _, data in ledger.entries()}
    finally:
        ledger.close()
    missing = acknowledged - stored
    assert not missing, f"{len(missing)} acknowledged events lost"
    verify = _proctor("verify", "--ledger", str(tmp_path / "ledger"))
    assert verify.returncode == 0, verify.stdout + verify.stderr
