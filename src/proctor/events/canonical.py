"""Decode events from untrusted JSON and encode them canonically (RFC 8785, JCS).

Canonical form rule: the RFC 8785 serialization of the event where every field whose value
equals its declared default is left out (``None`` parts, empty ``attributes``/``flags``/tuples,
``mfa: false``), and ``schema`` is always present. It depends only on the ``Event`` value, so
``canonical_bytes(decode_event(canonical_bytes(e))) == canonical_bytes(e)``; a ledger leaf is
``SHA-256(0x00 || canonical_bytes(event))`` (RFC 9162 §2.1.1).

Why msgspec output is RFC 8785: with ``order="sorted"`` it sorts struct fields and dict keys,
writes integers as plain decimals, escapes exactly what RFC 8785 §3.2.2.2 escapes (``"``, ``\\``,
control characters, ``\\b\\f\\n\\r\\t`` short forms, lowercase ``\\u00xx``) and leaves other text
as UTF-8. Two gaps are closed by the schema, not here: msgspec sorts keys by code point while
RFC 8785 §3.2.3 sorts by UTF-16 code unit (they differ only above U+FFFF vs U+E000-U+FFFF), so
every free-form key (``attributes``) is ASCII; and RFC 8785 numbers are doubles, so the schema has
no floats and no integer beyond ±(2^53-1). tests/events/test_canonical.py checks the equality
against the ``rfc8785`` package on generated events.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from proctor.errors import EventError
from proctor.events.schema import Event

__all__ = ["canonical_bytes", "canonicalize", "decode_event", "decode_event_obj", "encode_event"]

_DECODER: Final = msgspec.json.Decoder(Event)
_ENCODER: Final = msgspec.json.Encoder(order="sorted")


def _with_path(message: str) -> str:
    # msgspec omits the path for errors at the root; name it so every message has one.
    return message if " - at `" in message else f"{message} - at `$`"


def decode_event(data: bytes | str) -> Event:
    """Parse and validate one JSON event; any problem raises ``EventError`` naming the path."""
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError as exc:  # schema and post-decode checks
        raise EventError(_with_path(str(exc))) from None
    except msgspec.DecodeError as exc:  # not JSON at all (ValidationError is a subclass)
        raise EventError(f"invalid JSON: {exc} - at `$`") from None
    except UnicodeError as exc:  # bad UTF-8 in a string, or a lone surrogate in str input
        raise EventError(f"invalid UTF-8 text: {exc} - at `$`") from None


def decode_event_obj(obj: Any) -> Event:
    """Validate an already-parsed JSON value (dicts, lists, str, int, bool, None) as an event."""
    try:
        return msgspec.convert(obj, Event, strict=True)
    except msgspec.ValidationError as exc:
        raise EventError(_with_path(str(exc))) from None


def _encode(event: Event) -> bytes:
    try:
        return _ENCODER.encode(event)
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
        # A lone surrogate cannot be UTF-8 (RFC 8785 §3.2.2.2 requires valid Unicode).
        raise EventError(f"event cannot be encoded as JSON: {exc} - at `$`") from None


def canonical_bytes(event: Event) -> bytes:
    """The RFC 8785 canonical JSON of ``event`` (one line, no trailing newline).

    Structs built in Python skip msgspec's declared limits (those run only when decoding), so the
    bytes are decoded once more here: nothing the decoder would refuse reaches a ledger leaf.
    """
    data = _encode(event)
    decode_event(data)
    return data


def encode_event(event: Event) -> bytes:
    """Serialize an event for storage or the wire; identical to :func:`canonical_bytes`."""
    return canonical_bytes(event)


def canonicalize(data: bytes | str) -> bytes:
    """Validate a raw JSON event (e.g. one JSONL line) and return its canonical bytes."""
    # decode_event validated every limit already, so skip canonical_bytes' second decode.
    return _encode(decode_event(data))
