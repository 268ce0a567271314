"""Big ledgers: building them, full verification, proof latency, bytes on disk.

The verify ledger is built through the Appender (realistic entries, tiles and checkpoints). The
proof ledger is built straight into the store with ``SqliteStore.append`` and
``EdgeTiles.extend`` in big batches (the Appender's own tile code path, without its queue) with
tiny entries, then one checkpoint is signed over it: proofs read tiles, never entry bytes.
"""

from __future__ import annotations

import gc
import hashlib
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchlib import Latency, Workload, chunks, disk_usage, fmt_rate, fmt_us, log, small_entries
from proctor.ledger.appender import Appender
from proctor.ledger.checkpoint import Checkpoint
from proctor.ledger.ledger import DB_NAME, Ledger
from proctor.ledger.merkle import inclusion_proof, leaf_hash, verify_consistency, verify_inclusion
from proctor.ledger.note import Signer
from proctor.ledger.store import SqliteStore
from proctor.ledger.tiles import EdgeTiles, TileHasher
from proctor.ledger.verify import Report, verify_ledger

ORIGIN = "bench.example/ledger"
DIRECT_BATCH = 65_536
CHECKED = 20  # proofs of each kind also verified (outside the timing)


@dataclass(frozen=True)
class Build:
    """How a ledger was built and how fast."""

    how: str
    entries: int
    seconds: float

    @property
    def rate(self) -> float:
        """Entries per second."""
        return self.entries / self.seconds


def build_with_appender(
    directory: Path, size: int, work: Workload, signer: Signer, batch: int
) -> Build:
    """``size`` realistic entries through the Appender (os durability), ``batch`` per call."""
    Ledger.init(directory, signer)
    store = SqliteStore(directory / DB_NAME, durability="os")
    app = Appender(store, signer, ORIGIN)
    spent = 0.0
    try:
        for first, count in chunks(0, size, batch):
            entries = work.entries(first, count)  # not timed: the workload, not the ledger
            t = time.perf_counter()
            app.append_many(entries)
            spent += time.perf_counter() - t
            if (first + count) % 200_000 < batch:
                log(f"  {first + count:,} / {size:,}")
    finally:
        t = time.perf_counter()
        app.close()  # writes the final checkpoint: part of building
        spent += time.perf_counter() - t
        store.close()
    return Build(f"Appender.append_many, {batch} per call, 1 thread, os", size, spent)


def build_direct(directory: Path, size: int, signer: Signer) -> Build:
    """``size`` tiny entries written with SqliteStore.append + EdgeTiles.extend, then signed."""
    Ledger.init(directory, signer)
    store = SqliteStore(directory / DB_NAME, durability="os")
    edge = EdgeTiles(0, {})
    start = time.perf_counter()
    try:
        for first, count in chunks(0, size, DIRECT_BATCH):
            entries = small_entries(first, count)
            dirty, after = edge.extend([leaf_hash(e) for e in entries])
            store.append(first, entries, dirty)
            edge = after
            if (first // DIRECT_BATCH) % 16 == 15:
                log(f"  {first + count:,} / {size:,}")
        root = TileHasher(store.read_tile, size).root()
        store.add_checkpoint(size, Checkpoint(ORIGIN, size, root).sign([signer]), time.time_ns())
    finally:
        store.close()
    how = f"SqliteStore.append + EdgeTiles.extend, {DIRECT_BATCH:,} per transaction"
    return Build(how, size, time.perf_counter() - start)


# -- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyRow:
    """One way through all the entries, and how fast."""

    what: str
    entries: int
    seconds: float

    @property
    def rate(self) -> float:
        """Entries (leaves) per second."""
        return self.entries / self.seconds


def bench_verify(directory: Path, signer: Signer, repeats: int) -> list[VerifyRow]:
    """verify_ledger next to its limits: reading the entries, hashing them, both.

    Each pass runs ``repeats`` times over every entry, in rounds; the median is reported.
    """
    db = directory / DB_NAME
    store = SqliteStore(db, readonly=True)
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    n = store.count()
    data: list[bytes] = []
    sha = hashlib.sha256

    def bare_cursor() -> None:
        for _ in con.execute("SELECT data FROM entries ORDER BY idx"):
            pass

    def read() -> None:
        data[:] = [d for _, d in store.entries()]

    def hash_in_memory() -> None:
        for d in data:
            sha(b"\x00" + d).digest()

    def read_and_hash() -> None:
        for _, d in store.entries():
            leaf_hash(d)

    def hash_in_memory_then_free() -> None:
        if len(data) != n:
            raise RuntimeError(f"read {len(data)} entries, the ledger has {n}")
        hash_in_memory()
        data.clear()  # not held during the passes that follow

    reports: list[Report] = []

    def verify_without_gc() -> None:
        gc.disable()
        try:
            reports.append(verify_ledger(store, [signer.verifier], ORIGIN))
        finally:
            gc.enable()

    passes: list[tuple[str, Callable[[], object]]] = [
        ("bare sqlite3 cursor over SELECT data (no Python per row)", bare_cursor),
        ("read entries from SQLite (SqliteStore.entries), no hashing", read),
        ("hashlib.sha256(b'\\x00' + entry) over entries in memory", hash_in_memory_then_free),
        ("read + leaf_hash, streaming (no tiles, no checks)", read_and_hash),
        ("verify_ledger", lambda: reports.append(verify_ledger(store, [signer.verifier], ORIGIN))),
        ("the same verify_ledger with the cyclic GC off (gc.disable)", verify_without_gc),
    ]
    times: list[list[float]] = [[] for _ in passes]
    try:
        for _ in range(repeats):  # rounds through every pass, so load bursts hit all alike
            for (_, fn), out in zip(passes, times, strict=True):
                t = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t)
        report = reports[-1]
        if not report or report.entries != n:
            raise RuntimeError(f"verification failed: {report.to_dict()}")
        rows = [
            VerifyRow(what, n, sorted(ts)[len(ts) // 2])
            for (what, _), ts in zip(passes, times, strict=True)
        ]
        rows[-2] = VerifyRow(
            f"verify_ledger (all of it; {report.valid_checkpoints} checkpoints)",
            n,
            rows[-2].seconds,
        )
    finally:
        con.close()
        store.close()
    for row in rows:
        log(f"  {row.what:66} {fmt_rate(row.rate):>11} leaves/s")
    return rows


# -- proofs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofRow:
    """Latency of one kind of proof at one tree size."""

    what: str
    size: int
    latency: Latency


def _time_interleaved(
    calls: Sequence[tuple[Callable[[int], object], Sequence[int]]],
) -> list[Latency]:
    """Latency of each call over its arguments, the calls taking turns sample by sample.

    Taking turns spreads a burst of load from others on the machine over every kind of
    proof instead of one, so the kinds stay comparable within a run.
    """
    for call, args in calls:
        for a in args[:10]:  # warm the SQLite page cache and the code
            call(a)
    clock = time.perf_counter_ns
    timings: list[list[int]] = [[] for _ in calls]
    for k in range(min(len(args) for _, args in calls)):
        for (call, args), out in zip(calls, timings, strict=True):
            t = clock()
            call(args[k])
            out.append(clock() - t)
    return [Latency.of_ns(t) for t in timings]


def bench_proofs(directory: Path, signer: Signer, samples: int) -> list[ProofRow]:
    """Inclusion and consistency proofs for random indexes against the latest checkpoint."""
    led = Ledger(directory)
    store = SqliteStore(directory / DB_NAME, readonly=True)
    try:
        cp = led.latest_checkpoint()
        assert cp is not None
        size = cp.size
        rng = random.Random(size)
        indexes = [rng.randrange(size) for _ in range(samples)]
        olds = [rng.randrange(1, size) for _ in range(samples)]

        def bare(i: int) -> list[bytes]:
            return inclusion_proof(i, size, TileHasher(store.read_tile, size).range)

        kinds: list[tuple[str, Callable[[int], object], Sequence[int]]] = [
            ("Ledger.prove (receipt; checks the checkpoint signature)", led.prove, indexes),
            ("inclusion_proof over TileHasher(SqliteStore.read_tile)", bare, indexes),
            ("Ledger.consistency(old, size)", lambda old: led.consistency(old, size), olds),
        ]
        latencies = _time_interleaved([(call, args) for _, call, args in kinds])
        rows = [
            ProofRow(what, size, lat) for (what, _, _), lat in zip(kinds, latencies, strict=True)
        ]
        for i in indexes[:CHECKED]:
            receipt = led.prove(i)
            verify_inclusion(i, size, leaf_hash(led.entry(i)), receipt.hashes, cp.root)
            if list(receipt.hashes) != bare(i):
                raise RuntimeError(f"Ledger.prove and inclusion_proof disagree at {i}")
        for old in olds[:CHECKED]:
            verify_consistency(old, size, led.root(old), cp.root, led.consistency(old, size))
    finally:
        store.close()
        led.close()
    for row in rows:
        log(
            f"  {row.what:58} {size:>11,}  p50 {fmt_us(row.latency.p50_us):>7} µs"
            f"  p99 {fmt_us(row.latency.p99_us):>7} µs"
        )
    return rows


# -- disk -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disk:
    """Bytes on disk of a ledger, in total and per table."""

    entries: int
    payload: int  # bytes of entry data
    total: int
    per_table: dict[str, int]


def measure_disk(directory: Path) -> Disk:
    """File size of ledger.sqlite (+ WAL after a truncating checkpoint) and its tables."""
    entries, payload, total, per_table = disk_usage(directory / DB_NAME)
    log(f"  {total:,} bytes for {entries:,} entries: {total / entries:.0f} bytes/entry")
    return Disk(entries, payload, total, per_table)
