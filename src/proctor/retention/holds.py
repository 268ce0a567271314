"""Legal holds: what they cover is never pruned while they are in force.

A hold has a case id, a description and a *selector* saying which entries it covers. Holds are
kept in ``holds.sqlite`` beside the ledger; rows are never updated or deleted (triggers refuse
it): a hold is released by adding a release (who, when, why). Placing and releasing a hold are
recorded in the ledger too, as ``decision`` events (see ``hold_event``).

Which entries a selector covers is decided by a ``HoldMatcher``: given a hold and a range of
indexes, the smallest index it covers, or None. The search language (``proctor.search``) will
supply one; until then ``BuiltinMatcher`` understands a few terms, combined with AND:

- ``actor:ID`` (``actor.id``), ``session:UUID`` (``session.id``)
- ``index:A-B`` (inclusive; ``index:A-`` from A on)
- ``since:TIME`` / ``until:TIME`` (RFC 3339, the event's ``time``; until is exclusive)

It reads every entry of the range (O(range) per hold); an index makes it fast later. Anything it
cannot read or parse counts as covered: a hold fails closed.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from proctor._sqlite import open_side_db
from proctor.errors import EventError, StorageError, UsageError
from proctor.events import Action, Actor, Decision, Event, Source, Target, format_time
from proctor.events.ids import new_event_id, parse_time
from proctor.ledger.ledger import Ledger
from proctor.retention.rules import brief

__all__ = [
    "HOLDS_NAME",
    "BuiltinMatcher",
    "Hold",
    "HoldMatcher",
    "HoldStore",
    "Release",
    "Selector",
    "parse_selector",
    "place_hold",
    "release_hold",
]

HOLDS_NAME: Final = "holds.sqlite"
CASE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
MAX_TEXT: Final = 4096  # what an event attribute or reason may hold

_SCHEMA = """
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY, case_id TEXT NOT NULL, description TEXT NOT NULL,
    selector TEXT NOT NULL, placed_by TEXT NOT NULL, placed_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hold_events (
    hold_id INTEGER NOT NULL REFERENCES holds(id), action TEXT NOT NULL,
    by TEXT NOT NULL, at_ns INTEGER NOT NULL, reason TEXT NOT NULL, ledger_index INTEGER,
    PRIMARY KEY (hold_id, action)
);
CREATE TRIGGER IF NOT EXISTS holds_append_only_u BEFORE UPDATE ON holds
    BEGIN SELECT RAISE(ABORT, 'holds are never changed, only released'); END;
CREATE TRIGGER IF NOT EXISTS holds_append_only_d BEFORE DELETE ON holds
    BEGIN SELECT RAISE(ABORT, 'holds are never deleted, only released'); END;
CREATE TRIGGER IF NOT EXISTS hold_events_append_only_u BEFORE UPDATE ON hold_events
    BEGIN SELECT RAISE(ABORT, 'hold events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS hold_events_append_only_d BEFORE DELETE ON hold_events
    BEGIN SELECT RAISE(ABORT, 'hold events are append-only'); END;
"""


@dataclass(frozen=True)
class Release:
    """Who released a hold, when, why, and the ledger index that records it."""

    by: str
    at_ns: int
    reason: str
    ledger_index: int | None


@dataclass(frozen=True)
class Hold:
    """A legal hold: entries its selector covers are not pruned until it is released."""

    id: int
    case_id: str
    description: str
    selector: str
    placed_by: str
    placed_ns: int
    placed_index: int | None
    """The ledger index of the event recording it (None: placed, not recorded yet)."""
    released: Release | None = None

    @property
    def active(self) -> bool:
        """In force: not released."""
        return self.released is None


HoldMatcher = Callable[[Hold, int, int], int | None]
"""``matcher(hold, lo, hi)``: the smallest index in ``[lo, hi)`` the hold covers, or None."""


class HoldStore:
    """The hold database. Thread-safe; never updates or deletes a row."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db = open_side_db(path, "hold store", _SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> HoldStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.DatabaseError as exc:
                raise StorageError(f"hold store {self.path}: {exc}") from None

    def add(self, case_id: str, description: str, selector: str, by: str, at_ns: int) -> Hold:
        """Store a new hold, in force at once (recording it in the ledger comes after)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")  # the check and the insert, atomically
                try:
                    in_force = self._db.execute(
                        "SELECT count(*) FROM holds h WHERE h.case_id = ? AND NOT EXISTS "
                        "(SELECT 1 FROM hold_events r WHERE r.hold_id = h.id "
                        "AND r.action = 'released')",
                        (case_id,),
                    ).fetchone()[0]
                    if in_force:
                        raise UsageError(f"case {case_id} already has a hold in force")
                    cur = self._db.execute(
                        "INSERT INTO holds (case_id, description, selector, placed_by, placed_ns) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (case_id, description, selector, by, at_ns),
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise StorageError(f"hold store {self.path}: {exc}") from None
        return Hold(int(cur.lastrowid or 0), case_id, description, selector, by, at_ns, None)

    def recorded(self, hold: Hold, ledger_index: int) -> None:
        """Note the ledger index of the event that records placing ``hold``."""
        self._write(
            "INSERT INTO hold_events VALUES (?, 'placed', ?, ?, '', ?)",
            (hold.id, hold.placed_by, hold.placed_ns, ledger_index),
        )

    def release(self, hold: Hold, by: str, at_ns: int, reason: str, ledger_index: int) -> None:
        """Release ``hold`` (its release already recorded in the ledger at ``ledger_index``)."""
        self._write(
            "INSERT INTO hold_events VALUES (?, 'released', ?, ?, ?, ?)",
            (hold.id, by, at_ns, reason, ledger_index),
        )

    def holds(self) -> list[Hold]:
        """Every hold ever placed, oldest first, with its release if any."""
        sql = (
            "SELECT h.id, h.case_id, h.description, h.selector, h.placed_by, h.placed_ns, "
            "p.ledger_index, r.by, r.at_ns, r.reason, r.ledger_index FROM holds h "
            "LEFT JOIN hold_events p ON p.hold_id = h.id AND p.action = 'placed' "
            "LEFT JOIN hold_events r ON r.hold_id = h.id AND r.action = 'released' "
            "ORDER BY h.id"
        )
        with self._lock:
            try:
                rows = self._db.execute(sql).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StorageError(f"hold store {self.path}: {exc}") from None
        out = []
        for hid, case, desc, sel, by, ns, pidx, rby, rns, rwhy, ridx in rows:
            release = None if rby is None else Release(rby, rns, rwhy, ridx)
            out.append(Hold(hid, case, desc, sel, by, ns, pidx, release))
        return out

    def active(self, case_id: str | None = None) -> list[Hold]:
        """Holds in force (for one case, when given)."""
        return [h for h in self.holds() if h.active and (case_id is None or h.case_id == case_id)]


# -- recording holds in the ledger ------------------------------------------------------------


def hold_event(ledger: Ledger, hold: Hold, *, by: str, reason: str, place: bool) -> Event:
    """The ``decision`` event that records placing (effect deny) or releasing (allow) a hold.

    A hold is a decision about an action, pruning, on the entries it covers: placing it denies
    that action, releasing it allows it again. No other kind fits (docs/retention.md).
    """
    now, clock = ledger.clock.now()
    return Event(
        id=new_event_id(),
        kind="decision",
        time=format_time(now),
        clock=clock,
        actor=Actor(id=by, kind="human"),
        target=Target(type="proctor-ledger", name=ledger.origin),
        action=Action(class_="admin", operation="retention.hold" if place else "retention.release"),
        decision=Decision(
            effect="deny" if place else "allow",
            reasons=(reason,),
            policies=(f"legal-hold:{hold.case_id}",),
        ),
        source=Source(system="proctor"),
        attributes={
            "hold.case_id": hold.case_id,
            "hold.selector": hold.selector,
            "hold.action": "place" if place else "release",
        },
    )


def _check_text(what: str, text: str) -> None:
    if not text.strip():
        raise UsageError(f"{what} must not be empty")
    if len(text) > MAX_TEXT:
        raise UsageError(f"{what} is longer than {MAX_TEXT} characters")


def place_hold(
    ledger: Ledger,
    store: HoldStore,
    case_id: str,
    selector: str,
    description: str,
    by: str,
    *,
    check: Callable[[str], object] | None = None,
) -> Hold:
    """Place a hold and record it in the ledger; returns it with its ledger index.

    The hold is stored (in force) first, then recorded: a crash between leaves a hold in force
    that the ledger does not mention yet (``holds`` shows it), never the reverse. ``check``
    validates the selector (default: ``parse_selector``).
    """
    if CASE_ID.fullmatch(case_id) is None:
        raise UsageError(f"case id {case_id!r} must match {CASE_ID.pattern}")
    _check_text("the hold's reason", description)
    _check_text("the selector", selector)
    _check_text("who places the hold", by)
    (check or parse_selector)(selector)
    hold = store.add(case_id, description, selector, by, ledger.clock.now()[0])
    index = ledger.append(hold_event(ledger, hold, by=by, reason=description, place=True))
    store.recorded(hold, index)
    return Hold(hold.id, case_id, description, selector, by, hold.placed_ns, index)


def release_hold(ledger: Ledger, store: HoldStore, case_id: str, reason: str, by: str) -> Hold:
    """Record the release of the case's hold in the ledger, then release it.

    In this order a crash leaves the hold in force (it can be released again), never released
    without a record.
    """
    _check_text("the release reason", reason)
    _check_text("who releases the hold", by)
    holds = store.active(case_id)
    if not holds:
        raise UsageError(f"case {case_id} has no hold in force")
    hold = holds[0]
    index = ledger.append(hold_event(ledger, hold, by=by, reason=reason, place=False))
    at = ledger.clock.now()[0]
    store.release(hold, by, at, reason, index)
    return Hold(
        hold.id,
        hold.case_id,
        hold.description,
        hold.selector,
        hold.placed_by,
        hold.placed_ns,
        hold.placed_index,
        Release(by, at, reason, index),
    )


# -- the built-in selector language -----------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """A parsed built-in selector: every given term must hold (AND)."""

    actor: str | None = None
    session: str | None = None
    first: int = 0
    last: int | None = None  # inclusive
    since_ns: int | None = None
    until_ns: int | None = None


_TERMS: Final = ("actor", "session", "index", "since", "until")


def _time_ns(key: str, text: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{key}:{text}: not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise UsageError(f"{key}:{text}: give a time zone (Z or +HH:MM)")
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def parse_selector(text: str) -> Selector:
    """Parse ``actor:… session:… index:A-B since:… until:…``; UsageError for anything else."""
    seen: dict[str, str] = {}
    for term in text.split():
        key, sep, value = term.partition(":")
        if not sep or key not in _TERMS or not value:
            raise UsageError(
                f"selector term {term!r} is not one of actor:ID, session:UUID, index:A-B, "
                "since:TIME, until:TIME"
            )
        if key in seen:
            raise UsageError(f"selector gives {key}: twice")
        seen[key] = value
    if not seen:
        raise UsageError("the selector is empty (index:0- holds everything)")
    first, last = 0, None
    if "index" in seen:
        a, dash, b = seen["index"].partition("-")
        if not dash or not a.isdigit() or not (b.isdigit() or b == ""):
            raise UsageError(f"index:{seen['index']}: expected A-B or A- (decimal indexes)")
        first, last = int(a), (int(b) if b else None)
        if last is not None and last < first:
            raise UsageError(f"index:{seen['index']}: the range is empty")
    since = _time_ns("since", seen["since"]) if "since" in seen else None
    until = _time_ns("until", seen["until"]) if "until" in seen else None
    return Selector(seen.get("actor"), seen.get("session"), first, last, since, until)


class BuiltinMatcher:
    """A ``HoldMatcher`` for built-in selectors, reading entries from the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __call__(self, hold: Hold, lo: int, hi: int) -> int | None:
        try:
            sel = parse_selector(hold.selector)
        except UsageError:
            return lo if lo < hi else None  # a selector it cannot read covers everything
        start = max(lo, sel.first)
        end = hi if sel.last is None else min(hi, sel.last + 1)
        if start >= end:
            return None
        if (sel.actor, sel.session, sel.since_ns, sel.until_ns) == (None, None, None, None):
            return start  # an index range alone: nothing to read
        for index, data in self._ledger.entries(start, end):
            if _covers(sel, data):
                return index
        return None


def _covers(sel: Selector, data: bytes) -> bool:
    b = brief(data)
    if b is None:
        return True  # unreadable: it might be covered, so it is
    if sel.actor is not None and (b.actor is None or b.actor.id != sel.actor):
        return False
    if sel.session is not None and (b.session is None or b.session.id != sel.session):
        return False
    if sel.since_ns is None and sel.until_ns is None:
        return True
    try:
        t = parse_time(b.time)
    except EventError:
        return True
    after_since = sel.since_ns is None or t >= sel.since_ns
    before_until = sel.until_ns is None or t < sel.until_ns
    return after_since and before_until
