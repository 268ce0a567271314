"""Continuous authorization: sessions cut at once when they are no longer allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proctor.cli.demo_gateway import GEO_ROWS
from proctor.cli.relay import Relay
from tests.gateway.postgres.conftest import ROOT, Running, pg_direct, run_gateway, write_config


def revoke(gateway: Running, **request: Any) -> dict[str, Any]:
    answer: dict[str, Any] = gateway.call(gateway.gateway.admin, {"op": "revoke", **request})
    return answer


def assert_cut(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.OperationalError, match="Proctor ended this session"):
        conn.execute("SELECT 1")


def test_revoke_an_idle_session(gateway: Running) -> None:
    conn = gateway.connect("alice")
    other = gateway.connect("erin")
    conn.execute("SELECT 1")
    listed = gateway.call(gateway.gateway.admin, {"op": "list"})["sessions"]
    assert sorted(s["user"] for s in listed) == ["alice", "erin"]
    assert revoke(gateway, user="alice", reason="laptop stolen") == {"revoked": 1}
    assert_cut(conn)
    assert other.execute("SELECT 2").fetchone() == (2,)  # others keep working
    other.close()
    revoked = gateway.events("session.revoked")
    assert len(revoked) == 1 and "laptop stolen" in revoked[0]["decision"]["reasons"][0]
    ends = {e["actor"]["id"]: e["outcome"]["status"] for e in gateway.events("session.end")}
    assert ends == {"alice": "revoked", "erin": "ok"}


def test_revoke_mid_transaction_rolls_it_back(gateway: Running) -> None:
    with pg_direct() as db:
        db.execute("DROP TABLE IF EXISTS ledgerless; CREATE TABLE ledgerless (id int)")
    conn = gateway.connect("erin")
    conn.autocommit = False
    conn.execute("INSERT INTO ledgerless VALUES (1)")
    session = gateway.call(gateway.gateway.admin, {"op": "list"})["sessions"][0]["id"]
    assert revoke(gateway, session=session) == {"revoked": 1}
    with pytest.raises(psycopg.OperationalError):
        conn.commit()
    with pg_direct() as db:
        assert db.execute("SELECT count(*) FROM ledgerless").fetchone() == (0,)
        db.execute("DROP TABLE ledgerless")


def test_revoke_mid_result_stops_the_stream(gateway: Running) -> None:
    conn = gateway.connect("erin")
    cur = conn.cursor()
    got: list[Any] = []
    failed: list[BaseException] = []

    def read() -> None:
        try:
            # psycopg reads the whole result; a slow server-side function keeps it streaming
            cur.execute("SELECT i, pg_sleep(0.01) FROM generate_series(1, 2000) i")
            got.extend(cur.fetchall())
        except psycopg.Error as exc:
            failed.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.5)
    started = time.monotonic()
    revoke(gateway, user="erin")
    reader.join(5)
    assert not reader.is_alive() and time.monotonic() - started < 2
    assert failed and not got
    with pg_direct() as db:  # the upstream query was stopped with its connection
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            row = db.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE query LIKE '%generate_series(1, 2000)%' AND pid <> pg_backend_pid()"
            ).fetchone()
            if row == (0,):
                break
            time.sleep(0.05)
        assert row == (0,)


@pytest.fixture
def editable(tmp_path: Path) -> Iterator[Running]:
    """A gateway whose policy directory the test may change."""
    yield from run_gateway(write_config(tmp_path))


def test_policy_change_cuts_sessions_no_longer_allowed(editable: Running) -> None:
    conn = editable.connect("carol")
    keep = editable.connect("alice")
    conn.execute("SELECT 1")
    policies = editable.directory / "policies"
    text = (policies / "base.cedar").read_text()
    start = text.index('@id("contractors-read-only")')
    (policies / "base.cedar").write_text(text[:start])  # contractors lose their permit
    deadline = time.monotonic() + 5
    while editable.runtime.policies.revision == "" or not _cut(editable, "carol"):
        assert time.monotonic() < deadline, "carol's session was not cut"
        time.sleep(0.02)
    assert_cut(conn)
    assert keep.execute("SELECT 1").fetchone() == (1,)
    keep.close()
    reloaded = editable.events("policy.reloaded")
    assert len(reloaded) == 1


def _cut(gateway: Running, user: str) -> bool:
    sessions = gateway.call(gateway.gateway.admin, {"op": "list"})["sessions"]
    return all(s["user"] != user for s in sessions)


def test_role_change_recheck(gateway: Running) -> None:
    conn = gateway.connect("alice")
    answer = gateway.call(gateway.gateway.admin, {"op": "set-user", "user": "alice", "roles": []})
    assert answer == {"cut": 1}
    assert_cut(conn)
    with pytest.raises(psycopg.OperationalError, match="denied this connection"):
        gateway.connect("alice")


def test_examples_policies_are_unchanged_by_the_tests() -> None:
    assert '@id("contractors-read-only")' in (ROOT / "examples/policies/base.cedar").read_text()


def test_a_takeover_on_one_session_cuts_the_users_others(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra=GEO_ROWS)
    config.write_text(config.read_text().replace("[risk]\n", '[risk]\nscorer = "rules"\n'))
    for gateway in run_gateway(config):
        home = gateway.connect("alice")  # from Berlin: her first session teaches where she is
        home.execute("SELECT 1")
        bystander = gateway.connect("erin")
        with Relay("127.0.0.2", ("127.0.0.1", gateway.port)) as abroad:
            dsn = gateway.dsn("alice").replace(f"port={gateway.port}", f"port={abroad.port}")
            with pytest.raises(psycopg.OperationalError, match="step-up") as refused:
                psycopg.connect(dsn)
        assert "risk is high" in str(refused.value)
        assert_cut(home)
        assert bystander.execute("SELECT 2").fetchone() == (2,)  # another user is untouched
        bystander.close()
        connects = [e for e in gateway.events("decision") if e["action"]["class"] == "connect"]
        travel = next(e for e in connects if e["actor"]["ip"] == "127.0.0.2")
        signals = {f["signal"] for f in travel["risk"]["factors"]}
        assert {"impossible_travel", "new_country"} <= signals
        revoked = gateway.events("session.revoked")
        assert [e["actor"]["id"] for e in revoked] == ["alice"]
        assert "looked taken over" in revoked[0]["decision"]["reasons"][0]
        why = next(e for e in connects if e["id"] == revoked[0]["links"]["decision_id"])
        factors = why["risk"]["factors"]
        assert factors[0]["signal"] == "account_risk" and "127.0.0.2" in factors[0]["evidence"]


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proctor", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_the_cli_lists_changes_grants_and_revokes_on_a_running_gateway(gateway: Running) -> None:
    config = gateway.directory / "proctor.toml"
    alice, erin = gateway.connect("alice"), gateway.connect("erin")
    listed = cli("sessions", "list", "--config", config, "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(s["user"] for s in json.loads(listed.stdout)) == ["alice", "erin"]
    same = cli("users", "set", "alice", "--roles", "analyst,engineer", "--config", config)
    assert same.returncode == 0 and "0 live session(s) cut" in same.stdout, same.stderr
    assert alice.execute("SELECT 1").fetchone() == (1,)
    gone = cli("users", "set", "alice", "--roles", "", "--config", config)  # no role left
    assert gone.returncode == 0 and "1 live session(s) cut" in gone.stdout, gone.stderr
    assert_cut(alice)
    bad = cli("users", "set", "alice", "--roles", "x;y", "--config", config)
    assert bad.returncode == 2 and "--roles" in bad.stderr
    revoked = cli(
        "sessions", "revoke", "--user", "erin", "--reason", "rotation", "--config", config
    )
    assert revoked.returncode == 0 and "revoked 1" in revoked.stdout, revoked.stderr
    assert_cut(erin)
    with pytest.raises(psycopg.OperationalError):  # later logins get the new (empty) roles
        gateway.connect("alice")
