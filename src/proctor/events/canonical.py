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

from typing import Any, Final, TypeVar

import msgspec

from proctor.errors import EventError
from proctor.events.schema import REQUIRED_ATTRIBUTES, SCHEMA, Event, _fail, _slug

__all__ = ["canonical_bytes", "canonicalize", "decode_event", "decode_event_obj", "encode_event"]


class _Encoded(Event, frozen=True, kw_only=True, tag_field="schema", tag=SCHEMA):
    """``Event`` as ``canonical_bytes`` reads its own output back: the same fields, limits and
    tag (inherited), but ``__post_init__`` re-runs only the part of ``check_event`` whose inputs
    can change after an ``Event`` was built; the rest ran when it was built (see below)."""

    def __post_init__(self) -> None:
        _check_mutable_parts(self)


def _check_mutable_parts(event: Event) -> None:
    """The checks of ``check_event`` on values an already-checked ``Event`` can still change.

    ``Event`` and its parts are frozen, and their str/int/None fields cannot change once
    ``__post_init__`` has checked them (the constructor, ``msgspec.structs.replace`` and
    ``msgspec.convert`` all run it). What can change is inside a container: ``attributes`` is a
    dict, and a tuple field filled with a list in Python stays a list. So the checks that read a
    container run again here, in ``check_event``'s order and with its messages: factor signals,
    attribute keys, flags, required attributes. Keep in step with ``check_event``: a new check
    there that reads a dict or a list belongs here too. (Parts with their own ``__post_init__``
    run it in full while ``_Encoded`` is decoded; only ``Event``'s is replaced.)
    """
    if event.risk is not None:
        for i, factor in enumerate(event.risk.factors):
            _slug(f"$.risk.factors[{i}].signal", factor.signal)
    for key in event.attributes:
        _slug(f"$.attributes[{key!r}]", key)
    for i, flag in enumerate(event.flags):
        _slug(f"$.flags[{i}]", flag)
    for key in REQUIRED_ATTRIBUTES.get(event.kind, ()):
        if not event.attributes.get(key):
            _fail(f"$.attributes[{key!r}]", f"kind {event.kind!r} requires attribute {key!r}")


_E = TypeVar("_E", bound=Event)

_DECODER: Final = msgspec.json.Decoder(Event)
_ENCODED_DECODER: Final = msgspec.json.Decoder(_Encoded)
_ENCODER: Final = msgspec.json.Encoder(order="sorted")


def _with_path(message: str) -> str:
    # msgspec omits the path for errors at the root; name it so every message has one.
    return message if " - at `" in message else f"{message} - at `$`"


def decode_event(data: bytes | str) -> Event:
    """Parse and validate one JSON event; any problem raises ``EventError`` naming the path."""
    return _decode(_DECODER, data)


def _decode(decoder: msgspec.json.Decoder[_E], data: bytes | str) -> _E:
    try:
        return decoder.decode(data)
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

    Structs built in Python skip msgspec's declared types, limits and literals (those run only
    when decoding), so the bytes are decoded once more here, into ``_Encoded``: every ``Meta``
    limit, type, literal and unknown field is checked on exactly the bytes returned, and so are
    the ``check_event`` checks on containers (``_check_mutable_parts``). The other
    ``check_event`` checks (ids, times, addresses, required parts) are not repeated: they ran
    when ``event`` was built, on values that cannot have changed since, and were most of the
    cost of a second full decode (~6 of ~13 µs per event). Only a deliberate bypass of a frozen
    struct (``msgspec.structs.force_setattr``) could slip past them. So nothing ``decode_event``
    would refuse reaches a ledger leaf.
    """
    data = _encode(event)
    _decode(_ENCODED_DECODER, data)
    return data


def encode_event(event: Event) -> bytes:
    """Serialize an event for storage or the wire; identical to :func:`canonical_bytes`."""
    return canonical_bytes(event)


def canonicalize(data: bytes | str) -> bytes:
    """Validate a raw JSON event (e.g. one JSONL line) and return its canonical bytes."""
    # decode_event validated every limit already, so skip canonical_bytes' second decode.
    return _encode(decode_event(data))
