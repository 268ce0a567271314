"""Where the ledger's time goes: the evidence behind the notes in docs/benchmarks.md.

    .venv/bin/python bench/profile_ledger.py [--only SECTIONS] [--proof-ledger DIR]

Sections (all by default, ~2 min): ``handoff`` (CPU and context switches per append, and a
sketch of a lighter hand-off), ``commit`` (the writer's SQLite step with and without WAL
auto-checkpoints), ``stamp`` (what canonicalizing an event costs), ``proofs`` (tile reads,
node hashes and signature checks per proof), ``verify`` (cProfile of verify_ledger). Prints
Markdown; writes nothing but scratch ledgers under bench/out/, deleted at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import queue
import random
import resource
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import proctor.ledger.tiles as tiles_module
from benchlib import ROOT, Workload, fmt_rate, log, markdown_table
from ledger_appends import ORIGIN, MemoryStore, drive_tasks, drive_threads
from ledger_trees import build_direct, build_with_appender
from proctor.events.canonical import _encode, canonical_bytes, decode_event
from proctor.ledger.appender import Appender
from proctor.ledger.checkpoint import open_checkpoint
from proctor.ledger.ledger import DB_NAME, Ledger
from proctor.ledger.merkle import consistency_proof, inclusion_proof, leaf_hash, mth
from proctor.ledger.note import Signer
from proctor.ledger.store import SqliteStore
from proctor.ledger.tiles import EdgeTiles, TileCache, TileHasher
from proctor.ledger.verify import verify_ledger

SECTIONS = ("handoff", "commit", "stamp", "proofs", "verify")


def per_call_us(fn: Callable[[Any], object], items: Sequence[Any], repeats: int = 3) -> float:
    """Microseconds per call, best of ``repeats`` passes (the least disturbed by others)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


# -- handoff ----------------------------------------------------------------------------------


class LockHandoff:
    """A sketch, not a proposal for src/ as is: the Appender's hand-off without Future/Queue.

    A producer puts ``[data, lock, index]`` on a C-level ``SimpleQueue`` and blocks on its own
    pre-acquired lock; the writer drains, hashes, extends the tiles, stores, sets the index and
    releases each lock. No back-pressure bound, no checkpoints, no error path.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
        self._edge = EdgeTiles(0, {})
        self._store = MemoryStore()
        threading.Thread(target=self._run, daemon=True).start()

    def append(self, data: bytes) -> int:
        lock = threading.Lock()
        lock.acquire()
        box = [data, lock, 0]
        self._queue.put(box)
        lock.acquire()
        return int(box[2])

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            try:
                while len(batch) < 8192:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            start = self._edge.size
            dirty, edge = self._edge.extend([leaf_hash(b[0]) for b in batch])
            self._store.append(start, [b[0] for b in batch], dirty)
            self._edge = edge
            for k, box in enumerate(batch):
                box[2] = start + k
                box[1].release()


def _usage() -> tuple[float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw + r.ru_nivcsw


def handoff(seconds: float) -> str:
    """CPU time and context switches per append for each producer shape, no SQLite."""
    items = [b"x" * 600 + b"%d" % i for i in range(400_000)]
    signer = Signer.generate(ORIGIN)
    rows = []
    shapes: list[tuple[str, str]] = [
        ("Appender", "1"),
        ("Appender", "8"),
        ("Appender", "64"),
        ("Appender", "async"),
        ("floor: bare Lock + SimpleQueue", "1"),
        ("floor: bare Lock + SimpleQueue", "64"),
    ]
    for name, shape in shapes:
        target: Any = (
            LockHandoff() if name.startswith("floor") else Appender(MemoryStore(), signer, ORIGIN)  # type: ignore[arg-type]
        )
        cpu0, cs0 = _usage()
        if shape == "async":
            run = drive_tasks(64, items, seconds, target.append_async)
            who = "64 asyncio tasks"
        else:
            run = drive_threads(int(shape), items, seconds, target.append)
            who = f"{shape} thread" + ("s" if shape != "1" else "")
        cpu1, cs1 = _usage()
        if hasattr(target, "close"):
            target.close()
        rows.append(
            [
                name,
                who,
                fmt_rate(run.rate),
                f"{(cpu1 - cpu0) / run.count * 1e6:.1f}",
                f"{(cs1 - cs0) / run.count:.1f}",
                f"{(cpu1 - cpu0) / run.seconds * 100:.0f}%",
            ]
        )
    # Where the event loop's time goes with asyncio producers (cProfile sees only this thread).
    app = Appender(MemoryStore(), signer, ORIGIN)  # type: ignore[arg-type]
    prof = cProfile.Profile()
    prof.enable()
    drive_tasks(64, items, seconds, app.append_async)
    prof.disable()
    app.close()
    loop_profile = _top(prof, 12)
    # The same bookkeeping in one thread: what a hand-off costs without any thread switch.
    n = 200_000
    q: queue.Queue[object] = queue.Queue(65536)
    from concurrent.futures import Future

    start = time.perf_counter()
    for i in range(n):
        fut: Future[int] = Future()
        q.put(fut, timeout=30)
        got = q.get_nowait()
        assert isinstance(got, Future)
        got.set_result(i)
        fut.result()
    single = (time.perf_counter() - start) / n * 1e6
    table = markdown_table(
        ["Hand-off", "Producers", "Appends/s", "CPU µs/append", "Ctx switches/append", "CPU"],
        rows,
    )
    return (
        "### Hand-off (in-memory store, no SQLite)\n\n"
        f"{table}\n\nThe same Future + Queue calls in one thread, no switch: {single:.1f} µs.\n\n"
        f"cProfile of the event loop thread, 64 asyncio tasks (tottime):\n\n"
        f"```\n{loop_profile}```\n"
    )


# -- commit -----------------------------------------------------------------------------------


def commit(out: Path) -> str:
    """Per-entry cost of each step of SqliteStore.append, with and without auto-checkpoints."""
    work = Workload()
    raw = work.entries(0, 300_000)
    rows = []
    for durability in ("os", "fsync"):
        for batch in (100, 1000):
            for auto in (None, 0):
                directory = out / f"commit-{durability}-{batch}-{auto}"
                directory.mkdir(parents=True)
                store = SqliteStore(directory / DB_NAME, durability=durability)  # type: ignore[arg-type]
                db: sqlite3.Connection = store._db
                if auto is not None:
                    db.execute(f"PRAGMA wal_autocheckpoint = {auto}")
                edge = EdgeTiles(0, {})
                spent = [0.0, 0.0, 0.0, 0.0]
                commits: list[float] = []
                for first in range(0, len(raw), batch):
                    entries = raw[first : first + batch]
                    t0 = time.perf_counter()
                    dirty, after = edge.extend([leaf_hash(e) for e in entries])
                    t1 = time.perf_counter()
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany(
                        "INSERT INTO entries (idx, data) VALUES (?, ?)",
                        zip(range(first, first + len(entries)), entries, strict=True),
                    )
                    t2 = time.perf_counter()
                    db.executemany(
                        "INSERT OR REPLACE INTO tiles (level, idx, data) VALUES (?, ?, ?)",
                        [(lv, ix, d) for (lv, ix), d in dirty.items()],
                    )
                    t3 = time.perf_counter()
                    db.execute("COMMIT")
                    t4 = time.perf_counter()
                    edge = after
                    for k, v in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                        spent[k] += v
                    commits.append(t4 - t3)
                store.close()
                shutil.rmtree(directory, ignore_errors=True)
                n = len(raw)
                commits.sort()
                rows.append(
                    [
                        durability,
                        str(batch),
                        "default (16384 pages)" if auto is None else "off",
                        *(f"{x / n * 1e6:.2f}" for x in spent),
                        f"{commits[len(commits) // 2] * 1e3:.2f}",
                        f"{commits[-1] * 1e3:.0f}",
                        fmt_rate(n / sum(spent)),
                    ]
                )
    table = markdown_table(
        [
            "Durability",
            "Batch",
            "WAL auto-checkpoint",
            "hash + tiles µs",
            "BEGIN + INSERT µs",
            "tile write µs",
            "COMMIT µs",
            "median COMMIT ms",
            "max COMMIT ms",
            "Entries/s",
        ],
        rows,
    )
    wal = _single_entry_wal(raw[:3000], out / "wal")
    return (
        f"### The writer's SQLite step, per entry ({len(raw):,} entries)\n\n{table}\n\n"
        f"One entry per transaction ({len(raw[0])}-byte entries, os): {wal}\n"
    )


def _single_entry_wal(raw: Sequence[bytes], directory: Path) -> str:
    """How many bytes one single-entry transaction adds to the WAL, and why."""
    directory.mkdir(parents=True)
    store = SqliteStore(directory / DB_NAME, durability="os")
    wal = directory / (DB_NAME + "-wal")
    edge = EdgeTiles(0, {})
    tile_bytes = 0
    half = len(raw) // 2
    try:
        for i, data in enumerate(raw):
            if i == half:
                before, start = wal.stat().st_size, time.perf_counter()
            dirty, after = edge.extend([leaf_hash(data)])
            if i >= half:
                tile_bytes += sum(len(t) for t in dirty.values())
            store.append(i, [data], dirty)
            edge = after
        seconds = time.perf_counter() - start
        grown = (wal.stat().st_size - before) / (len(raw) - half)
    finally:
        store.close()
    n = len(raw) - half
    return (
        f"the WAL grows {grown:,.0f} bytes ({grown / 4120:.1f} frames) per transaction, "
        f"of which the rewritten partial tiles are {tile_bytes / n:,.0f} bytes; "
        f"{seconds / n * 1e6:.0f} µs per transaction."
    )


# -- stamp ------------------------------------------------------------------------------------


def stamp(out: Path) -> str:
    """What Ledger.stamp spends per event, and on what."""
    work = Workload()
    events = work.events(0, 30_000)
    directory = out / "stamp"
    signer = Signer.generate(ORIGIN)
    Ledger.init(directory, signer)
    led = Ledger(directory, max_time_skew_ms=3_600_000)
    try:
        encoded = [_encode(e) for e in events]
        rows = [
            ["Ledger.stamp(event)", f"{per_call_us(led.stamp, events):.1f}"],
            [
                "canonical_bytes(event) = encode + decode_event",
                f"{per_call_us(canonical_bytes, events):.1f}",
            ],
            ["msgspec encode", f"{per_call_us(_encode, events):.1f}"],
            [
                "decode_event (typed decode + check_event)",
                f"{per_call_us(decode_event, encoded):.1f}",
            ],
            [
                "building the Event (msgspec.structs.replace, runs check_event)",
                f"{per_call_us(work.event, range(30_000)):.1f}",
            ],
        ]
        prof = cProfile.Profile()
        prof.enable()
        for e in events:
            led.stamp(e)
        prof.disable()
    finally:
        led.close()
    top = _top(prof, 8)
    table = markdown_table(["Step", "µs/event (best of 3)"], rows)
    return f"### Canonicalizing an event\n\n{table}\n\ncProfile of Ledger.stamp:\n\n```\n{top}```\n"


# -- proofs -----------------------------------------------------------------------------------


def proofs(directory: Path, samples: int = 1000) -> str:
    """Tile reads, node hashes and signature checks per proof."""
    led = Ledger(directory)
    store = SqliteStore(directory / DB_NAME, readonly=True)
    try:
        size = led.size()
        rng = random.Random(7)
        indexes = [rng.randrange(size) for _ in range(samples)]
        counts = {"reads": 0, "hashes": 0}
        real_hash_pairs = tiles_module.hash_pairs

        def counting_hash(row: bytes) -> bytes:
            counts["hashes"] += len(row) // 64
            return real_hash_pairs(row)

        def counting_read(level: int, index: int) -> bytes | None:
            counts["reads"] += 1
            return store.read_tile(level, index)

        def counted_inclusion(i: int) -> object:
            return inclusion_proof(i, size, TileHasher(counting_read, size).range)

        def counted_consistency(i: int) -> object:
            return consistency_proof(max(1, i), size, TileHasher(counting_read, size).range)

        rows = []
        tiles_module.hash_pairs = counting_hash  # type: ignore[assignment]
        try:
            for name, fn in (
                ("inclusion_proof", counted_inclusion),
                ("consistency_proof", counted_consistency),
            ):
                counts.update(reads=0, hashes=0)
                for i in indexes:
                    fn(i)
                reads, hashes = counts["reads"] / samples, counts["hashes"] / samples
                rows.append([name, f"{reads:.1f}", f"{hashes:.0f}"])
        finally:
            tiles_module.hash_pairs = real_hash_pairs
        latest = store.latest_checkpoint()
        assert latest is not None
        full = store.read_tile(0, 0) or b""
        leaves = [full[k : k + 32] for k in range(0, len(full), 32)]

        def bare(i: int) -> object:
            return inclusion_proof(i, size, TileHasher(store.read_tile, size).range)

        def open_note(_: int) -> object:
            return open_checkpoint(latest.note, [led.verifier], led.origin)

        parts = [
            ("Ledger.prove", led.prove, indexes),
            ("inclusion_proof over TileHasher(SqliteStore.read_tile)", bare, indexes),
            ("open_checkpoint (Ed25519 verify + parse), once per Ledger.prove", open_note, indexes),
            (
                "SqliteStore.read_tile, one level-0 tile",
                lambda i: store.read_tile(0, i >> 8),
                indexes,
            ),
            ("mth of one full tile (255 node hashes)", lambda _: mth(leaves), indexes[:300]),
        ]
        costs = [[what, f"{per_call_us(fn, args):.1f}"] for what, fn, args in parts]

        cache = TileCache()

        def cached(i: int) -> object:
            return inclusion_proof(i, size, TileHasher(store.read_tile, size, cache).range)

        per_call_us(cached, indexes, 1)  # fill the cache (every proof shares the upper tiles)
        # Fresh random leaves each pass, so the proved leaves' own tiles are (mostly) misses.
        fresh = min(per_call_us(cached, rng.sample(range(size), samples), 1) for _ in range(3))
        costs.append(
            [f"inclusion_proof with a TileCache ({len(cache):,} tiles cached)", f"{fresh:.1f}"]
        )
        prof = cProfile.Profile()
        prof.enable()
        for i in indexes:
            led.prove(i)
        prof.disable()
    finally:
        store.close()
        led.close()
    counts_table = markdown_table(["Proof", "Tile reads/proof", "Node hashes/proof"], rows)
    cost_table = markdown_table(["Step", "µs per call (best of 3)"], costs)
    return (
        f"### Proofs at {size:,} entries ({samples:,} random indexes)\n\n{counts_table}\n\n"
        f"{cost_table}\n\ncProfile of Ledger.prove:\n\n```\n{_top(prof, 8)}```\n"
    )


# -- verify -----------------------------------------------------------------------------------


def verify(directory: Path) -> str:
    """verify_ledger: with and without the cyclic GC, and its profile."""
    led = Ledger(directory)
    verifier, origin = led.verifier, led.origin
    led.close()
    store = SqliteStore(directory / DB_NAME, readonly=True)
    try:
        n = store.count()
        best = {True: 0.0, False: 0.0}  # GC on -> best leaves/s
        for gc_on in (True, False, True, False):  # alternating: neither gets the warm cache
            if not gc_on:
                gc.disable()
            try:
                start = time.perf_counter()
                assert verify_ledger(store, [verifier], origin)
                best[gc_on] = max(best[gc_on], n / (time.perf_counter() - start))
            finally:
                gc.enable()
        plain, no_gc = best[True], best[False]
        prof = cProfile.Profile()
        prof.enable()
        verify_ledger(store, [verifier], origin)
        prof.disable()
    finally:
        store.close()
    return (
        f"### verify_ledger over {n:,} entries\n\n"
        f"{fmt_rate(plain)} leaves/s; with the cyclic GC off: {fmt_rate(no_gc)} leaves/s "
        f"(best of two each, alternating).\n\n"
        f"cProfile (tottime):\n\n```\n{_top(prof, 12)}```\n"
    )


def _top(prof: cProfile.Profile, n: int, key: str = "tottime") -> str:
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.strip_dirs().sort_stats(key).print_stats(n)
    lines = buf.getvalue().splitlines()
    total = next(line.strip() for line in lines if "function calls" in line)
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    body = [line.rstrip() for line in lines[start:] if line.strip()]
    return "\n".join([total, *body]) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"of {','.join(SECTIONS)}")
    ap.add_argument(
        "--proof-ledger",
        type=Path,
        help="a ledger to prove from (e.g. a kept bench/out/run-*/ledger-proofs); "
        "default: build 1M tiny entries",
    )
    ap.add_argument("--seconds", type=float, default=2.0, help="per hand-off configuration")
    args = ap.parse_args(argv)
    sections = {x.strip() for x in args.only.split(",") if x.strip()}
    if not sections <= set(SECTIONS):
        ap.error(f"unknown section: {', '.join(sorted(sections - set(SECTIONS)))}")
    out = ROOT / "bench" / "out" / time.strftime("profile-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    signer = Signer.generate(ORIGIN)
    parts = []
    try:
        if "handoff" in sections:
            log("hand-off")
            parts.append(handoff(args.seconds))
        if "commit" in sections:
            log("commit")
            parts.append(commit(out))
        if "stamp" in sections:
            log("stamp")
            parts.append(stamp(out))
        if "proofs" in sections:
            ledger = args.proof_ledger
            if ledger is None:
                log("building a 1M-entry proof ledger")
                ledger = out / "proofs"
                build_direct(ledger, 1_000_000, signer)
            log("proofs")
            parts.append(proofs(ledger))
        if "verify" in sections:
            log("building a 200k-entry ledger through the Appender")
            ledger = out / "verify"
            build_with_appender(ledger, 200_000, Workload(), signer, 1000)
            log("verify")
            parts.append(verify(ledger))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
