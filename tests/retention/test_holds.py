"""Legal holds: the store never forgets, the selector language, the built-in matcher, records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from proctor.errors import UsageError
from proctor.events import decode_event, format_time
from proctor.events.ids import now_ns
from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer
from proctor.retention.holds import (
    HOLDS_NAME,
    BuiltinMatcher,
    Hold,
    HoldStore,
    Selector,
    parse_selector,
    place_hold,
    release_hold,
)
from tests.retention.conftest import DAY, OTHER_SESSION, SESSION, event, fill


def test_selector_terms() -> None:
    assert parse_selector(f"actor:u-7 session:{SESSION}") == Selector(actor="u-7", session=SESSION)
    assert parse_selector("index:10-20") == Selector(first=10, last=20)
    assert parse_selector("index:5-") == Selector(first=5)
    sel = parse_selector("since:2026-01-01T00:00:00Z until:2026-02-01T00:00:00+01:00")
    assert sel.since_ns == 1_767_225_600 * 10**9
    assert sel.until_ns == (1_769_904_000 - 3600) * 10**9
    for bad, why in [
        ("", "empty"),
        ("who:u-7", "not one of"),
        ("actor:a actor:b", "twice"),
        ("index:9-3", "empty"),
        ("index:x", "expected A-B"),
        ("since:yesterday", "not an RFC 3339 time"),
        ("since:2026-01-01T00:00:00", "time zone"),
    ]:
        with pytest.raises(UsageError, match=why):
            parse_selector(bad)


def _hold(selector: str) -> Hold:
    return Hold(1, "C-1", "why", selector, "legal", 0, None)


def test_the_builtin_matcher_finds_the_first_covered_index(
    ledger_dir: Path, signer: Signer
) -> None:
    events = [event("query", age_days=10) for _ in range(10)]
    events[3] = event("query", age_days=10, actor="u-7")
    events[6] = event("query", age_days=10, session=OTHER_SESSION)
    events[8] = event("query", age_days=2)
    fill(ledger_dir, signer, events)
    with Ledger(ledger_dir) as lg:
        match = BuiltinMatcher(lg)
        assert match(_hold("actor:u-7"), 0, 10) == 3
        assert match(_hold("actor:u-7"), 4, 10) is None
        assert match(_hold(f"session:{OTHER_SESSION}"), 0, 10) == 6
        assert match(_hold("index:5-"), 0, 3) is None
        assert match(_hold("index:5-7"), 0, 10) == 5
        since = format_time(now_ns() - 5 * DAY)
        assert match(_hold(f"since:{since}"), 0, 10) == 8
        assert match(_hold(f"until:{since} actor:u-7"), 0, 10) == 3
        # A selector it cannot read covers everything (fail closed).
        assert match(_hold("owner:someone"), 2, 10) == 2


def test_placing_and_releasing_are_recorded_and_never_forgotten(
    ledger_dir: Path, signer: Signer
) -> None:
    fill(ledger_dir, signer, [event("query")])
    store = HoldStore(ledger_dir / HOLDS_NAME)
    with Ledger(ledger_dir, signer=signer) as lg:
        hold = place_hold(lg, store, "ACME-42", "actor:u-7", "litigation hold", "alice")
        with pytest.raises(UsageError, match="already has a hold in force"):
            place_hold(lg, store, "ACME-42", "actor:u-8", "again", "alice")
        with pytest.raises(UsageError, match="not one of"):
            place_hold(lg, store, "ACME-43", "owner:x", "bad selector", "alice")
        with pytest.raises(UsageError, match="case id"):
            place_hold(lg, store, "bad case!", "actor:x", "why", "alice")
        released = release_hold(lg, store, "ACME-42", "settled", "bob")
        with pytest.raises(UsageError, match="no hold in force"):
            release_hold(lg, store, "ACME-42", "settled", "bob")
        placed_ev = decode_event(lg.entry(1))
        released_ev = decode_event(lg.entry(2))
    assert hold.placed_index == 1 and released.released is not None
    assert released.released.ledger_index == 2
    assert placed_ev.actor is not None and placed_ev.actor.id == "alice"
    assert placed_ev.decision is not None and placed_ev.decision.reasons == ("litigation hold",)
    assert placed_ev.decision.policies == ("legal-hold:ACME-42",)
    assert released_ev.decision is not None and released_ev.decision.effect == "allow"
    assert released_ev.attributes == {
        "hold.action": "release",
        "hold.case_id": "ACME-42",
        "hold.selector": "actor:u-7",
    }
    [kept] = store.holds()
    assert kept.case_id == "ACME-42" and not kept.active and store.active() == []
    store.close()

    db = sqlite3.connect(ledger_dir / HOLDS_NAME)
    for sql in ("DELETE FROM holds", "UPDATE holds SET selector = 'x'", "DELETE FROM hold_events"):
        with pytest.raises(sqlite3.IntegrityError, match=r"never|append-only"):
            db.execute(sql)
    db.close()
