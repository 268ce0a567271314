"""The index's tables, shared by the indexer (which writes them) and the compiler (which reads).

``events`` has one row per indexed ledger entry, keyed by the ledger index; ``tags`` holds the
multi-valued fields (roles, groups, objects, policies, flags) as (field code, value, index)
postings; ``fts`` is a contentless FTS5 table whose rowid is the ledger index; ``zones`` keeps,
for each run of ``2**ZONE_BITS`` consecutive indexes, the smallest and largest event time in
it, so a time bound also bounds the ledger index (a block-range index, like PostgreSQL's BRIN).
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = "1"
ZONE_BITS: Final = 12

# Contentless FTS5 (content=''): the index keeps only the inverted lists, not a second copy of
# every statement and reason, because the ledger already holds the text and search results
# are always read from the ledger. The price is that rows cannot be updated or deleted one by
# one and snippet()/highlight() are unavailable; the ledger is append-only and results are
# shown from the ledger, so neither is needed. A rebuild drops the whole file.
# columnsize=0: no per-row token counts (they only serve bm25 ranking; results are in ledger
# order). detail=full (the default) keeps token positions, which phrases need.
TABLES: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    idx INTEGER PRIMARY KEY,
    eid BLOB,
    kind TEXT,
    time TEXT,
    actor TEXT,
    ip BLOB,
    session TEXT,
    type TEXT,
    target TEXT,
    db TEXT,
    sensitivity TEXT,
    class TEXT,
    op TEXT,
    fingerprint TEXT,
    effect TEXT,
    risk INTEGER,
    level TEXT,
    status TEXT,
    rows INTEGER,
    duration INTEGER,
    sqlstate TEXT,
    source TEXT
);
CREATE TABLE IF NOT EXISTS tags (
    f INTEGER NOT NULL, v TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (f, v, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS zones (
    zone INTEGER PRIMARY KEY, min_time TEXT NOT NULL, max_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS unreadable (idx INTEGER PRIMARY KEY, reason TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    statement, reason, message, object, name,
    content='', columnsize=0, tokenize='unicode61 remove_diacritics 2'
);
"""

# Every index ends in the rowid (the ledger index), so "col = ? ORDER BY idx" walks one index
# in ledger order and stops at the page's limit, and "col = ? AND idx >= ?" (a time bound
# turned into an index bound through the zones) is one range of it.
INDEXES: Final = (
    ("ev_eid", "eid"),
    ("ev_kind", "kind"),
    ("ev_time", "time"),
    ("ev_actor", "actor"),
    ("ev_ip", "ip"),
    ("ev_session", "session"),
    ("ev_target", "target"),
    ("ev_db", "db"),
    ("ev_op", "op"),
    ("ev_fingerprint", "fingerprint"),
    ("ev_effect", "effect"),
    ("ev_risk", "risk"),
    ("ev_status", "status"),
    ("ev_sqlstate", "sqlstate"),
)

EVENT_COLUMNS: Final = (
    "idx",
    "eid",
    "kind",
    "time",
    "actor",
    "ip",
    "session",
    "type",
    "target",
    "db",
    "sensitivity",
    "class",
    "op",
    "fingerprint",
    "effect",
    "risk",
    "level",
    "status",
    "rows",
    "duration",
    "sqlstate",
    "source",
)
