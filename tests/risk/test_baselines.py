"""Baselines persist, reload exactly, and change only through the learn methods."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor.errors import StorageError
from proctor.policy.archive import PolicyArchive
from proctor.risk.baselines import Baselines, SessionFacts


def _facts(ip: str, hour: int, t: int = 1_000) -> SessionFacts:
    return SessionFacts(
        values={"ip": ip, "country": "DE"}, hour=hour, time_ns=t, lat_e6=1, lon_e6=2
    )


def test_learn_persist_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "baselines.sqlite"
    b = Baselines(path)
    assert b.user("alice").sessions == 0 and b.users == 0
    b.learn_session("alice", _facts("10.0.0.1", 9))
    b.learn_session("alice", _facts("10.0.0.1", 9, 2_000))
    b.learn_session("bob", _facts("10.0.0.2", 14))
    b.learn_statement("alice", rows=10, per_minute=4)
    b.learn_statement("alice", rows=30)
    alice = b.user("alice")
    assert (alice.sessions, alice.count("ip", "10.0.0.1"), alice.hours[9]) == (2, 2, 2)
    assert (alice.statements, alice.rows_sum, alice.rows_sumsq, alice.rate_n) == (2, 40, 1000, 1)
    assert alice.last_ns == 2_000 and alice.version == 4
    assert b.population.sessions == 3 and b.population.distinct("ip") == 2
    assert b.users == 2
    b.close()
    again = Baselines(path)
    a2 = again.user("alice")
    assert (a2.sessions, a2.count("ip", "10.0.0.1"), a2.totals["ip"], a2.hours[9]) == (2, 2, 2, 2)
    assert (a2.statements, a2.rows_sum, a2.rows_sumsq, a2.rate_sum) == (2, 40, 1000, 4)
    assert (a2.last_lat_e6, a2.last_lon_e6, a2.last_ns) == (1, 2, 2_000)
    assert again.population.sessions == 3 and again.population.totals["country"] == 3
    assert again.users == 2


def test_failures_are_counted_in_a_window_and_forgotten(tmp_path: Path) -> None:
    b = Baselines(tmp_path / "b.sqlite")
    hour = 3600 * 10**9
    for t in (1, 2, 3):
        b.record_auth_failure("mallory", t * 10**9)
    assert b.failures("mallory", 0) == 3
    assert b.failures("mallory", 2 * 10**9) == 2
    assert b.user("mallory").sessions == 0  # failures teach nothing about normal behaviour
    b.record_auth_failure("mallory", 2 * hour)  # an hour later the old ones are gone
    assert b.failures("mallory", 0) == 1


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.sqlite"
    bad.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StorageError, match=r"cannot open baselines .*garbage\.sqlite"):
        Baselines(bad)
    with pytest.raises(StorageError, match="cannot open policy archive"):
        PolicyArchive(bad)


def test_statement_counts_are_written_behind_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    b = Baselines(path, statement_flush_s=3600)
    for rows in (1, 2, 3):
        b.learn_statement("dana", rows, per_minute=4)
    assert b.user("dana").statements == 3  # assessments read memory at once
    peek = Baselines(path)
    assert peek.user("dana").statements == 0  # not on disk yet: written behind
    peek.close()
    b.close()  # closing writes what was held back
    again = Baselines(path)
    assert (again.user("dana").statements, again.user("dana").rows_sum) == (3, 6)
    again.close()
    now = Baselines(path, statement_flush_s=0)  # no window: every statement is written
    now.learn_statement("erin", 5)
    peek = Baselines(path)
    assert peek.user("erin").statements == 1
    peek.close()
    now.close()
