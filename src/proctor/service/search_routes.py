"""Search over the API: pages of matching events and counts, from the search index that this
process keeps up to date (it holds the index's lock; docs/search.md)."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from proctor.ledger.ledger import Ledger
from proctor.search import MAX_LIMIT, Indexer, SearchIndex, count, search
from proctor.service.app import ServiceState, role, state_of
from proctor.service.audit_routes import record_access
from proctor.service.auth import Caller

__all__ = ["Searcher", "router", "searcher_of"]

router = APIRouter(tags=["search"])


class Searcher:
    """The search index of one ledger, caught up before each question (read your writes)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()
        self._indexer: Indexer | None = None
        self._index: SearchIndex | None = None

    def index(self) -> SearchIndex:
        """The index, with everything the ledger holds now (when this process may write it;
        otherwise as far as the process that holds its lock has gone)."""
        with self._lock:
            if self._indexer is None:  # another process (proctor search) may hold it for now
                self._indexer, _ = Indexer.acquire(self.ledger)
            if self._indexer is not None:
                self._indexer.catch_up()
            if self._index is None:
                self._index = SearchIndex(self.ledger)
            return self._index

    def close(self) -> None:
        """Release the index and its lock."""
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None
            if self._indexer is not None:
                self._indexer.close()
                self._indexer = None


def searcher_of(state: ServiceState) -> Searcher:
    """The state's searcher, made on first use."""
    found = state.extras.get("searcher")
    if found is None:
        found = state.extras.setdefault("searcher", Searcher(state.ledger))
    assert isinstance(found, Searcher)
    return found


class Hit(BaseModel):
    """One matching event and its ledger index."""

    index: int
    event: dict[str, Any]


class SearchOut(BaseModel):
    """A page of hits; pass ``next_after`` as ``after`` for the next one (None: no more)."""

    items: list[Hit]
    next_after: int | None
    indexed: int
    """Ledger entries the index covered when asked."""


class CountOut(BaseModel):
    """How many matching events have this value of the field counted by."""

    key: str | None
    count: int


@router.get("/v1/search", summary="Search events with Proctor's query language")
async def search_events(
    request: Request,
    who: Annotated[Caller, Depends(role("auditor"))],
    q: Annotated[str, Query(max_length=4096, description="e.g. actor:alice decision:deny")],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    after: Annotated[int | None, Query(ge=0, le=2**53 - 1)] = None,
    order: Literal["desc", "asc"] = "desc",
) -> SearchOut:
    """Newest first (``order=asc``: oldest first); pages by ledger index. The query language
    is in docs/search.md; a bad query is a 422 naming the column."""
    state = state_of(request)
    await record_access(request, who, "search", q)
    searcher = searcher_of(state)

    def run() -> SearchOut:
        page = search(searcher.index(), q, limit=limit, after_index=after, order=order)
        items = [Hit(index=i, event=msgspec.to_builtins(e)) for i, e in page.items]
        return SearchOut(items=items, next_after=page.next_after, indexed=page.indexed)

    return await asyncio.to_thread(run)


@router.get("/v1/search/counts", summary="Count matching events by actor, target, hour …")
async def count_events(
    request: Request,
    who: Annotated[Caller, Depends(role("auditor"))],
    q: Annotated[str, Query(max_length=4096)] = "",
    by: Annotated[
        str, Query(max_length=32, description="actor, target, decision, kind, hour…")
    ] = "actor",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[CountOut]:
    """Most frequent first (time buckets in time order)."""
    state = state_of(request)
    await record_access(request, who, f"search.count.{by}", q)
    searcher = searcher_of(state)

    def run() -> list[CountOut]:
        return [CountOut(key=k, count=n) for k, n in count(searcher.index(), q, by=by, limit=limit)]

    return await asyncio.to_thread(run)
