"""Search, pagination, counts and the index iterator against a brute-force filter."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proctor.errors import ProctorError, UsageError
from proctor.search.query import QueryError, parse
from proctor.search.search import count, matching_indexes, search
from tests.search import oracle
from tests.search.conftest import (
    ACTORS,
    DATABASES,
    GROUPS,
    NOW_NS,
    OBJECTS,
    REASONS,
    ROLES,
    TARGETS,
    WORDS,
    Indexed,
)


def expected(ix: Indexed, query: str) -> list[int]:
    node = parse(query)
    return [i for i, e in ix.events if oracle.matches(node, i, e, NOW_NS)]


def found(ix: Indexed, query: str) -> list[int]:
    return list(matching_indexes(ix.index, query, now_ns=NOW_NS))


QUERIES = [
    "",
    "actor:alice",
    "actor:Alice",  # ids are case-sensitive
    "actor:ali*",
    "actor:*",
    "-actor:*",
    "actor:alice decision:deny",
    "actor:alice decision:deny risk>=70",
    "actor:alice OR actor:bob",
    "-actor:alice",
    "-(actor:alice OR actor:bob) kind:decision",
    "NOT decision:allow",
    "decision:step_up",
    "kind:session.*",
    "role:dba",
    "role:dba group:ops",
    "-role:dba",
    "role:*",
    "group:billing-team",
    "object:public.users",
    "object:sales.*",
    "target:prod-db",
    "target:prod*",
    "db:sales risk>=90",
    "risk:40..60",
    "risk<10",
    "rows>1000",
    "rows:0",
    "duration>=4000000",
    "idx:100..150",
    "idx<5 OR idx>590",
    "ip:10.0.0.0/16",
    "ip:10.0.0.0/8",
    "ip:10.20.30.40",
    "ip:2001:db8::/32",
    "ip:2001:db8:1::7",
    "ip:::ffff:0:0/96",
    "-ip:10.0.0.0/8",
    "since:24h",
    "since:36h until:12h",
    "until:2d",
    "since:2026-11-15T12:00:00Z",
    "since:2026-11-16 until:2026-11-17",
    "fingerprint:fp-rare",
    "op:select",
    'op:"drop table"',
    "sqlstate:28p01",
    "status:error",
    "level:critical",
    "class:ddl",
    "sensitivity:restricted",
    "type:k8s",
    "source:pgaudit",
    "flag:time_skew",
    "policy:p-ddl",
    "session:00000000-0000-4000-8000-00000000000a",
    "drop",
    "drop table",
    '"drop table"',
    '"drop tab"*',
    "sel*",
    "-drop",
    "drop -table",
    "drop OR grant",
    "(drop OR grant) actor:bob",
    "stmt:users",
    'reason:"no policy"',
    "reason:mfa",
    "message:denied",
    "name:alice",
    "users",  # in statements, objects and messages
    "alice",  # in display names only
    'actor:bob "from users" since:2d -decision:allow',
    "drop OR actor:carol",
    "-(drop OR table) risk>=50",
    "(actor:alice (drop OR role:dba)) OR (kind:outcome status:error)",
]


@pytest.mark.parametrize("query", QUERIES)
def test_matches_equal_the_brute_force_filter(indexed: Indexed, query: str) -> None:
    want = expected(indexed, query)
    assert found(indexed, query) == want
    page = search(indexed.index, query, limit=7, now_ns=NOW_NS)
    assert [i for i, _ in page.items] == want[::-1][:7]
    assert page.next_after == (want[::-1][6] if len(want) >= 7 else None)


def test_most_queries_match_something(indexed: Indexed) -> None:
    # the table above is not vacuous: most queries select a proper, non-empty subset
    sizes = [len(expected(indexed, q)) for q in QUERIES]
    assert sum(0 < n < len(indexed.events) for n in sizes) >= len(QUERIES) - 8


def test_pages_cover_every_match_once(indexed: Indexed) -> None:
    query = "decision:allow OR drop"
    want = expected(indexed, query)
    for order in ("desc", "asc"):
        seen: list[int] = []
        after = None
        while True:
            page = search(
                indexed.index, query, limit=13, after_index=after, order=order, now_ns=NOW_NS
            )
            seen.extend(i for i, _ in page.items)
            if page.next_after is None:
                break
            after = page.next_after
        assert seen == (want if order == "asc" else want[::-1])


def test_results_are_the_ledger_events(indexed: Indexed) -> None:
    page = search(indexed.index, "kind:decision", limit=20, now_ns=NOW_NS)
    by_idx = dict(indexed.events)
    for i, event in page.items:
        assert event == by_idx[i]
        assert event.kind == "decision"
    assert page.indexed == len(indexed.events)


@pytest.mark.parametrize(
    ("by", "key"),
    [
        ("actor", lambda v: v["actor"]),
        ("target", lambda v: v["target"]),
        ("decision", lambda v: v["decision"]),
        ("kind", lambda v: v["kind"]),
        ("session", lambda v: v["session"]),
        ("risk", lambda v: [str(x) for x in v["risk"]]),
        ("ip", lambda v: v["ip"]),
    ],
)
def test_counts_equal_the_brute_force_counts(indexed: Indexed, by: str, key: object) -> None:
    query = "-kind:auth.failed"
    node = parse(query)
    want: Counter[str | None] = Counter()
    for i, e in indexed.events:
        if oracle.matches(node, i, e, NOW_NS):
            keys = key(oracle.values(i, e))  # type: ignore[operator]
            if keys:
                want.update(keys)
            else:
                want[None] += 1
    got = count(indexed.index, query, by=by, limit=1000, now_ns=NOW_NS)
    assert dict(got) == dict(want)
    assert [n for _, n in got] == sorted((n for _, n in got), reverse=True)


def test_counts_per_hour_and_day(indexed: Indexed) -> None:
    hours = Counter(e.time[:13] + ":00Z" for _, e in indexed.events)
    got = count(indexed.index, "", by="hour", limit=1000)
    assert got == sorted(hours.items())
    days = Counter(e.time[:10] for _, e in indexed.events)
    assert count(indexed.index, "", by="day") == sorted(days.items())
    top = count(indexed.index, "", by="actor", limit=2)
    assert len(top) == 2


def test_iterator_is_flat_and_ordered(indexed: Indexed) -> None:
    want = expected(indexed, "actor:alice OR actor:bob")
    assert list(matching_indexes(indexed.index, "actor:alice OR actor:bob", batch=5)) == want
    desc = matching_indexes(indexed.index, "actor:alice OR actor:bob", order="desc", batch=5)
    assert list(desc) == want[::-1]


@pytest.mark.parametrize(
    "query",
    [
        "actor:\"x' OR '1'='1\"",
        'actor:"alice\' --"',
        'target:"prod-db\\" OR 1=1 --"',
        '"drop\\" OR \\"grant"',  # the phrase 'drop" OR "grant', not two phrases
        '"NEAR(drop table)"',
        '"{statement reason} : drop"',
        '"drop" *',  # '*' after a space: a word, refused, not a prefix operator
        '"^drop"',
        '"drop table" OR "users *"',
        'stmt:"\'); DROP TABLE events; --"',
        "fingerprint:%",
        "actor:_lice",
    ],
)
def test_injection_attempts_are_inert(indexed: Indexed, query: str) -> None:
    try:
        node = parse(query)
    except QueryError:
        return  # refused with a message: also inert
    want = [i for i, e in indexed.events if oracle.matches(node, i, e, NOW_NS)]
    assert found(indexed, query) == want
    rows = indexed.index.query("SELECT count(*) FROM events")
    assert rows[0][0] == len(indexed.events)


def test_bad_arguments(indexed: Indexed) -> None:
    with pytest.raises(UsageError, match="limit must be between 1 and 1000"):
        search(indexed.index, "", limit=0)
    with pytest.raises(UsageError, match="order must be asc or desc"):
        search(indexed.index, "", order="sideways")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="cannot count by 'nope'"):
        count(indexed.index, "", by="nope")
    with pytest.raises(QueryError, match="column 1: unknown field 'actr'"):
        search(indexed.index, "actr:x")


# -- generated queries -------------------------------------------------------------------------


def _quoted(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


_VALUE_TERMS = st.one_of(
    st.sampled_from(ACTORS).map(lambda a: f"actor:{a}"),
    st.sampled_from(ACTORS).map(lambda a: f"actor:{a[:2]}*"),
    st.sampled_from(ROLES).map(lambda r: f"role:{r}"),
    st.sampled_from(GROUPS).map(lambda g: f"group:{g}"),
    st.sampled_from(TARGETS).map(lambda t: f"target:{t}"),
    st.sampled_from(DATABASES).map(lambda d: f"db:{d}"),
    st.sampled_from(OBJECTS).map(lambda o: f"object:{o}"),
    st.sampled_from(["allow", "deny", "step_up"]).map(lambda d: f"decision:{d}"),
    st.sampled_from(["query", "decision", "outcome", "session.*", "auth.failed"]).map(
        lambda k: f"kind:{k}"
    ),
    st.tuples(st.sampled_from([">=", "<=", ">", "<", ":"]), st.integers(0, 100)).map(
        lambda t: f"risk{t[0]}{t[1]}"
    ),
    st.tuples(st.integers(0, 600), st.integers(0, 600)).map(lambda t: f"idx:{t[0]}..{t[1]}"),
    st.sampled_from(["10.0.0.0/8", "10.0.0.0/16", "2001:db8::/32", "192.168.1.5"]).map(
        lambda n: f"ip:{n}"
    ),
    st.integers(1, 80).map(lambda h: f"since:{h}h"),
    st.integers(1, 80).map(lambda h: f"until:{h}h"),
    st.sampled_from(["ok", "error", "cancelled"]).map(lambda s: f"status:{s}"),
    st.sampled_from(["actor", "role", "ip", "risk", "sqlstate", "target"]).map(
        lambda f: f"{f}:*" if f != "risk" else "risk:0.."
    ),
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(lambda w: f"{w[:3]}*"),
    st.tuples(st.sampled_from(WORDS), st.sampled_from(WORDS)).map(lambda t: _quoted(" ".join(t))),
    st.sampled_from(REASONS).map(lambda r: "reason:" + _quoted(" ".join(r.split()[:2]))),
    st.sampled_from(["statement", "message", "name"]).map(lambda c: f"{c}:users"),
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(children, min_size=2, max_size=3).map(" ".join),
        st.lists(children, min_size=2, max_size=3).map(" OR ".join),
        children.map(lambda q: f"-({q})"),
        children.map(lambda q: f"({q})"),
    )


_QUERIES = st.recursive(_VALUE_TERMS, _combine, max_leaves=8)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=_QUERIES)
def test_generated_queries_equal_the_brute_force_filter(indexed: Indexed, query: str) -> None:
    assert found(indexed, query) == expected(indexed, query), query


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=40))
def test_random_text_never_reaches_sqlite_as_an_error(indexed: Indexed, text: str) -> None:
    try:
        search(indexed.index, text, limit=5, now_ns=NOW_NS)
        count(indexed.index, text, by="actor", limit=5, now_ns=NOW_NS)
    except QueryError:
        pass
    except ProctorError as exc:  # a StorageError here would be SQLite refusing our SQL
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
