"""Group-commit appender: many producers, one writer thread, one transaction per batch.

Producers (threads or asyncio tasks) put ``(entries, waiter)`` on a bounded queue and wait on
the waiter. The writer thread owns the store: it drains whatever is queued (up to a batch
limit), hashes the leaves, extends the tree's edge tiles and writes entries plus tiles in one
SQLite transaction. Only after that commit (at the store's durability: written to the OS, or
fsynced) are the producers' waiters resolved with their indexes. A failed write fails every
waiter of that batch and changes nothing, so no producer is told "stored" for an entry that
is not. A full queue blocks producers (back-pressure) up to a timeout and then raises; nothing
is dropped silently.

The writer also signs checkpoints: every ``checkpoint_every`` entries, after
``checkpoint_interval_ms`` with unsigned entries, and on demand. It writes a retention prune's
event alone, in the same transaction as the floor it raises, and deletes pruned bodies in
bounded chunks between batches (``sweep``), so the one writer stays the only one.

Before it signs a tree it proves, from the stored tiles, that the tree is consistent with the
previous signed checkpoint; when that fails the appender stops taking entries (fail closed)
instead of signing over a damaged ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from proctor.errors import ProctorError, StorageError, VerificationError
from proctor.ledger.checkpoint import Checkpoint, open_checkpoint
from proctor.ledger.merkle import consistency_proof, leaf_hash, verify_consistency
from proctor.ledger.note import Signer
from proctor.ledger.store import Prune, SqliteStore
from proctor.ledger.tiles import EdgeTiles, TileHasher

__all__ = ["Appender", "AppenderConfig", "Pending"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppenderConfig:
    """Limits of the appender; every one is a setting, none a magic number."""

    max_batch: int = 8192
    """Entries written in one transaction at most."""
    queue_size: int = 65536
    """Queued submissions at most; a full queue blocks producers (back-pressure)."""
    enqueue_timeout_s: float = 30.0
    """How long a producer waits for room in a full queue before the append fails."""
    checkpoint_every: int = 10_000
    """Sign a checkpoint after this many new entries (0: never by count)."""
    checkpoint_interval_ms: int = 1_000
    """Sign a checkpoint this long after the first unsigned entry (0: never by time)."""


class _LoopWaiter:
    """Stands in for a Future for an asyncio producer.

    Waking a thread or an event loop per entry costs more than writing it. The writer puts
    results for asyncio producers in an outbox and, once per batch, hands each event loop all
    of its results in one ``call_soon_threadsafe``: one wake-up per loop per batch.
    """

    __slots__ = ("afut", "loop", "outbox")

    def __init__(self, loop: asyncio.AbstractEventLoop, outbox: list[_Settled]) -> None:
        self.loop = loop
        self.afut: asyncio.Future[int | str] = loop.create_future()
        self.outbox = outbox

    def done(self) -> bool:
        return self.afut.done()

    def set_result(self, value: int | str) -> None:
        self.outbox.append((self, value, None))

    def set_exception(self, exc: BaseException) -> None:
        self.outbox.append((self, None, exc))


_Settled = tuple[_LoopWaiter, int | str | None, BaseException | None]


def _settle(items: list[_Settled]) -> None:
    """Runs in the producers' event loop: resolve every waiter of one batch."""
    for waiter, value, exc in items:
        if waiter.afut.done():  # the task was cancelled; the entry is still in the ledger
            continue
        if exc is not None:
            waiter.afut.set_exception(exc)
        else:
            assert value is not None
            waiter.afut.set_result(value)


class _ThreadWaiter:
    """What a thread producer waits on: a lock taken at creation, released with the result.

    Lighter than ``concurrent.futures.Future`` (no condition variable, no callbacks), which
    halved the cost of an append from a thread (bench/profile_ledger.py, "Hand-off").
    """

    __slots__ = ("_done", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._done = False
        self._value: int | str | BaseException | None = None

    def done(self) -> bool:
        """True once a result or an error was set."""
        return self._done

    def set_result(self, value: int | str) -> None:
        self._settle(value)

    def set_exception(self, exc: BaseException) -> None:
        self._settle(exc)

    def _settle(self, value: int | str | BaseException) -> None:
        # Only the writer thread, or whoever drained the request from the queue, settles it.
        if self._done:
            return
        self._value = value
        self._done = True
        self._lock.release()

    def result(self, timeout: float | None = None) -> int | str:
        """Wait for the result; raise the writer's error for this request."""
        if not self._done and not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("the ledger writer did not answer in time")
        value = self._value
        if isinstance(value, BaseException):
            raise value
        assert value is not None
        return value


Pending = _ThreadWaiter
"""A queued append or checkpoint request as returned by ``Appender.submit``."""


class _Request:
    """One queued submission: entries to append (with a prune: written alone, raising the
    floor), a sweep of pruned bodies (``sweep`` rows at most), or a checkpoint request."""

    __slots__ = ("entries", "future", "prune", "sweep")

    def __init__(
        self,
        entries: Sequence[bytes] | None,
        waiter: _LoopWaiter | None = None,
        *,
        prune: Prune | None = None,
        sweep: int = 0,
    ) -> None:
        self.entries = entries
        self.future: _ThreadWaiter | _LoopWaiter = waiter or _ThreadWaiter()
        self.prune = prune
        self.sweep = sweep


_STOP = object()


class Appender:
    """The single writer of one ledger database; safe to call from any thread or event loop."""

    def __init__(
        self,
        store: SqliteStore,
        signer: Signer,
        origin: str,
        config: AppenderConfig | None = None,
    ) -> None:
        self.config = config or AppenderConfig()
        self._store = store
        self._signer = signer
        self._origin = origin
        # SimpleQueue is implemented in C and never blocks on put; the bound is enforced by
        # ``_put`` (see there). Producers and the writer meet only here.
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._failed: ProctorError | None = None
        self._stopped = False  # set by the writer thread as it exits
        self._outbox: list[_Settled] = []  # results for asyncio producers, sent per batch
        self._closed = False
        size = store.size()
        self._edge = EdgeTiles.load(size, store.read_tile)
        latest = store.latest_checkpoint()
        self._signed_size = 0 if latest is None else latest.size
        if self._signed_size > size:
            raise StorageError(
                f"ledger holds {size} entries but its latest checkpoint signs {self._signed_size}:"
                " entries were removed (run proctor verify)"
            )
        self._unsigned_since: float | None = None if self._signed_size == size else time.monotonic()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    # -- producers --------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Entries durably written so far (as the writer sees it)."""
        return self._edge.size

    def submit(self, entries: Sequence[bytes]) -> Pending:
        """Queue entries; ``result()`` gives the first one's index once they are durable."""
        if not entries:
            raise ValueError("nothing to append")
        req = _Request(list(entries))
        self._put(req)
        assert isinstance(req.future, _ThreadWaiter)
        return req.future

    def append(self, data: bytes) -> int:
        """Append one entry and return its index once it is durable."""
        return self.append_many([data])

    def append_many(self, entries: Sequence[bytes]) -> int:
        """Append entries in order, contiguously; the first one's index once all are durable."""
        return _as_index(self.submit(entries).result())

    async def append_async(self, data: bytes) -> int:
        """``append`` for asyncio code: waits without blocking the event loop."""
        return await self.append_many_async([data])

    async def append_many_async(self, entries: Sequence[bytes]) -> int:
        """``append_many`` for asyncio code."""
        if not entries:
            raise ValueError("nothing to append")
        waiter = _LoopWaiter(asyncio.get_running_loop(), self._outbox)
        req = _Request(list(entries), waiter)
        self._check_taking()
        if self._queue.qsize() < self.config.queue_size:
            self._queue.put(req)
            self._check_open()
        else:
            # Back-pressure: wait for room in a worker thread, not on the event loop.
            await asyncio.to_thread(self._put, req)
        return _as_index(await waiter.afut)

    def append_prune(self, data: bytes, prune: Prune) -> int:
        """Append a prune's event and raise the floor to ``prune.below`` in one transaction.

        ``prune.event_index`` is set by the writer to the event's index, which is returned.
        The entry is written in a transaction of its own, so a refused prune fails nobody else.
        """
        req = _Request([data], prune=prune)
        self._put(req)
        assert isinstance(req.future, _ThreadWaiter)
        return _as_index(req.future.result())

    def sweep(self, max_rows: int) -> int:
        """Delete up to ``max_rows`` pruned bodies below the floor; how many (0: none left)."""
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        req = _Request(None, sweep=max_rows)
        self._put(req)
        assert isinstance(req.future, _ThreadWaiter)
        return _as_index(req.future.result())

    def checkpoint(self) -> str:
        """Sign a checkpoint of everything appended so far and return its note."""
        req = _Request(None)
        self._put(req)
        assert isinstance(req.future, _ThreadWaiter)
        note = req.future.result()
        assert isinstance(note, str)
        return note

    def close(self) -> None:
        """Write what is queued, sign a final checkpoint, stop the writer, close the store."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        self._store.close()

    def _check_taking(self) -> None:
        if self._closed:
            raise StorageError("the ledger appender is closed")
        if self._failed is not None:
            raise self._failed

    def _put(self, req: _Request) -> None:
        self._check_taking()
        # The bound: wait while the queue holds queue_size requests. Checking the size and
        # putting are two steps, so concurrent producers can overshoot it by at most their
        # own number; a semaphore would make it exact at a cost on every append. Waiting is
        # the rare path, so it polls.
        if self._queue.qsize() >= self.config.queue_size:
            deadline = time.monotonic() + self.config.enqueue_timeout_s
            while self._queue.qsize() >= self.config.queue_size:
                if time.monotonic() >= deadline:
                    raise StorageError(
                        f"ledger queue stayed full for {self.config.enqueue_timeout_s}s;"
                        " entry not taken"
                    )
                time.sleep(0.001)
                self._check_taking()
        self._queue.put(req)
        self._check_open()

    def _check_open(self) -> None:
        # The writer may have stopped between our check and the put: then nobody else will
        # take our request off the queue, so fail whatever is left there ourselves.
        if self._stopped:
            self._fail_queued()

    # -- the writer thread -------------------------------------------------------------------

    def _flush(self) -> None:
        """Send the asyncio producers their results: one call per event loop."""
        if not self._outbox:
            return
        items, self._outbox[:] = list(self._outbox), []
        by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
        for item in items:
            by_loop.setdefault(item[0].loop, []).append(item)
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, batch)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the writer must never die silently
            log.exception("ledger writer stopped")
            self._failed = (
                exc if isinstance(exc, ProctorError) else StorageError(f"ledger writer: {exc}")
            )
        finally:
            self._flush()
            self._stopped = True
            self._fail_queued()

    def _loop(self) -> None:
        cfg = self.config
        while True:
            item = self._next(self._timeout())
            if item is None:  # the checkpoint interval ran out
                self._sign()
                continue
            batch: list[_Request] = []
            controls: list[_Request] = []
            chores: list[_Request] = []  # prunes and sweeps: each alone, after the batch
            stop = False
            count = 0
            while True:
                if item is _STOP:
                    stop = True
                    break
                assert isinstance(item, _Request)
                if item.prune is not None or item.sweep:
                    chores.append(item)
                elif item.entries is None:
                    controls.append(item)
                else:
                    batch.append(item)
                    count += len(item.entries)
                if count >= cfg.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
            for req in chores:
                if self._failed is not None:
                    req.future.set_exception(self._failed)
                elif req.prune is not None:
                    self._write([req], req.prune)
                else:
                    self._sweep(req)
            if self._failed is not None:
                for req in controls:
                    req.future.set_exception(self._failed)
                return
            due = (
                cfg.checkpoint_every and self._edge.size - self._signed_size >= cfg.checkpoint_every
            )
            if controls or due or stop:
                try:
                    note = self._sign()
                except Exception as exc:
                    err = exc if isinstance(exc, ProctorError) else StorageError(f"signing: {exc}")
                    for req in controls:
                        req.future.set_exception(err)
                    raise
                for req in controls:
                    req.future.set_result(note)
            if stop:
                return

    def _next(self, timeout: float | None) -> object | None:
        self._flush()
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _timeout(self) -> float | None:
        interval = self.config.checkpoint_interval_ms
        if not interval or self._unsigned_since is None:
            return None
        return max(0.0, self._unsigned_since + interval / 1000 - time.monotonic())

    def _sweep(self, req: _Request) -> None:
        try:
            deleted = self._store.sweep(req.sweep)
        except ProctorError as exc:
            log.error("sweeping pruned entries failed: %s", exc)
            req.future.set_exception(exc)
            return
        req.future.set_result(deleted)

    def _write(self, batch: list[_Request], prune: Prune | None = None) -> None:
        entries = [e for req in batch for e in req.entries or ()]
        start = self._edge.size
        dirty, edge = self._edge.extend([leaf_hash(e) for e in entries])
        if prune is not None:
            prune = replace(prune, event_index=start)
        try:
            self._store.append(start, entries, dirty, prune)
        except ProctorError as exc:
            log.error("ledger write of %d entries failed: %s", len(entries), exc)
            for req in batch:
                req.future.set_exception(exc)
            return
        except Exception as exc:
            # Not an error the store knows (a bug, the OS): whether the batch is stored is
            # unknown, so its producers are told it failed and the appender stops.
            log.exception("ledger write of %d entries failed", len(entries))
            self._failed = StorageError(f"ledger write failed: {exc}")
            for req in batch:
                req.future.set_exception(self._failed)
            return
        self._edge = edge
        if self._unsigned_since is None:
            self._unsigned_since = time.monotonic()
        index = start
        for req in batch:
            req.future.set_result(index)
            index += len(req.entries or ())

    def _sign(self) -> str:
        """Sign the current tree after proving it extends the previous checkpoint."""
        size = self._edge.size
        latest = self._store.latest_checkpoint()
        if latest is not None and latest.size == size:
            self._unsigned_since = None
            return latest.note
        hasher = TileHasher(self._store.read_tile, size)
        root = hasher.root()
        if latest is not None:
            try:
                prev = open_checkpoint(latest.note, [self._signer.verifier], self._origin)
                old_root = TileHasher(self._store.read_tile, prev.size).root()
                if old_root != prev.root:
                    raise VerificationError(
                        f"stored tiles give root {old_root.hex()} at size {prev.size}, "
                        f"the signed checkpoint says {prev.root.hex()}"
                    )
                proof = consistency_proof(prev.size, size, hasher.range)
                verify_consistency(prev.size, size, prev.root, root, proof)
            except ProctorError as exc:
                self._failed = VerificationError(
                    f"refusing to sign size {size}: not consistent with the checkpoint at size "
                    f"{latest.size} ({exc}); the ledger is damaged, run proctor verify"
                )
                raise self._failed from None
        note = Checkpoint(self._origin, size, root).sign([self._signer])
        self._store.add_checkpoint(size, note, time.time_ns())
        self._signed_size = size
        self._unsigned_since = None
        return note

    def _fail_queued(self) -> None:
        """Fail every request still queued (the writer has stopped); safe from any thread.

        Whoever takes a request off the queue settles it, so no request is settled twice.
        """
        err = self._failed or StorageError("the ledger appender is closed")
        by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Request):
                continue
            if isinstance(item.future, _LoopWaiter):
                by_loop.setdefault(item.future.loop, []).append((item.future, None, err))
            else:
                item.future.set_exception(err)
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, batch)


def _as_index(result: int | str) -> int:
    assert isinstance(result, int)
    return result
