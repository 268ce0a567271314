"""Per-subject data keys, wrapped by a master key held outside the database (``keys.sqlite``).

Each subject (an ``actor.id``) gets a random AES-256 key the first time one of its events is
sealed. The file keeps it only wrapped: AES-256-GCM under the master key, the subject and key
id as associated data, so a wrapped key moved to another subject's row does not open. The
master key comes from a file (mode 0600) or an environment variable, never from this file.

Erasing a subject deletes its wrapped keys with SQLite's ``secure_delete`` on (freed pages are
overwritten) and truncates the WAL, so the key bytes leave the file. Copies made earlier
(backups, snapshots) still hold them, wrapped: crypto-shredding is only as good as the master
key's custody and the backup policy (docs/privacy.md).

An erasure is made durable in three steps: the intent is written here first, the ``erasure``
event is appended to the ledger, then the keys are deleted. A crash after the intent leaves
it pending; opening the store completes every pending erasure (the keys go) and reports it,
so the caller records that it finished.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from proctor._sqlite import open_side_db
from proctor.errors import StorageError, UsageError

__all__ = ["KEYS_NAME", "KeyStore", "PendingErasure", "read_master_key"]

KEYS_NAME: Final = "keys.sqlite"
_CHECK: Final = b"proctor master key check"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY, subject TEXT NOT NULL, nonce BLOB NOT NULL, wrapped BLOB NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS keys_by_subject ON keys (subject);
CREATE TABLE IF NOT EXISTS erasures (
    subject TEXT NOT NULL, key_ids TEXT NOT NULL, requested INTEGER NOT NULL,
    done INTEGER, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""


def read_master_key(*, file: Path | None = None, env_value: str | None = None) -> bytes:
    """The 32-byte master key from a file (raw or base64 text) or an environment value."""
    if file is not None:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise UsageError(
                f"privacy.master_key_file: cannot read {file}: {exc.strerror}"
            ) from None
        if file.stat().st_mode & 0o077:
            raise UsageError(f"privacy.master_key_file: {file} is readable by others (chmod 600)")
        where = "privacy.master_key_file"
    elif env_value is not None:
        data, where = env_value.encode(), "privacy.master_key_env"
    else:
        raise UsageError("privacy: give master_key_file or master_key_env")
    if len(data) == 32:
        return data
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise UsageError(f"{where}: the master key must be 32 bytes (raw, or base64)")
    return key


@dataclass(frozen=True)
class PendingErasure:
    """An erasure whose keys were deleted when the store opened, after an interruption."""

    subject: str
    key_ids: tuple[str, ...]
    reason: str


class KeyStore:
    """Subject keys: created on first use, unwrapped on demand, destroyed by erasure."""

    def __init__(self, path: Path, master: bytes) -> None:
        self.path = path
        self._master = AESGCM(master)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, bytes]] = {}
        """subject → (key id, key) of its current key."""
        self._db = open_side_db(path, "key store", _SCHEMA)
        try:
            self._db.execute("PRAGMA secure_delete = ON")
            self._check_master()
            self.completed = self._complete_pending()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StorageError(f"cannot open key store {path}: {exc}") from None
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Forget cached keys and close the file."""
        with self._lock:
            self._cache.clear()
            self._db.close()

    # -- wrapping ----------------------------------------------------------------------------

    def _check_master(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'check'").fetchone()
        if row is None:
            nonce = secrets.token_bytes(12)
            sealed = nonce + self._master.encrypt(nonce, _CHECK, b"check")
            self._db.execute("INSERT INTO meta VALUES ('check', ?)", (sealed,))
            return
        value = bytes(row[0])
        try:
            self._master.decrypt(value[:12], value[12:], b"check")
        except InvalidTag:
            raise UsageError(
                f"the master key does not open {self.path} (another key than the one it was "
                "made with)"
            ) from None

    def _unwrap(self, key_id: str, subject: str, nonce: bytes, wrapped: bytes) -> bytes:
        try:
            return self._master.decrypt(nonce, wrapped, f"{subject}\n{key_id}".encode())
        except InvalidTag:
            raise StorageError(f"key {key_id} in {self.path} does not unwrap: damaged") from None

    # -- use ---------------------------------------------------------------------------------

    def key_for(self, subject: str) -> tuple[str, bytes]:
        """The subject's current key (id, 32 bytes), made and stored on first use."""
        with self._lock:
            cached = self._cache.get(subject)
            if cached is not None:
                return cached
            row = self._db.execute(
                "SELECT key_id, nonce, wrapped FROM keys WHERE subject = ? "
                "ORDER BY created DESC, key_id LIMIT 1",
                (subject,),
            ).fetchone()
            if row is not None:
                key_id = row[0]
                found = (key_id, self._unwrap(key_id, subject, bytes(row[1]), bytes(row[2])))
            else:
                key_id, key = secrets.token_hex(16), AESGCM.generate_key(bit_length=256)
                nonce = secrets.token_bytes(12)
                wrapped = self._master.encrypt(nonce, key, f"{subject}\n{key_id}".encode())
                try:
                    self._db.execute(
                        "INSERT INTO keys VALUES (?, ?, ?, ?, ?)",
                        (key_id, subject, nonce, wrapped, time.time_ns()),
                    )
                except sqlite3.DatabaseError as exc:
                    raise StorageError(f"cannot write key store {self.path}: {exc}") from None
                found = (key_id, key)
            self._cache[subject] = found
            return found

    def key(self, subject: str, key_id: str) -> bytes | None:
        """The key ``key_id`` of ``subject``; None once it was erased (or never existed)."""
        with self._lock:
            cached = self._cache.get(subject)
            if cached is not None and cached[0] == key_id:
                return cached[1]
            row = self._db.execute(
                "SELECT nonce, wrapped FROM keys WHERE key_id = ? AND subject = ?",
                (key_id, subject),
            ).fetchone()
        if row is None:
            return None
        return self._unwrap(key_id, subject, bytes(row[0]), bytes(row[1]))

    def key_ids(self, subject: str) -> tuple[str, ...]:
        """The ids of the subject's keys still held."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id FROM keys WHERE subject = ? ORDER BY created, key_id", (subject,)
            ).fetchall()
        return tuple(r[0] for r in rows)

    # -- erasure -----------------------------------------------------------------------------

    def begin_erasure(self, subject: str, reason: str) -> tuple[str, ...]:
        """Record the intent to erase ``subject`` (durable); the key ids it will destroy.

        From here on no new event of the subject is sealed with these keys: the cache entry
        goes, and :meth:`finish_erasure` (or the next open) deletes them.
        """
        ids = self.key_ids(subject)
        if not ids:
            raise UsageError(f"no keys held for subject {subject!r} (nothing sealed, or erased)")
        with self._lock:
            self._cache.pop(subject, None)
            self._db.execute(
                "INSERT INTO erasures (subject, key_ids, requested, reason) VALUES (?, ?, ?, ?)",
                (subject, ",".join(ids), time.time_ns(), reason),
            )
        return ids

    def cancel_erasure(self, subject: str) -> None:
        """Drop a pending intent whose ledger event could not be written: nothing is erased."""
        with self._lock:
            self._db.execute("DELETE FROM erasures WHERE subject = ? AND done IS NULL", (subject,))

    def finish_erasure(self, subject: str) -> None:
        """Delete the subject's pending keys, overwrite the freed pages, truncate the WAL."""
        with self._lock:
            self._destroy(subject)

    def _destroy(self, subject: str) -> None:
        rows = self._db.execute(
            "SELECT rowid, key_ids FROM erasures WHERE subject = ? AND done IS NULL", (subject,)
        ).fetchall()
        self._cache.pop(subject, None)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for rowid, key_ids in rows:
                for key_id in key_ids.split(","):
                    self._db.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))
                self._db.execute(
                    "UPDATE erasures SET done = ? WHERE rowid = ?", (time.time_ns(), rowid)
                )
            self._db.execute("COMMIT")
            # The deleted pages are zeroed in the database; the WAL still holds the frames
            # that wrote them until it is folded back and truncated.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StorageError(f"cannot erase keys in {self.path}: {exc}") from None

    def _complete_pending(self) -> list[PendingErasure]:
        rows = self._db.execute(
            "SELECT subject, key_ids, reason FROM erasures WHERE done IS NULL"
        ).fetchall()
        done = []
        for subject, key_ids, reason in rows:
            self._destroy(subject)
            done.append(PendingErasure(subject, tuple(key_ids.split(",")), reason))
        return done
