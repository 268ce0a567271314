"""API tokens for the audit service, stored hashed (``tokens.sqlite`` beside the ledger).

A token reads ``prt_<id>_<secret>``: ``id`` (16 hex digits) names the row, ``secret`` is 32
random bytes in unpadded base64url. Only ``SHA-256(secret)`` is stored. A fast hash is enough
here, unlike for passwords: the secret is 256 bits from ``secrets``, so nobody who steals the
file can guess back a token, and a slow KDF would only cost every request time. Comparison is
constant-time.

Revocation and expiry are read from the file on every request, so ``proctor tokens revoke``
takes effect for the next request without restarting the service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

from proctor._sqlite import open_side_db
from proctor.errors import InputError, StorageError, UsageError

__all__ = ["ROLES", "TOKENS_NAME", "ApiToken", "Role", "TokenStore", "UnknownToken"]

TOKENS_NAME: Final = "tokens.sqlite"

Role = Literal["admin", "auditor", "ingest"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)

_PREFIX: Final = "prt_"
_TOKEN_RE: Final = re.compile(r"prt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
    digest BLOB NOT NULL, created INTEGER NOT NULL, expires INTEGER, revoked INTEGER
) WITHOUT ROWID;
"""


class UnknownToken(InputError):
    """A bearer token that is malformed, unknown, revoked or expired (never says which)."""


@dataclass(frozen=True)
class ApiToken:
    """One token's record (without its secret)."""

    id: str
    name: str
    role: Role
    created: int
    expires: int | None
    revoked: int | None

    def state(self, now: float) -> str:
        """``active``, ``revoked`` or ``expired`` at Unix time ``now``."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and now >= self.expires:
            return "expired"
        return "active"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class TokenStore:
    """Create, check, list and revoke API tokens in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_side_db(path, "token store", _SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def create(self, name: str, role: str, *, ttl_s: int | None = None) -> tuple[ApiToken, str]:
        """A new token for ``role``; returns its record and the token text (shown once)."""
        if role not in ROLES:
            raise UsageError(f"role: {role!r} is not one of {', '.join(ROLES)}")
        if _NAME_RE.fullmatch(name) is None:
            raise UsageError(f"name: {name!r} must be 1-64 of letters, digits and _.@- ")
        if re.fullmatch("[0-9a-f]{16}", name):
            raise UsageError(f"name: {name!r} looks like a token id; choose another name")
        if ttl_s is not None and ttl_s <= 0:
            raise UsageError("ttl: must be positive")
        token_id = secrets.token_hex(8)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        now = int(time.time())
        expires = None if ttl_s is None else now + ttl_s
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO tokens (id, name, role, digest, created, expires) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (token_id, name, role, _digest(secret), now, expires),
                )
        except sqlite3.IntegrityError:
            raise UsageError(f"name: a token named {name!r} exists already") from None
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot write {self.path}: {exc}") from None
        record = ApiToken(token_id, name, role, now, expires, None)
        return record, f"{_PREFIX}{token_id}_{secret}"

    def check(self, token: str, *, now: float | None = None) -> ApiToken:
        """The record of a valid, active token; ``UnknownToken`` otherwise."""
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            raise UnknownToken("invalid token")
        token_id, secret = match.groups()
        row = self._row(token_id, by_name=False)
        if row is None:
            _digest(secret)  # the same work as a known id, so timing tells nothing
            raise UnknownToken("invalid token")
        record, digest = row
        if not hmac.compare_digest(digest, _digest(secret)):
            raise UnknownToken("invalid token")
        if record.state(time.time() if now is None else now) != "active":
            raise UnknownToken("invalid token")
        return record

    def list(self) -> list[ApiToken]:
        """Every token, oldest first."""
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, name, role, created, expires, revoked FROM tokens "
                    "ORDER BY created, id"
                ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from None
        return [ApiToken(*row) for row in rows]

    def revoke(self, name_or_id: str) -> ApiToken:
        """Revoke a token by name or id (kept, marked revoked, never reusable)."""
        now = int(time.time())
        try:
            with self._lock:
                cur = self._db.execute(
                    "UPDATE tokens SET revoked = ? WHERE (name = ? OR id = ?) AND revoked IS NULL",
                    (now, name_or_id, name_or_id),
                )
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot write {self.path}: {exc}") from None
        row = self._row(name_or_id)
        if row is None:
            raise UsageError(f"no token named {name_or_id!r}")
        if cur.rowcount == 0:
            raise UsageError(f"token {name_or_id!r} is revoked already")
        return row[0]

    def _row(self, key: str, *, by_name: bool = True) -> tuple[ApiToken, bytes] | None:
        """The row whose id is ``key`` (or, with ``by_name``, whose name is)."""
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT id, name, role, created, expires, revoked, digest FROM tokens "
                    "WHERE id = ? OR (? AND name = ?) ORDER BY id = ? DESC LIMIT 1",
                    (key, by_name, key, key),
                ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from None
        if row is None:
            return None
        return ApiToken(*row[:6]), bytes(row[6])
