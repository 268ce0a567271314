"""Shared by the ingest tests: a receive context and the checks every ingested event passes."""

from __future__ import annotations

import hashlib

from proctor.events import Event, canonical_bytes, decode_event, original_bytes, parse_time
from proctor.ingest import Received, Result

RECEIVED_AT = "2026-11-23T11:21:10.000000000Z"
RECEIVED = Received(at_ns=parse_time(RECEIVED_AT), gateway="ingest-1", address="10.8.0.1:6443")


def checked(event: Result, raw: bytes, system: str) -> Event:
    """``event`` as an Event that keeps ``raw`` as its original and survives the ledger."""
    assert isinstance(event, Event), event
    assert event.kind == "ingest"
    assert event.source is not None and event.original is not None
    assert event.source.system == system
    assert original_bytes(event.original) == raw
    assert event.source.original_sha256 == hashlib.sha256(raw).hexdigest()
    assert decode_event(canonical_bytes(event)) == event
    assert event.attributes["proctor.received_at"] == RECEIVED_AT
    assert event.source.gateway == "ingest-1"
    assert event.source.address == "10.8.0.1:6443"
    return event
