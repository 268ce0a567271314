"""The ledger's storage: one SQLite database in WAL mode.

The interface is deliberately narrow so a PostgreSQL store can follow: append a batch of
entries with the tiles it changed (one transaction), read entries, read tiles, add and list
checkpoints. Entries and checkpoints are append-only; triggers refuse UPDATE and DELETE so a
bug cannot rewrite history (someone with the file can, which is what verification catches).

The one exception is retention (docs/retention.md): a ``prunes`` row, written in the same
transaction as the ``retention.pruned`` event that records it, raises the *floor* (the
smallest retained index); entry bodies below the floor may then be deleted, nothing else.
Level-0 tiles keep every leaf hash, so roots and proofs do not change. ``prunes`` is
append-only itself and only moves forward, each range starting where the last one ended.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from proctor.errors import StorageError, UsageError

__all__ = ["SCHEMA_VERSION", "Durability", "Prune", "SqliteStore", "StoredCheckpoint"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
Durability = Literal["os", "fsync"]
WAL_LIMIT_BYTES = 64 << 20
WAL_NUDGES = 4
"""The background checkpointer is woken this many times per ``wal_limit_bytes`` written.

Each checkpoint fsyncs the database file, so fewer is cheaper; 4 and 16 measured alike here
(docs/benchmarks.md, "WAL checkpoints")."""
"""The WAL may grow to about this size before the writer makes sure it starts over."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tiles (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY, note TEXT NOT NULL, created_ns INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_append_only_u BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_u BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_d BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TABLE IF NOT EXISTS prunes (
    below INTEGER PRIMARY KEY, first INTEGER NOT NULL, event_index INTEGER NOT NULL,
    rule TEXT NOT NULL, archive TEXT NOT NULL, archive_sha256 TEXT NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS prunes_append_only_u BEFORE UPDATE ON prunes
    BEGIN SELECT RAISE(ABORT, 'prunes are append-only'); END;
CREATE TRIGGER IF NOT EXISTS prunes_append_only_d BEFORE DELETE ON prunes
    BEGIN SELECT RAISE(ABORT, 'prunes are append-only'); END;
CREATE TRIGGER IF NOT EXISTS prunes_forward_only BEFORE INSERT ON prunes
    WHEN NEW.first != (SELECT coalesce(max(below), 0) FROM prunes)
        OR NEW.below <= NEW.first
        OR NEW.event_index < NEW.below
        OR NEW.event_index > (SELECT coalesce(max(idx), -1) FROM entries)
    BEGIN SELECT RAISE(ABORT, 'a prune must start at the floor and end at or before its event');
    END;
"""
# Ledgers made before retention refused every DELETE on entries; the trigger is replaced (in
# one transaction) by one that lets through only rows below the floor that ``prunes`` sets.
_DELETE_TRIGGER = """
BEGIN IMMEDIATE;
DROP TRIGGER IF EXISTS entries_append_only_d;
CREATE TRIGGER entries_append_only_d BEFORE DELETE ON entries
    WHEN OLD.idx >= (SELECT coalesce(max(below), 0) FROM prunes)
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only (but for pruned bodies)'); END;
COMMIT;
"""


@dataclass(frozen=True)
class Prune:
    """A recorded retention prune: bodies of ``[first, below)`` removed, archived elsewhere.

    ``event_index`` is the ``retention.pruned`` event written in the same transaction.
    """

    below: int
    first: int
    event_index: int
    rule: str
    archive: str
    archive_sha256: str
    created_ns: int


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint note as stored, with the size it claims and when it was made."""

    size: int
    note: str
    created_ns: int


class SqliteStore:
    """A ledger database file. Not thread-safe: one connection per thread."""

    def __init__(
        self,
        path: Path,
        *,
        durability: Durability = "os",
        readonly: bool = False,
        wal_limit_bytes: int = WAL_LIMIT_BYTES,
    ):
        self.path = path
        self._abs_path = path.resolve()  # the checkpointer must find this file after a chdir
        self._closed = False
        self._readonly = readonly
        self._wal_limit = wal_limit_bytes
        self._durability: Durability = durability
        self._checkpointer: _WalCheckpointer | None = None
        self._wal_bytes = 0  # written since the checkpointer was last woken
        self._wal_since_reset = 0  # written since the writer last made the WAL start over
        if readonly and not path.exists():
            raise UsageError(f"no ledger database at {path}")
        try:
            if readonly:
                uri = f"{path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            if not readonly:
                self._db.execute("PRAGMA journal_mode = WAL")
                # WAL + NORMAL: a commit is written to the OS (survives a crash of this process);
                # WAL + FULL: the WAL is fsynced at each commit (survives power loss).
                sync = "FULL" if durability == "fsync" else "NORMAL"
                self._db.execute(f"PRAGMA synchronous = {sync}")
                # A WAL checkpoint copies pages into the database file and fsyncs it. Run by
                # the writer at commit (SQLite's default), that stall lands on whoever waits
                # for the commit, so the writer never checkpoints on its own account:
                # _WalCheckpointer does it from a second connection (docs/benchmarks.md,
                # "WAL checkpoints", for what that bought and what it did not).
                self._db.execute("PRAGMA wal_autocheckpoint = 0")
                self._db.execute(f"PRAGMA journal_size_limit = {wal_limit_bytes}")
                self._db.executescript(_SCHEMA)
                self._db.executescript(_DELETE_TRIGGER)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open ledger database {path}: {exc}") from None

    def _check_schema(self) -> None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{self.path} is not a Proctor ledger: {exc}") from None
        if row is None:
            return  # new database, meta written by init
        if row[0] != SCHEMA_VERSION:
            raise StorageError(f"ledger schema {row[0]} is not supported (need {SCHEMA_VERSION})")

    def close(self) -> None:
        """Fold the WAL into the database file (writer only), then close the connection."""
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if not self._readonly:
            # SQLite folds the WAL back only when the last connection closes, and a read-only
            # one cannot: do it here so the database file alone holds every entry.
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.DatabaseError as exc:  # readers still open: the WAL stays, safe
                log.warning("WAL checkpoint at close failed: %s", exc)
        self._db.close()

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A metadata value (origin, schema version)."""
        row = self._run("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def init_meta(self, values: Mapping[str, str]) -> None:
        """Write metadata once, at ledger creation."""
        with self._tx():
            for k, v in {"schema": SCHEMA_VERSION, **values}.items():
                self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (k, v))

    # -- entries and tiles ------------------------------------------------------------------

    def size(self) -> int:
        """Number of entries (one past the highest index)."""
        row = self._run("SELECT max(idx) FROM entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def append(
        self,
        start: int,
        entries: Sequence[bytes],
        tiles: Mapping[tuple[int, int], bytes],
        prune: Prune | None = None,
    ) -> None:
        """Write entries at ``start, start+1, …`` and the changed tiles, atomically.

        With ``prune`` (whose ``event_index`` is one of these entries) the floor moves in the
        same transaction: the record of a prune and the prune are one commit.
        """
        with self._tx():
            row = self._db.execute("SELECT max(idx) FROM entries").fetchone()
            have = 0 if row[0] is None else int(row[0]) + 1
            if have != start:
                raise StorageError(f"ledger has {have} entries, append expected {start}")
            self._db.executemany(
                "INSERT INTO entries (idx, data) VALUES (?, ?)",
                zip(range(start, start + len(entries)), entries, strict=True),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO tiles (level, idx, data) VALUES (?, ?, ?)",
                [(lv, ix, d) for (lv, ix), d in tiles.items()],
            )
            if prune is not None:
                if not start <= prune.event_index < start + len(entries):
                    raise StorageError(
                        f"prune event index {prune.event_index} is not in this batch"
                    )
                self._db.execute(
                    "INSERT INTO prunes (below, first, event_index, rule, archive, "
                    "archive_sha256, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        prune.below,
                        prune.first,
                        prune.event_index,
                        prune.rule,
                        prune.archive,
                        prune.archive_sha256,
                        prune.created_ns,
                    ),
                )
        # Roughly what the commit added to the WAL: the entries and the rewritten tiles.
        self._wal_bytes += sum(map(len, entries)) + sum(map(len, tiles.values()))
        if self._wal_bytes >= self._wal_limit // WAL_NUDGES:
            self._wal_bytes = 0
            try:  # the batch is committed: housekeeping must not make it look failed
                self._nudge_checkpointer()
            except (sqlite3.Error, OSError, RuntimeError) as exc:
                log.warning("WAL checkpoint not started: %s", exc)

    def _nudge_checkpointer(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = _WalCheckpointer(self._abs_path, self._durability)
        ckpt = self._checkpointer
        ckpt.nudge()
        # The WAL starts over only if, when a write begins, a checkpoint has copied every frame.
        # A writer that never pauses can win that race forever, so once the WAL passes the
        # limit the writer copies the few frames the background left over itself (it did the
        # bulk) and its next transaction starts the WAL from the beginning.
        self._wal_since_reset += self._wal_limit // WAL_NUDGES
        if self._wal_since_reset >= self._wal_limit:
            self._wal_since_reset = 0
            with ckpt.busy:  # wait for a background checkpoint in progress (two would clash)
                try:
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.DatabaseError as exc:
                    log.warning("WAL checkpoint failed: %s", exc)

    def entry(self, index: int) -> bytes | None:
        """The stored bytes of one entry."""
        row = self._run("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
        return None if row is None else bytes(row[0])

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """``(index, bytes)`` in index order, as stored (gaps show as skipped indexes)."""
        hi = (1 << 63) - 1 if end is None else end
        cur = self._run(
            "SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, hi)
        )
        try:
            while rows := cur.fetchmany(4096):
                for idx, data in rows:
                    yield int(idx), bytes(data)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot read ledger entries: {exc}") from None

    def count(self) -> int:
        """Number of stored entry rows (differs from size() only when rows are missing)."""
        return int(self._run("SELECT count(*) FROM entries").fetchone()[0])

    # -- retention --------------------------------------------------------------------------

    def prunes(self) -> list[Prune]:
        """Every recorded prune, lowest range first (none in a ledger made before retention)."""
        try:
            rows = self._db.execute(
                "SELECT below, first, event_index, rule, archive, archive_sha256, created_ns "
                "FROM prunes ORDER BY below"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # opened read-only, never opened by a writer since
                return []
            raise StorageError(f"ledger database {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"ledger database {self.path}: {exc}") from None
        return [
            Prune(int(b), int(f), int(e), str(r), str(a), str(h), int(c))
            for b, f, e, r, a, h, c in rows
        ]

    def floor(self) -> int:
        """The smallest retained index: bodies below it are pruned (0: nothing pruned)."""
        try:
            row = self._db.execute("SELECT max(below) FROM prunes").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise StorageError(f"ledger database {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"ledger database {self.path}: {exc}") from None
        return 0 if row[0] is None else int(row[0])

    def rows_below_floor(self) -> int:
        """Bodies still stored below the floor (a sweep was interrupted)."""
        floor = self.floor()
        row = self._run(
            "SELECT count(*) FROM entries WHERE idx >= 0 AND idx < ?", (floor,)
        ).fetchone()
        return int(row[0])

    def sweep(self, max_rows: int) -> int:
        """Delete up to ``max_rows`` entry bodies below the floor, in one transaction.

        Returns how many were deleted (0: none left). The delete trigger refuses any row at or
        above the floor, whoever asks.
        """
        with self._tx():
            floor = self.floor()
            row = self._db.execute(
                "SELECT min(idx) FROM entries WHERE idx >= 0 AND idx < ?", (floor,)
            ).fetchone()
            if row[0] is None:
                return 0
            lo = int(row[0])
            cur = self._db.execute(
                "DELETE FROM entries WHERE idx >= ? AND idx < ?", (lo, min(floor, lo + max_rows))
            )
            return int(cur.rowcount)

    def read_tile(self, level: int, index: int) -> bytes | None:
        """A tile's hashes, or None when not stored."""
        row = self._run(
            "SELECT data FROM tiles WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def last_tile(self, level: int) -> tuple[int, bytes] | None:
        """The stored tile with the highest index at ``level``."""
        row = self._run(
            "SELECT idx, data FROM tiles WHERE level = ? ORDER BY idx DESC LIMIT 1", (level,)
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    # -- checkpoints ------------------------------------------------------------------------

    def add_checkpoint(self, size: int, note: str, created_ns: int) -> None:
        """Keep a signed checkpoint (one per size; a second one for a size is ignored)."""
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO checkpoints (size, note, created_ns) VALUES (?, ?, ?)",
                (size, note, created_ns),
            )

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, smallest size first."""
        rows = self._run("SELECT size, note, created_ns FROM checkpoints ORDER BY size").fetchall()
        return [StoredCheckpoint(int(s), str(n), int(c)) for s, n, c in rows]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest size."""
        row = self._run(
            "SELECT size, note, created_ns FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else StoredCheckpoint(int(row[0]), str(row[1]), int(row[2]))

    # -- plumbing ---------------------------------------------------------------------------

    def _run(self, sql: str, args: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"ledger database {self.path}: {exc}") from None

    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self.path)

    def database_file(self) -> Path:
        """The file this store reads, as an absolute path: the one SQLite opened, even if the
        working directory changed since (verification opens it again, read-only, per process).
        """
        row = self._run("PRAGMA database_list").fetchone()  # (seq, "main", file) comes first
        return Path(row[2]) if row is not None and row[2] else self.path.resolve()


class _WalCheckpointer:
    """Copies the WAL into the database file from its own connection and thread.

    A PASSIVE checkpoint never waits for the writer or readers: it copies what it can and
    returns. SQLite releases the GIL while it works, so the copy and its fsync run on another
    core while the writer goes on committing. When a checkpoint has copied every frame before
    the writer's next transaction begins, that transaction starts the WAL over from its
    beginning (and ``journal_size_limit`` cuts the file back); ``SqliteStore`` makes sure this
    happens at least once per ``wal_limit_bytes`` written.
    """

    def __init__(self, path: Path, durability: Durability) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute(f"PRAGMA synchronous = {'FULL' if durability == 'fsync' else 'NORMAL'}")
        self._wake = threading.Event()
        self._stop = False
        self.busy = threading.Lock()  # held while a checkpoint runs
        self._thread = threading.Thread(target=self._run, name="ledger-wal", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """Ask for a checkpoint soon (cheap; repeated nudges before it runs fold into one)."""
        self._wake.set()

    def close(self) -> None:
        """Stop the thread and close its connection."""
        self._stop = True
        self._wake.set()
        self._thread.join()
        self._db.close()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                with self.busy:
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.DatabaseError as exc:
                # Not fatal: committed data is safe in the WAL; the next nudge tries again.
                log.warning("WAL checkpoint failed: %s", exc)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error, errors mapped to StorageError."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"ledger database {self._path}: {exc}") from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.DatabaseError as err:
                self._db.execute("ROLLBACK")
                raise StorageError(f"ledger database {self._path}: {err}") from None
        self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.DatabaseError):
            raise StorageError(f"ledger database {self._path}: {exc}") from None
