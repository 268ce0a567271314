"""Append throughput: producers that each wait for their index, as a gateway does.

Three drivers (threads, asyncio tasks, one producer with batches) run against three targets:
the Appender over SQLite with pre-canonicalized bytes, ``Ledger.append(Event)`` (which
canonicalizes), and the same Appender over an in-memory store (its queue, threads, hashing and
tiles without SQLite). ``bench_parts`` times the pieces of the path alone on one thread.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import Latency, Workload, fmt_rate, log
from proctor.events.canonical import canonical_bytes
from proctor.ledger.appender import Appender
from proctor.ledger.ledger import DB_NAME, Ledger
from proctor.ledger.merkle import leaf_hash
from proctor.ledger.note import Signer
from proctor.ledger.store import Durability, SqliteStore, StoredCheckpoint
from proctor.ledger.tiles import EdgeTiles

ORIGIN = "bench.example/ledger"
BATCH = 100
ASYNC_TASKS = 64
THREADS = (1, 8, 64)
# Event pools are built before the runs; a raised skew bound keeps the ledger from flagging
# them (and copying each struct to add the flag), as it would not flag a gateway's live events.
SKEW_MS = 3_600_000


@dataclass(frozen=True)
class Run:
    """What one configuration achieved."""

    count: int
    seconds: float
    latency: Latency
    pool_ran_out: bool

    @property
    def rate(self) -> float:
        """Appends per second."""
        return self.count / self.seconds


# -- drivers ----------------------------------------------------------------------------------


def drive_threads(n: int, items: Sequence[Any], seconds: float, call: Callable[[Any], Any]) -> Run:
    """``n`` threads, each appending one item at a time and waiting for its index."""
    start = [0.0]
    barrier = threading.Barrier(n, action=lambda: start.__setitem__(0, time.perf_counter()))
    timings: list[list[int]] = [[] for _ in range(n)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        lat = timings[k]
        clock = time.perf_counter_ns
        try:
            barrier.wait()
            end = int((start[0] + seconds) * 1e9)
            for i in range(k, len(items), n):
                t = clock()
                call(items[i])
                done = clock()
                lat.append(done - t)
                if done >= end:
                    break
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,), name=f"producer-{k}") for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start[0]
    if errors:
        raise errors[0]
    flat = [x for lat in timings for x in lat]
    return Run(len(flat), elapsed, Latency.of_ns(flat), len(flat) == len(items))


def drive_tasks(
    n: int, items: Sequence[Any], seconds: float, call: Callable[[Any], Awaitable[Any]]
) -> Run:
    """``n`` asyncio tasks on one event loop, each awaiting one append at a time."""
    timings: list[int] = []

    async def task(k: int, end: int) -> None:
        clock = time.perf_counter_ns
        for i in range(k, len(items), n):
            t = clock()
            await call(items[i])
            done = clock()
            timings.append(done - t)
            if done >= end:
                break

    async def main() -> float:
        start = time.perf_counter()
        end = int((start + seconds) * 1e9)
        await asyncio.gather(*(task(k, end) for k in range(n)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    return Run(len(timings), elapsed, Latency.of_ns(timings), len(timings) == len(items))


def drive_batches(
    items: Sequence[Any], seconds: float, call: Callable[[Sequence[Any]], Any]
) -> Run:
    """One producer appending ``BATCH`` items per call; the latency is per batch."""
    timings: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    end = start + int(seconds * 1e9)
    count = 0
    for first in range(0, len(items) - BATCH + 1, BATCH):
        t = clock()
        call(items[first : first + BATCH])
        done = clock()
        timings.append(done - t)
        count += BATCH
        if done >= end:
            break
    return Run(count, (clock() - start) / 1e9, Latency.of_ns(timings), count >= len(items) - BATCH)


# -- targets ----------------------------------------------------------------------------------


class MemoryStore:
    """The part of the store interface the Appender uses, in memory (no SQLite, no disk)."""

    def __init__(self) -> None:
        self._size = 0
        self._tiles: dict[tuple[int, int], bytes] = {}
        self._checkpoints: list[StoredCheckpoint] = []

    def size(self) -> int:
        return self._size

    def append(
        self, start: int, entries: Sequence[bytes], tiles: dict[tuple[int, int], bytes]
    ) -> None:
        if start != self._size:
            raise RuntimeError(f"append at {start}, store has {self._size}")
        self._size += len(entries)
        self._tiles.update(tiles)

    def read_tile(self, level: int, index: int) -> bytes | None:
        return self._tiles.get((level, index))

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return self._checkpoints[-1] if self._checkpoints else None

    def add_checkpoint(self, size: int, note: str, created_ns: int) -> None:
        self._checkpoints.append(StoredCheckpoint(size, note, created_ns))

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Target:
    """A fresh ledger to append to: its three ways in, and how to shut it."""

    one: Callable[[Any], int]
    many: Callable[[Sequence[Any]], int]
    one_async: Callable[[Any], Awaitable[int]]
    close: Callable[[], None]


def open_target(kind: str, durability: Durability, directory: Path, signer: Signer) -> Target:
    """'raw' (Appender over SqliteStore), 'event' (Ledger) or 'memory' (Appender, no SQLite).

    All use the default AppenderConfig, so checkpoints are signed during the run.
    """
    if kind == "memory":
        app = Appender(MemoryStore(), signer, ORIGIN)  # type: ignore[arg-type]
        return Target(app.append, app.append_many, app.append_async, app.close)
    Ledger.init(directory, signer)
    if kind == "raw":
        store = SqliteStore(directory / DB_NAME, durability=durability)
        app = Appender(store, signer, ORIGIN)

        def close() -> None:
            app.close()
            store.close()

        return Target(app.append, app.append_many, app.append_async, close)
    led = Ledger(directory, signer=signer, durability=durability, max_time_skew_ms=SKEW_MS)
    return Target(led.append, led.append_many, led.append_async, led.close)


# -- the matrix -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppendRow:
    """One line of the appends table: the repeats of one configuration."""

    path: str
    durability: str
    producers: str
    runs: tuple[Run, ...]

    @property
    def run(self) -> Run:
        """The median repeat by rate (its latencies are the ones reported)."""
        return sorted(self.runs, key=lambda r: r.rate)[len(self.runs) // 2]

    @property
    def spread(self) -> tuple[float, float]:
        """Lowest and highest rate of the repeats."""
        rates = [r.rate for r in self.runs]
        return min(rates), max(rates)


@dataclass(frozen=True)
class _Config:
    kind: str  # raw, event, memory
    durability: Durability
    shape: str  # a thread count, "async" or "batch"

    @property
    def path(self) -> str:
        names = {
            "raw": ("Appender.append(bytes)", "Appender.append_many(bytes)"),
            "event": ("Ledger.append(Event)", "Ledger.append_many(Event)"),
            "memory": ("Appender, in-memory store", "Appender, in-memory store"),
        }
        return names[self.kind][self.shape == "batch"]

    @property
    def producers(self) -> str:
        if self.shape == "batch":
            return f"1 thread, batches of {BATCH}"
        if self.shape == "async":
            return f"{ASYNC_TASKS} asyncio tasks"
        return f"{self.shape} thread" + ("s" if self.shape != "1" else "")


def _run_once(
    cfg: _Config, items: Sequence[Any], seconds: float, directory: Path, signer: Signer
) -> Run:
    target = open_target(cfg.kind, cfg.durability, directory, signer)
    try:
        if cfg.shape == "batch":
            return drive_batches(items, seconds, target.many)
        if cfg.shape == "async":
            return drive_tasks(ASYNC_TASKS, items, seconds, target.one_async)
        return drive_threads(int(cfg.shape), items, seconds, target.one)
    finally:
        target.close()
        shutil.rmtree(directory, ignore_errors=True)


def bench_appends(
    work: Workload,
    signer: Signer,
    out: Path,
    *,
    seconds: float,
    repeats: int,
    raw: int,
    events: int,
) -> list[AppendRow]:
    """Every path x durability x producer shape on fresh ledgers, ``repeats`` rounds.

    The rounds go through the whole matrix in turn, so a burst of load from others on the
    machine hits one repeat of several configurations rather than every repeat of one.
    """
    log(f"building pools: {raw:,} canonical entries, {events:,} events")
    raw_pool = work.entries(0, raw)
    event_pool = work.events(0, events)
    shapes = [*(str(n) for n in THREADS), "async", "batch"]
    configs = [
        _Config(kind, durability, shape)
        for durability in ("os", "fsync")
        for kind in ("raw", "event")
        for shape in shapes
    ]
    configs += [_Config("memory", "os", shape) for shape in shapes]
    runs: dict[_Config, list[Run]] = {cfg: [] for cfg in configs}
    for rep in range(repeats):
        log(f"round {rep + 1} of {repeats}")
        for k, cfg in enumerate(configs):
            pool: Sequence[Any] = event_pool if cfg.kind == "event" else raw_pool
            run = _run_once(cfg, pool, seconds, out / f"appends-{k:02d}", signer)
            runs[cfg].append(run)
            dur = "-" if cfg.kind == "memory" else cfg.durability
            log(f"  {cfg.path:28} {dur:5} {cfg.producers:26} {fmt_rate(run.rate):>9}/s")
    return [
        AppendRow(
            cfg.path,
            "-" if cfg.kind == "memory" else cfg.durability,
            cfg.producers,
            tuple(runs[cfg]),
        )
        for cfg in configs
    ]


# -- the pieces alone -------------------------------------------------------------------------


@dataclass(frozen=True)
class PartRow:
    """One piece of the append path, timed alone on one thread."""

    what: str
    durability: str
    rate: float

    @property
    def per_item_us(self) -> float:
        """Microseconds per entry."""
        return 1e6 / self.rate


def _store_alone(
    raw: Sequence[bytes], batch: int, durability: Durability, directory: Path, seconds: float
) -> float:
    directory.mkdir(parents=True)
    store = SqliteStore(directory / DB_NAME, durability=durability)
    edge = EdgeTiles(0, {})
    count = 0
    start = time.perf_counter()
    end = start + seconds
    try:
        while count + batch <= len(raw) and time.perf_counter() < end:
            entries = raw[count : count + batch]
            dirty, after = edge.extend([leaf_hash(e) for e in entries])
            store.append(edge.size, entries, dirty)
            edge = after
            count += batch
        return count / (time.perf_counter() - start)
    finally:
        store.close()
        shutil.rmtree(directory, ignore_errors=True)


def _per_second(fn: Callable[[Any], Any], items: Sequence[Any]) -> float:
    start = time.perf_counter()
    for x in items:
        fn(x)
    return len(items) / (time.perf_counter() - start)


def _median(values: Sequence[float]) -> float:
    return sorted(values)[len(values) // 2]


def bench_parts(
    work: Workload, out: Path, *, seconds: float, repeats: int, raw: int
) -> list[PartRow]:
    """The storage step (hash, tiles, one SQLite transaction) and canonicalization, alone.

    Each is run ``repeats`` times; the median rate is reported.
    """
    raw_pool = work.entries(0, raw)
    events = work.events(0, 20_000)
    sample = raw_pool[:200_000]
    rows: list[PartRow] = []
    durabilities: tuple[Durability, ...] = ("os", "fsync")
    for durability in durabilities:
        for batch in (1, BATCH, 1000):
            directory = out / f"store-{durability}-{batch}"
            rate = _median(
                [
                    _store_alone(raw_pool, batch, durability, directory, seconds)
                    for _ in range(repeats)
                ]
            )
            what = f"leaf_hash + EdgeTiles.extend + SqliteStore.append, {batch}/transaction"
            rows.append(PartRow(what, durability, rate))
    hashes = _median([_per_second(leaf_hash, sample) for _ in range(repeats)])
    rows.append(PartRow("leaf_hash(bytes)", "-", hashes))
    canon = _median([_per_second(canonical_bytes, events) for _ in range(repeats)])
    rows.append(PartRow("canonical_bytes(Event)", "-", canon))
    for row in rows:
        log(f"  {row.what:70} {row.durability:5} {fmt_rate(row.rate):>9}/s")
    return rows
