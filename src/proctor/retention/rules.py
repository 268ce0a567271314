"""Which entries are past their retention: a pure scan, no I/O (the caller feeds entries).

An entry's age counts from the *later* of its event ``time`` and the moment Proctor recorded it
(the millisecond in its UUIDv7 ``id``): an ingested record claiming an old time, or a clock far
off, never makes an entry expire sooner than either clock says. The first rule that matches
decides; an entry that no rule matches, or that cannot be read as an event, is kept forever.

The floor only moves up (docs/retention.md), so the scan stops at the first entry that must be
kept, and everything before it is the prunable range. ``Stop`` says why it stopped, in words
a person can act on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import msgspec

from proctor.errors import EventError
from proctor.events.ids import event_id_ms, format_time, parse_time
from proctor.retention.config import RetentionRule, rule_matches

__all__ = ["Brief", "Expiry", "Stop", "StopKind", "brief", "expired_range", "recorded_ns"]

NS_PER_DAY: Final = 86_400 * 1_000_000_000

StopKind = Literal["kept", "no-rule", "unreadable", "missing", "held", "end", "limit"]


class _Target(msgspec.Struct, frozen=True):
    sensitivity: str | None = None


class _Actor(msgspec.Struct, frozen=True):
    id: str


class _Session(msgspec.Struct, frozen=True):
    id: str


class Brief(msgspec.Struct, frozen=True):
    """The few fields of an event that retention and hold selectors look at."""

    id: str
    kind: str
    time: str
    target: _Target | None = None
    actor: _Actor | None = None
    session: _Session | None = None


_DECODER: Final = msgspec.json.Decoder(Brief)


def brief(data: bytes) -> Brief | None:
    """The entry's ``Brief``, or None when it is not an event."""
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError:
        return None


def recorded_ns(b: Brief) -> int | None:
    """When the entry's age starts: the later of its time and its id's mint time."""
    try:
        return max(parse_time(b.time), event_id_ms(b.id) * 1_000_000)
    except EventError:
        return None


@dataclass(frozen=True)
class Stop:
    """Where and why the prunable range ends."""

    index: int
    kind: StopKind
    reason: str
    rule: str | None = None
    case_id: str | None = None

    def __str__(self) -> str:
        return f"stopped at index {self.index}: {self.reason}"


@dataclass
class Expiry:
    """``[lo, below)`` is past its retention; ``rules`` counts the entries each rule expired."""

    lo: int
    below: int
    stop: Stop
    rules: dict[str, int] = field(default_factory=dict)


def _keep(index: int, data: bytes, rules: Sequence[RetentionRule], now_ns: int) -> Stop | str:
    """The rule name that expired the entry, or why it stays."""
    b = brief(data)
    at = None if b is None else recorded_ns(b)
    if b is None or at is None:
        return Stop(index, "unreadable", "not a readable event, kept (no rule can apply)")
    sensitivity = b.target.sensitivity if b.target is not None else None
    for rule in rules:
        if rule_matches(rule, b.kind, sensitivity):
            until = at + rule.keep_days * NS_PER_DAY
            if until <= now_ns:
                return rule.name
            return Stop(
                index,
                "kept",
                f"kind {b.kind} kept {rule.keep_days} days (rule {rule.name}) "
                f"until {format_time(until)[:19]}Z",
                rule=rule.name,
            )
    return Stop(
        index,
        "no-rule",
        f"no rule matches kind {b.kind} (sensitivity {sensitivity or 'none'}): kept forever",
    )


def expired_range(
    entries: Iterable[tuple[int, bytes]],
    rules: Sequence[RetentionRule],
    now_ns: int,
    *,
    lo: int,
    hi: int,
    size: int,
) -> Expiry:
    """Scan ``entries`` (those of ``[lo, hi)`` in order) up to the first one to keep.

    ``hi`` is ``size`` or a per-archive limit below it; the result's stop says which.
    """
    counts: dict[str, int] = {}
    expected = lo
    for index, data in entries:
        if index >= hi:
            break
        if index != expected:  # a row missing above the floor: never prune across damage
            stop = Stop(expected, "missing", "entry is missing (run proctor verify)")
            return Expiry(lo, expected, stop, counts)
        verdict = _keep(index, data, rules, now_ns)
        if isinstance(verdict, Stop):
            return Expiry(lo, index, verdict, counts)
        counts[verdict] = counts.get(verdict, 0) + 1
        expected = index + 1
    if expected < hi:
        stop = Stop(expected, "missing", "entry is missing (run proctor verify)")
    elif hi >= size:
        stop = Stop(hi, "end", "the end of the ledger")
    else:
        stop = Stop(hi, "limit", f"at most {hi - lo} entries per archive; the next one goes on")
    return Expiry(lo, expected, stop, counts)
