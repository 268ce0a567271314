"""pgaudit entries in PostgreSQL 15 logs (csvlog and stderr): every field mapped, statements
redacted, other records skipped, bad records named by item and line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import UsageError
from proctor.events import Event
from proctor.ingest import (
    IngestError,
    LinePrefix,
    PgauditOptions,
    Skipped,
    normalize_pgaudit_csvlog,
    normalize_pgaudit_stderr,
)
from proctor.ingest.pgaudit import redact_statement

from .helpers import RECEIVED, checked

OPTIONS = PgauditOptions(server="shop-primary", service_users=frozenset({"etl_loader"}))

# PostgreSQL 15 csvlog rows (26 columns) around pgaudit's entries, as the server writes them:
# a read with a literal, a multi-line update, a connection line, a password change, an object
# audit entry from a client on IPv6, a background worker's entry with parameters logged.
SELECT = (
    b'2026-11-23 11:20:40.123 UTC,"alice","shop",24180,"192.0.2.44:53912",6630f1a2.5e74,7,'
    b'"SELECT",2026-11-23 11:20:01 UTC,3/1204,0,LOG,00000,"AUDIT: SESSION,12,1,READ,SELECT,'
    b'TABLE,public.customers,""SELECT name, email FROM customers WHERE email = '
    b'\'bob@example.com\'"",<not logged>",,,,,,,,,"psql","client backend",,'
    b"-2451851744566389373\n"
)
UPDATE = (
    b'2026-11-23 11:20:41.000 UTC,"alice","shop",24180,"192.0.2.44:53912",6630f1a2.5e74,8,'
    b'"UPDATE",2026-11-23 11:20:01 UTC,3/1205,7731,LOG,00000,"AUDIT: SESSION,13,1,WRITE,'
    b'UPDATE,TABLE,public.orders,""UPDATE orders\n'
    b"   SET status = 'shipped' -- ticket 4411\n"
    b' WHERE id = 42"",<not logged>",,,,,,,,,"psql","client backend",,0\n'
)
CONNECT = (
    b'2026-11-23 11:20:01.500 UTC,"alice","shop",24180,"192.0.2.44:53912",6630f1a2.5e74,2,'
    b'"authentication",2026-11-23 11:20:01 UTC,3/1203,0,LOG,00000,"connection authorized: '
    b'user=alice database=shop application_name=psql",,,,,,,,,"","client backend",,0\n'
)
PASSWORD = (
    b'2026-11-23 11:20:42.000 UTC,"dba","postgres",24190,"[local]",6630f1b0.5e7e,3,'
    b'"ALTER ROLE",2026-11-23 11:20:15 UTC,4/88,0,LOG,00000,"AUDIT: SESSION,3,1,ROLE,ALTER ROLE,'
    b',,ALTER ROLE bob PASSWORD \'hunter2\',<not logged>",,,,,,,,,"psql","client backend",'
    b",0\n"
)
OBJECT = (
    b'2026-11-23 11:20:43.000 UTC,"copilot","shop",24200,"2001:db8:40::12:51234",'
    b'6630f1c0.5e88,4,"SELECT",2026-11-23 11:20:30 UTC,5/9,0,LOG,00000,"AUDIT: OBJECT,4,1,READ,'
    b'SELECT,TABLE,public.payroll,SELECT sum(salary) FROM payroll,<not logged>",,,,,,,,,'
    b'"agent-runner","client backend",,0\n'
)
WORKER = (
    b'2026-11-23 11:20:44.000 UTC,"etl_loader","dwh",24210,,6630f1d0.5e92,2,"INSERT",'
    b'2026-11-23 11:20:40 UTC,6/3,7740,LOG,00000,"AUDIT: SESSION,2,1,WRITE,INSERT,,,""INSERT '
    b'INTO staging.raw_events (payload) VALUES ($1)"",""{""""card"""":""""4111111111111111""""}""'
    b'",,,,,,,,,"","background worker",,0\n'
)


def csvlog(*rows: bytes) -> list[object]:
    return list(normalize_pgaudit_csvlog(b"".join(rows), received=RECEIVED, options=OPTIONS))


def test_csvlog_transcript() -> None:
    select, update, connect, password, object_, worker = csvlog(
        SELECT, UPDATE, CONNECT, PASSWORD, OBJECT, WORKER
    )

    select = checked(select, SELECT, "pgaudit")
    assert select.original is not None and select.original.format == "pgaudit.csvlog"
    assert select.time == "2026-11-23T11:20:40.123000000Z"
    assert select.actor is not None
    assert (select.actor.id, select.actor.kind, select.actor.ip) == ("alice", "human", "192.0.2.44")
    assert select.target is not None
    assert (select.target.type, select.target.name, select.target.database) == (
        "postgres",
        "shop-primary",
        "shop",
    )
    assert select.target.objects == ("public.customers",)
    assert select.action is not None
    assert (select.action.class_, select.action.operation) == ("read", "SELECT")
    assert select.action.statement == "SELECT name, email FROM customers WHERE email = $1"
    assert select.action.fingerprint
    assert select.decision is None and select.outcome is None
    assert select.attributes == {
        "pgaudit.audit_type": "SESSION",
        "pgaudit.statement_id": "12",
        "pgaudit.substatement_id": "1",
        "pgaudit.class": "READ",
        "pgaudit.object_type": "TABLE",
        "pg.session_id": "6630f1a2.5e74",
        "pg.session_line": "7",
        "pg.pid": "24180",
        "pg.application_name": "psql",
        "pg.backend_type": "client backend",
        "pg.query_id": "-2451851744566389373",
        "pg.client_port": "53912",
        "proctor.received_at": "2026-11-23T11:21:10.000000000Z",
    }
    assert select.flags == ()

    update = checked(update, UPDATE, "pgaudit")
    assert update.action is not None
    assert update.action.statement == "UPDATE orders\n   SET status = $1\n WHERE id = $2"
    assert update.action.class_ == "write"
    assert update.attributes["pg.transaction_id"] == "7731"

    assert connect == Skipped(item=2, line=5, reason="not a pgaudit record")

    password = checked(password, PASSWORD, "pgaudit")
    assert password.action is not None
    assert (password.action.class_, password.action.operation) == ("admin", "ALTER ROLE")
    assert password.action.statement == "ALTER ROLE bob PASSWORD $1"
    assert password.actor is not None and password.actor.ip is None
    assert password.attributes["pg.client"] == "[local]"
    assert password.target is not None and password.target.objects == ()

    object_ = checked(object_, OBJECT, "pgaudit")
    assert object_.actor is not None and object_.actor.ip == "2001:db8:40::12"
    assert object_.attributes["pgaudit.audit_type"] == "OBJECT"
    assert object_.attributes["pg.client_port"] == "51234"

    worker = checked(worker, WORKER, "pgaudit")
    assert worker.actor is not None and worker.actor.kind == "service"
    assert worker.action is not None
    assert worker.action.statement == "INSERT INTO staging.raw_events (payload) VALUES ($1)"
    assert worker.target is not None and worker.target.objects == ("staging.raw_events",)
    # The parameter (a card number) stays in the original only.
    assert b"4111111111111111" in WORKER
    mapped = worker.action.statement + repr(worker.attributes)
    assert "4111111111111111" not in mapped
    assert "hunter2" not in repr(password.action) + repr(password.attributes)


STDERR = (
    b"2026-11-23 11:20:40.123 UTC [24180] alice@shop LOG:  AUDIT: SESSION,12,1,READ,SELECT,"
    b'TABLE,public.customers,"SELECT name, email FROM customers WHERE email = '
    b"'bob@example.com'\",<not logged>\n"
    b"2026-11-23 11:20:41.000 UTC [24180] alice@shop LOG:  AUDIT: SESSION,13,1,WRITE,UPDATE,"
    b'TABLE,public.orders,"UPDATE orders\n'
    b"\t   SET status = 'shipped'\n"
    b'\t WHERE id = 42",<not logged>\n'
    b"2026-11-23 11:20:42.000 UTC [81] LOG:  checkpoint starting: time\n"
    b"\n"
    b'2026-11-23 11:20:43.000 UTC [24180] alice@shop ERROR:  relation "nope" does not exist'
    b" at character 15\n"
    b"2026-11-23 11:20:43.000 UTC [24180] alice@shop STATEMENT:  SELECT * FROM nope;\n"
)
PREFIX = LinePrefix("%m [%p] %q%u@%d ")


def stderr(data: bytes, prefix: LinePrefix = PREFIX, **kw: object) -> list[object]:
    return list(
        normalize_pgaudit_stderr(
            data,
            prefix=prefix,
            received=RECEIVED,
            options=kw.pop("options", OPTIONS),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )
    )


def test_stderr_transcript() -> None:
    select, update, checkpoint, error, statement = stderr(STDERR)
    lines = STDERR.splitlines(keepends=True)
    select = checked(select, lines[0], "pgaudit")
    assert select.original is not None and select.original.format == "pgaudit.stderr"
    assert select.time == "2026-11-23T11:20:40.123000000Z"
    assert select.actor is not None and select.actor.id == "alice"
    assert select.target is not None and select.target.database == "shop"
    assert select.action is not None
    assert select.action.statement == "SELECT name, email FROM customers WHERE email = $1"
    assert select.attributes["pg.pid"] == "24180"

    update = checked(update, b"".join(lines[1:4]), "pgaudit")
    assert update.action is not None
    # The tab PostgreSQL put after each newline is not part of the statement.
    assert update.action.statement == "UPDATE orders\n   SET status = $1\n WHERE id = $2"

    assert checkpoint == Skipped(item=2, line=5, reason="not a pgaudit record")
    assert error == Skipped(item=3, line=7, reason="not a pgaudit record")
    assert statement == Skipped(item=4, line=8, reason="not a pgaudit record")


@pytest.mark.parametrize(
    ("prefix", "line", "expected"),
    [
        (
            "%t:%r:%u@%d:[%p]:",
            "2026-11-23 11:20:40 UTC:192.0.2.44(53912):alice@shop:[24180]:",
            {"time": "2026-11-23T11:20:40.000000000Z", "ip": "192.0.2.44", "port": "53912"},
        ),
        (
            "%n %c %l %h %u %a %i %e %v %x %Q %b %P %s %% ",
            "1795432840.250 6630f1a2.5e74 7 192.0.2.44 alice report-tool SELECT 00000 3/1204 0 42 "
            "client backend  2026-11-23 11:20:01 UTC % ",
            {"time": "2026-11-23T11:20:40.250000000Z", "ip": "192.0.2.44", "app": "report-tool"},
        ),
        ("user=%u,db=%d ", "user=alice,db=shop ", {"time": None}),
    ],
)
def test_prefix_escapes(prefix: str, line: str, expected: dict[str, str | None]) -> None:
    data = (line + "LOG:  AUDIT: SESSION,1,1,READ,SELECT,,,SELECT 1,<not logged>\n").encode()
    (event,) = stderr(data, LinePrefix(prefix))
    assert isinstance(event, Event) and event.actor is not None
    if expected["time"] is None:
        assert event.flags == ("time_from_receipt",)
        assert event.time == "2026-11-23T11:21:10.000000000Z"
    else:
        assert event.time == expected["time"]
    if "ip" in expected:
        assert event.actor.ip == expected["ip"]
    if "port" in expected:
        assert event.attributes["pg.client_port"] == expected["port"]
    if "app" in expected:
        assert event.attributes["pg.application_name"] == expected["app"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("%m %Z ", "log_line_prefix escape %Z is not supported"),
        ("%-10u ", "padding"),
        ("%10u ", "padding"),
        ("%m %", "lone '%'"),
        ("%q%u %q%d ", "%q twice"),
    ],
)
def test_bad_prefix_is_a_config_error(template: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        LinePrefix(template)


def test_stderr_lines_that_do_not_fit() -> None:
    data = (
        b"\tSET status = 1\n"  # continues a record of an earlier batch
        b"some other program wrote this\n"
        b"2026-11-23 11:20:40 UTC alice LOG:  AUDIT: SESSION,1,1,READ,SELECT,,,SELECT 1,x\n"
        b"2026-11-23 11:20:40.000 UTC [1] a@b LOG:  AUDIT: SESSION,1,1,READ,SELECT,,,\xff,x\n"
    )
    orphan, other, audit, bad = stderr(data, first_line=101)
    assert orphan == Skipped(0, 101, "continues a record that started before this batch")
    assert other == Skipped(1, 102, "does not match log_line_prefix")
    assert str(audit) == "item 2, line 103: $: does not match log_line_prefix"
    assert str(bad) == "item 3, line 104: $: not valid utf-8"


def test_csvlog_bad_records_are_named_and_spoil_nothing() -> None:
    rows = [
        SELECT,
        b'2026-11-23 11:20:40.123 UTC,"alice","shop"\n',
        b'x,"y"z\n',
        SELECT.replace(b"AUDIT: SESSION,12,1", b"AUDIT: SESSION,twelve,1"),
        SELECT.replace(b",<not logged>", b""),
        SELECT.replace(b"2026-11-23 11:20:40.123 UTC", b"23/11/2026 11:20"),
        SELECT.replace(b"2026-11-23 11:20:40.123 UTC", b"2026-11-23 11:20:40.123 CET"),
        SELECT.replace(b'"alice"', b'"' + b"a" * 257 + b'"'),
        SELECT.replace(b"public.customers", b"s." + b"t" * 300),
        SELECT.replace(b"READ,SELECT", b"READ," + b"C" * 65),
        SELECT.replace(b"bob@example.com", b"b\xe9b"),
        SELECT.replace(b"<not logged>", b'<not logged>,""many""'),
        UPDATE,
    ]
    results = csvlog(*rows)
    assert [str(r) for r in results[1:-1]] == [
        "item 1, line 2: $: expected 23 to 26 csvlog columns, got 3",
        "item 2, line 3: $: not a CSV record (',' expected after '\"')",
        "item 3, line 4: message STATEMENT_ID: expected a number",
        "item 4, line 5: message: expected an AUDIT entry of 9 or 10 fields",
        "item 5, line 6: log_time: expected a PostgreSQL log time",
        "item 6, line 7: log_time: a time zone abbreviation other than UTC needs the "
        "server's log_timezone",
        "item 7, line 8: user_name: longer than 256 characters",
        "item 8, line 9: message OBJECT_NAME: longer than 256 characters",
        "item 9, line 10: message COMMAND: longer than 64 characters",
        "item 10, line 11: $: not valid utf-8",
        "item 11, line 12: message ROWS: expected a number",
    ]
    checked(results[0], SELECT, "pgaudit")
    checked(results[-1], UPDATE, "pgaudit")
    assert all(isinstance(r, IngestError) and r.item is not None for r in results[1:-1])


def test_latin1_logs_keep_their_bytes() -> None:
    row = SELECT.replace(b"bob@example.com", b"b\xe9b")
    options = PgauditOptions(encoding="latin-1")
    (event,) = normalize_pgaudit_csvlog(row, received=RECEIVED, options=options)
    event = checked(event, row, "pgaudit")
    assert event.original is not None and event.original.encoding == "base64"


def test_rows_mean_the_statement_finished() -> None:
    row = SELECT.replace(b"<not logged>", b"<not logged>,3")
    (event,) = csvlog(row)
    assert isinstance(event, Event) and event.outcome is not None
    assert (event.outcome.status, event.outcome.rows) == ("ok", 3)


@pytest.mark.parametrize(
    ("stamp", "zone", "utc"),
    [
        (b"2026-11-23 12:20:40.123 CET", "Europe/Berlin", "2026-11-23T11:20:40.123000000Z"),
        (b"2026-07-01 12:20:40.000 CEST", "Europe/Berlin", "2026-07-01T10:20:40.000000000Z"),
        # The hour the clocks go back happens twice; the abbreviation says which.
        (b"2026-10-25 02:30:00.000 CEST", "Europe/Berlin", "2026-10-25T00:30:00.000000000Z"),
        (b"2026-10-25 02:30:00.000 CET", "Europe/Berlin", "2026-10-25T01:30:00.000000000Z"),
        (b"2026-11-23 08:20:40.000 -03", None, "2026-11-23T11:20:40.000000000Z"),
        (b"2026-11-23 16:50:40.000 +0530", None, "2026-11-23T11:20:40.000000000Z"),
        (b"2026-11-23 11:20:40.000 GMT", None, "2026-11-23T11:20:40.000000000Z"),
    ],
)
def test_log_times(stamp: bytes, zone: str | None, utc: str) -> None:
    row = SELECT.replace(b"2026-11-23 11:20:40.123 UTC", stamp)
    options = PgauditOptions(log_timezone=zone)
    (event,) = normalize_pgaudit_csvlog(row, received=RECEIVED, options=options)
    assert isinstance(event, Event), event
    assert event.time == utc


def test_an_abbreviation_the_zone_does_not_use_then_is_an_error() -> None:
    row = SELECT.replace(b"2026-11-23 11:20:40.123 UTC", b"2026-11-23 12:20:40.123 CEST")
    options = PgauditOptions(log_timezone="Europe/Berlin")
    (error,) = normalize_pgaudit_csvlog(row, received=RECEIVED, options=options)
    assert str(error) == (
        "item 0, line 1: log_time: the time zone abbreviation is not log_timezone's at that time"
    )


def test_options_are_checked() -> None:
    with pytest.raises(UsageError, match="log_timezone"):
        PgauditOptions(log_timezone="Mars/Olympus")
    with pytest.raises(UsageError, match="encoding"):
        PgauditOptions(encoding="klingon")
    with pytest.raises(UsageError, match="server name"):
        PgauditOptions(server="s" * 300)


@pytest.mark.parametrize(
    ("sql", "redacted", "flag"),
    [
        (
            "SELECT * FROM t WHERE a = 'x' AND b = 2",
            "SELECT * FROM t WHERE a = $1 AND b = $2",
            None,
        ),
        # What pglast's normalizer leaves, the lexer still replaces.
        ("EXECUTE fooplan(1, 'Hunter Valley')", "EXECUTE fooplan($1, $2)", None),
        ("CREATE TABLE t (a text DEFAULT 'pw')", "CREATE TABLE t (a text DEFAULT $1)", None),
        ("SELECT 1 /* token=abc */ -- and this", "SELECT $1", None),
        ("SELECT $1, 'x'", "SELECT $1, $2", None),
        (
            "SELECT $$dollar$$, E'esc\\'d', U&'d\\0061t', B'01', X'ff', 1.5e3",
            "SELECT $1, $2, $3, $4, $5, $6",
            None,
        ),
        ("SELECT 1; SELECT 'two'", "SELECT $1; SELECT $1", None),  # numbered per statement
        # Newer syntax pglast cannot parse: redacted by the lexer alone.
        ("SELEC 'secret' FRM t", "SELEC $1 FRM t", "statement_unparsed"),
        # Not even lexable: left out.
        ("SELECT 'unterminated", None, "statement_omitted"),
    ],
)
def test_statement_redaction(sql: str, redacted: str | None, flag: str | None) -> None:
    row = (
        b'2026-11-23 11:20:40.123 UTC,"alice","shop",1,,a.b,1,"",,,0,LOG,00000,"AUDIT: SESSION,'
        b"1,1,MISC,SELECT,,," + _in_message(sql) + b',<not logged>"' + b",,,,,,,,,\n"
    )
    (event,) = csvlog(row)
    event = checked(event, row, "pgaudit")
    assert event.action is not None
    assert event.action.statement == redacted
    assert event.flags == ((flag,) if flag else ())
    if flag:  # the class is pgaudit's then (MISC: admin, fail closed)
        assert event.action.class_ == "admin"


def _in_message(sql: str) -> bytes:
    """``sql`` as pgaudit quotes a STATEMENT field, inside csvlog's quoted message column."""
    pgaudit_field = '"' + sql.replace('"', '""') + '"'
    return pgaudit_field.replace('"', '""').encode()


def test_long_statements_are_cut_and_flagged() -> None:
    sql = "SELECT " + ", ".join(f"column_with_a_rather_long_name_{i}" for i in range(3000))
    row = (
        b'2026-11-23 11:20:40.123 UTC,"alice","shop",1,,a.b,1,"",,,0,LOG,00000,"AUDIT: SESSION,'
        b"1,1,READ,SELECT,,," + _in_message(sql) + b',<not logged>"' + b",,,,,,,,,\n"
    )
    (event,) = csvlog(row)
    event = checked(event, row, "pgaudit")
    assert event.action is not None and event.action.statement is not None
    assert len(event.action.statement) == 65536
    assert event.flags == ("truncated",)
    assert event.attributes["proctor.truncated"] == "action.statement"


def test_statements_too_deep_for_pglast_are_redacted_lexically() -> None:
    # pglast.parse_sql overflows the C stack (a segfault) near 25,000 terms; never reached.
    sql = "SELECT " + " + ".join(["1"] * 60_000) + ", 'secret'"
    text, analysis = redact_statement(sql)
    assert analysis is None
    assert text is not None and "secret" not in text
    assert text.endswith("+ $60000, $60001")


_SECRET = "s3cr3t"
_literal = st.builds(
    lambda before, after, style: {
        "plain": lambda t: "'" + t.replace("'", "''") + "'",
        "dollar": lambda t: "$q$" + t.replace("$q$", "") + "$q$",
        "escape": lambda t: "E'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'",
    }[style](before + _SECRET + after),
    st.text(max_size=8),
    st.text(max_size=8),
    st.sampled_from(["plain", "dollar", "escape"]),
)
_statement = st.builds(
    lambda template, lit: template.format(lit),
    st.sampled_from(
        [
            "SELECT {0}",
            "SELECT * FROM t WHERE a = {0}",
            "INSERT INTO t VALUES ({0}, 1)",
            "UPDATE t SET a = {0} WHERE id = 1",
            "ALTER ROLE bob PASSWORD {0}",
            "EXECUTE p({0})",
            "CREATE TABLE t (a text DEFAULT {0})",
            "COPY t FROM PROGRAM {0}",
            "SET application_name = {0}",
            "SELEC {0} FRM t",
            "SELECT /* {0} */ 1",
        ]
    ),
    _literal,
)


@settings(max_examples=300)
@given(_statement)
def test_a_redacted_statement_never_holds_a_literal(sql: str) -> None:
    text, _ = redact_statement(sql)
    assert text is None or _SECRET not in text


@settings(max_examples=200)
@given(st.binary(max_size=600))
def test_random_bytes_map_or_are_named(data: bytes) -> None:
    for results in (csvlog(data), stderr(data)):
        for index, result in enumerate(results):
            assert isinstance(result, Event | IngestError | Skipped)
            if not isinstance(result, Event):
                assert result.item == index


@settings(max_examples=200)
@given(st.text(max_size=30))
def test_any_prefix_compiles_or_is_a_config_error(template: str) -> None:
    try:
        prefix = LinePrefix(template)
    except UsageError:
        return
    line = template.replace("%", "") + "LOG:  AUDIT: SESSION,1,1,READ,SELECT,,,SELECT 1,x\n"
    for result in stderr(line.encode(), prefix):
        assert isinstance(result, Event | IngestError | Skipped)
