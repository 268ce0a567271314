"""Real clients through the gateway: login, statements decided and recorded, refusals."""

from __future__ import annotations

import psycopg
import pytest

from tests.gateway.postgres.conftest import Running


def test_analyst_reads_and_every_statement_is_recorded_before_outcome(gateway: Running) -> None:
    with gateway.connect("alice") as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    decisions = gateway.events("decision")
    assert [d["action"]["class"] for d in decisions] == ["connect", "read"]
    assert all(d["decision"]["effect"] == "allow" for d in decisions)
    assert decisions[1]["action"]["statement"] == "SELECT $1 + $2"
    outcomes = gateway.events("outcome")
    assert outcomes[0]["outcome"]["status"] == "ok" and outcomes[0]["outcome"]["rows"] == 1
    assert outcomes[0]["links"]["decision_id"] == decisions[1]["id"]


def test_wrong_password_is_refused_and_recorded(gateway: Running) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(gateway.dsn("alice", password="wrong"))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(gateway.dsn("alice", password="x").replace("user=alice", "user=nobody"))
    failed = gateway.events("auth.failed")
    assert [e["actor"]["id"] for e in failed] == ["alice", "nobody"]
    assert gateway.events("decision") == []
