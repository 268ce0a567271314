"""The query parser: every construct, every error with its column, random text."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import ProctorError
from proctor.events.ids import parse_time
from proctor.search.query import (
    And,
    Compare,
    Everything,
    Limits,
    Match,
    Network,
    Not,
    Or,
    QueryError,
    Text,
    TimeBound,
    parse,
)

H = 3600 * 10**9


def test_the_example_from_the_issue() -> None:
    q = 'actor:alice decision:deny risk>=70 target:prod-db "DROP TABLE" since:7d'
    assert parse(q) == And(
        (
            Match("actor", "alice", "exact", 1),
            Match("decision", "deny", "exact", 13),
            Compare("risk", 70, None, 27),
            Match("target", "prod-db", "exact", 36),
            Text("DROP TABLE", False, None, 51),
            TimeBound("since", None, 7 * 24 * H, 64),
        )
    )


def test_empty_query_is_everything() -> None:
    assert parse("") == Everything()
    assert parse("   \t\n") == Everything()


@pytest.mark.parametrize(
    ("query", "node"),
    [
        ("actor:ali*", Match("actor", "ali", "prefix", 1)),
        ("actor:*", Match("actor", "", "any", 1)),
        ('actor:"Alice M"', Match("actor", "Alice M", "exact", 1)),
        ('actor:"ali*"', Match("actor", "ali*", "exact", 1)),  # quoted: '*' is literal
        ('actor:"Ali M"*', Match("actor", "Ali M", "prefix", 1)),
        ("Actor:x", Match("actor", "x", "exact", 1)),  # field names are case-insensitive
        ("kind:Session.Start", Match("kind", "session.start", "exact", 1)),
        ("kind:session.*", Match("kind", "session.", "prefix", 1)),
        ("decision:step-up", Match("decision", "step_up", "exact", 1)),
        ("effect:DENY", Match("decision", "deny", "exact", 1)),
        ("op:select", Match("op", "SELECT", "exact", 1)),
        ('op:"alter table"', Match("op", "ALTER TABLE", "exact", 1)),
        ("sqlstate:28p01", Match("sqlstate", "28P01", "exact", 1)),
        ("database:sales", Match("db", "sales", "exact", 1)),
        ("role:dba", Match("role", "dba", "exact", 1)),
        ("group:ops", Match("group", "ops", "exact", 1)),
        ("object:public.users", Match("object", "public.users", "exact", 1)),
        ("policy:p-read", Match("policy", "p-read", "exact", 1)),
        ("flag:time_skew", Match("flag", "time_skew", "exact", 1)),
        ("type:Postgres", Match("type", "postgres", "exact", 1)),
        ("fingerprint:ab12", Match("fingerprint", "ab12", "exact", 1)),
        (
            "session:00000000-0000-4000-8000-00000000000A",
            Match("session", "00000000-0000-4000-8000-00000000000a", "exact", 1),
        ),
        ("session:*", Match("session", "", "any", 1)),
        ("source:pgaudit", Match("source", "pgaudit", "exact", 1)),
        ("level:critical", Match("level", "critical", "exact", 1)),
        ("status:error", Match("status", "error", "exact", 1)),
        ("class:ddl", Match("class", "ddl", "exact", 1)),
        ("sensitivity:restricted", Match("sensitivity", "restricted", "exact", 1)),
        (
            "id:01A207AD-3F7A-7738-A2AF-DC842369D3AE",
            Match("id", "01a207ad-3f7a-7738-a2af-dc842369d3ae", "exact", 1),
        ),
        ("risk:70", Compare("risk", 70, 70, 1)),
        ("risk>=70", Compare("risk", 70, None, 1)),
        ("risk>70", Compare("risk", 71, None, 1)),
        ("risk<=70", Compare("risk", None, 70, 1)),
        ("risk<70", Compare("risk", None, 69, 1)),
        ("risk:70..90", Compare("risk", 70, 90, 1)),
        ("risk:70..", Compare("risk", 70, None, 1)),
        ("risk:..9", Compare("risk", None, 9, 1)),
        ("rows>1000", Compare("rows", 1001, None, 1)),
        ("duration>=5000", Compare("duration", 5000, None, 1)),
        ("idx:10..20", Compare("idx", 10, 20, 1)),
        ("ip:*", Match("ip", "", "any", 1)),
        ("ip:10.0.0.1", Network("ip", ipaddress.ip_network("10.0.0.1/32"), 1)),
        ("ip:10.1.2.3/8", Network("ip", ipaddress.ip_network("10.0.0.0/8"), 1)),
        ("ip:2001:db8::/32", Network("ip", ipaddress.ip_network("2001:db8::/32"), 1)),
        ("since:30m", TimeBound("since", None, H // 2, 1)),
        ("since:24h", TimeBound("since", None, 24 * H, 1)),
        ("until:2w", TimeBound("until", None, 14 * 24 * H, 1)),
        ("since:45s", TimeBound("since", None, 45 * 10**9, 1)),
        (
            "since:2026-11-23",
            TimeBound("since", parse_time("2026-11-23T00:00:00.000000000Z"), None, 1),
        ),
        (
            "until:2026-11-23T10:15:30Z",
            TimeBound("until", parse_time("2026-11-23T10:15:30.000000000Z"), None, 1),
        ),
        (
            "since:2026-11-23T10:15:30.123456789Z",
            TimeBound("since", parse_time("2026-11-23T10:15:30.123456789Z"), None, 1),
        ),
        (
            "since:2026-11-23T10:15:30.5+01:00",
            TimeBound("since", parse_time("2026-11-23T09:15:30.500000000Z"), None, 1),
        ),
        (
            "since:2026-11-23T10:15Z",
            TimeBound("since", parse_time("2026-11-23T10:15:00.000000000Z"), None, 1),
        ),
        ("drop", Text("drop", False, None, 1)),
        ("drop*", Text("drop", True, None, 1)),
        ('"drop table"', Text("drop table", False, None, 1)),
        ('"drop tab"*', Text("drop tab", True, None, 1)),
        ('"say \\"hi\\" \\\\ ok"', Text('say "hi" \\ ok', False, None, 1)),
        ("statement:drop", Text("drop", False, "statement", 1)),
        ('stmt:"drop table"', Text("drop table", False, "statement", 1)),
        ("reason:mfa*", Text("mfa", True, "reason", 1)),
        ("message:denied", Text("denied", False, "message", 1)),
        ("name:alice", Text("alice", False, "name", 1)),
        ("12:30", Text("12:30", False, None, 1)),  # not a field name: text
        ("and", Text("and", False, None, 1)),  # operators only in capitals
    ],
)
def test_terms(query: str, node: object) -> None:
    assert parse(query) == node


def test_boolean_structure() -> None:
    a, b, c = (Match("actor", x, "exact", 0) for x in "abc")

    def strip(node: object) -> object:  # columns aside
        if isinstance(node, Match):
            return Match(node.field, node.value, node.mode, 0)
        if isinstance(node, Not):
            return Not(strip(node.child))  # type: ignore[arg-type]
        if isinstance(node, And | Or):
            return type(node)(tuple(strip(x) for x in node.children))  # type: ignore[arg-type]
        return node

    assert strip(parse("actor:a actor:b")) == And((a, b))
    assert strip(parse("actor:a AND actor:b")) == And((a, b))
    assert strip(parse("actor:a OR actor:b")) == Or((a, b))
    # AND binds tighter than OR, juxtaposition is AND
    assert strip(parse("actor:a actor:b OR actor:c")) == Or((And((a, b)), c))
    assert strip(parse("actor:a (actor:b OR actor:c)")) == And((a, Or((b, c))))
    assert strip(parse("-actor:a")) == Not(a)
    assert strip(parse("NOT actor:a")) == Not(a)
    assert strip(parse("--actor:a")) == Not(Not(a))
    assert strip(parse("-(actor:a OR actor:b)")) == Not(Or((a, b)))
    # nested ANDs and ORs flatten
    assert strip(parse("actor:a (actor:b actor:c)")) == And((a, b, c))
    assert strip(parse("actor:a OR (actor:b OR actor:c)")) == Or((a, b, c))
    assert strip(parse("((actor:a))")) == a
    assert parse('-"drop table"') == Not(Text("drop table", False, None, 2))
    assert parse("a-b") == Text("a-b", False, None, 1)  # '-' inside a word is text


@pytest.mark.parametrize(
    ("query", "column", "message"),
    [
        ("actr:alice", 1, "unknown field 'actr' (did you mean 'actor'?)"),
        ("decision:deny actr:alice", 15, "unknown field 'actr' (did you mean 'actor'?)"),
        ("http://x", 1, "unknown field 'http' (to search for the text, quote it"),
        ("risk>=high", 7, "risk takes a whole number, not 'high'"),
        ("risk>=99999999999999999", 7, "risk takes a whole number"),
        ("risk:1..x", 9, "risk takes a whole number, not 'x'"),
        ("risk:..", 6, "a range needs at least one end"),
        ("risk:7*", 6, "risk takes a number, not a pattern"),
        ('risk:"7"', 6, "risk takes a number, not a pattern"),
        ("risk=7", 1, "use ':' for equality (risk:7)"),
        ("actor>=b", 1, "actor takes no comparison '>='"),
        ("actor:", 1, "actor: needs a value"),
        ("actor: alice", 1, "actor: needs a value"),
        ("actor:a*b", 8, "a wildcard '*' can only end a word"),
        ("dr*op", 3, "a wildcard '*' can only end a word"),
        ("*", 1, "a wildcard '*' needs a word before it"),
        ("statement:*", 1, "'' has no letters or digits"),
        ("---", 3, "'-' must be followed by a term"),
        ("-.-", 2, "'.-' has no letters or digits"),
        ('"..."', 1, "'...' has no letters or digits"),
        ("kind:foo", 6, "unknown kind 'foo'"),
        ("kind:foo*", 6, "no kind starts with 'foo'"),
        ("decision:dney", 10, "unknown decision 'dney' (did you mean 'deny'?); one of: allow"),
        ("level:hgh", 7, "(did you mean 'high'?)"),
        ("id:123", 4, "not a UUID: '123'"),
        ("id:0190*", 4, "id: takes a whole UUID, not a prefix"),
        ("session:0190*", 9, "session: takes a whole UUID, not a prefix"),
        ("ip:10.0.0.x", 4, "not an IP address or network: '10.0.0.x'"),
        ("ip:10.*", 4, "ip: takes an address or a CIDR network"),
        ("since:yesterday", 7, "expected a duration (30m, 24h, 7d, 2w) or a UTC time"),
        ("since:7y", 7, "expected a duration"),
        ("since:999999999w", 7, "further back than 10,000 years"),
        ("since:2026-02-30", 7, "not a real date"),
        ("since:2026-11-23T24:00Z", 7, "not a real time of day"),
        ("since:2026-11-23T10:00+24:00", 7, "not a real UTC offset"),
        ("since:2026-11-23T10:00:00", 7, "expected a duration"),  # no zone
        ("until:7d*", 7, "until: takes no wildcards"),
        ('statement:"---"', 1, "'---' has no letters or digits"),
        ('"abc', 1, "unterminated quote"),
        ('a "abc', 3, "unterminated quote"),
        ("(a", 1, "'(' is never closed"),
        ("a (b (c)", 3, "'(' is never closed"),
        ("a)", 2, "unmatched ')'"),
        (")", 1, "unmatched ')'"),
        ("()", 1, "empty parentheses"),
        ("a OR", 3, "nothing after 'OR'"),
        ("OR a", 1, "nothing before 'OR'"),
        ("a OR OR b", 3, "nothing after 'OR'"),
        ("a AND", 3, "nothing after 'AND'"),
        ("AND a", 1, "nothing before 'AND'"),
        ("a NOT", 3, "nothing after 'NOT'"),
        ("a -)", 3, "'-' must be followed by a term, without a space"),
        ("- a", 1, "'-' must be followed by a term, without a space"),
        ('foo"bar"', 4, "a quote cannot start inside a word"),
        ('actor:a"b"', 8, "a quote cannot start inside a word"),
        ('"a"b', 4, "put a space after the closing quote"),
        ("a\x00b", 2, "control character U+0000 is not allowed"),
        ("a\ud800", 2, "not valid Unicode text (a lone surrogate)"),
    ],
)
def test_errors_name_column_and_problem(query: str, column: int, message: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert caught.value.column == column, str(caught.value)
    assert str(caught.value).startswith(f"column {column}: "), str(caught.value)
    assert message in str(caught.value)


def test_limits() -> None:
    small = Limits(max_chars=20, max_terms=3, max_depth=2)
    with pytest.raises(QueryError, match="column 21: query too long"):
        parse("a" * 21, small)
    with pytest.raises(QueryError, match="column 7: more than 3 terms"):
        parse("a b c d", small)
    with pytest.raises(QueryError, match="column 3: nested deeper than 2"):
        parse("((( a )))", small)
    with pytest.raises(QueryError, match="nested deeper than 2"):
        parse("---a", small)
    parse("(( a ))", small)
    # the defaults stop deep nesting long before Python's recursion limit
    with pytest.raises(QueryError, match="nested deeper than 32"):
        parse("(" * 2000 + "a" + ")" * 2000)
    with pytest.raises(QueryError, match="nested deeper than 32"):
        parse("-" * 2000 + "a")


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=60))
def test_random_text_parses_or_raises_query_error(text: str) -> None:
    try:
        parse(text)
    except QueryError as exc:
        assert 1 <= exc.column <= len(text) + 1
    except ProctorError as exc:  # pragma: no cover - the failure message
        raise AssertionError(f"{type(exc).__name__} instead of QueryError") from exc


_FRAGMENTS = st.sampled_from(
    [
        *'():"\\-* ',
        *"<>=.",
        "actor:",
        "kind",
        "risk",
        "..",
        "NOT ",
        " OR ",
        " AND ",
        "ip:10.0.0.0/8",
        "since:7d",
        "2026-11-23T",
        "x",
        "é",
        "id:",
        "decision:",
    ]
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=30).map("".join))
def test_query_like_text_parses_or_raises_query_error(text: str) -> None:
    try:
        parse(text)
    except QueryError as exc:
        assert 1 <= exc.column <= len(text) + 1
