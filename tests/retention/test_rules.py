"""Which entries have expired, and why a scan stops where it stops."""

from __future__ import annotations

import msgspec

from proctor.events import canonical_bytes
from proctor.events.ids import format_time, now_ns
from proctor.retention.config import RetentionRule, rule_matches
from proctor.retention.rules import brief, expired_range, recorded_ns
from tests.retention.conftest import DAY, RULES, event


def _entries(*events: bytes) -> list[tuple[int, bytes]]:
    return list(enumerate(events))


def test_rule_matching_globs_and_sensitivity() -> None:
    rule = RetentionRule(
        name="r", kinds=("session.*", "query"), sensitivity=("public", "none"), keep_days=1
    )
    assert rule_matches(rule, "session.start", None)
    assert rule_matches(rule, "query", "public")
    assert not rule_matches(rule, "query", "restricted")
    assert not rule_matches(rule, "decision", None)
    anything = RetentionRule(name="a", sensitivity=("restricted",), keep_days=1)
    assert rule_matches(anything, "decision", "restricted")


def test_the_first_matching_rule_decides() -> None:
    restricted_query = canonical_bytes(event("query", age_days=500, sensitivity="restricted"))
    # queries-400d comes before restricted-10y, so a 500-day-old restricted query expires.
    expiry = expired_range(_entries(restricted_query), RULES, now_ns(), lo=0, hi=1, size=1)
    assert (expiry.below, expiry.rules, expiry.stop.kind) == (1, {"queries-400d": 1}, "end")
    reordered = (RULES[2], RULES[0], RULES[1])
    expiry = expired_range(_entries(restricted_query), reordered, now_ns(), lo=0, hi=1, size=1)
    assert expiry.below == 0 and expiry.stop.rule == "restricted-10y"


def test_age_counts_from_the_later_of_time_and_record() -> None:
    e = event("query", age_days=500)
    b = brief(canonical_bytes(e))
    assert b is not None and recorded_ns(b) is not None
    # An event claiming an old time but recorded now (its id) is not old.
    fresh_id = msgspec.structs.replace(event("query"), time=format_time(now_ns() - 900 * DAY))
    expiry = expired_range(_entries(canonical_bytes(fresh_id)), RULES, now_ns(), lo=0, hi=1, size=1)
    assert expiry.below == 0 and expiry.stop.kind == "kept"


def test_stops() -> None:
    old = canonical_bytes(event("query", age_days=500))
    now = now_ns()
    unreadable = expired_range(_entries(old, b'{"n":1}'), RULES, now, lo=0, hi=2, size=2)
    assert (unreadable.below, unreadable.stop.kind) == (1, "unreadable")
    gap = expired_range([(0, old), (2, old)], RULES, now, lo=0, hi=3, size=3)
    assert (gap.below, gap.stop.kind, gap.stop.index) == (1, "missing", 1)
    limit = expired_range(_entries(old, old, old), RULES, now, lo=0, hi=2, size=3)
    assert (limit.below, limit.stop.kind) == (2, "limit")
    end = expired_range(_entries(old, old), RULES, now, lo=0, hi=2, size=2)
    assert (end.below, str(end.stop)) == (2, "stopped at index 2: the end of the ledger")
    kept = expired_range(
        _entries(old, canonical_bytes(event("session.start", age_days=10))),
        RULES,
        now,
        lo=0,
        hi=2,
        size=2,
    )
    assert str(kept.stop).startswith(
        "stopped at index 1: kind session.start kept 2555 days (rule sessions-7y) until "
    )
