"""The query language's vocabulary: every field a query may name, what it takes, where it lives.

This table is the only place field names meet SQL: the compiler puts into SQL text only the
columns and full-text columns named here (fixed identifiers, never user input), so a field
that is not in ``FIELDS`` can never reach a statement.

Most fields are answered by the full-text index: each value an event has is one token in its
``facets`` column (see :func:`token`), so ``actor:alice decision:deny`` is an intersection of
two posting lists, done by FTS5. Times and the numbers without tokens (rows, duration, idx)
are compared in SQL on the ``events`` table, which also holds one column per field for
counting.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Final, Literal

from proctor.events.schema import EVENT_KINDS

__all__ = [
    "ALIASES",
    "COUNT_KEYS",
    "FIELDS",
    "FTS_COLUMNS",
    "NETWORK_BYTES",
    "NETWORK_LETTER",
    "TEXT_COLUMNS",
    "Field",
    "FieldKind",
    "lookup",
    "suggest",
    "token",
]

FieldKind = Literal["text", "enum", "number", "ip", "uuid", "time", "tag", "fts"]


@dataclass(frozen=True)
class Field:
    """One searchable field: its kind and the column (or tag, or full-text column) behind it."""

    name: str
    kind: FieldKind
    help: str
    column: str | None = None  # events.<column>: counted by, compared in SQL
    letter: str | None = None  # what starts this field's tokens in fts.facets
    fts: str | None = None  # full-text column for text fields
    values: tuple[str, ...] = ()  # the allowed values of an enum
    fold: Literal["none", "lower", "upper"] = "none"  # how values are stored and compared


# Full-text columns, in the order of the fts table's columns; "facets" holds the tokens.
FTS_COLUMNS: Final = ("statement", "reason", "message", "object", "name", "facets")
TEXT_COLUMNS: Final = FTS_COLUMNS[:-1]  # what bare words and phrases search

# Token letters are stored in the index: never reuse or change one (SCHEMA_VERSION if so).
_FIELDS: Final = (
    # Every event id is distinct: as tokens they would make the term dictionary as long as
    # the ledger, so ids have a B-tree index instead (_schema.INDEXES).
    Field("id", "uuid", "the event's id (a UUID)", column="eid"),
    Field(
        "kind",
        "enum",
        "the event kind",
        column="kind",
        letter="k",
        values=EVENT_KINDS,
        fold="lower",
    ),
    Field("actor", "text", "actor.id: who acted", column="actor", letter="a"),
    Field("ip", "ip", "actor.ip: an address or a CIDR network", column="ip", letter="p"),
    Field("role", "tag", "one of actor.roles", letter="r"),
    Field("group", "tag", "one of actor.groups", letter="g"),
    Field("session", "uuid", "session.id (or links.session_id)", column="session", letter="s"),
    Field(
        "type",
        "text",
        "target.type: postgres, k8s, http",
        column="type",
        letter="y",
        fold="lower",
    ),
    Field("target", "text", "target.name: instance or cluster", column="target", letter="t"),
    Field("db", "text", "target.database: database or namespace", column="db", letter="d"),
    Field("object", "tag", "one of target.objects (tables, resources)", letter="o"),
    Field(
        "sensitivity",
        "enum",
        "target.sensitivity",
        column="sensitivity",
        letter="v",
        values=("public", "internal", "confidential", "restricted"),
        fold="lower",
    ),
    Field(
        "class",
        "enum",
        "action.class",
        column="class",
        letter="c",
        values=(
            "connect",
            "read",
            "write",
            "ddl",
            "admin",
            "transaction",
            "utility",
            "auth",
            "system",
        ),
        fold="lower",
    ),
    Field(
        "op",
        "text",
        "action.operation (SELECT, ALTER TABLE, patch)",
        column="op",
        letter="x",
        fold="upper",
    ),
    Field(
        "fingerprint",
        "text",
        "action.fingerprint: the statement's shape",
        column="fingerprint",
        letter="f",
    ),
    Field(
        "decision",
        "enum",
        "decision.effect",
        column="effect",
        letter="e",
        values=("allow", "deny", "step_up"),
        fold="lower",
    ),
    Field("policy", "tag", "one of decision.policies (determining policy ids)", letter="l"),
    Field("risk", "number", "risk.score, 0-100", column="risk", letter="z"),
    Field(
        "level",
        "enum",
        "risk.level",
        column="level",
        letter="w",
        values=("low", "medium", "high", "critical"),
        fold="lower",
    ),
    Field(
        "status",
        "enum",
        "outcome.status",
        column="status",
        letter="u",
        values=("ok", "error", "cancelled", "revoked"),
        fold="lower",
    ),
    Field("rows", "number", "outcome.rows", column="rows"),
    Field("duration", "number", "outcome.duration_us (microseconds)", column="duration"),
    Field(
        "sqlstate",
        "text",
        "outcome.sqlstate (5 characters)",
        column="sqlstate",
        letter="q",
        fold="upper",
    ),
    Field(
        "source",
        "text",
        "source.system: proctor, k8s-audit, pgaudit",
        column="source",
        letter="m",
    ),
    Field("flag", "tag", "one of flags (time_skew)", letter="h"),
    Field("idx", "number", "the ledger index", column="idx"),
    Field("since", "time", "time at or after: 7d, 24h, 30m, 2026-11-23, RFC 3339"),
    Field("until", "time", "time before: 7d, 24h, 30m, 2026-11-23, RFC 3339"),
    Field("statement", "fts", "words in action.statement", fts="statement"),
    Field("reason", "fts", "words in decision.reasons", fts="reason"),
    Field("message", "fts", "words in outcome.message", fts="message"),
    Field("name", "fts", "words in actor.display_name", fts="name"),
)
NETWORK_LETTER: Final = "n"  # the /8, /16, /24 (IPv4) and /32, /48, /64 (IPv6) of actor.ip
NETWORK_BYTES: Final = {4: (1, 2, 3), 6: (4, 6, 8)}

FIELDS: Final[dict[str, Field]] = {f.name: f for f in _FIELDS}
ALIASES: Final = {
    "effect": "decision",
    "database": "db",
    "stmt": "statement",
    "score": "risk",
    "index": "idx",
    "fp": "fingerprint",
}

# What ``count(by=…)`` may group on, beyond the text and enum fields: time buckets.
COUNT_KEYS: Final = ("hour", "day")


def lookup(name: str) -> Field | None:
    """The field called ``name`` (or one of its aliases), case-insensitively."""
    key = name.lower()
    return FIELDS.get(ALIASES.get(key, key))


def suggest(word: str, choices: tuple[str, ...] | list[str]) -> str | None:
    """The closest of ``choices`` to a misspelt ``word``, if any is close."""
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return close[0] if close else None


def token(letter: str, value: str | bytes | int) -> str:
    """The facets token of one value: the field's letter, then the value's bytes in hex
    (UTF-8 for text) or, for risk scores, the number in decimal.

    Letters and digits only, so FTS5's tokenizer keeps it whole and nothing in it is FTS5
    syntax; a prefix of a value is a prefix of its token (``actor:ali*`` is a prefix query).
    """
    if isinstance(value, int):
        return f"{letter}{value}"
    if isinstance(value, str):
        value = value.encode()
    return letter + value.hex()
