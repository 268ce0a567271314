"""Every policy revision ever loaded, kept so any past decision can be replayed.

One SQLite table, append-only like the ledger (triggers refuse UPDATE and DELETE). A
revision's id is the SHA-256 of its text (:func:`proctor.policy.loader.revision_of`), so the
archive cannot hand back different text under a recorded revision without it showing:
:meth:`PolicyArchive.get` recomputes the hash and refuses a mismatch.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from proctor._sqlite import open_side_db
from proctor.errors import StorageError, VerificationError
from proctor.policy.loader import PolicyBundle, load_policy_texts, revision_of
from proctor.policy.schema import SCHEMA_TEXT

__all__ = ["PolicyArchive"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revisions (
    revision TEXT PRIMARY KEY, created_ns INTEGER NOT NULL, files TEXT NOT NULL,
    schema TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS revisions_append_only_u BEFORE UPDATE ON revisions
    BEGIN SELECT RAISE(ABORT, 'policy revisions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS revisions_append_only_d BEFORE DELETE ON revisions
    BEGIN SELECT RAISE(ABORT, 'policy revisions are append-only'); END;
"""


class PolicyArchive:
    """Policy revisions by id, in a SQLite file (or in memory for tests and one-off runs)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._db = open_side_db(path, "policy archive", _SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def keep(self, bundle: PolicyBundle) -> None:
        """Archive a bundle's text (once per revision)."""
        files = json.dumps(dict(bundle.files), sort_keys=True)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO revisions VALUES (?, ?, ?, ?)",
                    (bundle.revision, time.time_ns(), files, SCHEMA_TEXT),
                )
            except sqlite3.DatabaseError as exc:
                raise StorageError(f"policy archive {self.path}: {exc}") from None

    def get(self, revision: str) -> PolicyBundle | None:
        """The bundle of a revision, rebuilt from its text; None when it was never archived."""
        with self._lock:
            row = self._db.execute(
                "SELECT files, schema FROM revisions WHERE revision = ?", (revision,)
            ).fetchone()
        if row is None:
            return None
        files = json.loads(row[0])
        if not isinstance(files, dict) or revision_of(files, row[1]) != revision:
            raise VerificationError(
                f"policy archive {self.path}: the text stored for revision {revision[:16]} "
                "does not hash to it (the archive was altered)"
            )
        # Replayed under today's schema: a revision written for an older one is reported
        # by the loader as not loading, never decided differently in silence.
        return load_policy_texts(files)

    def revisions(self) -> list[tuple[str, int]]:
        """Every archived revision with when it was first kept, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT revision, created_ns FROM revisions ORDER BY created_ns"
            ).fetchall()
        return [(str(r), int(c)) for r, c in rows]
