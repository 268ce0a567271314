"""Appender: group commit from threads and asyncio, durability, back-pressure, checkpoints."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from proctor.errors import StorageError, VerificationError
from proctor.ledger.appender import Appender, AppenderConfig
from proctor.ledger.checkpoint import open_checkpoint
from proctor.ledger.merkle import leaf_hash, mth
from proctor.ledger.note import Signer
from proctor.ledger.store import SqliteStore
from tests.ledger.conftest import ORIGIN, entry, tamper


def _appender(path: Path, signer: Signer, **cfg: int | float) -> Appender:
    store = SqliteStore(path)
    if store.get_meta("origin") is None:
        store.init_meta({"origin": ORIGIN, "vkey": signer.verifier.vkey})
    return Appender(store, signer, ORIGIN, AppenderConfig(**cfg))  # type: ignore[arg-type]


def test_threads_and_tasks_get_distinct_indexes_for_exact_bytes(
    tmp_path: Path, signer: Signer
) -> None:
    app = _appender(tmp_path / "l.sqlite", signer, checkpoint_interval_ms=0)
    got: dict[int, bytes] = {}
    lock = threading.Lock()

    def producer(p: int) -> None:
        for k in range(200):
            data = b"thread-%d-%d" % (p, k)
            idx = app.append(data)
            with lock:
                got[idx] = data

    async def tasks() -> None:
        async def one(p: int) -> None:
            for k in range(100):
                data = b"task-%d-%d" % (p, k)
                got[await app.append_async(data)] = data

        await asyncio.gather(*(one(p) for p in range(16)))

    threads = [threading.Thread(target=producer, args=(p,)) for p in range(8)]
    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join()
    assert sorted(got) == list(range(8 * 200 + 16 * 100))
    note = app.checkpoint()
    app.close()
    store = SqliteStore(tmp_path / "l.sqlite", readonly=True)
    stored = dict(store.entries())
    assert stored == got
    cp = open_checkpoint(note, [signer.verifier], ORIGIN)
    assert cp.size == len(got)
    assert cp.root == mth([leaf_hash(stored[i]) for i in range(len(got))])


def test_append_many_is_contiguous(tmp_path: Path, signer: Signer) -> None:
    app = _appender(tmp_path / "l.sqlite", signer)
    assert app.append_many([b"a", b"b", b"c"]) == 0
    assert app.append(b"d") == 3
    with pytest.raises(ValueError, match="nothing to append"):
        app.append_many([])
    app.close()


def test_checkpoints_by_count_time_and_on_demand_all_kept(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "l.sqlite"
    app = _appender(path, signer, checkpoint_every=10, checkpoint_interval_ms=50)
    for i in range(25):
        app.append(entry(i))
    deadline = time.monotonic() + 5
    reader = SqliteStore(path, readonly=True)
    while (latest := reader.latest_checkpoint()) is None or latest.size < 25:
        assert time.monotonic() < deadline, "no checkpoint by time"
        time.sleep(0.01)
    app.append(entry(25))
    note = app.checkpoint()
    app.close()
    sizes = [c.size for c in reader.checkpoints()]
    assert 25 in sizes and 26 in sizes
    assert any(s < 25 for s in sizes)  # the count trigger fired before the timer
    assert sizes == sorted(set(sizes))
    assert open_checkpoint(note, [signer.verifier], ORIGIN).size == 26


def test_reopen_continues_the_same_tree(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "l.sqlite"
    data = [entry(i) for i in range(700)]
    for chunk in (data[:300], data[300:555], data[555:]):
        app = _appender(path, signer)
        app.append_many(chunk)
        app.close()
    app = _appender(path, signer)
    cp = open_checkpoint(app.checkpoint(), [signer.verifier], ORIGIN)
    app.close()
    assert cp.size == 700
    assert cp.root == mth([leaf_hash(d) for d in data])


def test_back_pressure_blocks_then_fails_without_dropping(tmp_path: Path, signer: Signer) -> None:
    app = _appender(tmp_path / "l.sqlite", signer, queue_size=1, enqueue_timeout_s=0.2)
    # Hold the writer inside a batch by holding the store's connection busy.
    blocker = SqliteStore(tmp_path / "l.sqlite")
    blocker._db.execute("BEGIN IMMEDIATE")
    futures = [app.submit([b"first"])]
    time.sleep(0.1)  # the writer took "first" and waits for the database lock
    futures.append(app.submit([b"second"]))  # fills the queue
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="queue stayed full"):
        app.submit([b"third"])
    assert time.monotonic() - t0 >= 0.19
    blocker._db.execute("COMMIT")
    assert [f.result(timeout=10) for f in futures] == [0, 1]
    app.close()
    assert [d for _, d in SqliteStore(tmp_path / "l.sqlite").entries()] == [b"first", b"second"]


def test_refuses_to_sign_over_damaged_tiles_and_stops(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "l.sqlite"
    app = _appender(path, signer, checkpoint_interval_ms=0)
    app.append_many([entry(i) for i in range(300)])
    app.checkpoint()
    # The level-1 tile holds the hash of leaves 0..255; appending one leaf does not rewrite it.
    tamper(path)("UPDATE tiles SET data = ? WHERE level = 1 AND idx = 0", (b"\x00" * 32,))
    app.append(b"more")
    with pytest.raises(VerificationError, match="refusing to sign size 301"):
        app.checkpoint()
    with pytest.raises(VerificationError, match="refusing to sign"):
        app.append(b"after the failure")
    app.close()


def test_closed_appender_refuses(tmp_path: Path, signer: Signer) -> None:
    app = _appender(tmp_path / "l.sqlite", signer)
    app.close()
    with pytest.raises(StorageError, match="closed"):
        app.append(b"x")


def test_refuses_a_ledger_shorter_than_its_checkpoint(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "l.sqlite"
    app = _appender(path, signer)
    app.append_many([entry(i) for i in range(10)])
    app.close()
    tamper(path)("DELETE FROM entries WHERE idx >= 5")
    with pytest.raises(StorageError, match="entries were removed"):
        _appender(path, signer)


def test_cancelled_task_does_not_break_the_batch(tmp_path: Path, signer: Signer) -> None:
    app = _appender(tmp_path / "l.sqlite", signer)

    async def run() -> list[int]:
        doomed = asyncio.create_task(app.append_async(b"cancelled waiter"))
        await asyncio.sleep(0)  # the entry is queued; only its waiter goes away
        doomed.cancel()
        return list(await asyncio.gather(*(app.append_async(b"x%d" % i) for i in range(50))))

    got = asyncio.run(run())
    app.close()
    stored = [d for _, d in SqliteStore(tmp_path / "l.sqlite").entries()]
    assert b"cancelled waiter" in stored  # queued entries are never silently dropped
    assert sorted(got) == sorted(i for i, d in enumerate(stored) if d != b"cancelled waiter")


def test_async_producer_sees_a_closed_appender(tmp_path: Path, signer: Signer) -> None:
    app = _appender(tmp_path / "l.sqlite", signer)
    app.close()
    with pytest.raises(StorageError, match="closed"):
        asyncio.run(app.append_async(b"late"))


def test_an_unexpected_error_in_the_store_fails_the_batch_and_stops(
    tmp_path: Path, signer: Signer
) -> None:
    class Broken(SqliteStore):
        """A store with a bug: its append raises something that is not a StorageError."""

        def append(self, start: int, entries: Any, tiles: Any, prune: Any = None) -> None:
            super().append(start, entries, tiles, prune)
            raise RuntimeError("a bug after the commit")

    store = Broken(tmp_path / "l.sqlite")
    store.init_meta({"origin": ORIGIN, "vkey": signer.verifier.vkey})
    app = Appender(store, signer, ORIGIN, AppenderConfig(checkpoint_interval_ms=0))
    pending = app.submit([b"one"])
    with pytest.raises(StorageError, match="a bug after the commit"):
        pending.result(timeout=10)  # told, never left waiting
    with pytest.raises(StorageError):
        app.append(b"two")  # the appender stopped: state unknown, fail closed
    app.close()
