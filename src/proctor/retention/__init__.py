"""Retention pruning and legal holds (docs/retention.md).

- ``config``    the ``[retention]`` section: rules (kind globs, sensitivity, ``keep_days``),
                archive directory, schedule, limits.
- ``rules``     pure: which entries from the floor are past their retention, and why a scan
                stops where it stops.
- ``holds``     legal holds (``holds.sqlite``, never deleted, only released; placing and
                releasing recorded in the ledger) and the ``HoldMatcher`` that says what a hold
                covers (a built-in one until the search language provides another).
- ``archive``   zip archives of entries with a tlog-proof each against one signed checkpoint,
                verifiable on their own (``verify_archive``).
- ``run``       ``run_retention``: plan → archive → record (event and floor in one commit)
                → sign → sweep the bodies below the floor.
- ``scheduler`` a thread that runs retention every interval.

The ledger keeps one floor, the smallest retained index; it only moves up. Leaf hashes (tiles)
stay, so checkpoints, proofs and verification hold for everything, pruned or not.
"""

from proctor.retention.archive import ArchiveInfo, ArchiveReport, verify_archive, write_archive
from proctor.retention.config import RetentionConfig, RetentionRule, load_retention
from proctor.retention.holds import (
    BuiltinMatcher,
    Hold,
    HoldMatcher,
    HoldStore,
    parse_selector,
    place_hold,
    release_hold,
)
from proctor.retention.run import RetentionLimits, RetentionResult, run_retention
from proctor.retention.scheduler import RetentionScheduler

__all__ = [
    "ArchiveInfo",
    "ArchiveReport",
    "BuiltinMatcher",
    "Hold",
    "HoldMatcher",
    "HoldStore",
    "RetentionConfig",
    "RetentionLimits",
    "RetentionResult",
    "RetentionRule",
    "RetentionScheduler",
    "load_retention",
    "parse_selector",
    "place_hold",
    "release_hold",
    "run_retention",
    "verify_archive",
    "write_archive",
]
