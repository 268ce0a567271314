"""Statements through the gateway: denials, smuggling, obligations, the extended protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.gateway.postgres.conftest import DB, Running, pg_direct


@pytest.fixture
def tables() -> Iterator[None]:
    """public.people (with emails to mask) and hr.salaries (restricted), set up directly."""
    with pg_direct() as db:
        db.execute("DROP SCHEMA IF EXISTS hr CASCADE; DROP TABLE IF EXISTS people, victims")
        db.execute("CREATE SCHEMA hr; CREATE TABLE hr.salaries (who text, amount int)")
        db.execute("CREATE TABLE people (id int, name text, email text)")
        db.execute("CREATE TABLE victims (id int)")
        db.execute("INSERT INTO victims VALUES (1), (2)")
        db.execute(
            "INSERT INTO people SELECT i, 'n' || i, 'p' || i || '@example.com' "
            "FROM generate_series(1, 20) i"
        )
    yield
    with pg_direct() as db:
        db.execute("DROP SCHEMA IF EXISTS hr CASCADE; DROP TABLE IF EXISTS people, victims")


def victims() -> int:
    with pg_direct() as db:
        row = db.execute("SELECT count(*) FROM victims").fetchone()
    assert row is not None
    return int(row[0])


def test_denied_statement_gets_42501_and_the_session_goes_on(
    gateway: Running, tables: None
) -> None:
    with gateway.connect("alice") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="Proctor denied"):
            conn.execute("DELETE FROM victims WHERE id = 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM hr.salaries")
        assert conn.execute("SELECT count(*) FROM people").fetchone() == (20,)
    assert victims() == 2
    effects = [(d["action"]["class"], d["decision"]["effect"]) for d in gateway.events("decision")]
    assert effects == [("connect", "allow"), ("write", "deny"), ("read", "deny"), ("read", "allow")]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; DELETE FROM victims",
        "SELECT 1 /* ; */; DELETE FROM victims WHERE true -- ;",
        "SELECT $$; DELETE FROM victims; $$; DELETE FROM victims WHERE id > 0",
        "WITH gone AS (DELETE FROM victims RETURNING *) SELECT count(*) FROM gone",
        "SELECT count(*) FROM (SELECT * FROM victims) v; TRUNCATE victims",
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "SELECT pg_terminate_backend(1)",
        "SET ROLE postgres; DELETE FROM victims",
    ],
)
def test_smuggled_writes_never_run(gateway: Running, tables: None, sql: str) -> None:
    with gateway.connect("alice") as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(sql.encode(), prepare=False)
        assert caught.value.sqlstate in ("42501", "28000")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert victims() == 2


def test_unparsable_sql_is_refused_with_42601(gateway: Running) -> None:
    with gateway.connect("alice") as conn:
        with pytest.raises(psycopg.errors.SyntaxError, match="cannot parse"):
            conn.execute(b"SELEC 1")
        with pytest.raises(psycopg.errors.SyntaxError, match="cannot parse"):
            conn.execute("SELEC %s", (1,))
        assert conn.execute("SELECT %s::int", (7,)).fetchone() == (7,)
    refused = [d for d in gateway.events("decision") if d["decision"]["effect"] == "deny"]
    assert len(refused) == 2 and "does not parse" in refused[0]["decision"]["reasons"][0]


def test_refusal_inside_a_transaction_aborts_it_like_postgres_would(
    gateway: Running, tables: None
) -> None:
    with gateway.connect("erin") as conn:
        conn.autocommit = False
        conn.execute("INSERT INTO victims VALUES (3)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM victims")  # no WHERE: refused by policy
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
    assert victims() == 2


def test_extended_protocol_and_prepared_statements(gateway: Running, tables: None) -> None:
    with gateway.connect("erin") as conn:
        for i in range(3):
            row = conn.execute("SELECT name FROM people WHERE id = %s", (i + 1,), prepare=True)
            assert row.fetchone() == (f"n{i + 1}",)
        conn.execute("UPDATE victims SET id = %s WHERE id = %s", (5, 2))
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="step-up"):
            conn.execute("DROP TABLE victims", prepare=True)
        with conn.pipeline():
            a = conn.execute("SELECT %s::int", (1,))
            b = conn.execute("SELECT %s::text", ("x",))
        assert a.fetchone() == (1,) and b.fetchone() == ("x",)
    assert victims() == 2


def test_mask_and_max_rows_obligations(gateway: Running, tables: None) -> None:
    with gateway.connect("alice") as conn:
        rows = conn.execute("SELECT id, email FROM people ORDER BY id LIMIT 3").fetchall()
        assert rows == [(1, None), (2, None), (3, None)]
        rows = conn.execute("SELECT email, name FROM people WHERE id = %s", (4,)).fetchall()
        assert rows == [(None, "n4")]
    notices: list[str] = []
    with gateway.connect("carol") as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        cur = conn.execute("SELECT i FROM generate_series(1, 2500) i")
        assert len(cur.fetchall()) == 1000 and cur.rowcount == 1000
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO people VALUES (99, 'x', 'y')")
    assert any("cut this result at 1000 rows" in n for n in notices)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT email AS e FROM people",  # renamed
        "SELECT upper(email) FROM people",  # an expression over it
        "SELECT id FROM people WHERE email LIKE 'a%'",  # a condition: an oracle
        "SELECT p FROM people p",  # the whole row as one composite value
        "SELECT row_to_json(p.*) FROM people p",
        "SELECT to_json(people) FROM people",
        "SELECT e FROM people AS p(i, n, e)",  # columns renamed in FROM
        "SELECT name FROM people UNION ALL SELECT email FROM people",  # under the first arm's name
        "WITH x AS (SELECT email FROM people) SELECT email FROM x",
        "SELECT (SELECT email FROM people LIMIT 1) AS name",
    ],
)
def test_a_masked_column_cannot_leave_under_another_name_or_shape(
    gateway: Running, tables: None, sql: str
) -> None:
    with gateway.connect("alice") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="masks email"):
            conn.execute(sql)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="masks email"):
            conn.execute(sql, prepare=True)
        rows = conn.execute("SELECT p.* FROM people p ORDER BY id LIMIT 1").fetchall()
        assert rows == [(1, "n1", None)]  # star expansion keeps the real names: masked


def test_copy_both_ways(gateway: Running, tables: None) -> None:
    with gateway.connect("erin") as conn:
        with conn.cursor().copy("COPY victims FROM STDIN") as copy:
            copy.write_row((7,))
            copy.write_row((8,))
        with conn.cursor().copy("COPY victims TO STDOUT") as copy:
            out = b"".join(bytes(chunk) for chunk in copy)
    assert out.split() == [b"1", b"2", b"7", b"8"]
    with (
        gateway.connect("carol") as conn,
        pytest.raises(psycopg.errors.FeatureNotSupported),
        conn.cursor().copy("COPY victims TO STDOUT") as copy,
    ):
        list(copy)


def test_asyncpg_through_the_gateway(gateway: Running, tables: None) -> None:
    async def run() -> Any:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=gateway.port, user="erin", password="eng-pw",
            database=DB, ssl=False,
        )  # fmt: skip
        try:
            rows = await conn.fetch("SELECT id, name FROM people WHERE id <= $1 ORDER BY id", 2)
            stmt = await conn.prepare("SELECT count(*) FROM people WHERE id > $1")
            counted = await stmt.fetchval(10)
            async with conn.transaction():
                await conn.execute("INSERT INTO victims VALUES ($1)", 9)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM victims")
            return [tuple(r) for r in rows], counted
        finally:
            await conn.close()

    rows, counted = asyncio.run(run())
    assert rows == [(1, "n1"), (2, "n2")] and counted == 10
    assert victims() == 3


def test_errors_in_the_extended_protocol_leave_the_session_usable(
    gateway: Running, tables: None
) -> None:
    # The server fails the Parse and skips to Sync while the gateway may still be recording
    # the decision of the Bind/Execute behind it: those must be dropped, as the server drops
    # them, or the replies get out of step (found by the session fuzzer).
    with gateway.connect("erin") as conn:
        for _ in range(15):
            with pytest.raises(psycopg.errors.UndefinedColumn):
                conn.execute("SELECT nocolumn FROM people WHERE id = %s", (1,))
            assert conn.execute("SELECT %s::int", (7,)).fetchone() == (7,)


@pytest.mark.parametrize("sql", ["", ";", "-- only a comment"])
def test_an_empty_query_is_answered_not_refused(gateway: Running, sql: str) -> None:
    with gateway.connect("alice") as conn:
        assert conn.execute(sql).description is None  # EmptyQueryResponse, no error
        assert conn.execute("SELECT 1").fetchone() == (1,)
