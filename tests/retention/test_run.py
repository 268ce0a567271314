"""run_retention end to end: archive, record, sweep; verification, proofs and reads after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proctor.errors import PrunedError
from proctor.events import decode_event
from proctor.events.ids import now_ns
from proctor.ledger.ledger import DB_NAME, Ledger
from proctor.ledger.note import Signer
from proctor.ledger.receipt import Receipt, verify_receipt
from proctor.ledger.store import SqliteStore
from proctor.ledger.verify import Report, verify_ledger
from proctor.retention.archive import verify_archive
from proctor.retention.holds import BuiltinMatcher, HoldStore, place_hold, release_hold
from proctor.retention.run import RetentionLimits, RetentionResult, run_retention
from tests.retention.conftest import DAY, OTHER_SESSION, RULES, event, fill

ROOT = Path(__file__).resolve().parents[2]
MODES = [{"workers": 1}, {"workers": 2, "parallel_from": 0}]


def _run(d: Path, signer: Signer, holds: HoldStore, **kw: object) -> RetentionResult:
    with Ledger(d, signer=signer) as lg:
        return run_retention(
            lg,
            RULES,
            holds,
            BuiltinMatcher(lg),
            d.parent / "archive",
            now_ns(),
            **kw,  # type: ignore[arg-type]
        )


def _verify(d: Path, signer: Signer, **mode: int) -> Report:
    store = SqliteStore(d / DB_NAME, readonly=True)
    try:
        return verify_ledger(store, [signer.verifier], signer.name, **mode)
    finally:
        store.close()


def _ledger(d: Path, signer: Signer) -> None:
    # 0..299 old queries (expired), 300 an old session.start (kept 7 years), then recent ones.
    events = [event("query", age_days=500) for _ in range(300)]
    events += [event("session.start", age_days=500)]
    events += [event("query", age_days=500) for _ in range(20)]
    events += [event("query", age_days=1) for _ in range(10)]
    fill(d, signer, events)


@pytest.mark.parametrize("mode", MODES, ids=["one process", "two processes"])
def test_prune_archives_records_and_verifies(
    ledger_dir: Path, signer: Signer, holds: HoldStore, mode: dict[str, int]
) -> None:
    _ledger(ledger_dir, signer)
    with Ledger(ledger_dir) as lg:
        early = lg.prove(5)  # a receipt issued before the prune
        entry5 = lg.entry(5)
    result = _run(ledger_dir, signer, holds)
    assert (result.floor_before, result.floor_after) == (0, 300)
    assert result.stop is not None and result.stop.index == 300
    assert "kind session.start kept 2555 days (rule sessions-7y)" in str(result.stop)
    [step] = result.steps
    assert (step.first, step.below, step.rules) == (0, 300, {"queries-400d": 300})
    assert result.swept == 300
    assert step.event_index == 331 and step.archive is not None

    report = _verify(ledger_dir, signer, **mode)
    assert report, report.findings
    assert report.pruned == 300 and report.entries == 332 - 300
    [info] = [f for f in report.findings if f.kind == "pruned"]
    assert (info.first, info.last, info.is_failure) == (0, 299, False)
    assert "pruned by retention rule queries-400d at index 331" in info.detail
    assert "archive-0-300.zip" in info.detail

    with Ledger(ledger_dir) as lg:
        # The record: a retention.pruned event naming the range, rule and archive.
        ev = decode_event(lg.entry(331))
        assert ev.kind == "retention.pruned"
        assert ev.attributes["retention.below_index"] == "300"
        assert ev.attributes["retention.first_index"] == "0"
        assert ev.attributes["retention.archive"] == "archive-0-300.zip"
        assert ev.attributes["retention.archive_sha256"] == step.archive.sha256
        # Pruned entries are not readable, and say where they went.
        with pytest.raises(
            PrunedError,
            match=r"entry 5 was pruned by retention \(rule "
            r"queries-400d, recorded at index 331\); see archive archive-0-300",
        ):
            lg.entry(5)
        assert next(iter(lg.entries()))[0] == 300
        # Receipts: one issued before the prune, a new one for a retained entry, and a new one
        # for a pruned entry (its leaf hash is kept) all verify.
        verify_receipt(Receipt.parse(early.text()), entry5, [signer.verifier])
        verify_receipt(lg.prove(310), lg.entry(310), [signer.verifier])
        verify_receipt(lg.prove(5), entry5, [signer.verifier])
    assert verify_archive(step.archive.path, signer.verifier)


def test_nothing_expired_nothing_pruned(ledger_dir: Path, signer: Signer, holds: HoldStore) -> None:
    fill(ledger_dir, signer, [event("query", age_days=1), event("session.end", age_days=9999)])
    result = _run(ledger_dir, signer, holds)
    assert result.steps == [] and result.floor_after == 0
    assert result.stop is not None and "rule queries-400d" in str(result.stop)


def test_unmatched_kind_is_kept_forever(ledger_dir: Path, signer: Signer, holds: HoldStore) -> None:
    fill(ledger_dir, signer, [event("query", age_days=900), event("auth.failed", age_days=900)])
    result = _run(ledger_dir, signer, holds)
    assert result.floor_after == 1
    assert result.stop is not None
    assert str(result.stop) == (
        "stopped at index 1: no rule matches kind auth.failed (sensitivity none): kept forever"
    )


def test_dry_run_changes_nothing(ledger_dir: Path, signer: Signer, holds: HoldStore) -> None:
    _ledger(ledger_dir, signer)
    before = (ledger_dir / DB_NAME).read_bytes()
    with Ledger(ledger_dir) as lg:  # read-only is enough
        result = run_retention(
            lg, RULES, holds, BuiltinMatcher(lg), ledger_dir / "a", now_ns(), dry_run=True
        )
    assert [(s.first, s.below) for s in result.steps] == [(0, 300)]
    assert result.floor_after == 300 and result.swept == 0
    assert (ledger_dir / DB_NAME).read_bytes() == before
    assert not (ledger_dir / "a").exists()


def test_a_hold_stops_the_floor_and_its_release_lets_it_move(
    ledger_dir: Path, signer: Signer, holds: HoldStore
) -> None:
    events = [event("query", age_days=500) for _ in range(100)]
    events[40] = event("query", age_days=500, session=OTHER_SESSION)
    fill(ledger_dir, signer, events)
    with Ledger(ledger_dir, signer=signer) as lg:
        hold = place_hold(lg, holds, "ACME-42", f"session:{OTHER_SESSION}", "litigation", "legal")
        assert hold.placed_index == 100
        placed = decode_event(lg.entry(100))
        assert placed.kind == "decision" and placed.decision is not None
        assert placed.decision.effect == "deny"
        assert placed.attributes["hold.case_id"] == "ACME-42"
    result = _run(ledger_dir, signer, holds)
    assert result.floor_after == 40
    assert result.stop is not None
    assert str(result.stop) == "stopped at index 40: held by case ACME-42 (litigation)"

    with Ledger(ledger_dir, signer=signer) as lg:
        released = release_hold(lg, holds, "ACME-42", "case closed", "legal")
        assert released.released is not None
        assert (
            decode_event(lg.entry(released.released.ledger_index or 0)).attributes["hold.action"]
            == "release"
        )
    result = _run(ledger_dir, signer, holds, limits=RetentionLimits(1000, 10))
    # 40..99 expire; 100 (the hold's own decision event) is recent: kept 400 days.
    assert result.floor_after == 100
    assert [(s.first, s.below) for s in result.steps] == [(40, 100)]
    assert _verify(ledger_dir, signer, workers=1)


def test_each_run_continues_from_the_floor_in_bounded_archives(
    ledger_dir: Path, signer: Signer, holds: HoldStore
) -> None:
    fill(ledger_dir, signer, [event("query", age_days=500) for _ in range(250)])
    result = _run(ledger_dir, signer, holds, limits=RetentionLimits(100, 2))
    assert [(s.first, s.below) for s in result.steps] == [(0, 100), (100, 200)]
    assert result.stop is not None and result.stop.kind == "limit"
    result = _run(ledger_dir, signer, holds, limits=RetentionLimits(100, 5))
    # 200..249 and then the two prune events of the first run (recent): kept.
    assert [(s.first, s.below) for s in result.steps] == [(200, 250)]
    report = _verify(ledger_dir, signer, workers=1)
    assert report, report.findings
    pruned = [(f.first, f.last) for f in report.findings if f.kind == "pruned"]
    assert pruned == [(0, 99), (100, 199), (200, 249)]


def test_a_later_prune_may_prune_an_earlier_prune_event(
    ledger_dir: Path, signer: Signer, holds: HoldStore
) -> None:
    fill(ledger_dir, signer, [event("query", age_days=500) for _ in range(10)])
    _run(ledger_dir, signer, holds)  # prunes 0..9, its event at 10
    with Ledger(ledger_dir, signer=signer) as lg:
        lg.append_many([event("query", age_days=500) for _ in range(5)])
        later = [
            # A year from now the first prune event (10) has expired too (a 'retention.*' rule).
            run_retention(
                lg,
                (
                    *RULES,
                    RULES[1].__class__(name="retention-1y", kinds=("retention.*",), keep_days=365),
                ),
                holds,
                BuiltinMatcher(lg),
                ledger_dir.parent / "archive",
                now_ns() + 400 * DAY,
            )
        ]
    assert later[0].floor_after == 16
    report = _verify(ledger_dir, signer, workers=1)
    assert report, report.findings
    details = [f.detail for f in report.findings if f.kind == "pruned"]
    assert "that event is pruned too, by a later prune" in details[0]


CRASH_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from proctor.events.ids import now_ns
    from proctor.ledger.ledger import Ledger
    from proctor.ledger.note import Signer
    from proctor.retention.holds import BuiltinMatcher, HoldStore
    from proctor.retention.run import run_retention
    from tests.retention.conftest import RULES

    d, skey = Path(sys.argv[1]), sys.argv[2]
    # The hook point: the prune is recorded and signed, not one body is deleted yet.
    Ledger.sweep_pruned = lambda self, *a: (
        0 if self.floor() == 0 else os.kill(os.getpid(), signal.SIGKILL)
    )
    lg = Ledger(d, signer=Signer.from_skey(skey))
    run_retention(lg, RULES, HoldStore(d / "holds.sqlite"), BuiltinMatcher(lg),
                  d.parent / "archive", now_ns())
    """
)


def test_a_crash_between_record_and_delete_is_completed_by_the_next_run(
    ledger_dir: Path, signer: Signer, holds: HoldStore
) -> None:
    fill(ledger_dir, signer, [event("query", age_days=500) for _ in range(50)])
    child = subprocess.run(
        [sys.executable, "-c", CRASH_CHILD, str(ledger_dir), signer.skey],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    with Ledger(ledger_dir) as lg:
        assert lg.floor() == 50
        with pytest.raises(PrunedError):
            lg.entry(3)  # readers treat it as pruned already
    store = SqliteStore(ledger_dir / DB_NAME, readonly=True)
    assert store.rows_below_floor() == 50
    store.close()
    report = _verify(ledger_dir, signer, workers=1)
    assert report, report.findings
    assert "50 bodies below the floor are still stored" in report.findings[-1].detail

    result = _run(ledger_dir, signer, holds)
    assert result.swept == 50 and result.steps == []
    store = SqliteStore(ledger_dir / DB_NAME, readonly=True)
    assert store.rows_below_floor() == 0
    store.close()
    assert _verify(ledger_dir, signer, workers=1)
    assert os.path.exists(ledger_dir.parent / "archive" / "archive-0-50.zip")
