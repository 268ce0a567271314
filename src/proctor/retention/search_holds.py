"""Legal holds whose selector is a search query (docs/search.md), matched through the index.

A hold may be placed by case id with any query the search language reads
(``actor:alice since:2026-01-01T00:00:00Z``, ``target:hr-db decision:deny``); the built-in
selectors (``index:A-B`` …) keep working. The matcher fails closed: when the search index does
not cover the range being judged (another process indexes, or it lags), the whole range counts
as held; a selector neither language reads holds everything.
"""

from __future__ import annotations

from proctor.errors import UsageError
from proctor.ledger.ledger import Ledger
from proctor.retention.holds import BuiltinMatcher, Hold, parse_selector
from proctor.search import QueryError, SearchIndex, catch_up, matching_indexes, parse

__all__ = ["SearchMatcher", "check_selector"]


def check_selector(text: str) -> None:
    """Accept a search query or a built-in selector; UsageError/QueryError otherwise."""
    try:
        parse_selector(text)
    except UsageError:
        parse(text)  # raises QueryError naming the column


class SearchMatcher:
    """A ``HoldMatcher``: the smallest index in [lo, hi) a hold covers, or None."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._builtin = BuiltinMatcher(ledger)
        self._index: SearchIndex | None = None

    def _search(self) -> SearchIndex:
        if self._index is None:
            catch_up(self._ledger)  # a no-op beyond what it may do (another process's lock)
            self._index = SearchIndex(self._ledger)
        return self._index

    def __call__(self, hold: Hold, lo: int, hi: int) -> int | None:
        if lo >= hi:
            return None
        try:
            parse_selector(hold.selector)
        except UsageError:
            pass
        else:
            return self._builtin(hold, lo, hi)
        try:
            node = parse(f"({hold.selector}) idx>={lo} idx<{hi}")
        except QueryError:
            return lo  # unreadable: holds everything
        index = self._search()
        if index.indexed() < hi:
            return lo  # the index does not see the whole range yet: fail closed
        return next(matching_indexes(index, node, order="asc"), None)

    def close(self) -> None:
        """Close the index."""
        if self._index is not None:
            self._index.close()
            self._index = None
