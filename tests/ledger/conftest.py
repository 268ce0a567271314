"""Shared fixtures: a ledger database filled through the real appender."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from proctor.ledger.appender import Appender, AppenderConfig
from proctor.ledger.note import Signer
from proctor.ledger.store import SqliteStore

ORIGIN = "test.example/ledger"


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def entry(i: int) -> bytes:
    """A distinct entry body for index ``i``."""
    return b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 40))


def fill(path: Path, signer: Signer, count: int, *, every: int = 100) -> None:
    """Append ``count`` entries (continuing what is there), checkpoint, close."""
    store = SqliteStore(path)
    if store.get_meta("origin") is None:
        store.init_meta({"origin": ORIGIN, "vkey": signer.verifier.vkey})
    app = Appender(
        store, signer, ORIGIN, AppenderConfig(checkpoint_every=every, checkpoint_interval_ms=0)
    )
    start = app.size
    for i in range(start, start + count, 50):
        app.append_many([entry(k) for k in range(i, min(i + 50, start + count))])
    app.close()
    store.close()


def tamper(path: Path) -> Callable[[str, tuple[object, ...]], None]:
    """A function running raw SQL on the file, append-only triggers removed (an attacker)."""

    def run(sql: str, args: tuple[object, ...] = ()) -> None:
        db = sqlite3.connect(path, isolation_level=None)
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for (trig,) in triggers:  # entries, checkpoints, prunes: every guard
            db.execute(f"DROP TRIGGER IF EXISTS {trig}")
        db.execute(sql, args)
        db.close()

    return run
