"""What is normal for each user, and for the whole population, learned from allowed activity.

The risk engine reads baselines on every request and teaches them only through
:meth:`Baselines.learn_session` and :meth:`Baselines.learn_statement`, which the caller runs
after a request was **allowed and succeeded**: an attacker's denied attempts never become
"normal". Failed authentications are kept apart (:meth:`record_auth_failure`), only to count
their rate.

Baselines live in SQLite (``baselines.sqlite`` beside the ledger by default) and are cached in
memory per user. Only this object writes the file, so the cache is exact: every change goes
through it and bumps the user's ``version``, which is what a decision cache may key on.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from proctor._sqlite import open_side_db
from proctor.errors import StorageError

__all__ = ["FEATURES", "Baselines", "UserBaseline"]

FEATURES: Final = ("ip", "asn", "country", "device", "user_agent", "ua_product")
"""Session-start features counted per user and for the population ('' user)."""
POPULATION: Final = ""
FAILURE_WINDOW_NS: Final = 3600 * 1_000_000_000  # failures older than this are forgotten

_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    user TEXT NOT NULL, feature TEXT NOT NULL, value TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (user, feature, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    user TEXT PRIMARY KEY, sessions INTEGER NOT NULL, hours TEXT NOT NULL,
    last_lat_e6 INTEGER, last_lon_e6 INTEGER, last_ns INTEGER,
    statements INTEGER NOT NULL DEFAULT 0, rows_sum INTEGER NOT NULL DEFAULT 0,
    rows_sumsq INTEGER NOT NULL DEFAULT 0, rate_sum INTEGER NOT NULL DEFAULT 0,
    rate_sumsq INTEGER NOT NULL DEFAULT 0, rate_n INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS failures (user TEXT NOT NULL, time_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS failures_by_user ON failures (user, time_ns);
"""


@dataclass
class UserBaseline:
    """One user's (or the population's) learned behaviour; read-only outside this module."""

    sessions: int = 0
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    totals: Counter[str] = field(default_factory=Counter)
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    last_lat_e6: int | None = None
    last_lon_e6: int | None = None
    last_ns: int | None = None
    statements: int = 0
    rows_sum: int = 0
    rows_sumsq: int = 0
    rate_n: int = 0
    rate_sum: int = 0
    rate_sumsq: int = 0
    version: int = 0

    def count(self, feature: str, value: str) -> int:
        """How often ``value`` was seen for ``feature``."""
        c = self.counts.get(feature)
        return 0 if c is None else c.get(value, 0)

    def distinct(self, feature: str) -> int:
        """How many different values ``feature`` has taken."""
        c = self.counts.get(feature)
        return 0 if c is None else len(c)


@dataclass(frozen=True)
class SessionFacts:
    """The session-start facts a baseline learns: feature values, hour, location, time."""

    values: dict[str, str]
    hour: int
    time_ns: int
    lat_e6: int | None = None
    lon_e6: int | None = None


class Baselines:
    """Per-user and population baselines in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path | None = None, statement_flush_s: float = 1.0) -> None:
        self.path = path
        # Statement counts are written behind, at most once per ``statement_flush_s`` (and on
        # close): a gateway learns after every statement, and one SQLite transaction each
        # would cost more than the rest of the learning. A crash loses at most that window
        # of counts; the counts in memory are the ones assessments read.
        self.statement_flush_ns = int(statement_flush_s * 1e9)
        self._dirty: dict[str, UserBaseline] = {}
        self._flushed_ns = time.monotonic_ns()
        self._db = open_side_db(path, "baselines", _SCHEMA)
        self._lock = threading.Lock()
        self._cache: dict[str, UserBaseline] = {}
        # Recent failures in memory (the file keeps them across restarts): read on every request.
        self._failures: dict[str, list[int]] = {}
        for who, t in self._db.execute("SELECT user, time_ns FROM failures ORDER BY time_ns"):
            self._failures.setdefault(str(who), []).append(int(t))
        self.population = self._load(POPULATION)
        self.users = int(
            self._db.execute("SELECT count(*) FROM users WHERE user != ''").fetchone()[0]
        )

    def close(self) -> None:
        """Write what is still held back, then close the database."""
        with self._lock:
            self._flush_statements()
        self._db.close()

    def _flush_statements(self) -> None:
        if self._dirty:
            self._write([], list(self._dirty.items()))
            self._dirty.clear()
        self._flushed_ns = time.monotonic_ns()

    def user(self, user: str) -> UserBaseline:
        """The user's baseline (empty for a user never seen)."""
        b = self._cache.get(user)
        if b is None:
            with self._lock:
                b = self._cache.get(user) or self._load(user)
                self._cache[user] = b
        return b

    def failures(self, user: str, since_ns: int) -> int:
        """Failed authentications of ``user`` since ``since_ns`` (within the last hour)."""
        times = self._failures.get(user)
        return 0 if not times else sum(1 for t in times if t >= since_ns)

    # -- learning ----------------------------------------------------------------------------

    def learn_session(self, user: str, facts: SessionFacts) -> None:
        """Teach an allowed, successful session start: feature values, hour, location."""
        with self._lock:
            b = self._cache.get(user) or self._load(user)
            self._cache[user] = b
            new_user = b.sessions == 0
            rows = []
            for who, base in ((user, b), (POPULATION, self.population)):
                base.sessions += 1
                base.hours[facts.hour] += 1
                base.version += 1
                for feature, value in facts.values.items():
                    base.counts.setdefault(feature, Counter())[value] += 1
                    base.totals[feature] += 1
                    rows.append((who, feature, value))
            if facts.lat_e6 is not None and facts.lon_e6 is not None:
                b.last_lat_e6, b.last_lon_e6, b.last_ns = facts.lat_e6, facts.lon_e6, facts.time_ns
            self.users += new_user
            self._dirty.pop(user, None)  # this write carries its statement counts too
            self._write(rows, [(user, b), (POPULATION, self.population)])

    def learn_statement(self, user: str, rows: int, per_minute: int | None = None) -> None:
        """Teach an allowed, successful statement: rows it returned or changed, request rate."""
        with self._lock:
            b = self._cache.get(user) or self._load(user)
            self._cache[user] = b
            b.statements += 1
            b.rows_sum += rows
            b.rows_sumsq += rows * rows
            if per_minute is not None:
                b.rate_n += 1
                b.rate_sum += per_minute
                b.rate_sumsq += per_minute * per_minute
            b.version += 1
            self._dirty[user] = b
            if time.monotonic_ns() - self._flushed_ns >= self.statement_flush_ns:
                self._flush_statements()

    def record_auth_failure(self, user: str, time_ns: int | None = None) -> None:
        """Count a failed authentication (kept an hour, never learned as normal)."""
        now = time.time_ns() if time_ns is None else time_ns
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT INTO failures VALUES (?, ?)", (user, now))
                self._db.execute(
                    "DELETE FROM failures WHERE time_ns < ?", (now - FAILURE_WINDOW_NS,)
                )
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._db.execute("ROLLBACK")
                raise StorageError(f"baselines {self.path}: {exc}") from None
            cutoff = now - FAILURE_WINDOW_NS
            for who in list(self._failures):
                kept = [t for t in self._failures[who] if t >= cutoff]
                if kept:
                    self._failures[who] = kept
                else:
                    del self._failures[who]
            self._failures.setdefault(user, []).append(now)

    # -- storage -----------------------------------------------------------------------------

    def _load(self, user: str) -> UserBaseline:
        b = UserBaseline()
        row = self._db.execute(
            "SELECT sessions, hours, last_lat_e6, last_lon_e6, last_ns, statements, rows_sum,"
            " rows_sumsq, rate_n, rate_sum, rate_sumsq FROM users WHERE user = ?",
            (user,),
        ).fetchone()
        if row is not None:
            b.sessions = int(row[0])
            b.hours = [int(x) for x in row[1].split(",")]
            b.last_lat_e6, b.last_lon_e6, b.last_ns = row[2], row[3], row[4]
            (b.statements, b.rows_sum, b.rows_sumsq, b.rate_n, b.rate_sum, b.rate_sumsq) = map(
                int, row[5:11]
            )
        for feature, value, n in self._db.execute(
            "SELECT feature, value, n FROM features WHERE user = ?", (user,)
        ):
            b.counts.setdefault(feature, Counter())[value] = int(n)
            b.totals[feature] += int(n)
        return b

    def _write(
        self, features: Iterable[tuple[str, str, str]], users: list[tuple[str, UserBaseline]]
    ) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO features VALUES (?, ?, ?, 1)"
                " ON CONFLICT (user, feature, value) DO UPDATE SET n = n + 1",
                features,
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        u,
                        b.sessions,
                        ",".join(map(str, b.hours)),
                        b.last_lat_e6,
                        b.last_lon_e6,
                        b.last_ns,
                        b.statements,
                        b.rows_sum,
                        b.rows_sumsq,
                        b.rate_sum,
                        b.rate_sumsq,
                        b.rate_n,
                    )
                    for u, b in users
                ],
            )
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._db.execute("ROLLBACK")
            # The memory copies were changed first: reload them so they match the file again.
            for u, _ in users:
                self._cache.pop(u, None)
            self.population = self._load(POPULATION)
            raise StorageError(f"baselines {self.path}: {exc}") from None
