"""RetentionScheduler: runs at start, then every interval; a failure does not stop it."""

from __future__ import annotations

import threading
import time

from proctor.retention.run import RetentionResult
from proctor.retention.scheduler import RetentionScheduler


def test_runs_repeatedly_and_survives_a_failure() -> None:
    calls: list[int] = []
    three = threading.Event()

    def run() -> RetentionResult:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        if len(calls) >= 3:
            three.set()
        return RetentionResult(0, 0)

    with RetentionScheduler(run, interval_s=0.01) as sched:
        assert three.wait(10)
    assert sched.runs >= 3
    assert sched.last_result is not None and sched.last_error is None
    n = len(calls)
    time.sleep(0.05)
    assert len(calls) == n  # closed: no more runs
