"""Crash test: SIGKILL a process appending under load; every acknowledged entry survives."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from proctor.ledger.note import Signer
from proctor.ledger.store import SqliteStore
from proctor.ledger.verify import verify_ledger
from tests.ledger.crash_child import body

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 12


def test_sigkill_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    signer = Signer.generate("crash.test/ledger")
    rng = random.Random(20261123)
    acked: dict[int, bytes] = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    for run in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), str(run), signer.skey],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        first = child.stdout.readline()
        if first != "ready\n":
            child.kill()
            _, err = child.communicate(timeout=30)
            raise AssertionError(f"child did not start: {first!r} {err}")
        # Read continuously so the child never stalls on a full pipe.
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(child.stdout,))
        reader.start()
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        reader.join(timeout=30)
        assert child.returncode == -signal.SIGKILL
        for line in lines:
            parts = line.split()
            if len(parts) != 4 or not line.endswith("\n"):  # cut short by the kill
                continue
            idx, r, t, seq = map(int, parts)
            acked[idx] = body(r, t, seq)
        store = SqliteStore(db, readonly=True)
        stored = dict(store.entries())
        missing = [i for i, data in acked.items() if stored.get(i) != data]
        assert not missing, f"run {run}: acknowledged entries lost or changed: {missing[:10]}"
        report = verify_ledger(store, [signer.verifier], signer.name)
        store.close()
        assert report, [f.to_dict() for f in report.findings]
    assert len(acked) > KILLS * 50, "the child appended too little to test anything"
