"""Search over a ledger: a query language compiled to SQL over a derived SQLite index.

- ``fields``   the vocabulary: every field a query may name and the column behind it.
- ``query``    text → a typed query tree (sans-IO); ``QueryError`` names the column at fault.
- ``compile``  tree → SQL with bound parameters (only whitelisted identifiers in SQL text);
               user text reaches FTS5 only as quoted phrases.
- ``index``    ``search.sqlite`` beside the ledger: ``Indexer`` (one process, under a lock)
               appends what the ledger gained, crash-safe; ``SearchIndex`` opens it read-only.
- ``search``   pages of matching events read from the ledger (keyset by ledger index),
               counts per field, and an iterator over every matching index.

Data flows: query text → ``parse`` → ``compile_query`` → SQL on ``search.sqlite`` → ledger
indexes → entries read from the ledger → ``Event``. The index holds no authoritative data; it
can be thrown away and rebuilt from the ledger at any time.
"""

from proctor.search.index import (
    CatchUp,
    IndexConfig,
    Indexer,
    IndexMismatchError,
    SearchIndex,
    catch_up,
)
from proctor.search.query import Limits, Node, QueryError, parse
from proctor.search.search import MAX_LIMIT, Page, count, matching_indexes, search

__all__ = [
    "MAX_LIMIT",
    "CatchUp",
    "IndexConfig",
    "IndexMismatchError",
    "Indexer",
    "Limits",
    "Node",
    "Page",
    "QueryError",
    "SearchIndex",
    "catch_up",
    "count",
    "matching_indexes",
    "parse",
    "search",
]
