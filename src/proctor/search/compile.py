# ruff: noqa: S608 -- SQL text here is built only from whitelisted identifiers (fields.FIELDS,
# _schema) and integer constants; every user value is a bound parameter (see the docstring).
"""Query tree → parameterized SQL over the index (pure: no connection, the time is an argument).

Most of a query becomes one FTS5 expression: field values are tokens in the ``facets``
column (``fields.token``), words and phrases search the text columns, and AND, OR and NOT
(beside something positive) are FTS5's own. What tokens cannot say (times, row counts,
durations, index ranges, a NOT on its own) is SQL over ``events AS e``, joined on the ledger
index. ``page_sql`` orders by the fts rowid, so FTS5 walks its hits newest first and stops at
the page's limit.

Only fixed identifiers go into SQL text: table and column names from ``fields.FIELDS`` and
``_schema``, operators and integer constants. Every value a user wrote is a bound parameter,
including the full-text expression. That expression is built here: words and phrases are
FTS5 strings (``"..."`` with ``"`` doubled, FTS5 §3.1), so a user's text is only ever a phrase
to tokenize, never FTS5 syntax (no column filters, NEAR or operators of their own); field
values are hex tokens, letters and digits only; column names come from ``fields``.

Missing values: a field an event lacks matches nothing, and ``-field:value`` matches it. SQL
would make ``NOT (NULL = 'x')`` unknown, so every negation in SQL is ``NOT coalesce(expr, 0)``:
below a NOT the expression is monotone in its unknown parts, so mapping unknown to false there
is the same as treating each missing value as a non-match. FTS5 has no unknowns.
"""

from __future__ import annotations

import functools
import ipaddress
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from proctor.errors import UsageError
from proctor.events.ids import format_time
from proctor.search._schema import ZONE_BITS
from proctor.search.fields import (
    COUNT_KEYS,
    FIELDS,
    NETWORK_BYTES,
    NETWORK_LETTER,
    TEXT_COLUMNS,
    Field,
    lookup,
    token,
)
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

__all__ = [
    "V4_MAPPED",
    "Compiled",
    "SqlValue",
    "compile_query",
    "count_fields",
    "count_key",
    "count_sql",
    "ip_bytes",
    "ip_key",
    "page_sql",
]

SqlValue = str | int | bytes
Order = Literal["asc", "desc"]

V4_MAPPED: Final = b"\x00" * 10 + b"\xff\xff"  # IPv4 addresses are stored IPv4-mapped
_NS_MIN: Final = -62_135_596_800 * 1_000_000_000  # 0001-01-01T00:00:00Z
_NS_MAX: Final = 253_402_300_799_999_999_999  # 9999-12-31T23:59:59.999999999Z
_AFTER_ALL_TIMES: Final = "~"  # sorts after every "YYYY-…" text
_NO_ZONE: Final = 1 << 50  # a zone number past any ledger: "idx >= it" matches nothing
_RISK: Final = (0, 100)  # risk scores have one token per value
_TEXT: Final = "{" + " ".join(TEXT_COLUMNS) + "}"
_FACETS: Final = "{facets}"


@dataclass(frozen=True)
class Compiled:
    """A compiled query: an FTS5 expression (``match``), SQL for the rest (``where``).

    With ``match``, ``where`` may use ``fts.rowid`` (the ledger index) and, when
    ``needs_events``, ``e`` (the events row joined on it); ``params`` are ``where``'s values.
    """

    match: str | None
    where: str
    params: tuple[SqlValue, ...]
    needs_events: bool = True


def compile_query(node: Node, *, now_ns: int) -> Compiled:
    """Compile a parsed query; ``now_ns`` is what ``since:7d`` counts back from."""
    whole = _fts(node)
    if whole is not None:
        return Compiled(whole, "1", (), needs_events=False)
    if isinstance(node, And):
        texts, rest = _split(node.children)
        match = _fts_and(texts)
        if match is not None:
            c = _Compiler(now_ns, key="fts.rowid")
            where = " AND ".join(c.node(child) for child in rest)
            return Compiled(match, where, tuple(c.params), needs_events=c.uses_events)
    c = _Compiler(now_ns, key="e.idx")
    return Compiled(None, c.node(node), tuple(c.params))


# -- statements -------------------------------------------------------------------------------


def _from(c: Compiled, *, events: bool = False) -> tuple[str, list[SqlValue]]:
    if c.match is None:
        return f"events AS e WHERE ({c.where})", list(c.params)
    join = " JOIN events AS e ON e.idx = fts.rowid" if events or c.needs_events else ""
    return f"fts{join} WHERE fts MATCH ? AND ({c.where})", [c.match, *c.params]


def page_sql(
    c: Compiled, *, after: int | None, order: Order, limit: int
) -> tuple[str, list[SqlValue]]:
    """Matching ledger indexes after ``after`` in ``order`` (keyset pagination), ``limit`` rows."""
    source, params = _from(c)
    # With a full-text match, order and bound by the fts rowid (the same number as e.idx): FTS5
    # then walks its hits in that order and stops at the limit, where ordering by e.idx would
    # make SQLite collect every hit and sort them.
    key = "e.idx" if c.match is None else "fts.rowid"
    direction = "DESC" if order == "desc" else "ASC"
    bound = ""
    if after is not None:
        bound = f" AND {key} {'<' if order == 'desc' else '>'} ?"
        params.append(after)
    params.append(limit)
    return f"SELECT {key} FROM {source}{bound} ORDER BY {key} {direction} LIMIT ?", params


def count_sql(c: Compiled, by: str, *, limit: int) -> tuple[str, list[SqlValue]]:
    """(key, count) of matching events grouped by field ``by``, most frequent first.

    Time buckets (``hour``, ``day``) come in time order instead.
    """
    key = count_key(by)
    source, params = _from(c, events=True)
    params.append(limit)
    order = "1" if by in COUNT_KEYS else "2 DESC, 1"
    return f"SELECT {key}, count(*) FROM {source} GROUP BY 1 ORDER BY {order} LIMIT ?", params


def count_fields() -> tuple[str, ...]:
    """Every name ``count_sql`` accepts for ``by``."""
    names = [f.name for f in FIELDS.values() if _countable(f)]
    return (*names, *COUNT_KEYS)


def _countable(f: Field) -> bool:
    # Multi-valued fields live only as tokens, which cannot say which value an event had.
    return f.column is not None and f.name not in ("id", "idx")


def count_key(by: str) -> str:
    """The SQL expression counts by ``by`` are grouped on; UsageError for a field that cannot
    be counted by (check it before a long catch-up)."""
    if by == "hour":
        return "substr(e.time, 1, 13)"
    if by == "day":
        return "substr(e.time, 1, 10)"
    field = lookup(by)
    if field is None or not _countable(field):
        raise UsageError(f"cannot count by {by!r}; one of: {', '.join(count_fields())}")
    return f"e.{field.column}"


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
        return V4_MAPPED + addr.packed
    return addr.packed


# -- the full-text part -----------------------------------------------------------------------


def _facet(tok: str, *, prefix: bool = False) -> str:
    return f'{_FACETS} : "{tok}"' + (" *" if prefix else "")  # tok is [a-z0-9]: fields.token


@functools.lru_cache(maxsize=1024)  # pure; called again for the same subtrees while compiling
def _fts(node: Node) -> str | None:  # noqa: PLR0911 (one return per node type)
    """The FTS5 expression for ``node``, or None when tokens cannot say it."""
    if isinstance(node, Text):
        phrase = '"' + node.text.replace('"', '""') + '"'
        if node.prefix:
            phrase += " *"
        columns = _TEXT if node.fts_column is None else "{" + node.fts_column + "}"
        return f"{columns} : {phrase}"
    if isinstance(node, Match):
        return _fts_match(node)
    if isinstance(node, Network):
        return _fts_network(node.network)
    if isinstance(node, Compare):
        return _fts_risk(node)
    if isinstance(node, And):
        texts, rest = _split(node.children)
        return None if rest else _fts_and(texts)
    if isinstance(node, Or):
        parts = [_fts(child) for child in node.children]
        if any(p is None for p in parts):
            return None
        return "(" + " OR ".join(p for p in parts if p is not None) + ")"
    return None  # Everything, TimeBound, a Not on its own


def _split(children: tuple[Node, ...]) -> tuple[list[Node], list[Node]]:
    """Children FTS5 can answer (or their negations), and the others."""
    texts: list[Node] = []
    rest: list[Node] = []
    for child in children:
        inner = child.child if isinstance(child, Not) else child
        (texts if _fts(inner) is not None else rest).append(child)
    return texts, rest


def _fts_and(children: list[Node]) -> str | None:
    """One FTS5 expression for ANDed children, if at least one is positive (FTS5's NOT is
    binary: "a NOT b")."""
    pos = [e for c in children if not isinstance(c, Not) and (e := _fts(c)) is not None]
    neg = [e for c in children if isinstance(c, Not) and (e := _fts(c.child)) is not None]
    if not pos:
        return None
    expr = "(" + " AND ".join(pos) + ")"
    if neg:
        expr += " NOT (" + " OR ".join(neg) + ")"
    return expr


def _fts_match(m: Match) -> str | None:
    field = FIELDS[m.field]
    if field.letter is None:
        return None
    if m.mode == "any":
        # a tag's presence is any token of its letter; a column's is "IS NOT NULL" in SQL
        return _facet(field.letter, prefix=True) if field.column is None else None
    value: str | bytes = m.value
    if field.kind == "uuid":
        value = bytes.fromhex(m.value.replace("-", ""))
    return _facet(token(field.letter, value), prefix=m.mode == "prefix")


def _fts_risk(c: Compare) -> str | None:
    if c.field != "risk":
        return None
    low = max(_RISK[0], c.low if c.low is not None else _RISK[0])
    high = min(_RISK[1], c.high if c.high is not None else _RISK[1])
    if low > high:
        return None  # no score is in range: SQL says so
    letter = str(FIELDS["risk"].letter)
    return f"{_FACETS} : (" + " OR ".join(f'"{letter}{v}"' for v in range(low, high + 1)) + ")"


def _fts_network(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """An address, one of the networks indexed per address (/8 /16 /24, /32 /48 /64), or a
    prefix of the address tokens to the nearest 4 bits, or'ed over the bits in between."""
    v4 = net.version == 4
    raw = net.network_address.packed
    bits = net.prefixlen
    letter = str(FIELDS["ip"].letter)
    if bits == 8 * len(raw):
        return _facet(token(letter, (V4_MAPPED if v4 else b"") + raw))
    if bits % 8 == 0 and bits // 8 in NETWORK_BYTES[4 if v4 else 6]:
        return _facet(token(NETWORK_LETTER, raw[: bits // 8]))
    full = ((V4_MAPPED if v4 else b"") + raw).hex()
    nibbles, rest = divmod(bits + (96 if v4 else 0), 4)
    base = letter + full[:nibbles]
    if rest == 0:
        return _facet(base, prefix=True)
    step = 1 << (4 - rest)
    first = int(full[nibbles], 16) & ~(step - 1)
    alternatives = [_facet(f"{base}{v:x}", prefix=True) for v in range(first, first + step)]
    return "(" + " OR ".join(alternatives) + ")"


# -- the SQL part -----------------------------------------------------------------------------


class _Compiler:
    """SQL for what FTS5 cannot answer; ``key`` is the ledger index (``fts.rowid`` beside a
    top-level match, so FTS5 sees index bounds; ``e.idx`` otherwise)."""

    def __init__(self, now_ns: int, *, key: str) -> None:
        self.now_ns = now_ns
        self.key = key
        self.params: list[SqlValue] = []
        self.uses_events = False

    def _p(self, value: SqlValue) -> str:
        self.params.append(value)
        return "?"

    def _col(self, name: str | None) -> str:
        if name == "idx":
            return self.key
        self.uses_events = True
        return f"e.{name}"

    def node(self, node: Node) -> str:  # noqa: PLR0911 (one return per node type)
        if (expr := _fts(node)) is not None:
            return f"{self.key} IN (SELECT rowid FROM fts({self._p(expr)}))"
        if isinstance(node, Everything):
            return "1"
        if isinstance(node, Match):  # a column's presence, or a field without tokens (the id)
            col = self._col(FIELDS[node.field].column)
            if node.mode == "any":
                return f"{col} IS NOT NULL"
            assert FIELDS[node.field].kind == "uuid" and node.mode == "exact"
            return f"{col} = {self._p(uuid.UUID(node.value).bytes)}"
        if isinstance(node, Compare):
            return self._compare(node)
        if isinstance(node, TimeBound):
            return self._time(node)
        if isinstance(node, Not):
            return f"NOT coalesce({self.node(node.child)}, 0)"
        if isinstance(node, And):
            texts, rest = _split(node.children)
            parts = []
            if (match := _fts_and(texts)) is not None:
                parts.append(f"{self.key} IN (SELECT rowid FROM fts({self._p(match)}))")
            else:
                rest = list(node.children)  # only negations: each on its own
            parts.extend(self.node(child) for child in rest)
            return "(" + " AND ".join(parts) + ")"
        assert isinstance(node, Or)
        leaves = [e for child in node.children if (e := _fts(child)) is not None]
        parts = []
        rest = list(node.children)
        if len(leaves) > 1:
            expr = " OR ".join(leaves)
            parts.append(f"{self.key} IN (SELECT rowid FROM fts({self._p(expr)}))")
            rest = [child for child in node.children if _fts(child) is None]
        parts.extend(self.node(child) for child in rest)
        return "(" + " OR ".join(parts) + ")"

    def _compare(self, c: Compare) -> str:
        col = self._col(FIELDS[c.field].column)
        parts = []
        if c.low is not None:
            parts.append(f"{col} >= {self._p(c.low)}")
        if c.high is not None:
            parts.append(f"{col} <= {self._p(c.high)}")
        return "(" + " AND ".join(parts) + ")"

    def _time(self, t: TimeBound) -> str:
        ns = t.at_ns if t.at_ns is not None else self.now_ns - (t.ago_ns or 0)
        if ns < _NS_MIN:
            text = ""
        elif ns > _NS_MAX:
            text = _AFTER_ALL_TIMES
        else:
            text = format_time(ns)
        time_col = self._col("time")
        # The zone bound is implied by the time bound (every event at or after T sits in a
        # zone whose latest time is at or after T), so adding it changes no result; it lets
        # SQLite (or FTS5) walk only the end of the ledger for a recent time window.
        if t.bound == "since":
            return (
                f"({time_col} >= {self._p(text)} AND {self.key} >= "
                f"(SELECT coalesce(min(zone), {_NO_ZONE}) << {ZONE_BITS} FROM zones "
                f"WHERE max_time >= {self._p(text)}))"
            )
        return (
            f"({time_col} < {self._p(text)} AND {self.key} < "
            f"(SELECT (coalesce(max(zone), -1) + 1) << {ZONE_BITS} FROM zones "
            f"WHERE min_time < {self._p(text)}))"
        )
