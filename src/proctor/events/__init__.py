"""The one event schema, ``proctor.access/v1``, and its canonical JSON form.

- ``schema``      frozen msgspec structs (``Event`` and its parts: actor, session, target, action,
  risk, decision, outcome, source, links, clock) with declared limits and the post-decode checks.
- ``ids``         UUIDv7 event ids (RFC 9562) and RFC 3339 nanosecond UTC times.
- ``canonical``   untrusted JSON → validated ``Event`` (errors name the field path) and
  ``Event`` → RFC 8785 canonical bytes, the input of a ledger leaf hash.
- ``jsonschema``  the JSON Schema export written to docs/event-schema.json.
- ``clock``       the clock that stamps events with their time and its quality (SNTP codec in
  ``_sntp``).

Data flows: raw JSON → ``decode_event`` → ``Event`` → ``canonical_bytes`` → ledger.
Every failure is a :class:`proctor.errors.EventError`. This package imports only
``proctor.errors`` from the rest of Proctor.
"""

from proctor.events.canonical import (
    canonical_bytes,
    canonicalize,
    decode_event,
    decode_event_obj,
    encode_event,
)
from proctor.events.ids import event_id_ms, format_time, new_event_id, now_ns, parse_time
from proctor.events.schema import (
    EVENT_KINDS,
    SCHEMA,
    Action,
    Actor,
    Clock,
    Decision,
    Device,
    Event,
    Factor,
    Geo,
    Kind,
    Links,
    Original,
    Outcome,
    Risk,
    SafeInt,
    Sealed,
    Session,
    Source,
    Target,
    original_bytes,
)

__all__ = [
    "EVENT_KINDS",
    "SCHEMA",
    "Action",
    "Actor",
    "Clock",
    "Decision",
    "Device",
    "Event",
    "Factor",
    "Geo",
    "Kind",
    "Links",
    "Original",
    "Outcome",
    "Risk",
    "SafeInt",
    "Sealed",
    "Session",
    "Source",
    "Target",
    "canonical_bytes",
    "canonicalize",
    "decode_event",
    "decode_event_obj",
    "encode_event",
    "event_id_ms",
    "format_time",
    "new_event_id",
    "now_ns",
    "original_bytes",
    "parse_time",
]
