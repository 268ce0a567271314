"""Retention prunes at the ledger level: the floor, its triggers, reads, and verification.

A pruned ledger verifies (the stored leaf hashes stand for the pruned entries, an informational
``pruned`` finding says so), and every way of hiding entries behind the floor is a failure:
rows deleted above it, a floor moved without its event or with another range's event, the
pruned range's tiles removed or changed. Every verification runs in one process and with a
worker process too, like the tamper suite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from proctor.errors import PrunedError, StorageError
from proctor.events import Action, Actor, Clock, Event, format_time, new_event_id, now_ns
from proctor.ledger.appender import AppenderConfig
from proctor.ledger.ledger import DB_NAME, Ledger
from proctor.ledger.merkle import leaf_hash
from proctor.ledger.note import Signer
from proctor.ledger.receipt import verify_receipt
from proctor.ledger.store import Prune, SqliteStore
from proctor.ledger.verify import Report, verify_ledger
from proctor.ledger.verify_prunes import prune_attributes
from tests.ledger.conftest import ORIGIN, entry, tamper

N = 1000
FLOOR = 600  # inside level-0 tile 2 (512..767): a tile half pruned, half kept
EVENT = N  # the prune event's index
MODES: dict[str, dict[str, int]] = {
    "one process": {"workers": 1},
    "two processes": {"workers": 2, "parallel_from": 0},
}
Verify = Callable[[Path], Report]


def prune_event(prune: Prune) -> Event:
    return Event(
        id=new_event_id(),
        kind="retention.pruned",
        time=format_time(now_ns()),
        clock=Clock(source="system"),
        actor=Actor(id="proctor-retention", kind="service"),
        action=Action(class_="admin", operation="retention.prune"),
        attributes=prune_attributes(prune),
    )


def _prune(below: int, first: int = 0) -> Prune:
    return Prune(
        below=below,
        first=first,
        event_index=-1,
        rule="test-400d",
        archive=f"archive-{first}-{below}.zip",
        archive_sha256="ab" * 32,
        created_ns=1,
    )


@pytest.fixture
def ledger(tmp_path: Path, signer: Signer) -> Path:
    """A ledger of N raw entries, pruned below FLOOR, its event at N, signed and swept."""
    d = tmp_path / "l"
    Ledger.init(d, signer)
    config = AppenderConfig(checkpoint_every=100, checkpoint_interval_ms=0)
    with Ledger(d, signer=signer, config=config) as lg:
        for i in range(0, N, 100):
            lg.append_raw([entry(k) for k in range(i, i + 100)])
        lg.checkpoint()
        assert lg.append_prune(prune_event(_prune(FLOOR)), _prune(FLOOR)) == EVENT
        lg.checkpoint()
        assert lg.sweep_pruned(max_rows=250) == FLOOR
    return d


@pytest.fixture(params=list(MODES))
def verify(request: pytest.FixtureRequest, signer: Signer) -> Verify:
    options = MODES[request.param]

    def run(d: Path) -> Report:
        store = SqliteStore(d / DB_NAME, readonly=True)
        try:
            return verify_ledger(store, [signer.verifier], ORIGIN, **options)
        finally:
            store.close()

    return run


def _failures(report: Report) -> list[tuple[str, int | None, int | None]]:
    return [(f.kind, f.first, f.last) for f in report.findings if f.is_failure]


def test_a_pruned_ledger_verifies_and_says_what_was_pruned(verify: Verify, ledger: Path) -> None:
    report = verify(ledger)
    assert report, report.findings
    assert (report.entries, report.pruned, report.verified_size) == (N + 1 - FLOOR, FLOOR, N + 1)
    [f] = report.findings
    assert (f.kind, f.first, f.last, f.is_failure) == ("pruned", 0, FLOOR - 1, False)
    assert f.detail.startswith(
        f"entries 0–{FLOOR - 1} pruned by retention rule test-400d at index {EVENT} "
        f"(archive archive-0-{FLOOR}.zip"
    )


def test_reads_below_the_floor_say_where_the_entry_went(ledger: Path, signer: Signer) -> None:
    with Ledger(ledger) as lg:
        assert lg.floor() == FLOOR
        with pytest.raises(PrunedError) as caught:
            lg.entry(7)
        assert str(caught.value) == (
            "entry 7 was pruned by retention (rule test-400d, recorded at index 1000); "
            "see archive archive-0-600.zip"
        )
        assert caught.value.archive == "archive-0-600.zip"
        assert [i for i, _ in lg.entries(0, FLOOR + 2)] == [FLOOR, FLOOR + 1]
        # Proofs need only leaf hashes: a pruned entry's still verifies with its bytes.
        verify_receipt(lg.prove(7), entry(7), [signer.verifier])
        verify_receipt(lg.prove(800), lg.entry(800), [signer.verifier])


def test_the_floor_lets_through_only_deletes_below_it(ledger: Path) -> None:
    db = sqlite3.connect(ledger / DB_NAME, isolation_level=None)
    try:
        for sql in (
            f"DELETE FROM entries WHERE idx = {FLOOR}",
            "DELETE FROM entries",
            "UPDATE entries SET data = x'00' WHERE idx = 900",
            "UPDATE prunes SET below = 900",
            "DELETE FROM prunes",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(sql)
        bad = (
            (900, 0, EVENT),  # does not start at the floor
            (FLOOR + 10, FLOOR, FLOOR + 5),  # its event would be pruned by it
            (FLOOR + 10, FLOOR, N + 50),  # no such event
        )
        for below, first, event in bad:
            with pytest.raises(sqlite3.IntegrityError, match="must start at the floor"):
                db.execute(
                    "INSERT INTO prunes VALUES (?, ?, ?, 'r', 'a', 'h', 1)", (below, first, event)
                )
    finally:
        db.close()


def test_a_prune_is_refused_alone_and_fails_nobody_else(tmp_path: Path, signer: Signer) -> None:
    d = tmp_path / "l"
    Ledger.init(d, signer)
    with Ledger(d, signer=signer) as lg:
        lg.append_raw([entry(k) for k in range(10)])
        bad = _prune(5, first=2)  # the floor is 0
        with pytest.raises(StorageError, match="must start at the floor"):
            lg.append_prune(prune_event(bad), bad)
        assert lg.size() == 10 and lg.floor() == 0
        assert lg.append_raw([entry(10)]) == 10
    store = SqliteStore(d / DB_NAME)
    with pytest.raises(StorageError, match="not in this batch"):
        store.append(11, [entry(11)], {}, _prune(5))
    store.close()


def test_rows_deleted_above_the_floor_are_missing(verify: Verify, ledger: Path) -> None:
    tamper(ledger / DB_NAME)("DELETE FROM entries WHERE idx >= 700 AND idx < 710")
    report = verify(ledger)
    assert ("missing-entry", 700, 709) in _failures(report)


def test_a_floor_moved_without_a_prune_event_is_a_failure(verify: Verify, ledger: Path) -> None:
    run = tamper(ledger / DB_NAME)
    run("INSERT INTO prunes VALUES (800, ?, 900, 'r', 'archive-x.zip', 'cd', 1)", (FLOOR,))
    run("DELETE FROM entries WHERE idx < 800")
    report = verify(ledger)
    assert not report
    [(kind, first, last)] = [k for k in _failures(report) if k[0] != "root-mismatch"]
    assert (kind, first, last) == ("unrecorded-prune", FLOOR, 799)
    assert "the entry at index 900 is not an event" in report.findings[-1].detail


def test_a_floor_whose_event_names_another_range_is_a_failure(verify: Verify, ledger: Path) -> None:
    run = tamper(ledger / DB_NAME)
    run("DELETE FROM prunes")
    run(
        "INSERT INTO prunes VALUES (800, 0, ?, 'test-400d', 'archive-0-600.zip', ?, 1)",
        (EVENT, "ab" * 32),
    )
    run("DELETE FROM entries WHERE idx < 800")
    report = verify(ledger)
    assert ("unrecorded-prune", 0, 799) in _failures(report)
    assert "records another prune: retention.below_index '600' (the floor says '800')" in (
        report.findings[-1].detail
    )


def test_a_lowered_floor_shows_the_pruned_entries_missing(verify: Verify, ledger: Path) -> None:
    tamper(ledger / DB_NAME)("DELETE FROM prunes")
    assert ("missing-entry", 0, FLOOR - 1) in _failures(verify(ledger))


def test_an_unsigned_prune_event_is_a_failure(verify: Verify, ledger: Path) -> None:
    tamper(ledger / DB_NAME)(f"DELETE FROM checkpoints WHERE size > {EVENT}")
    report = verify(ledger)
    assert ("unrecorded-prune", 0, FLOOR - 1) in _failures(report)
    assert "not covered by a signed checkpoint" in report.findings[-1].detail


def test_removed_pruned_tiles_are_a_failure(verify: Verify, ledger: Path) -> None:
    tamper(ledger / DB_NAME)("DELETE FROM tiles WHERE level = 0 AND idx = 1")
    failures = _failures(verify(ledger))
    assert ("damaged-tiles", 256, 511) in failures
    assert any(k == "root-mismatch" for k, _, _ in failures)


def test_changed_pruned_leaf_hashes_are_a_failure(verify: Verify, ledger: Path) -> None:
    db = sqlite3.connect(ledger / DB_NAME)
    tile = bytearray(db.execute("SELECT data FROM tiles WHERE level = 0 AND idx = 0").fetchone()[0])
    db.close()
    assert tile[:32] == leaf_hash(entry(0))
    tile[0] ^= 1
    tamper(ledger / DB_NAME)(
        "UPDATE tiles SET data = ? WHERE level = 0 AND idx = 0", (bytes(tile),)
    )
    failures = _failures(verify(ledger))
    assert any(k == "root-mismatch" for k, _, _ in failures)
    assert any(k == "damaged-tiles" for k, _, _ in failures)


def test_old_ledgers_get_the_prune_aware_delete_trigger(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);"
        "CREATE TRIGGER entries_append_only_d BEFORE DELETE ON entries "
        "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;"
    )
    db.close()
    reader = SqliteStore(path, readonly=True)
    assert reader.floor() == 0 and reader.prunes() == []  # no prunes table yet: none
    reader.close()
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    sql = db.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'entries_append_only_d'"
    ).fetchone()[0]
    db.close()
    assert "prunes" in sql


def test_a_prune_event_submitted_from_outside_does_not_count(
    verify: Verify, tmp_path: Path, signer: Signer
) -> None:
    d = tmp_path / "l"
    Ledger.init(d, signer)
    prune = _prune(5)
    pushed = prune_event(prune)
    pushed = Event(
        id=pushed.id,
        kind=pushed.kind,
        time=pushed.time,
        clock=pushed.clock,
        attributes={**pushed.attributes, "proctor.submitted_by": "token:ingest"},
    )
    with Ledger(d, signer=signer) as lg:
        lg.append_raw([entry(k) for k in range(10)])
        lg.append_prune(pushed, prune)
        lg.checkpoint()
        lg.sweep_pruned()
    report = verify(d)
    assert ("unrecorded-prune", 0, 4) in _failures(report)
    assert "submitted from outside" in report.findings[-1].detail
