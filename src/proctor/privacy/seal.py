"""Sealing personal fields of an event under its subject's key, and opening them again.

``seal`` takes the configured fields out of an event (``actor.email``, ``original``, …), puts
them, as one JSON object, AES-256-GCM-encrypted into the event's ``sealed`` part, and returns
the event the ledger stores: the leaf commits to the ciphertext. The associated data binds the
ciphertext to the event id, subject, key id and field list, so it cannot be moved to another
event or relabelled.

A sealed ``original`` gets a keyed digest: ``source.original_sha256`` becomes
HMAC-SHA256(K_d, original bytes) with K_d = HKDF-SHA256(subject key, info
"proctor.original-digest"). A plain SHA-256 would outlive the erasure as a way to confirm a
guess of the erased record. ``unseal`` checks it.

``unseal`` gives the readable view: the fields back in place, ``sealed`` kept (it tells the
reader the view was opened, and the ledger entry is the sealed form). Once the key is gone,
``unseal`` returns the event as stored (:class:`Opened` says it was erased).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from proctor.errors import UsageError, VerificationError
from proctor.events import Action, Actor, Event, Outcome, Sealed, original_bytes

__all__ = ["DEFAULT_FIELDS", "SEALABLE", "Opened", "Sealer", "seal", "unseal"]

# Paths that can be sealed: (part, field) inside the event, or a whole top-level part.
SEALABLE: Final[Mapping[str, tuple[str, str | None]]] = {
    "actor.display_name": ("actor", "display_name"),
    "actor.email": ("actor", "email"),
    "actor.ip": ("actor", "ip"),
    "actor.geo": ("actor", "geo"),
    "actor.device": ("actor", "device"),
    "action.statement": ("action", "statement"),
    "outcome.message": ("outcome", "message"),
    "input": ("input", None),
    "original": ("original", None),
}
DEFAULT_FIELDS: Final = (
    "actor.display_name",
    "actor.email",
    "actor.ip",
    "actor.geo",
    "input",
    "original",
)
_DIGEST_INFO: Final = b"proctor.original-digest"
_ENCODER: Final = msgspec.json.Encoder(order="sorted")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _value(event: Event, path: str) -> Any:
    part, name = SEALABLE[path]
    value = getattr(event, part)
    if name is None or value is None:
        return value
    return getattr(value, name)


def _aad(event_id: str, subject: str, key_id: str, fields: Iterable[str]) -> bytes:
    return _ENCODER.encode(
        {"id": event_id, "subject": subject, "key_id": key_id, "fields": list(fields)}
    )


def original_digest(key: bytes, data: bytes) -> str:
    """The keyed digest a sealed original is recorded with."""
    mac_key = HKDF(hashes.SHA256(), 32, salt=None, info=_DIGEST_INFO).derive(key)
    return hmac.new(mac_key, data, hashlib.sha256).hexdigest()


def _replace(event: Event, values: Mapping[str, Any], sealed: Sealed | None) -> Event:
    """``event`` with each path set to its value (None removes it) and ``sealed`` set."""
    parts: dict[str, Any] = {}
    for path, value in values.items():
        part, name = SEALABLE[path]
        if name is None:
            parts[part] = value
            continue
        current = parts.get(part, getattr(event, part))
        parts[part] = msgspec.structs.replace(current, **{name: value})
    return msgspec.structs.replace(event, **parts, sealed=sealed)


def seal(event: Event, subject: str, key_id: str, key: bytes, fields: Iterable[str]) -> Event:
    """The event with ``fields`` (those present) sealed under ``key``; unchanged if none are."""
    if event.sealed is not None:
        raise UsageError(f"event {event.id} is sealed already")
    present = {path: _value(event, path) for path in fields}
    taken = {path: value for path, value in present.items() if value is not None}
    if not taken:
        return event
    names = sorted(taken)
    plaintext = _ENCODER.encode({p: msgspec.to_builtins(v) for p, v in taken.items()})
    nonce = secrets.token_bytes(12)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, _aad(event.id, subject, key_id, names))
    sealed = Sealed(
        subject=subject,
        key_id=key_id,
        fields=tuple(names),
        nonce=_b64(nonce),
        ciphertext=_b64(ciphertext),
    )
    cleared = dict.fromkeys(names)
    if event.original is not None and "original" in taken and event.source is not None:
        digest = original_digest(key, original_bytes(event.original))
        source = msgspec.structs.replace(event.source, original_sha256=digest)
        return msgspec.structs.replace(_replace(event, cleared, sealed), source=source)
    return _replace(event, cleared, sealed)


@dataclass(frozen=True)
class Opened:
    """An event as a reader sees it: unsealed, or as stored (and why)."""

    event: Event
    state: str
    """``clear`` (nothing was sealed), ``unsealed``, or ``erased`` (the key is gone)."""


def unseal(event: Event, key_of: Callable[[str, str], bytes | None]) -> Opened:
    """The readable view of ``event``; ``key_of(subject, key_id)`` finds keys (None: erased).

    A ciphertext that does not open with its key is a ``VerificationError`` (the entry was
    altered, or the key store is not this ledger's).
    """
    sealed = event.sealed
    if sealed is None:
        return Opened(event, "clear")
    key = key_of(sealed.subject, sealed.key_id)
    if key is None:
        return Opened(event, "erased")
    aad = _aad(event.id, sealed.subject, sealed.key_id, sealed.fields)
    try:
        plaintext = AESGCM(key).decrypt(_unb64(sealed.nonce), _unb64(sealed.ciphertext), aad)
    except (InvalidTag, ValueError):
        raise VerificationError(f"event {event.id}: its sealed fields do not open") from None
    values: dict[str, Any] = msgspec.json.decode(plaintext)
    if set(values) != set(sealed.fields) or not set(values) <= SEALABLE.keys():
        raise VerificationError(f"event {event.id}: the sealed fields are not the ones named")
    typed = {path: _typed(event, path, raw) for path, raw in values.items()}
    opened = _replace(event, typed, sealed)
    if opened.original is not None:
        digest = original_digest(key, original_bytes(opened.original))
        claimed = opened.source.original_sha256 if opened.source is not None else None
        if claimed != digest:
            raise VerificationError(
                f"event {event.id}: the unsealed original is not the one recorded"
            )
    return Opened(opened, "unsealed")


_OWNERS: Final[Mapping[str, type]] = {"actor": Actor, "action": Action, "outcome": Outcome}


@functools.cache
def _hint(path: str) -> Any:
    """The declared type (with its limits) of the field at ``path``."""
    part, name = SEALABLE[path]
    owner = Event if name is None else _OWNERS[part]
    return typing.get_type_hints(owner, include_extras=True)[name or part]


def _typed(event: Event, path: str, raw: Any) -> Any:
    """A sealed value decoded to its field's type (a struct for geo, input, original)."""
    try:
        return msgspec.convert(raw, _hint(path), strict=True)
    except msgspec.ValidationError as exc:
        raise VerificationError(f"event {event.id}: sealed {path}: {exc}") from None


class Sealer:
    """The ledger's hook: seals the configured fields of each event whose actor is a subject."""

    def __init__(self, key_for: Callable[[str], tuple[str, bytes]], fields: Iterable[str]):
        self.fields = tuple(fields)
        unknown = [f for f in self.fields if f not in SEALABLE]
        if unknown:
            raise UsageError(
                f"privacy.fields: cannot seal {', '.join(unknown)} (one of {', '.join(SEALABLE)})"
            )
        self._key_for = key_for

    def __call__(self, event: Event) -> Event:
        if event.sealed is not None or event.actor is None:
            return event
        if all(_value(event, path) is None for path in self.fields):
            return event
        subject = event.actor.id
        key_id, key = self._key_for(subject)
        return seal(event, subject, key_id, key, self.fields)
