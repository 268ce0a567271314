"""Completeness: every statement PostgreSQL ran has an allowing decision in the ledger, and
nothing denied reached it. The server's own log (``log_statement = all`` for the gateway's
upstream role) is the witness."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pglast
import psycopg
import pytest

from tests.gateway.postgres.conftest import DB, Running, pg_direct, run_gateway, write_config

ROLE = f"proctor_seen_{DB}"


def server_log() -> Path:
    """The cluster's log file, as pg_lsclusters reports it."""
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 7 and fields[2] == "5432":
            return Path(fields[6])
    raise AssertionError(f"no cluster on port 5432 in: {out.stdout}")


@pytest.fixture
def witnessed(tmp_path: Path) -> Iterator[tuple[Running, Path, int]]:
    """A gateway whose upstream role has every statement logged by the server."""
    with pg_direct() as db:
        db.execute(f"DROP ROLE IF EXISTS {ROLE}")
        db.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER")
        db.execute(f"ALTER ROLE {ROLE} SET log_statement = 'all'")
        db.execute("DROP TABLE IF EXISTS witnessed; CREATE TABLE witnessed (id int, note text)")
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace('user = "postgres"', f'user = "{ROLE}"'))
    log = server_log()
    offset = log.stat().st_size
    try:
        for running in run_gateway(config):
            yield running, log, offset
    finally:
        with pg_direct() as db:
            db.execute("DROP TABLE IF EXISTS witnessed")
            db.execute(f"DROP ROLE IF EXISTS {ROLE}")


def logged_statements(log: Path, offset: int) -> list[str]:
    """Statements the server logged for the gateway's role, split and normalized."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    out = []
    for entry in text.split("\n2"):  # entries start with a timestamp; details are indented
        if f"{ROLE}@{DB} LOG:" not in entry:
            continue
        _, _, rest = entry.partition(" LOG:  ")
        kind, _, sql = rest.partition(": ")
        if kind == "statement" or kind.startswith("execute "):
            sql = sql.split("\nDETAIL:")[0].strip()
            out += [pglast.parser.normalize(s) for s in pglast.split(sql)]
    return out


def test_every_executed_statement_was_decided_and_nothing_denied_ran(
    witnessed: tuple[Running, Path, int],
) -> None:
    gateway, log, offset = witnessed
    with gateway.connect("erin") as conn:
        conn.execute("INSERT INTO witnessed VALUES (1, 'simple')")
        conn.execute("INSERT INTO witnessed VALUES (%s, %s)", (2, "extended"))
        conn.execute("SELECT count(*) FROM witnessed; SELECT 'two' AS second")
        conn.execute("SELECT note FROM witnessed WHERE id = %s", (1,), prepare=True)
        for sql in ("DELETE FROM witnessed", "SELECT 1; DROP TABLE witnessed", "SELEC 1"):
            with pytest.raises(psycopg.Error):
                conn.execute(sql.encode())
    with gateway.connect("alice") as conn, pytest.raises(psycopg.Error):
        conn.execute("UPDATE witnessed SET note = 'x' WHERE id = 1")

    async def via_asyncpg() -> None:
        c = await asyncpg.connect(
            host="127.0.0.1", port=gateway.port, user="erin", password="eng-pw",
            database=DB, ssl=False,
        )  # fmt: skip
        try:
            await c.fetch("SELECT id FROM witnessed WHERE id > $1", 0)
        finally:
            await c.close()

    asyncio.run(via_asyncpg())
    time.sleep(0.5)  # the server's logger writes on its own schedule
    ran = Counter(logged_statements(log, offset))
    decisions = [e for e in gateway.events("decision") if e["action"]["class"] != "connect"]
    allowed = Counter(
        e["action"]["statement"] for e in decisions if e["decision"]["effect"] == "allow"
    )
    denied = {e["action"].get("statement") for e in decisions if e["decision"]["effect"] != "allow"}
    # asyncpg's own introspection queries run too; they were decided like any other statement
    assert ran["INSERT INTO witnessed VALUES ($1, $2)"] == 2, ran  # simple and extended
    assert ran["SELECT note FROM witnessed WHERE id = $1"] == 1, ran
    missing = ran - allowed
    assert not missing, f"ran without an allowing decision: {missing}"
    assert not (set(ran) & (denied - {None})), "a denied statement reached the server"
    with pg_direct() as db:
        assert db.execute("SELECT count(*) FROM witnessed").fetchone() == (2,)
