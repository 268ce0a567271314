"""Index upkeep against real ledgers: incremental, crash-safe, one indexer, replaced ledgers."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from proctor.errors import StorageError, UsageError
from proctor.events.canonical import decode_event
from proctor.ledger.appender import AppenderConfig
from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer
from proctor.search.index import (
    INDEX_NAME,
    LOCK_NAME,
    IndexConfig,
    Indexer,
    IndexMismatchError,
    SearchIndex,
    catch_up,
)
from proctor.search.query import parse
from proctor.search.search import matching_indexes, search
from tests.search import oracle
from tests.search.conftest import NOW_NS, append, make_events, new_ledger

ROOT = Path(__file__).resolve().parents[2]
SMALL = IndexConfig(batch=16)


def _all(directory: Path) -> list[int]:
    with Ledger(directory) as lg, SearchIndex(lg) as index:
        return list(matching_indexes(index, ""))


def _rows(directory: Path) -> tuple[int, int]:
    """(event rows, high-water mark) as stored in the index file."""
    db = sqlite3.connect(directory / INDEX_NAME)
    try:
        rows = db.execute("SELECT count(*) FROM events").fetchone()[0]
        hwm = db.execute("SELECT value FROM meta WHERE key = 'indexed'").fetchone()[0]
    finally:
        db.close()
    return int(rows), int(hwm)


def _check_against_oracle(directory: Path, query: str) -> None:
    with Ledger(directory) as lg, SearchIndex(lg) as index:
        stored = [(i, decode_event(b)) for i, b in lg.entries()]
        node = parse(query)
        want = [i for i, e in stored if oracle.matches(node, i, e, NOW_NS)]
        assert list(matching_indexes(index, query, now_ns=NOW_NS)) == want


def test_catch_up_is_incremental(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    events = make_events(150, seed=1)
    append(d, signer, events[:100])
    with Ledger(d) as lg:
        first = catch_up(lg, config=SMALL)
        assert (first.added, first.indexed, first.ledger_size) == (100, 100, 100)
        assert first.skipped is None and first.unreadable == 0
        again = catch_up(lg, config=SMALL)
        assert (again.added, again.indexed) == (0, 100)
    append(d, signer, events[100:])
    done = catch_up(d, config=SMALL)
    assert (done.added, done.indexed) == (50, 150)
    assert _all(d) == list(range(150))
    assert _rows(d) == (150, 150)
    _check_against_oracle(d, "actor:alice decision:deny OR drop since:2d")


def test_an_empty_ledger_indexes_to_nothing(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    new_ledger(d)
    assert catch_up(d).indexed == 0
    with Ledger(d) as lg, SearchIndex(lg) as index:
        page = search(index, "actor:alice")
        assert page.items == () and page.next_after is None and page.indexed == 0


def test_no_index_yet_is_a_usage_error(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    new_ledger(d)
    with Ledger(d) as lg, pytest.raises(UsageError, match=r"no search index for .* yet"):
        SearchIndex(lg)


_CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from proctor.search.index import IndexConfig, catch_up

    batches = 0
    def progress(done: int, total: int) -> None:
        global batches
        batches += 1
        if batches == 3:  # three batches committed: die before the fourth
            os.kill(os.getpid(), signal.SIGKILL)
    catch_up(Path(sys.argv[1]), config=IndexConfig(batch=16), progress=progress)
    """
)


def test_a_crash_leaves_rows_and_high_water_mark_together(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    append(d, signer, make_events(200, seed=2))
    res = subprocess.run(
        [sys.executable, "-c", _CRASH, str(d)], cwd=ROOT, capture_output=True, check=False
    )
    assert res.returncode == -signal.SIGKILL, res.stderr
    rows, hwm = _rows(d)
    assert (rows, hwm) == (48, 48)  # three batches of 16, nothing of the fourth
    assert catch_up(d, config=SMALL).added == 152
    assert _all(d) == list(range(200))
    _check_against_oracle(d, "role:dba -status:error")


_HOLD = textwrap.dedent(
    """
    import fcntl, sys, time
    f = open(sys.argv[1], "a+")
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_while_another_process_indexes_this_one_only_queries(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    events = make_events(120, seed=3)
    append(d, signer, events[:80])
    catch_up(d)
    append(d, signer, events[80:])
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(d / LOCK_NAME)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with Ledger(d) as lg:
            status = catch_up(lg)
            assert status.skipped == "another process is indexing"
            assert (status.added, status.indexed, status.ledger_size) == (0, 80, 120)
            indexer, why = Indexer.acquire(lg)
            assert indexer is None and why == "another process is indexing"
            with pytest.raises(UsageError, match=r"cannot rebuild .*another process is indexing"):
                catch_up(lg, rebuild=True)
            with SearchIndex(lg) as index:  # queries what is indexed
                page = search(index, "", limit=1000)
                assert [i for i, _ in page.items] == list(range(79, -1, -1))
                assert page.indexed == 80
    finally:
        holder.kill()
        holder.wait()
    assert catch_up(d).added == 40  # the lock is free again


def test_one_indexer_per_ledger_even_in_one_process(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    new_ledger(d)
    with Ledger(d) as lg:
        first, _ = Indexer.acquire(lg)
        assert first is not None
        with first:
            second, why = Indexer.acquire(lg)
            assert second is None and why == "another process is indexing"
        third, _ = Indexer.acquire(lg)
        assert third is not None
        third.close()


def _replace_ledger(d: Path, signer: Signer, n: int, seed: int) -> None:
    """Put a different ledger (same key) where the old one was."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{d / 'ledger.sqlite'}{suffix}").unlink(missing_ok=True)
    for name in ("verifier.vkey",):
        (d / name).unlink()
    Ledger.init(d, signer)
    append(d, signer, make_events(n, seed=seed))


def test_a_shorter_ledger_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    append(d, signer, make_events(60, seed=4))
    catch_up(d)
    _replace_ledger(d, signer, 30, seed=4)
    message = "covers 60 entries but the ledger has 30: the ledger was replaced or truncated"
    with pytest.raises(IndexMismatchError, match=message):
        catch_up(d)
    with Ledger(d) as lg, pytest.raises(IndexMismatchError, match="rebuild it with"):
        SearchIndex(lg)
    assert catch_up(d, rebuild=True).added == 30
    assert _all(d) == list(range(30))


def test_a_rewritten_ledger_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    append(d, signer, make_events(60, seed=5))
    catch_up(d)
    _replace_ledger(d, signer, 90, seed=6)  # longer, same key, other entries
    with pytest.raises(IndexMismatchError, match="ledger entry 59 is not the one"):
        catch_up(d)
    assert catch_up(d, rebuild=True).added == 90
    _check_against_oracle(d, "kind:query OR risk>=80")


def test_another_ledgers_index_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    sa = new_ledger(a)
    new_ledger(b)
    append(a, sa, make_events(10))
    catch_up(a)
    catch_up(b)
    (a / INDEX_NAME).replace(b / INDEX_NAME)
    with pytest.raises(IndexMismatchError, match="was built from another ledger"):
        catch_up(b)


def test_unreadable_entries_are_recorded_not_skipped_silently(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    events = make_events(20, seed=8)
    append(d, signer, events[:10])
    with Ledger(d, signer=signer, config=AppenderConfig(checkpoint_interval_ms=0)) as lg:
        lg.append_raw([b"not json", b'{"n": 1}'])
    append(d, signer, events[10:])
    status = catch_up(d)
    assert (status.added, status.unreadable, status.indexed) == (20, 2, 22)
    with Ledger(d) as lg, SearchIndex(lg) as index:
        bad = index.unreadable()
        assert [i for i, _ in bad] == [10, 11]
        assert "JSON" in bad[0][1] or "json" in bad[0][1]
        assert 10 not in list(matching_indexes(index, ""))


def test_gaps_in_a_damaged_ledger_are_passed_over(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    append(d, signer, make_events(30, seed=9))
    db = sqlite3.connect(d / "ledger.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER entries_append_only_d")
    db.execute("DELETE FROM entries WHERE idx = 7")
    db.close()
    assert catch_up(d, config=SMALL).indexed == 30
    assert _all(d) == [i for i in range(30) if i != 7]


def test_queries_see_a_consistent_index_while_it_grows(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    events = make_events(100, seed=10)
    append(d, signer, events[:50])
    catch_up(d)
    with Ledger(d) as lg, SearchIndex(lg) as index:
        assert index.indexed() == 50
        append(d, signer, events[50:])
        catch_up(d, config=SMALL)
        assert index.indexed() == 100  # an open reader sees new commits
        assert list(matching_indexes(index, "")) == list(range(100))


def test_the_index_file_is_opened_read_only_for_queries(tmp_path: Path) -> None:
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    append(d, signer, make_events(10))
    catch_up(d)
    with Ledger(d) as lg, SearchIndex(lg) as index:
        with pytest.raises(StorageError, match=r"readonly|read-only"):
            index.query("DELETE FROM events")
        assert index.indexed() == 10


def test_without_a_lock_file_the_index_is_searched_not_indexed(tmp_path: Path) -> None:
    # what a read-only ledger directory does (a directory where the lock file should be
    # stands in for it: root ignores permissions)
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    events = make_events(20)
    append(d, signer, events[:10])
    catch_up(d)
    append(d, signer, events[10:])
    (d / LOCK_NAME).unlink()
    (d / LOCK_NAME).mkdir()
    status = catch_up(d)
    assert status.skipped is not None and status.skipped.startswith("cannot create")
    assert (status.added, status.indexed, status.ledger_size) == (0, 10, 20)


def test_indexing_speed_is_reported_sensibly(tmp_path: Path) -> None:
    # not a benchmark (bench/bench_search.py is): a guard against an accidental O(n^2)
    d = tmp_path / "ledger"
    signer = new_ledger(d)
    append(d, signer, make_events(3000, seed=11))
    start = time.perf_counter()
    assert catch_up(d).added == 3000
    assert time.perf_counter() - start < 20
