"""The compiler: user values only ever as parameters, FTS5 text only as quoted phrases."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import UsageError
from proctor.search.compile import (
    Compiled,
    compile_query,
    count_fields,
    count_sql,
    page_sql,
)
from proctor.search.fields import FIELDS
from proctor.search.query import QueryError, Text, parse

NOW = 1_795_000_000 * 10**9

# SQL text may hold identifiers, numbers, operators and '?': never a quote, so never a string
# literal, so never a user's text; never a statement separator or a comment.
_SQL_CHARS = re.compile(r"[A-Za-z0-9_.,()?*=<>!+\- ]*")


def _all_sql(c: Compiled) -> list[str]:
    statements = [page_sql(c, after=None, order="desc", limit=50)[0]]
    statements.append(page_sql(c, after=7, order="asc", limit=50)[0])
    statements.extend(count_sql(c, by, limit=10)[0] for by in ("actor", "role", "hour"))
    return statements


def _check_sql(c: Compiled) -> None:
    for sql in _all_sql(c):
        assert _SQL_CHARS.fullmatch(sql), sql
        assert "--" not in sql and ";" not in sql and "/*" not in sql


def test_values_are_parameters() -> None:
    q = (
        'actor:"Robert\'); DROP TABLE events;--" target:prod* db:"x\\" OR 1=1" '
        'risk>=70 ip:10.0.0.0/8 since:7d until:2026-11-23 role:dba "DROP TABLE" -kind:query '
        "id:01a207ad-3f7a-7738-a2af-dc842369d3ae"
    )
    c = compile_query(parse(q), now_ns=NOW)
    _check_sql(c)
    assert "Robert'); DROP TABLE events;--" in c.params
    assert 'x" OR 1=1' in c.params
    assert c.match == '("DROP TABLE")'
    assert "DROP" not in c.where and "Robert" not in c.where


def test_every_field_compiles_to_parameters_only() -> None:
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
        for query in (f"{field.name}:{value}", f"-{field.name}:{value}"):
            c = compile_query(parse(query), now_ns=NOW)
            _check_sql(c)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["actor", "target", "db", "session", "fingerprint", "role", "object"]),
    st.text(min_size=1, max_size=40).filter(
        lambda s: not any(0xD800 <= ord(c) < 0xE000 for c in s)
    ),
    st.booleans(),
)
def test_any_value_stays_a_parameter(field: str, value: str, prefix: bool) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    query = f'{field}:"{escaped}"' + ("*" if prefix else "")
    try:
        c = compile_query(parse(query), now_ns=NOW)
    except QueryError:
        return  # control characters are refused before anything is compiled
    _check_sql(c)
    assert value in c.params or value.upper() in c.params


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("drop", '("drop")'),
        ("drop*", '("drop" *)'),
        ('"drop table"', '("drop table")'),
        ('"say \\"hi\\""', '("say ""hi""")'),
        ("stmt:drop", '({statement} : "drop")'),
        ('reason:"no policy"*', '({reason} : "no policy" *)'),
        ("drop table -users", '("drop" AND "table") NOT ("users")'),
        ("NEAR(a)", '("NEAR" AND "a")'),  # '(' ends a word: two words, not FTS5's NEAR
        ('"NEAR(a b)"', '("NEAR(a b)")'),
        ('"a OR b"', '("a OR b")'),
        ('"{statement} : x"', '("{statement} : x")'),
        ('"x" "y"', '("x" AND "y")'),
        ('"^start"', '("^start")'),
    ],
)
def test_text_becomes_quoted_fts5_phrases(query: str, match: str) -> None:
    try:
        c = compile_query(parse(query), now_ns=NOW)
    except QueryError:
        pytest.fail(f"{query!r} should parse")
    assert c.match == match, c


def test_text_below_the_top_level_is_a_subquery() -> None:
    c = compile_query(parse("actor:a OR drop"), now_ns=NOW)
    assert c.match is None
    assert "fts MATCH ?" in c.where and '"drop"' in c.params
    c = compile_query(parse("drop OR table"), now_ns=NOW)
    assert c.params == ('"drop" OR "table"',)  # texts under one OR share one MATCH
    c = compile_query(parse("-drop"), now_ns=NOW)
    assert c.where.startswith("NOT coalesce(e.idx IN (SELECT rowid FROM fts")


def test_phrase_quoting_is_total() -> None:
    @settings(max_examples=300, deadline=None)
    @given(st.text(min_size=1, max_size=30))
    def check(text: str) -> None:
        from proctor.search.compile import _fts

        phrase = _fts(Text(text, False, None, 1))
        # one FTS5 string: opens and closes with '"', every inner '"' doubled
        assert phrase.startswith('"') and phrase.endswith('"')
        assert phrase[1:-1].replace('""', "").count('"') == 0

    check()


def test_count_keys() -> None:
    c = compile_query(parse(""), now_ns=NOW)
    for by in count_fields():
        sql, _ = count_sql(c, by, limit=5)
        assert _SQL_CHARS.fullmatch(sql), sql
    with pytest.raises(UsageError, match="cannot count by 'password'"):
        count_sql(c, "password", limit=5)
    with pytest.raises(UsageError, match="cannot count by 'id'"):
        count_sql(c, "id", limit=5)


def test_times_far_out_stay_in_range() -> None:
    for q in ("since:500000w", "until:0001-01-01", "since:9999-12-31T23:59:59.999999999Z"):
        c = compile_query(parse(q), now_ns=NOW)
        _check_sql(c)
    c = compile_query(parse("since:500000w"), now_ns=NOW)
    assert "" in c.params  # before the first time there is: every event
