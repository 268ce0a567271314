"""The search index of a ledger directory: derived data, rebuildable from the ledger any time.

Files beside the ledger::

    search.sqlite   the index (SQLite, WAL): see ``_schema`` for its tables
    search.lock     flock'ed by the one process that indexes

``Indexer`` holds the lock and appends what the ledger gained since the last run, in batches;
each batch's rows and the new high-water mark commit in one transaction, so a crash leaves the
index exactly at the end of some batch and the next run carries on from there. A process that
cannot take the lock (another one is indexing, or the directory is read-only) queries what is
indexed. ``SearchIndex`` opens the file read-only for queries.

Before either trusts the index, it checks it was built from this ledger: the same origin and
key, no more entries than the ledger has, and the last indexed entry's SHA-256 unchanged. A
replaced or truncated ledger is refused with :class:`IndexMismatchError`; ``rebuild`` starts
over.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import msgspec

from proctor.errors import StorageError, UsageError
from proctor.ledger.ledger import Ledger
from proctor.search._rows import EntryRows, rows_for
from proctor.search._schema import (
    EVENT_COLUMNS,
    INDEXES,
    SCHEMA_VERSION,
    TABLES,
    ZONE_BITS,
)

__all__ = [
    "INDEX_NAME",
    "LOCK_NAME",
    "CatchUp",
    "IndexConfig",
    "IndexMismatchError",
    "Indexer",
    "SearchIndex",
    "catch_up",
]

INDEX_NAME: Final = "search.sqlite"
LOCK_NAME: Final = "search.lock"
_SIDE_FILES: Final = ("", "-wal", "-shm")

Progress = Callable[[int, int], None]


class IndexMismatchError(StorageError):
    """The search index was not built from this ledger (replaced, truncated, other format)."""


@dataclass(frozen=True)
class IndexConfig:
    """How the indexer works: batch size, memory, when to refresh the planner's statistics."""

    batch: int = 20_000  # entries per transaction (each commits its rows and the high-water mark)
    cache_mib: int = 256  # SQLite page cache of the indexing connection
    analyze_growth: float = 2.0  # ANALYZE again when the index has grown this many times over
    analysis_limit: int = 2_000  # rows ANALYZE samples per index (PRAGMA analysis_limit)


@dataclass(frozen=True)
class CatchUp:
    """What one catch-up did. ``skipped`` says why nothing was indexed (lock held, read-only)."""

    added: int
    indexed: int
    ledger_size: int
    unreadable: int
    skipped: str | None = None


def _index_path(directory: Path) -> Path:
    return directory / INDEX_NAME


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta(db: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta")}


def _check_ledger(meta: dict[str, str], ledger: Ledger, path: Path) -> int:
    """The index's high-water mark, after checking the index was built from ``ledger``."""
    hint = "rebuild it with: proctor search --rebuild"
    if meta.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise IndexMismatchError(
            f"search index {path} has format {meta['schema']}, this Proctor reads "
            f"{SCHEMA_VERSION}; {hint}"
        )
    if "vkey" in meta and meta["vkey"] != ledger.verifier.vkey:
        raise IndexMismatchError(
            f"search index {path} was built from another ledger (origin "
            f"{meta.get('origin')!r}, this one is {ledger.origin!r}); {hint}"
        )
    hwm = int(meta.get("indexed", "0"))
    size = ledger.size()
    if hwm > size:
        raise IndexMismatchError(
            f"search index {path} covers {hwm} entries but the ledger has {size}: the ledger "
            f"was replaced or truncated; {hint}"
        )
    if "check_idx" in meta:
        at = int(meta["check_idx"])
        found = [data for _, data in ledger.entries(at, at + 1)]
        if not found or _sha256(found[0]) != meta["check_sha256"]:
            raise IndexMismatchError(
                f"ledger entry {at} is not the one search index {path} was built from: the "
                f"ledger was replaced or rewritten; {hint}"
            )
    return hwm


def _lock(directory: Path) -> tuple[IO[str] | None, str | None]:
    """(the locked file, None), or (None, why the lock could not be taken)."""
    try:
        f = (directory / LOCK_NAME).open("a+")
    except OSError as exc:
        return None, f"cannot create {directory / LOCK_NAME}: {exc.strerror}"
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None, "another process is indexing"
    except OSError as exc:
        f.close()
        return None, f"cannot lock {directory / LOCK_NAME}: {exc.strerror}"
    with contextlib.suppress(OSError):
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
    return f, None


class Indexer:
    """The one process that writes a ledger's search index: holds ``search.lock``."""

    def __init__(self, ledger: Ledger, lock: IO[str], config: IndexConfig) -> None:
        self.ledger = ledger
        self.path = _index_path(ledger.directory)
        self._lock = lock
        self._config = config
        self._db = self._connect()

    @classmethod
    def acquire(
        cls, ledger: Ledger, config: IndexConfig | None = None
    ) -> tuple[Indexer | None, str | None]:
        """(an Indexer, None), or (None, why not) when the lock is held or cannot be made."""
        lock, why = _lock(ledger.directory)
        if lock is None:
            return None, why
        try:
            return cls(ledger, lock, config or IndexConfig()), None
        except BaseException:
            lock.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # a commit survives a crash of Proctor
            db.execute(f"PRAGMA cache_size = {-1024 * int(self._config.cache_mib)}")
            db.execute("PRAGMA temp_store = MEMORY")
            db.executescript(TABLES)
            for name, column in INDEXES:
                db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON events ({column})")
            meta = _meta(db)
            if "schema" not in meta:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("schema", SCHEMA_VERSION),
                        ("origin", self.ledger.origin),
                        ("vkey", self.ledger.verifier.vkey),
                        ("indexed", "0"),
                    ],
                )
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open search index {self.path}: {exc}") from None
        return db

    def close(self) -> None:
        """Close the connection and release the lock."""
        self._db.close()
        self._lock.close()

    def __enter__(self) -> Indexer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rebuild(self) -> None:
        """Throw the index away; the next ``catch_up`` indexes the whole ledger again."""
        self._db.close()
        for suffix in _SIDE_FILES:
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").unlink()
        self._db = self._connect()

    def catch_up(self, progress: Progress | None = None) -> CatchUp:
        """Index every entry the ledger gained since the last run; returns what was done."""
        try:
            hwm = _check_ledger(_meta(self._db), self.ledger, self.path)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"search index {self.path}: {exc}") from None
        size = self.ledger.size()
        added = bad = 0
        batch: list[tuple[int, bytes]] = []
        for idx, data in self.ledger.entries(hwm, size):
            batch.append((idx, data))
            if len(batch) >= self._config.batch:
                n, b = self._write(batch, idx + 1)
                added, bad = added + n, bad + b
                batch = []
                if progress is not None:
                    progress(idx + 1, size)
        if batch or hwm < size:
            n, b = self._write(batch, size)
            added, bad = added + n, bad + b
        if progress is not None:
            progress(size, size)
        self._maybe_analyze(size)
        return CatchUp(added=added, indexed=size, ledger_size=size, unreadable=bad)

    def _write(self, batch: Sequence[tuple[int, bytes]], hwm: int) -> tuple[int, int]:
        """One transaction: the batch's rows, its zones and the new high-water mark."""
        events: list[tuple[object, ...]] = []
        fts: list[tuple[object, ...]] = []
        bad: list[tuple[int, str]] = []
        zones: dict[int, list[str]] = {}
        for idx, data in batch:
            try:
                rows: EntryRows = rows_for(idx, data)
            except (msgspec.DecodeError, UnicodeError, ValueError) as exc:
                bad.append((idx, str(exc)[:300]))
                continue
            events.append(rows.event)
            fts.append(rows.fts)
            t = str(rows.event[3])
            zone = zones.get(idx >> ZONE_BITS)
            if zone is None:
                zones[idx >> ZONE_BITS] = [t, t]
            elif t < zone[0]:
                zone[0] = t
            elif t > zone[1]:
                zone[1] = t
        marks: list[tuple[str, str]] = [("indexed", str(hwm))]
        if batch:
            last_idx, last_data = batch[-1]
            marks += [("check_idx", str(last_idx)), ("check_sha256", _sha256(last_data))]
        db = self._db
        placeholders = ", ".join("?" * len(EVENT_COLUMNS))
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                insert = f"INSERT INTO events VALUES ({placeholders})"  # noqa: S608 (only '?'s)
                db.executemany(insert, events)
                db.executemany(
                    "INSERT INTO fts (rowid, statement, reason, message, object, name, facets) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    fts,
                )
                db.executemany("INSERT INTO unreadable (idx, reason) VALUES (?, ?)", bad)
                db.executemany(
                    "INSERT INTO zones (zone, min_time, max_time) VALUES (?, ?, ?) "
                    "ON CONFLICT (zone) DO UPDATE SET "
                    "min_time = min(min_time, excluded.min_time), "
                    "max_time = max(max_time, excluded.max_time)",
                    [(z, lo, hi) for z, (lo, hi) in zones.items()],
                )
                db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", marks)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot write search index {self.path}: {exc}") from None
        return len(events), len(bad)

    def _maybe_analyze(self, size: int) -> None:
        """Refresh the statistics SQLite's planner chooses indexes by, when the index grew."""
        meta = _meta(self._db)
        last = int(meta.get("analyzed", "0"))
        if size == 0 or (last and size < last * self._config.analyze_growth):
            return
        try:
            self._db.execute(f"PRAGMA analysis_limit = {int(self._config.analysis_limit)}")
            self._db.execute("ANALYZE")
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('analyzed', ?)", (str(size),)
            )
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot analyze search index {self.path}: {exc}") from None


def catch_up(
    ledger: Ledger | Path,
    *,
    config: IndexConfig | None = None,
    progress: Progress | None = None,
    rebuild: bool = False,
) -> CatchUp:
    """Bring the search index of ``ledger`` up to date, if this process can take the lock.

    When another process holds it (or the directory is read-only) nothing is indexed and
    ``skipped`` says why; with ``rebuild`` the index is thrown away and built again.
    """
    if isinstance(ledger, Path):
        with Ledger(ledger) as opened:
            return catch_up(opened, config=config, progress=progress, rebuild=rebuild)
    indexer, why = Indexer.acquire(ledger, config)
    if indexer is None:
        if rebuild:
            raise UsageError(f"cannot rebuild the search index of {ledger.directory}: {why}")
        indexed = 0
        with contextlib.suppress(UsageError, StorageError), SearchIndex(ledger) as index:
            indexed = index.indexed()
        size = ledger.size()
        return CatchUp(added=0, indexed=indexed, ledger_size=size, unreadable=0, skipped=why)
    with indexer:
        if rebuild:
            indexer.rebuild()
        return indexer.catch_up(progress)


class SearchIndex:
    """A ledger's search index opened read-only for queries. Results are read from the ledger;
    the index only says which entries match."""

    def __init__(self, ledger: Ledger, *, mmap_mib: int = 256) -> None:
        self.ledger = ledger
        self.path = _index_path(ledger.directory)
        if not self.path.exists():
            raise UsageError(
                f"no search index for {ledger.directory} yet: run proctor search once with "
                f"write access to the ledger directory"
            )
        self._lock = threading.Lock()
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open search index {self.path}: {exc}") from None
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA query_only = 1")
            db.execute(f"PRAGMA mmap_size = {int(mmap_mib) << 20}")
            _check_ledger(_meta(db), ledger, self.path)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StorageError(f"cannot open search index {self.path}: {exc}") from None
        except BaseException:
            db.close()
            raise
        self._db = db

    def close(self) -> None:
        """Close the connection (not the ledger)."""
        self._db.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def indexed(self) -> int:
        """How many ledger entries the index covers (indexes 0 .. indexed-1)."""
        return int(_meta_value(self, "indexed") or 0)

    def unreadable(self) -> list[tuple[int, str]]:
        """Entries the indexer could not read, with why (each is also a ``verify`` matter)."""
        return [(int(i), str(r)) for i, r in self.query("SELECT idx, reason FROM unreadable")]

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only statement; SQLite errors become StorageError."""
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StorageError(f"search index {self.path}: {exc}") from None


def _meta_value(index: SearchIndex, key: str) -> str | None:
    rows = index.query("SELECT value FROM meta WHERE key = ?", (key,))
    return str(rows[0][0]) if rows else None
