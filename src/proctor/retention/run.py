"""A retention run: find the prunable range, archive it, record the prune, delete the bodies.

Each step, for at most ``max_entries_per_archive`` entries from the floor:

1. **Plan**: from the floor, the longest run of entries past their retention (``rules``), cut
   at the first index any hold in force covers (``HoldMatcher``). Nothing to do: stop.
2. **Archive**: write ``archive-FIRST-BELOW.zip`` (entries, a receipt each, one checkpoint).
3. **Record**: holds are read again (one placed meanwhile wins: nothing is pruned); then the
   ``retention.pruned`` event is appended *in the same transaction* as the floor it raises, so
   the ledger never holds one without the other. A checkpoint signs it.
4. **Sweep**: the bodies below the floor are deleted, in bounded transactions.

A crash before 3 leaves at most an unrecorded archive file (harmless; the next run writes it
again). A crash after 3 leaves bodies below the floor: readers already treat them as pruned,
and the next run sweeps them first. The dry run does steps 1 only, for every step it would take.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from proctor.errors import UsageError
from proctor.events import Action, Actor, Event, Source, Target, format_time
from proctor.events.ids import new_event_id
from proctor.ledger.ledger import Ledger
from proctor.ledger.store import Prune
from proctor.ledger.verify_prunes import prune_attributes
from proctor.retention.archive import ArchiveInfo, write_archive
from proctor.retention.config import RetentionConfig, RetentionRule
from proctor.retention.holds import Hold, HoldMatcher, HoldStore
from proctor.retention.rules import Stop, expired_range

__all__ = ["PruneStep", "RetentionLimits", "RetentionResult", "archive_name", "run_retention"]

log = logging.getLogger(__name__)

ACTOR_ID: Final = "proctor-retention"
MAX_RULE_TEXT: Final = 1024


@dataclass(frozen=True)
class RetentionLimits:
    """How much one archive and one run may take (``[retention]`` settings)."""

    max_entries_per_archive: int = 50_000
    max_archives_per_run: int = 100

    @classmethod
    def of(cls, config: RetentionConfig) -> RetentionLimits:
        """The limits a ``[retention]`` section sets."""
        return cls(config.max_entries_per_archive, config.max_archives_per_run)


@dataclass(frozen=True)
class PruneStep:
    """One range pruned (or, in a dry run, that would be)."""

    first: int
    below: int
    rules: dict[str, int]
    """Entries each rule expired in the range."""
    event_index: int | None = None
    archive: ArchiveInfo | None = None


@dataclass
class RetentionResult:
    """What a run did, and where and why it stopped."""

    floor_before: int
    floor_after: int
    dry_run: bool = False
    steps: list[PruneStep] = field(default_factory=list)
    stop: Stop | None = None
    swept: int = 0
    """Bodies deleted, including those an interrupted run left."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "dry_run": self.dry_run,
            "floor_before": self.floor_before,
            "floor_after": self.floor_after,
            "swept": self.swept,
            "steps": [
                {
                    "first": s.first,
                    "below": s.below,
                    "rules": s.rules,
                    "event_index": s.event_index,
                    "archive": None if s.archive is None else s.archive.path.name,
                    "archive_sha256": None if s.archive is None else s.archive.sha256,
                }
                for s in self.steps
            ],
            "stop": None
            if self.stop is None
            else {"index": self.stop.index, "why": str(self.stop)},
        }


def archive_name(first: int, below: int) -> str:
    """The archive's file name for the range ``[first, below)``."""
    return f"archive-{first}-{below}.zip"


def _rule_text(counts: dict[str, int]) -> str:
    """The rules that expired a range, as recorded (names are short; many are cut)."""
    text = ", ".join(sorted(counts))
    return text if len(text) <= MAX_RULE_TEXT else text[: MAX_RULE_TEXT - 3] + "..."


def _event(ledger: Ledger, prune: Prune, checkpoint_size: int) -> Event:
    now, clock = ledger.clock.now()
    return Event(
        id=new_event_id(),
        kind="retention.pruned",
        time=format_time(now),
        clock=clock,
        actor=Actor(id=ACTOR_ID, kind="service"),
        target=Target(type="proctor-ledger", name=ledger.origin),
        action=Action(class_="admin", operation="retention.prune"),
        source=Source(system="proctor"),
        attributes={
            **prune_attributes(prune),
            "retention.checkpoint_size": str(checkpoint_size),
            "retention.entries": str(prune.below - prune.first),
        },
    )


def run_retention(
    ledger: Ledger,
    rules: Sequence[RetentionRule],
    holds: HoldStore,
    matcher: HoldMatcher,
    archive_dir: Path,
    now_ns: int,
    *,
    dry_run: bool = False,
    limits: RetentionLimits | None = None,
) -> RetentionResult:
    """Prune what ``rules`` expire as of ``now_ns`` and no hold covers; see the module doc.

    The ledger must be open for writing unless ``dry_run``.
    """
    if not rules:
        raise UsageError("no retention rules: nothing can expire")
    run = _Run(
        ledger, tuple(rules), holds, matcher, archive_dir, now_ns, limits or RetentionLimits()
    )
    floor = ledger.floor()
    result = RetentionResult(floor, floor, dry_run=dry_run)
    if not dry_run:
        ledger.checkpoint()  # an interrupted run's prune event gets signed before any sweep
        result.swept += ledger.sweep_pruned()
    lo = floor
    for _ in range(run.limits.max_archives_per_run):
        in_force = holds.active()
        below, stop, counts = run.plan(in_force, lo)
        result.stop = stop
        if below <= lo:
            break
        if dry_run:
            result.steps.append(PruneStep(lo, below, counts))
        else:
            step = run.prune(in_force, lo, below, counts)
            if step is None:
                result.stop = Stop(lo, "held", "a hold was placed during the run; run again")
                break
            result.steps.append(step)
            result.swept += ledger.sweep_pruned()
        lo = below
        if stop.kind != "limit":
            break
    result.floor_after = lo if dry_run else ledger.floor()
    return result


@dataclass(frozen=True)
class _Run:
    """What one run works with."""

    ledger: Ledger
    rules: tuple[RetentionRule, ...]
    holds: HoldStore
    matcher: HoldMatcher
    archive_dir: Path
    now_ns: int
    limits: RetentionLimits

    def plan(self, holds: Sequence[Hold], lo: int) -> tuple[int, Stop, dict[str, int]]:
        """``(below, why it stops there, entries per rule)`` for the next step from ``lo``."""
        ledger, rules, now = self.ledger, self.rules, self.now_ns
        size = ledger.size()
        hi = min(size, lo + self.limits.max_entries_per_archive)
        expiry = expired_range(ledger.entries(lo, hi), rules, now, lo=lo, hi=hi, size=size)
        below, stop = expiry.below, expiry.stop
        for hold in holds:
            if below <= lo:
                break
            at = self.matcher(hold, lo, below)
            if at is not None and at < below:
                below = at
                why = f"held by case {hold.case_id} ({hold.description})"
                stop = Stop(at, "held", why, case_id=hold.case_id)
        if below < expiry.below:  # recount the rules over the shorter range
            again = expired_range(ledger.entries(lo, below), rules, now, lo=lo, hi=below, size=size)
            return below, stop, again.rules
        return below, stop, expiry.rules

    def prune(
        self, planned_with: Sequence[Hold], first: int, below: int, counts: dict[str, int]
    ) -> PruneStep | None:
        """Archive, then record (event and floor together), then sign; None when a new hold
        covers part of the range (nothing is recorded; the archive file stays, unrecorded)."""
        ledger = self.ledger
        checkpoint = ledger.checkpoint()
        info = write_archive(
            self.archive_dir / archive_name(first, below),
            ledger.entries(first, below),
            lambda i: ledger.prove(i, checkpoint),
            first=first,
            below=below,
            checkpoint=checkpoint,
            verifier=ledger.verifier,
            meta={"rule": _rule_text(counts), "origin": ledger.origin},
        )
        known = {h.id for h in planned_with}
        for hold in self.holds.active():
            if hold.id not in known and self.matcher(hold, first, below) is not None:
                log.warning("hold %s placed during the retention run: nothing pruned", hold.case_id)
                return None
        prune = Prune(
            below=below,
            first=first,
            event_index=-1,  # set by the writer
            rule=_rule_text(counts),
            archive=info.path.name,
            archive_sha256=info.sha256,
            created_ns=ledger.clock.now()[0],
        )
        index = ledger.append_prune(_event(ledger, prune, info.checkpoint_size), prune)
        ledger.checkpoint()  # sign the record before a single body goes
        log.info(
            "pruned entries %d..%d (rules %s) recorded at %d; archive %s",
            first,
            below - 1,
            prune.rule,
            index,
            info.path,
        )
        return PruneStep(first, below, counts, index, info)
