"""The compiler: SQL text without user values, FTS5 text only as quoted phrases and hex tokens."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import UsageError
from proctor.search.compile import Compiled, compile_query, count_fields, count_sql, page_sql
from proctor.search.fields import FIELDS
from proctor.search.query import QueryError, Text, parse

NOW = 1_795_000_000 * 10**9
T = "{statement reason message object name}"  # the text columns bare words search
F = "{facets}"

# SQL text may hold identifiers, numbers, operators and '?': never a quote, so never a string
# literal, so never a user's text; never a statement separator or a comment.
_SQL_CHARS = re.compile(r"[A-Za-z0-9_.,()?*=<>!+\- ]*")
# The FTS5 expression outside its quoted strings: column filters from the whitelist,
# operators, parentheses, '*'.
_FTS_OUTSIDE = re.compile(
    r"(\{(statement|reason|message|object|name|facets)( (statement|reason|message|object|name))*\}"
    r"|AND|OR|NOT|[ ():*])*"
)
_FTS_STRING = re.compile(r'"(?:[^"]|"")*"')


def _all_sql(c: Compiled) -> list[str]:
    statements = [page_sql(c, after=None, order="desc", limit=50)[0]]
    statements.append(page_sql(c, after=7, order="asc", limit=50)[0])
    statements.extend(count_sql(c, by, limit=10)[0] for by in ("actor", "session", "hour"))
    return statements


def _check(c: Compiled) -> None:
    for sql in _all_sql(c):
        assert _SQL_CHARS.fullmatch(sql), sql
        assert "--" not in sql and ";" not in sql and "/*" not in sql
    for expr in [c.match, *(p for p in c.params if isinstance(p, str) and "{" in p)]:
        if expr is not None:
            assert _FTS_OUTSIDE.fullmatch(_FTS_STRING.sub("", expr)), expr


def test_values_never_reach_sql_text() -> None:
    q = (
        'actor:"Robert\'); DROP TABLE events;--" target:prod* db:"x\\" OR 1=1" '
        'risk>=97 ip:10.0.0.0/8 since:7d until:2026-11-23 role:dba "DROP TABLE" -kind:query '
        "id:01a207ad-3f7a-7738-a2af-dc842369d3ae rows>5"
    )
    c = compile_query(parse(q), now_ns=NOW)
    _check(c)
    assert c.match is not None
    assert b"Robert'); DROP TABLE events;--".hex() in c.match  # a hex token
    assert b'x" OR 1=1'.hex() in c.match
    assert f'{T} : "DROP TABLE"' in c.match
    assert f'{F} : ("z97" OR "z98" OR "z99" OR "z100")' in c.match
    assert f' NOT ({F} : "k{b"query".hex()}")' in c.match
    assert 6 in c.params and "DROP" not in c.where and "Robert" not in c.where  # rows>5


def test_every_field_compiles_safely() -> None:
    samples = {
        "text": "zq'\"x",
        "enum": None,
        "tag": "zq'\"x",
        "uuid": "01a207ad-3f7a-7738-a2af-dc842369d3ae",
        "number": "5",
        "ip": "10.0.0.0/8",
        "time": "7d",
        "fts": '"zq\\"x"',
    }
    for field in FIELDS.values():
        value = samples[field.kind]
        if value is None:
            value = field.values[0]
        elif field.kind in ("text", "tag"):
            value = '"' + value.replace('"', '\\"') + '"'
        for query in (
            f"{field.name}:{value}",
            f"-{field.name}:{value}",
            f"{field.name}:{value} OR since:1h",
            f"{field.name}:{value} -since:1h",
        ):
            _check(compile_query(parse(query), now_ns=NOW))


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["actor", "target", "db", "fingerprint", "source", "role", "object"]),
    st.text(min_size=1, max_size=40),
    st.booleans(),
)
def test_any_value_becomes_a_hex_token(field: str, value: str, prefix: bool) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    query = f'{field}:"{escaped}"' + ("*" if prefix else "")
    try:
        c = compile_query(parse(query), now_ns=NOW)
    except QueryError:
        return  # control characters and lone surrogates are refused before compiling
    _check(c)
    assert c.match == f'{F} : "{FIELDS[field].letter}{value.encode().hex()}"' + (
        " *" if prefix else ""
    )


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("drop", f'{T} : "drop"'),
        ("drop*", f'{T} : "drop" *'),
        ('"drop table"', f'{T} : "drop table"'),
        ('"say \\"hi\\""', f'{T} : "say ""hi"""'),
        ("stmt:drop", '{statement} : "drop"'),
        ('reason:"no policy"*', '{reason} : "no policy" *'),
        ("drop table -users", f'({T} : "drop" AND {T} : "table") NOT ({T} : "users")'),
        ("NEAR(a)", f'({T} : "NEAR" AND {T} : "a")'),  # '(' ends a word: not FTS5's NEAR
        ('"NEAR(a b)"', f'{T} : "NEAR(a b)"'),
        ('"a OR b"', f'{T} : "a OR b"'),
        ('"{statement} : x"', f'{T} : "{{statement}} : x"'),
        ('"^start"', f'{T} : "^start"'),
        ("drop OR actor:a", f'({T} : "drop" OR {F} : "a61")'),
        ('role:"a\\" OR b"', f'{F} : "r6122204f522062"'),
        ("object:sales.*", f'{F} : "o73616c65732e" *'),
        ("group:*", f'{F} : "g" *'),
        ("role:dba -flag:time_skew", f'({F} : "r646261") NOT ({F} : "h74696d655f736b6577")'),
        (
            "session:00000000-0000-4000-8000-00000000000a",
            f'{F} : "s{"0" * 12}4000800000000000000a"',
        ),
        ("risk:3..5", f'{F} : ("z3" OR "z4" OR "z5")'),
        ("risk>99", f'{F} : ("z100")'),
        ("ip:10.1.2.3", f'{F} : "p{"0" * 20}ffff0a010203"'),
        ("ip:10.0.0.0/8", f'{F} : "n0a"'),
        ("ip:10.1.0.0/16", f'{F} : "n0a01"'),
        ("ip:10.1.2.0/24", f'{F} : "n0a0102"'),
        ("ip:10.0.0.0/12", f'{F} : "p{"0" * 20}ffff0a0" *'),
        (
            "ip:10.0.0.0/10",
            f'({F} : "p{"0" * 20}ffff0a0" * OR {F} : "p{"0" * 20}ffff0a1" * '
            f'OR {F} : "p{"0" * 20}ffff0a2" * OR {F} : "p{"0" * 20}ffff0a3" *)',
        ),
        ("ip:2001:db8::/32", f'{F} : "n20010db8"'),
        (
            "ip:2001:db8::/33",
            f'({F} : "p20010db80" * OR {F} : "p20010db81" * OR '
            f'{F} : "p20010db82" * OR {F} : "p20010db83" * OR {F} : "p20010db84" * OR '
            f'{F} : "p20010db85" * OR {F} : "p20010db86" * OR {F} : "p20010db87" *)',
        ),
        ("ip:::/0", f'{F} : "p" *'),
    ],
)
def test_fts5_expressions(query: str, match: str) -> None:
    try:
        c = compile_query(parse(query), now_ns=NOW)
    except QueryError:
        pytest.fail(f"{query!r} should parse")
    assert c.match == match, c
    assert c.where == "1"
    _check(c)


def test_what_tokens_cannot_say_is_sql() -> None:
    c = compile_query(parse("drop since:1h rows>5"), now_ns=NOW)
    assert c.match == f'({T} : "drop")'
    assert "e.time >= ?" in c.where and "fts.rowid >= (SELECT" in c.where
    assert "e.rows >= ?" in c.where and c.needs_events
    c = compile_query(parse("drop idx>5"), now_ns=NOW)
    assert c.where == "(fts.rowid >= ?)" and not c.needs_events  # no join needed
    c = compile_query(parse("since:1h OR drop"), now_ns=NOW)
    assert c.match is None
    assert "e.idx IN (SELECT rowid FROM fts(?))" in c.where
    assert f'{T} : "drop"' in c.params
    c = compile_query(parse("-drop"), now_ns=NOW)
    assert c.where.startswith("NOT coalesce(e.idx IN (SELECT rowid FROM fts(?)), 0)")
    c = compile_query(parse("actor:*"), now_ns=NOW)
    assert c.match is None and c.where == "e.actor IS NOT NULL"
    c = compile_query(parse("risk>100"), now_ns=NOW)
    assert c.match is None and c.where == "(e.risk >= ?)" and c.params == (101,)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_phrase_quoting_is_total(text: str) -> None:
    match = compile_query(Text(text, False, None, 1), now_ns=NOW).match
    assert match is not None and match.startswith(f"{T} : ")
    phrase = match[len(f"{T} : ") :]
    # one FTS5 string: opens and closes with '"', every inner '"' doubled
    assert phrase.startswith('"') and phrase.endswith('"')
    assert phrase[1:-1].replace('""', "").count('"') == 0


def test_count_keys() -> None:
    c = compile_query(parse(""), now_ns=NOW)
    for by in count_fields():
        sql, _ = count_sql(c, by, limit=5)
        assert _SQL_CHARS.fullmatch(sql), sql
    with pytest.raises(UsageError, match="cannot count by 'password'"):
        count_sql(c, "password", limit=5)
    with pytest.raises(UsageError, match="cannot count by 'id'"):
        count_sql(c, "id", limit=5)
    with pytest.raises(UsageError, match="cannot count by 'role'"):
        count_sql(c, "role", limit=5)


def test_deep_trees_compile_quickly() -> None:
    # nested AND/OR as deep as the parser allows, full-text and SQL leaves mixed: the
    # compiler looks at each subtree a bounded number of times, not twice per level
    q = "x"
    for depth in range(31):
        leaf = "since:1h" if depth % 3 == 0 else f"actor:a{depth}"
        q = f"({leaf} {'OR' if depth % 2 else 'AND'} {q})"
    start = time.perf_counter()
    c = compile_query(parse(q), now_ns=NOW)
    assert time.perf_counter() - start < 1
    _check(c)


def test_times_far_out_stay_in_range() -> None:
    for q in ("since:500000w", "until:0001-01-01", "since:9999-12-31T23:59:59.999999999Z"):
        _check(compile_query(parse(q), now_ns=NOW))
    c = compile_query(parse("since:500000w"), now_ns=NOW)
    assert "" in c.params  # before the first time there is: every event
