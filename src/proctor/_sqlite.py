"""The small SQLite files beside a ledger (baselines, policy archive): opened one way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from proctor.errors import StorageError

__all__ = ["open_side_db"]


def open_side_db(path: Path | None, what: str, schema: str) -> sqlite3.Connection:
    """A WAL-mode connection (in memory when ``path`` is None) with ``schema`` applied.

    Autocommit (callers write with explicit BEGIN/COMMIT), usable from any thread (callers
    hold their own lock), ``synchronous=NORMAL``: a commit survives a crash of Proctor. Any
    failure is a StorageError naming ``what`` and the file.
    """
    try:
        db = sqlite3.connect(
            ":memory:" if path is None else path, check_same_thread=False, isolation_level=None
        )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(schema)
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot open {what} {path}: {exc}") from None
    return db
