"""One ledger entry → the rows the index keeps for it.

Entries are read through a projection of the event schema: msgspec structs that name only
the fields the index uses and skip the rest unread, several times cheaper than a full
``decode_event``. The ledger validated every entry when it was appended, and search results
are always decoded in full from the ledger, so the projection only has to find values, not
judge them; an entry it cannot read at all is recorded as unreadable, never skipped silently.
"""

from __future__ import annotations

import functools
from typing import Final

import msgspec

from proctor.search._schema import EVENT_COLUMNS
from proctor.search.compile import V4_MAPPED, ip_bytes
from proctor.search.fields import FIELDS, NETWORK_BYTES, NETWORK_LETTER, token

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

EventRow = tuple[object, ...]
FtsRow = tuple[int, str | None, str | None, str | None, str | None, str | None, str]

# (position in the events row, token letter) of every column with tokens
_COLUMN_TOKENS: Final = tuple(
    (EVENT_COLUMNS.index(f.column), f.letter)
    for f in FIELDS.values()
    if f.column is not None and f.letter is not None
)
_ROLE, _GROUP, _OBJECT, _POLICY, _FLAG = (
    str(FIELDS[k].letter) for k in ("role", "group", "object", "policy", "flag")
)


class EntryRows(msgspec.Struct, frozen=True):
    """What one entry adds to the index: its events row and its fts row."""

    event: EventRow
    fts: FtsRow


def _uuid(text: str | None) -> bytes | None:
    """A UUID's 16 bytes (None if the text is not one: the ledger's own check failed)."""
    if text is None:
        return None
    hexdigits = text.replace("-", "")
    try:
        return bytes.fromhex(hexdigits) if len(hexdigits) == 32 else None
    except ValueError:
        return None


@functools.lru_cache(maxsize=65536)  # a gateway's clients recur
def _ip(text: str) -> tuple[bytes | None, tuple[str, ...]]:
    """An address as stored, and the tokens of the networks it is in."""
    packed = ip_bytes(text)
    if packed is None:
        return None, ()
    v4 = packed[:12] == V4_MAPPED
    raw = packed[12:] if v4 else packed
    nets = tuple(token(NETWORK_LETTER, raw[:n]) for n in NETWORK_BYTES[4 if v4 else 6])
    return packed, nets


_TOKENS: dict[tuple[str, object], str] = {}  # most values recur: actors, targets, kinds


def _token(letter: str, value: str | bytes | int) -> str:
    key = (letter, value)
    tok = _TOKENS.get(key)
    if tok is None:
        if len(_TOKENS) >= 1 << 16:
            _TOKENS.clear()
        tok = _TOKENS[key] = token(letter, value)
    return tok


def _tags(letter: str, values: tuple[str, ...], out: list[str]) -> None:
    for v in dict.fromkeys(values):  # one token per distinct value
        out.append(_token(letter, v))


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
    facets: list[str] = []
    statement = reason = message = objects = name = None
    packed: bytes | None = None
    if actor is not None:
        _tags(_ROLE, actor.roles, facets)
        _tags(_GROUP, actor.groups, facets)
        name = actor.display_name
        if actor.ip is not None:
            packed, nets = _ip(actor.ip)
            facets.extend(nets)
    if target is not None and target.objects:
        _tags(_OBJECT, target.objects, facets)
        objects = "\n".join(target.objects)
    if decision is not None:
        _tags(_POLICY, decision.policies, facets)
        if decision.reasons:
            reason = "\n".join(decision.reasons)
    if e.flags:
        _tags(_FLAG, e.flags, facets)
    if action is not None:
        statement = action.statement
    if outcome is not None:
        message = outcome.message
    event = (
        idx,
        _uuid(e.id),
        e.kind,
        e.time,
        actor.id if actor is not None else None,
        packed,
        _uuid(session),
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
    for pos, letter in _COLUMN_TOKENS:
        value = event[pos]
        if value is not None:
            facets.append(_token(letter, value))
    fts = (idx, statement, reason, message, objects, name, " ".join(facets))
    return EntryRows(event=event, fts=fts)
