# ruff: noqa: S608 -- SQL text here is built only from whitelisted identifiers (fields.FIELDS,
# _schema) and integer constants; every user value is a bound parameter (see the docstring).
"""Query tree → parameterized SQL over the index (pure: no connection, the time is an argument).

Only fixed identifiers go into SQL text: table and column names from ``fields.FIELDS`` and
``_schema``, operators, and integer tag codes from ``fields.TAGS``. Every value a user wrote
is a bound parameter, including full-text expressions: those are built here by quoting each
word or phrase as an FTS5 string (``"..."`` with ``"`` doubled, FTS5 §3.1), so the user's
text is only ever a phrase to tokenize, never FTS5 syntax (no column filters, NEAR, or
operators of their own).

Semantics of missing values: a field an event lacks matches nothing, and ``-field:value``
matches it. SQL would make ``NOT (NULL = 'x')`` unknown, so every negation is written
``NOT coalesce(expr, 0)``: below a NOT the expression is monotone in its unknown parts, so
mapping unknown to false there is the same as treating each missing value as a non-match.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from proctor.errors import UsageError
from proctor.events.ids import format_time
from proctor.search._schema import ZONE_BITS
from proctor.search.fields import COUNT_KEYS, FIELDS, Field, lookup
from proctor.search.query import (
    And,
    Compare,
    Everything,
    Match,
    Network,
    Node,
    Not,
    Or,
    Text,
    TimeBound,
)

__all__ = ["Compiled", "SqlValue", "compile_query", "count_sql", "ip_key", "page_sql"]

SqlValue = str | int | bytes
Order = Literal["asc", "desc"]

_NS_MIN: Final = -62_135_596_800 * 1_000_000_000  # 0001-01-01T00:00:00Z
_NS_MAX: Final = 253_402_300_799_999_999_999  # 9999-12-31T23:59:59.999999999Z
_AFTER_ALL_TIMES: Final = "~"  # sorts after every "YYYY-…" text
_NO_ZONE: Final = 1 << 50  # a zone number past any ledger: "idx >= it" matches nothing
_V4_MAPPED: Final = b"\x00" * 10 + b"\xff\xff"


@dataclass(frozen=True)
class Compiled:
    """A WHERE clause over ``events AS e``, optionally joined to one top-level FTS5 match.

    ``match`` is an FTS5 expression applied as ``fts MATCH ?`` with ``fts`` joined on the
    ledger index, so SQLite can walk the full-text hits in ledger order and stop at a page's
    limit; ``params`` are the WHERE clause's values, in order.
    """

    match: str | None
    where: str
    params: tuple[SqlValue, ...]


def compile_query(node: Node, *, now_ns: int) -> Compiled:
    """Compile a parsed query; ``now_ns`` is what ``since:7d`` counts back from."""
    c = _Compiler(now_ns)
    if isinstance(node, Text):
        return Compiled(_fts_and([node]), "1", ())
    if isinstance(node, And):
        texts, rest = _split_texts(node.children)
        match = _fts_and(texts)
        if match is not None:
            parts = [c.node(child) for child in rest] or ["1"]
            return Compiled(match, " AND ".join(parts), tuple(c.params))
    return Compiled(None, c.node(node), tuple(c.params))


# -- statements -------------------------------------------------------------------------------


def _from(c: Compiled, extra_join: str = "") -> tuple[str, list[SqlValue]]:
    if c.match is None:
        return f"events AS e{extra_join} WHERE ({c.where})", list(c.params)
    return (
        f"fts JOIN events AS e ON e.idx = fts.rowid{extra_join} WHERE fts MATCH ? AND ({c.where})",
        [c.match, *c.params],
    )


def page_sql(
    c: Compiled, *, after: int | None, order: Order, limit: int
) -> tuple[str, list[SqlValue]]:
    """Matching ledger indexes after ``after`` in ``order`` (keyset pagination), ``limit`` rows."""
    source, params = _from(c)
    direction = "DESC" if order == "desc" else "ASC"
    bound = ""
    if after is not None:
        bound = f" AND e.idx {'<' if order == 'desc' else '>'} ?"
        params.append(after)
    params.append(limit)
    return f"SELECT e.idx FROM {source}{bound} ORDER BY e.idx {direction} LIMIT ?", params


def count_sql(c: Compiled, by: str, *, limit: int) -> tuple[str, list[SqlValue]]:
    """(key, count) of matching events grouped by field ``by``, most frequent first.

    Time buckets (``hour``, ``day``) come in time order instead.
    """
    key, join = _count_key(by)
    source, params = _from(c, join)
    params.append(limit)
    order = "1" if by in COUNT_KEYS else "2 DESC, 1"
    return f"SELECT {key}, count(*) FROM {source} GROUP BY 1 ORDER BY {order} LIMIT ?", params


def count_fields() -> tuple[str, ...]:
    """Every name ``count_sql`` accepts for ``by``."""
    names = [f.name for f in FIELDS.values() if _countable(f)]
    return (*names, *COUNT_KEYS)


def _countable(f: Field) -> bool:
    return f.tag is not None or (f.column is not None and f.kind != "uuid" and f.name != "idx")


def _count_key(by: str) -> tuple[str, str]:
    if by == "hour":
        return "substr(e.time, 1, 13)", ""
    if by == "day":
        return "substr(e.time, 1, 10)", ""
    field = lookup(by)
    if field is None or not _countable(field):
        raise UsageError(f"cannot count by {by!r}; one of: {', '.join(count_fields())}")
    if field.tag is not None:
        return "k.v", f" JOIN tags AS k ON k.idx = e.idx AND k.f = {int(field.tag)}"
    return f"e.{field.column}", ""


def ip_key(value: bytes) -> str:
    """An address as stored (16 bytes, IPv4 mapped into IPv6) back to its usual text."""
    addr = ipaddress.IPv6Address(value)
    return str(addr.ipv4_mapped or addr)


def ip_bytes(text: str) -> bytes | None:
    """An address as the index stores it: 16 bytes, IPv4 as an IPv4-mapped IPv6 address."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 4:
        return _V4_MAPPED + addr.packed
    return addr.packed


# -- the compiler -----------------------------------------------------------------------------


def _split_texts(children: tuple[Node, ...]) -> tuple[list[Node], list[Node]]:
    """Children that are full-text terms (or their negations), and the others."""
    texts: list[Node] = []
    rest: list[Node] = []
    for child in children:
        inner = child.child if isinstance(child, Not) else child
        (texts if isinstance(inner, Text) else rest).append(child)
    return texts, rest


def _fts(t: Text) -> str:
    """One FTS5 phrase: the user's text as an FTS5 string, never as FTS5 syntax."""
    phrase = '"' + t.text.replace('"', '""') + '"'
    if t.prefix:
        phrase += " *"
    if t.fts_column is not None:
        phrase = "{" + t.fts_column + "} : " + phrase  # a column name from FTS_COLUMNS
    return phrase


def _fts_and(texts: list[Node]) -> str | None:
    """One FTS5 expression for ANDed full-text terms, if at least one is positive."""
    pos = [_fts(t) for t in texts if isinstance(t, Text)]
    neg = [_fts(t.child) for t in texts if isinstance(t, Not) and isinstance(t.child, Text)]
    if not pos:
        return None
    expr = "(" + " AND ".join(pos) + ")"
    if neg:
        expr += " NOT (" + " OR ".join(neg) + ")"
    return expr


_IN_FTS: Final = "e.idx IN (SELECT rowid FROM fts WHERE fts MATCH ?)"


class _Compiler:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns
        self.params: list[SqlValue] = []

    def _p(self, value: SqlValue) -> str:
        self.params.append(value)
        return "?"

    def node(self, node: Node) -> str:  # noqa: PLR0911 (one return per node type)
        if isinstance(node, Everything):
            return "1"
        if isinstance(node, Match):
            return self._match(node)
        if isinstance(node, Compare):
            return self._compare(node)
        if isinstance(node, Network):
            return self._network(node)
        if isinstance(node, TimeBound):
            return self._time(node)
        if isinstance(node, Text):
            return f"e.idx IN (SELECT rowid FROM fts WHERE fts MATCH {self._p(_fts(node))})"
        if isinstance(node, Not):
            return f"NOT coalesce({self.node(node.child)}, 0)"
        if isinstance(node, And):
            return self._and(node)
        assert isinstance(node, Or)
        return self._or(node)

    def _and(self, node: And) -> str:
        texts, rest = _split_texts(node.children)
        parts: list[str] = []
        match = _fts_and(texts)
        if match is not None:
            parts.append(f"e.idx IN (SELECT rowid FROM fts WHERE fts MATCH {self._p(match)})")
        else:
            rest = list(node.children)  # only negated texts: each on its own
        parts.extend(self.node(child) for child in rest)
        return "(" + " AND ".join(parts) + ")"

    def _or(self, node: Or) -> str:
        texts = [child for child in node.children if isinstance(child, Text)]
        parts: list[str] = []
        rest: list[Node] = list(node.children)
        if len(texts) > 1:
            expr = " OR ".join(_fts(t) for t in texts)
            parts.append(f"e.idx IN (SELECT rowid FROM fts WHERE fts MATCH {self._p(expr)})")
            rest = [child for child in node.children if not isinstance(child, Text)]
        parts.extend(self.node(child) for child in rest)
        return "(" + " OR ".join(parts) + ")"

    def _match(self, m: Match) -> str:
        field = FIELDS[m.field]
        if field.tag is not None:
            code = int(field.tag)
            if m.mode == "any":
                return f"e.idx IN (SELECT idx FROM tags WHERE f = {code})"
            cond = self._text_cond("v", m)
            return f"e.idx IN (SELECT idx FROM tags WHERE f = {code} AND {cond})"
        assert field.column is not None
        col = f"e.{field.column}"
        if m.mode == "any":
            return f"{col} IS NOT NULL"
        if field.kind == "uuid":
            return f"{col} = {self._p(uuid.UUID(m.value).bytes)}"
        return self._text_cond(col, m)

    def _text_cond(self, col: str, m: Match) -> str:
        if m.mode == "exact":
            return f"{col} = {self._p(m.value)}"
        end = _prefix_end(m.value)
        if end is None:
            return f"{col} >= {self._p(m.value)}"
        return f"({col} >= {self._p(m.value)} AND {col} < {self._p(end)})"

    def _compare(self, c: Compare) -> str:
        col = f"e.{FIELDS[c.field].column}"
        parts = []
        if c.low is not None:
            parts.append(f"{col} >= {self._p(c.low)}")
        if c.high is not None:
            parts.append(f"{col} <= {self._p(c.high)}")
        return "(" + " AND ".join(parts) + ")"

    def _network(self, n: Network) -> str:
        col = f"e.{FIELDS[n.field].column}"
        lo, hi = n.network.network_address.packed, n.network.broadcast_address.packed
        if n.network.version == 4:
            lo, hi = _V4_MAPPED + lo, _V4_MAPPED + hi
        if lo == hi:
            return f"{col} = {self._p(lo)}"
        return f"({col} >= {self._p(lo)} AND {col} <= {self._p(hi)})"

    def _time(self, t: TimeBound) -> str:
        ns = t.at_ns if t.at_ns is not None else self.now_ns - (t.ago_ns or 0)
        if ns < _NS_MIN:
            text = ""
        elif ns > _NS_MAX:
            text = _AFTER_ALL_TIMES
        else:
            text = format_time(ns)
        # The zone bound is implied by the time bound (every event at or after T sits in a
        # zone whose latest time is at or after T), so adding it changes no result; it lets
        # SQLite walk only the end of the ledger for a recent time window.
        if t.bound == "since":
            return (
                f"(e.time >= {self._p(text)} AND e.idx >= "
                f"(SELECT coalesce(min(zone), {_NO_ZONE}) << {ZONE_BITS} FROM zones "
                f"WHERE max_time >= {self._p(text)}))"
            )
        return (
            f"(e.time < {self._p(text)} AND e.idx < "
            f"(SELECT (coalesce(max(zone), -1) + 1) << {ZONE_BITS} FROM zones "
            f"WHERE min_time < {self._p(text)}))"
        )


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (code point order, which
    is SQLite's BINARY order on UTF-8), or None when there is none."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < 0x10FFFF:
            code += 1
            if 0xD800 <= code <= 0xDFFF:
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None
