"""SqliteStore: atomic batches, append-only tables, readable errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from proctor.errors import StorageError, UsageError
from proctor.ledger.store import SqliteStore


def test_append_and_read_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.sqlite")
    store.init_meta({"origin": "example.com/log"})
    store.append(0, [b"a", b"b"], {(0, 0): b"x" * 64})
    store.append(2, [b"c"], {(0, 0): b"x" * 96})
    assert store.size() == 3
    assert store.count() == 3
    assert list(store.entries()) == [(0, b"a"), (1, b"b"), (2, b"c")]
    assert list(store.entries(1, 2)) == [(1, b"b")]
    assert store.entry(2) == b"c"
    assert store.entry(3) is None
    assert store.read_tile(0, 0) == b"x" * 96
    assert store.read_tile(1, 0) is None
    assert store.get_meta("origin") == "example.com/log"
    store.close()


def test_append_at_wrong_start_writes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.sqlite")
    store.append(0, [b"a"], {(0, 0): b"t"})
    with pytest.raises(StorageError, match="has 1 entries, append expected 5"):
        store.append(5, [b"z"], {(0, 0): b"changed"})
    assert store.size() == 1
    assert store.read_tile(0, 0) == b"t"


def test_entries_and_checkpoints_refuse_update_and_delete(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    store = SqliteStore(path)
    store.append(0, [b"a"], {})
    store.add_checkpoint(1, "note", 5)
    store.add_checkpoint(1, "other note", 6)  # kept once per size
    assert [c.note for c in store.checkpoints()] == ["note"]
    store.close()
    db = sqlite3.connect(path)
    for sql in (
        "UPDATE entries SET data = x'00'",
        "DELETE FROM entries",
        "UPDATE checkpoints SET note = 'x'",
        "DELETE FROM checkpoints",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    db.close()


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no ledger database"):
        SqliteStore(tmp_path / "absent.sqlite", readonly=True)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=r"junk\.sqlite"):
        SqliteStore(junk)


def test_schema_version_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    SqliteStore(path).init_meta({})
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="schema 99 is not supported"):
        SqliteStore(path)


def test_wal_is_folded_back_in_the_background(tmp_path: Path) -> None:
    # The writer never checkpoints at commit (it stalls commits); a background connection
    # copies the WAL, and past the limit the writer makes sure the WAL starts over. Without
    # either the WAL would hold all ~8 MB written here.
    path = tmp_path / "l.sqlite"
    store = SqliteStore(path, wal_limit_bytes=512 << 10)
    wal = path.with_name(path.name + "-wal")
    entries = [bytes([i % 256]) * 1000 for i in range(50)]
    peak = 0
    for batch in range(160):
        store.append(batch * 50, entries, {(0, batch // 5): b"t" * 32 * (batch % 5 * 50 + 50)})
        peak = max(peak, wal.stat().st_size)
    assert store.count() == 8000
    assert peak < 2 << 20, f"WAL grew to {peak} bytes"
    store.close()
    assert not wal.exists() or wal.stat().st_size == 0
    again = SqliteStore(path, readonly=True)
    assert again.count() == 8000
    again.close()


def test_close_twice_is_harmless(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "l.sqlite")
    store.append(0, [b"a"], {(0, 0): b"x" * 32})
    store.close()
    store.close()
    assert "WAL checkpoint" not in caplog.text
