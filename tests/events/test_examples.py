"""examples/events.jsonl: realistic events of every kind, each line already canonical."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor.events import (
    EVENT_KINDS,
    Event,
    canonical_bytes,
    decode_event,
    event_id_ms,
    parse_time,
)

EXAMPLES = Path(__file__).parents[2] / "examples" / "events.jsonl"
LINES = EXAMPLES.read_bytes().splitlines()
EVENTS = [decode_event(line) for line in LINES]


@pytest.mark.parametrize("line", LINES, ids=lambda line: line[-40:].decode())
def test_line_is_canonical_and_round_trips(line: bytes) -> None:
    event = decode_event(line)
    assert canonical_bytes(event) == line
    assert decode_event(canonical_bytes(event)) == event


def test_file_shape() -> None:
    text = EXAMPLES.read_bytes()
    assert text.endswith(b"\n") and b"\r" not in text
    assert 15 <= len(LINES) <= 25


def test_every_kind_appears() -> None:
    assert {event.kind for event in EVENTS} == set(EVENT_KINDS)


def test_ids_are_unique_and_in_mint_order() -> None:
    ids = [event.id for event in EVENTS]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_ids_are_minted_at_the_event_time_except_for_ingest() -> None:
    for event in EVENTS:
        if event.kind != "ingest":  # an ingested record keeps its original time
            assert event_id_ms(event.id) == parse_time(event.time) // 1_000_000


def test_links_point_at_events_in_the_file() -> None:
    by_id: dict[str, Event] = {event.id: event for event in EVENTS}
    for event in EVENTS:
        if event.links is None:
            continue
        for ref in (event.links.parent_id, event.links.decision_id):
            assert ref is None or ref in by_id
        if event.links.decision_id is not None:
            assert by_id[event.links.decision_id].kind == "decision"


def test_scenarios_are_present() -> None:
    effects = {e.decision.effect for e in EVENTS if e.kind == "decision" and e.decision}
    assert effects == {"allow", "deny", "step_up"}
    step_up = next(e for e in EVENTS if e.decision and e.decision.effect == "step_up")
    assert step_up.action is not None and step_up.action.class_ == "ddl"
    denied = next(e for e in EVENTS if e.decision and e.decision.effect == "deny" and e.risk)
    assert denied.risk is not None
    assert "new_country" in {factor.signal for factor in denied.risk.factors}
    revoked = next(e for e in EVENTS if e.kind == "session.revoked")
    assert revoked.outcome is not None and revoked.outcome.status == "revoked"
    systems = {e.source.system for e in EVENTS if e.kind == "ingest" and e.source}
    assert "k8s-audit" in systems
    assert any("time_skew" in e.flags for e in EVENTS)
