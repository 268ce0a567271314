"""Searching a ledger through its index: pages of events, counts, and every matching index.

The index only says which ledger indexes match; the events themselves are always read from
the ledger and decoded in full, so a result is exactly what the ledger holds. Pages are keyed
by the ledger index (``after_index``), not by an offset: a page costs the same at the end of
ten million entries as at the start, and entries appended meanwhile never shift a page.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

from proctor.errors import EventError, StorageError, UsageError
from proctor.events.canonical import decode_event
from proctor.events.ids import now_ns as _now_ns
from proctor.events.schema import Event
from proctor.search.compile import Compiled, compile_query, count_sql, ip_key, page_sql
from proctor.search.fields import lookup
from proctor.search.index import SearchIndex
from proctor.search.query import Node, parse

__all__ = ["MAX_LIMIT", "Page", "count", "matching_indexes", "search"]

MAX_LIMIT: Final = 1000  # events per page, keys per count
Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class Page:
    """Matching events in ledger order; ``next_after`` continues the search (None: no more).

    ``indexed`` is how many ledger entries the index covered when it was asked: entries
    beyond it are not searched (another process may still be indexing them).
    """

    items: tuple[tuple[int, Event], ...]
    next_after: int | None
    indexed: int


def _compile(query: str | Node, now_ns: int | None) -> Compiled:
    node = parse(query) if isinstance(query, str) else query
    return compile_query(node, now_ns=_now_ns() if now_ns is None else now_ns)


def _check(limit: int, order: str) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if order not in ("asc", "desc"):
        raise UsageError(f"order must be asc or desc, not {order!r}")


def _ids(
    index: SearchIndex, compiled: Compiled, after: int | None, order: Order, limit: int
) -> list[int]:
    sql, params = page_sql(compiled, after=after, order=order, limit=limit)
    return [int(row[0]) for row in index.query(sql, params)]


def read_event(index: SearchIndex, idx: int) -> Event:
    """The event at ledger index ``idx``, decoded in full from the ledger's bytes."""
    try:
        data = index.ledger.entry(idx)
    except UsageError:
        raise StorageError(
            f"ledger entry {idx} matched the search index but is missing from the ledger; "
            f"run proctor verify"
        ) from None
    try:
        return decode_event(data)
    except EventError as exc:
        raise StorageError(
            f"ledger entry {idx} matched the search index but is not a valid event ({exc}); "
            f"run proctor verify"
        ) from None


def search(
    index: SearchIndex,
    query: str | Node,
    *,
    limit: int = 50,
    after_index: int | None = None,
    order: Order = "desc",
    now_ns: int | None = None,
) -> Page:
    """One page of events matching ``query``: newest first (``desc``) or oldest first.

    ``after_index`` is the previous page's ``next_after``; ``now_ns`` is what relative times
    (``since:7d``) count back from (default: now).
    """
    _check(limit, order)
    compiled = _compile(query, now_ns)
    indexed = index.indexed()
    ids = _ids(index, compiled, after_index, order, limit)
    floor = index.ledger.floor()  # pruned by retention: the index may still name them
    items = tuple((i, read_event(index, i)) for i in ids if i >= floor)
    return Page(items=items, next_after=ids[-1] if len(ids) == limit else None, indexed=indexed)


def count(
    index: SearchIndex,
    query: str | Node,
    *,
    by: str = "actor",
    limit: int = 100,
    now_ns: int | None = None,
) -> list[tuple[str | None, int]]:
    """How many events match, per value of ``by``: a field (``actor``, ``target``,
    ``decision``, ``kind``, ``session`` …) or a time bucket (``hour``, ``day``).

    Most frequent first (time buckets in time order); events without the field count under
    ``None``. At most ``limit`` keys.
    """
    _check(limit, "asc")
    sql, params = count_sql(_compile(query, now_ns), by, limit=limit)
    field = lookup(by)
    out: list[tuple[str | None, int]] = []
    for key, n in index.query(sql, params):
        if key is None:
            out.append((None, int(n)))
        elif field is not None and field.kind == "ip" and isinstance(key, bytes):
            out.append((ip_key(key), int(n)))
        elif field is not None and field.kind == "uuid" and isinstance(key, bytes):
            out.append((str(uuid.UUID(bytes=key)), int(n)))
        elif by == "hour":
            out.append((f"{key}:00Z", int(n)))
        else:
            out.append((str(key), int(n)))
    return out


def matching_indexes(
    index: SearchIndex,
    query: str | Node,
    *,
    order: Order = "asc",
    batch: int = MAX_LIMIT,
    now_ns: int | None = None,
) -> Iterator[int]:
    """Every matching ledger index, in order, fetched ``batch`` at a time (flat memory): for
    exports and evidence bundles. The query's relative times are fixed when it starts."""
    _check(batch, order)
    compiled = _compile(query, now_ns)
    after: int | None = None
    while True:
        ids = _ids(index, compiled, after, order, batch)
        floor = index.ledger.floor()  # pruned by retention: the index may still name them
        yield from (i for i in ids if i >= floor)
        if len(ids) < batch:
            return
        after = ids[-1]
