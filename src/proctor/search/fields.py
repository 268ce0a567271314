"""The query language's vocabulary: every field a query may name, what it takes, where it lives.

This table is the only place field names meet SQL: the compiler puts into SQL text only the
column, tag code and full-text column named here (fixed identifiers, never user input), so a
field that is not in ``FIELDS`` can never reach a statement.
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
    "TAGS",
    "Field",
    "FieldKind",
    "lookup",
    "suggest",
]

FieldKind = Literal["text", "enum", "number", "ip", "uuid", "time", "tag", "fts"]


@dataclass(frozen=True)
class Field:
    """One searchable field: its kind and the column (or tag, or full-text column) behind it."""

    name: str
    kind: FieldKind
    help: str
    column: str | None = None  # events.<column> for text, enum, number, ip, uuid
    tag: int | None = None  # tags.f code for multi-valued fields
    fts: str | None = None  # full-text column for text fields
    values: tuple[str, ...] = ()  # the allowed values of an enum
    fold: Literal["none", "lower", "upper"] = "none"  # how values are stored and compared


# Tag codes are stored in the index: never renumber one (add new ones at the end).
TAGS: Final = {"role": 1, "group": 2, "object": 3, "policy": 4, "flag": 5}
# Full-text columns, in the order of the fts table's columns.
FTS_COLUMNS: Final = ("statement", "reason", "message", "object", "name")

_FIELDS: Final = (
    Field("id", "uuid", "the event's id (a UUID)", column="eid"),
    Field("kind", "enum", "the event kind", column="kind", values=EVENT_KINDS, fold="lower"),
    Field("actor", "text", "actor.id: who acted", column="actor"),
    Field("ip", "ip", "actor.ip: an address or a CIDR network", column="ip"),
    Field("role", "tag", "one of actor.roles", tag=TAGS["role"]),
    Field("group", "tag", "one of actor.groups", tag=TAGS["group"]),
    Field("session", "text", "session.id (or links.session_id)", column="session"),
    Field("type", "text", "target.type: postgres, k8s, http", column="type", fold="lower"),
    Field("target", "text", "target.name: instance or cluster", column="target"),
    Field("db", "text", "target.database: database or namespace", column="db"),
    Field("object", "tag", "one of target.objects (tables, resources)", tag=TAGS["object"]),
    Field(
        "sensitivity",
        "enum",
        "target.sensitivity",
        column="sensitivity",
        values=("public", "internal", "confidential", "restricted"),
        fold="lower",
    ),
    Field(
        "class",
        "enum",
        "action.class",
        column="class",
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
    Field("op", "text", "action.operation (SELECT, ALTER TABLE, patch)", column="op", fold="upper"),
    Field("fingerprint", "text", "action.fingerprint: the statement's shape", column="fingerprint"),
    Field(
        "decision",
        "enum",
        "decision.effect",
        column="effect",
        values=("allow", "deny", "step_up"),
        fold="lower",
    ),
    Field("policy", "tag", "one of decision.policies (determining policy ids)", tag=TAGS["policy"]),
    Field("risk", "number", "risk.score, 0-100", column="risk"),
    Field(
        "level",
        "enum",
        "risk.level",
        column="level",
        values=("low", "medium", "high", "critical"),
        fold="lower",
    ),
    Field(
        "status",
        "enum",
        "outcome.status",
        column="status",
        values=("ok", "error", "cancelled", "revoked"),
        fold="lower",
    ),
    Field("rows", "number", "outcome.rows", column="rows"),
    Field("duration", "number", "outcome.duration_us (microseconds)", column="duration"),
    Field("sqlstate", "text", "outcome.sqlstate (5 characters)", column="sqlstate", fold="upper"),
    Field("source", "text", "source.system: proctor, k8s-audit, pgaudit", column="source"),
    Field("flag", "tag", "one of flags (time_skew)", tag=TAGS["flag"]),
    Field("idx", "number", "the ledger index", column="idx"),
    Field("since", "time", "time at or after: 7d, 24h, 30m, 2026-11-23, RFC 3339"),
    Field("until", "time", "time before: 7d, 24h, 30m, 2026-11-23, RFC 3339"),
    Field("statement", "fts", "words in action.statement", fts="statement"),
    Field("reason", "fts", "words in decision.reasons", fts="reason"),
    Field("message", "fts", "words in outcome.message", fts="message"),
    Field("name", "fts", "words in actor.display_name", fts="name"),
)

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
