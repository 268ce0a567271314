"""One ledger entry → the rows the index keeps for it.

Entries are read through a projection of the event schema: msgspec structs that name only
the fields the index uses and skip the rest unread, several times cheaper than a full
``decode_event``. The ledger validated every entry when it was appended, and search results
are always decoded in full from the ledger, so the projection only has to find values, not
judge them; an entry it cannot read at all is recorded as unreadable, never skipped silently.
"""

from __future__ import annotations

from typing import Final

import msgspec

from proctor.search.compile import ip_bytes
from proctor.search.fields import TAGS

__all__ = ["EntryRows", "rows_for"]


class _Actor(msgspec.Struct, frozen=True):
    id: str | None = None
    display_name: str | None = None
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    ip: str | None = None


class _Session(msgspec.Struct, frozen=True):
    id: str | None = None


class _Target(msgspec.Struct, frozen=True):
    type: str | None = None
    name: str | None = None
    database: str | None = None
    objects: tuple[str, ...] = ()
    sensitivity: str | None = None


class _Action(msgspec.Struct, frozen=True):
    class_: str | None = msgspec.field(default=None, name="class")
    operation: str | None = None
    statement: str | None = None
    fingerprint: str | None = None


class _Risk(msgspec.Struct, frozen=True):
    score: int | None = None
    level: str | None = None


class _Decision(msgspec.Struct, frozen=True):
    effect: str | None = None
    reasons: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()


class _Outcome(msgspec.Struct, frozen=True):
    status: str | None = None
    rows: int | None = None
    duration_us: int | None = None
    sqlstate: str | None = None
    message: str | None = None


class _Source(msgspec.Struct, frozen=True):
    system: str | None = None


class _Links(msgspec.Struct, frozen=True):
    session_id: str | None = None


class _Entry(msgspec.Struct, frozen=True):
    id: str
    kind: str
    time: str
    actor: _Actor | None = None
    session: _Session | None = None
    target: _Target | None = None
    action: _Action | None = None
    risk: _Risk | None = None
    decision: _Decision | None = None
    outcome: _Outcome | None = None
    source: _Source | None = None
    links: _Links | None = None
    flags: tuple[str, ...] = ()


_DECODER: Final = msgspec.json.Decoder(_Entry)
_ROLE, _GROUP, _OBJECT, _POLICY, _FLAG = (
    TAGS[k] for k in ("role", "group", "object", "policy", "flag")
)

EventRow = tuple[object, ...]
TagRow = tuple[int, str, int]
FtsRow = tuple[int, str | None, str | None, str | None, str | None, str | None]


class EntryRows(msgspec.Struct, frozen=True):
    """What one entry adds to the index (``fts`` is None when it has no text to search)."""

    event: EventRow
    tags: list[TagRow]
    fts: FtsRow | None


def _eid(text: str) -> bytes | None:
    hexdigits = text.replace("-", "")
    try:
        return bytes.fromhex(hexdigits) if len(hexdigits) == 32 else None
    except ValueError:
        return None


def _upper(text: str | None) -> str | None:
    return None if text is None else text.upper()


def rows_for(idx: int, data: bytes) -> EntryRows:
    """The rows for entry ``idx``; raises ``msgspec.DecodeError`` if it cannot be read."""
    e = _DECODER.decode(data)
    actor, target, action = e.actor, e.target, e.action
    risk, decision, outcome = e.risk, e.decision, e.outcome
    session = e.session.id if e.session is not None else None
    if session is None and e.links is not None:
        session = e.links.session_id
    tags: list[TagRow] = []
    statement = reason = message = objects = name = None
    if actor is not None:
        tags.extend((_ROLE, r, idx) for r in set(actor.roles))
        tags.extend((_GROUP, g, idx) for g in set(actor.groups))
        name = actor.display_name
    if target is not None and target.objects:
        tags.extend((_OBJECT, o, idx) for o in set(target.objects))
        objects = "\n".join(target.objects)
    if decision is not None:
        tags.extend((_POLICY, p, idx) for p in set(decision.policies))
        if decision.reasons:
            reason = "\n".join(decision.reasons)
    if e.flags:
        tags.extend((_FLAG, f, idx) for f in set(e.flags))
    if action is not None:
        statement = action.statement
    if outcome is not None:
        message = outcome.message
    event = (
        idx,
        _eid(e.id),
        e.kind,
        e.time,
        actor.id if actor is not None else None,
        ip_bytes(actor.ip) if actor is not None and actor.ip is not None else None,
        session,
        target.type.lower() if target is not None and target.type is not None else None,
        target.name if target is not None else None,
        target.database if target is not None else None,
        target.sensitivity if target is not None else None,
        action.class_ if action is not None else None,
        _upper(action.operation) if action is not None else None,
        action.fingerprint if action is not None else None,
        decision.effect if decision is not None else None,
        risk.score if risk is not None else None,
        risk.level if risk is not None else None,
        outcome.status if outcome is not None else None,
        outcome.rows if outcome is not None else None,
        outcome.duration_us if outcome is not None else None,
        _upper(outcome.sqlstate) if outcome is not None else None,
        e.source.system if e.source is not None else None,
    )
    fts: FtsRow | None = None
    if statement or reason or message or objects or name:
        fts = (idx, statement, reason, message, objects, name)
    return EntryRows(event=event, tags=tags, fts=fts)
