"""Retention inside a running Proctor: the hold store, runs on demand, and the schedule.

``proctor serve`` holds the ledger's writer lock, so while it runs, holds are placed and
released and retention runs through it (the API), not through the CLI.
"""

from __future__ import annotations

import threading
from pathlib import Path

from proctor.events import now_ns
from proctor.ledger.ledger import Ledger
from proctor.retention.config import RetentionConfig
from proctor.retention.holds import (
    HOLDS_NAME,
    Hold,
    HoldStore,
    place_hold,
    release_hold,
)
from proctor.retention.run import RetentionLimits, RetentionResult, run_retention
from proctor.retention.scheduler import RetentionScheduler
from proctor.retention.search_holds import SearchMatcher, check_selector

__all__ = ["Retention"]


class Retention:
    """Rules, holds and archive directory of one ledger; one run at a time."""

    def __init__(
        self, ledger: Ledger, config: RetentionConfig, archive_dir: Path, holds: Path | None
    ):
        self.ledger = ledger
        self.config = config
        self.archive_dir = archive_dir
        self.holds = HoldStore(holds or ledger.directory / HOLDS_NAME)
        self._running = threading.Lock()
        self._scheduler: RetentionScheduler | None = None

    def run(self, *, dry_run: bool = False) -> RetentionResult:
        """One retention run now (waits for a scheduled one in progress)."""
        with self._running:
            matcher = SearchMatcher(self.ledger)
            try:
                return run_retention(
                    self.ledger,
                    self.config.rules,
                    self.holds,
                    matcher,
                    self.archive_dir,
                    now_ns(),
                    dry_run=dry_run,
                    limits=RetentionLimits.of(self.config),
                )
            finally:
                matcher.close()

    def place(self, case_id: str, selector: str, description: str, by: str) -> Hold:
        """Place a legal hold (recorded in the ledger)."""
        return place_hold(
            self.ledger, self.holds, case_id, selector, description, by, check=check_selector
        )

    def release(self, case_id: str, reason: str, by: str) -> Hold:
        """Release a case's hold (recorded in the ledger first)."""
        return release_hold(self.ledger, self.holds, case_id, reason, by)

    def start(self) -> None:
        """Run on the configured schedule (``interval_s`` 0: only on demand)."""
        if self.config.interval_s > 0:
            self._scheduler = RetentionScheduler(self.run, self.config.interval_s)
            self._scheduler.start()

    def close(self) -> None:
        """Stop the schedule (a run in progress finishes), close the hold store."""
        if self._scheduler is not None:
            self._scheduler.close()
            self._scheduler = None
        self.holds.close()
