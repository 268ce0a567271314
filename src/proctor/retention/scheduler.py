"""Retention on a schedule: a thread that runs retention every ``interval_s``.

The first run is at ``start()`` (it also finishes a run a crash interrupted), then one every
interval after the previous one ended. A failed run is logged and tried again at the next
interval; the thread never dies of it. ``close()`` stops it, waiting for a run in progress.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from proctor.retention.run import RetentionResult

__all__ = ["RetentionScheduler"]

log = logging.getLogger(__name__)


class RetentionScheduler:
    """Calls ``run()`` now and every ``interval_s`` seconds until closed."""

    def __init__(self, run: Callable[[], RetentionResult], interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._run = run
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_result: RetentionResult | None = None
        self.last_error: Exception | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            raise RuntimeError("the retention scheduler is already started")
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop; a run in progress finishes first (its steps are each safe to stop after)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> RetentionScheduler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                result = self._run()
            except Exception as exc:  # logged, retried next time: never a dead thread
                log.exception("retention run failed")
                self.last_error = exc
            else:
                self.last_result, self.last_error = result, None
                if result.steps:
                    log.info(
                        "retention: floor %d -> %d (%s)",
                        result.floor_before,
                        result.floor_after,
                        result.stop,
                    )
            self.runs += 1
            self._stop.wait(self.interval_s)
