"""The ``proctor.access/v1`` event: frozen msgspec structs and the checks run after decoding.

Limits (string lengths, tuple sizes, integer ranges) are declared with ``msgspec.Meta`` so the
decoder enforces them and the JSON Schema export shows them. What a ``Meta`` cannot say (a real
date, an IP address, kind-specific parts) is checked by :func:`check_event`, which every
``Event`` runs in ``__post_init__`` and which reports the field path like msgspec does.

There are no floats anywhere: RFC 8785 §3.2.2.3 serializes numbers as IEEE-754 doubles, so only
integers within ±(2^53-1) hash identically in every language.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, ClassVar, Final, Literal, NoReturn, get_args

import msgspec
from msgspec import Meta

from proctor.errors import EventError
from proctor.events.context import DecisionInput, Geo
from proctor.events.ids import TIME_PATTERN, UUID7_PATTERN, UUID_PATTERN, check_uuid7, parse_time

__all__ = [
    "EVENT_KINDS",
    "ORIGINAL_MAX_CHARS",
    "REQUIRED_ATTRIBUTES",
    "REQUIRED_FIELDS",
    "SCHEMA",
    "SEALED_MAX_CHARS",
    "Action",
    "Actor",
    "Clock",
    "Decision",
    "DecisionInput",
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
    "check_event",
    "original_bytes",
]

SCHEMA: Final = "proctor.access/v1"

# Integers in hashed content stay inside the range every JSON implementation reads exactly
# (RFC 8785 §3.2.2.3 / I-JSON): no floats anywhere in an event.
SafeInt = Annotated[int, Meta(ge=-(2**53) + 1, le=2**53 - 1)]
_Count = Annotated[int, Meta(ge=0, le=2**53 - 1)]

# Python's re lets '$' match before a final newline, so variable-length patterns are re-checked
# with fullmatch in check_event; fixed-length ones are pinned by max_length instead. The patterns
# stay in the portable subset of JSON Schema regexes (no lookahead) for RE2-based validators.
_SLUG_PATTERN: Final = "^[a-z][a-z0-9_.-]{0,63}$"
_SLUG_RE: Final = re.compile(_SLUG_PATTERN[1:-1])

_Slug = Annotated[str, Meta(pattern=_SLUG_PATTERN, max_length=64)]
_Name = Annotated[str, Meta(max_length=256)]
_Text = Annotated[str, Meta(max_length=4096)]
_Uuid = Annotated[str, Meta(pattern=UUID_PATTERN, max_length=36)]
_Uuid7 = Annotated[str, Meta(pattern=UUID7_PATTERN, max_length=36)]
_Time = Annotated[str, Meta(pattern=TIME_PATTERN, max_length=30)]
_Ip = Annotated[str, Meta(max_length=64, description="IPv4 or IPv6 address")]
_Names = Annotated[tuple[_Name, ...], Meta(max_length=256)]

# An ingested original (a Kubernetes audit event with request and response bodies, a syslog
# message) is kept whole inside its event, up to this many characters.
ORIGINAL_MAX_CHARS: Final = 1 << 20
# Sealed personal fields may hold a whole original: base64 of it and the other fields.
SEALED_MAX_CHARS: Final = 3 << 20

Kind = Literal[
    "session.start",
    "session.end",
    "query",
    "decision",
    "outcome",
    "session.revoked",
    "policy.reloaded",
    "ingest",
    "retention.pruned",
    "erasure",
    "auth.failed",
    "checkpoint",
]
EVENT_KINDS: Final[tuple[Kind, ...]] = get_args(Kind)

# Parts each kind must carry (dotted struct field paths) and attribute keys it must set.
# jsonschema.py turns both tables into if/then rules, so other languages enforce them too.
REQUIRED_FIELDS: Final[Mapping[Kind, tuple[str, ...]]] = {
    "session.start": ("actor", "session"),
    "session.end": ("session",),
    "query": ("action", "target"),
    "decision": ("decision",),
    "outcome": ("outcome",),
    "session.revoked": ("session", "decision"),
    "ingest": ("source.original_sha256",),
    "auth.failed": ("actor", "outcome"),
}
REQUIRED_ATTRIBUTES: Final[Mapping[Kind, tuple[str, ...]]] = {
    "policy.reloaded": ("policy.revision",),
    "retention.pruned": ("retention.below_index",),
    "erasure": ("erasure.key_id",),
    "checkpoint": ("checkpoint.size", "checkpoint.root"),
}


class _Part(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Settings every part shares; subclasses restate frozen and kw_only (see below)."""

    # omit_defaults: a field equal to its default is not written, which is the canonical-form
    # rule of canonical.py (None parts and empty collections never appear in the JSON).
    # msgspec does not inherit kw_only, and type checkers do not inherit frozen.


class Clock(_Part, frozen=True, kw_only=True):
    """How the event's time was obtained and how good it is."""

    source: Literal["system", "ntp"]
    server: _Name | None = None
    offset_us: SafeInt | None = None
    uncertainty_us: _Count | None = None


class Device(_Part, frozen=True, kw_only=True):
    """The device the actor used, as reported by the identity provider or MDM."""

    id: _Name
    managed: bool | None = None
    compliant: bool | None = None


class Actor(_Part, frozen=True, kw_only=True):
    """Who acted: a person, an AI agent or a service, with how they proved it."""

    id: _Name
    kind: Literal["human", "agent", "service"]
    display_name: _Name | None = None
    email: Annotated[str, Meta(max_length=320)] | None = None
    roles: _Names = ()
    groups: _Names = ()
    auth_method: _Name | None = None
    mfa: bool = False
    mfa_time: _Time | None = None
    device: Device | None = None
    ip: _Ip | None = None
    geo: Geo | None = None


class Session(_Part, frozen=True, kw_only=True):
    """The client session an event belongs to."""

    id: _Uuid
    started: _Time | None = None
    client: _Name | None = None
    protocol: _Name | None = None


class Target(_Part, frozen=True, kw_only=True):
    """What was accessed: a database, a cluster, an HTTP service, and which objects in it."""

    type: _Slug
    name: _Name | None = None
    database: _Name | None = None
    objects: Annotated[tuple[_Name, ...], Meta(max_length=1024)] = ()
    sensitivity: Literal["public", "internal", "confidential", "restricted"] | None = None


class Action(_Part, frozen=True, kw_only=True):
    """What was attempted; ``statement`` is already redacted (literals replaced)."""

    class_: Literal[
        "connect", "read", "write", "ddl", "admin", "transaction", "utility", "auth", "system"
    ] = msgspec.field(name="class")
    operation: Annotated[str, Meta(max_length=64)] | None = None
    statement: Annotated[str, Meta(max_length=65536)] | None = None
    fingerprint: Annotated[str, Meta(max_length=128)] | None = None


class Factor(_Part, frozen=True, kw_only=True):
    """One risk signal and the points it added (negative points lower the score)."""

    signal: _Slug
    points: Annotated[int, Meta(ge=-100, le=100)]
    evidence: _Text | None = None


class Risk(_Part, frozen=True, kw_only=True):
    """The risk assessment behind a decision: a 0-100 score and each factor's share."""

    score: Annotated[int, Meta(ge=0, le=100)]
    level: Literal["low", "medium", "high", "critical"]
    factors: Annotated[tuple[Factor, ...], Meta(max_length=64)] = ()
    model: _Name | None = None


class Decision(_Part, frozen=True, kw_only=True):
    """A policy decision that explains itself: determining policies, reasons, obligations."""

    effect: Literal["allow", "deny", "step_up"]
    reasons: Annotated[tuple[_Text, ...], Meta(min_length=1, max_length=64)]
    policies: Annotated[tuple[_Name, ...], Meta(max_length=64)] = ()
    obligations: Annotated[tuple[_Name, ...], Meta(max_length=64)] = ()
    policy_revision: _Name | None = None
    eval_us: _Count | None = None


class Outcome(_Part, frozen=True, kw_only=True):
    """What happened after enforcement; ``sqlstate`` is the PostgreSQL error code, if any."""

    status: Literal["ok", "error", "cancelled", "revoked"]
    rows: _Count | None = None
    duration_us: _Count | None = None
    sqlstate: Annotated[str, Meta(pattern="^[0-9A-Z]{5}$", max_length=5)] | None = None
    message: _Text | None = None


class Source(_Part, frozen=True, kw_only=True):
    """Which component recorded the event, and for ingested records a digest of the original."""

    system: _Slug
    gateway: _Name | None = None
    address: Annotated[str, Meta(max_length=80, description="ip:port or [ipv6]:port")] | None = None
    original_sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$", max_length=64)] | None = None


class Original(_Part, frozen=True, kw_only=True):
    """The record an ingested event was normalized from, exactly as the source sent it."""

    # source.original_sha256 is the SHA-256 of the original bytes (data as UTF-8, or
    # base64-decoded when encoding is base64), checked whenever an event is built or decoded,
    # so the leaf hash commits to every byte the source said.
    format: _Slug
    encoding: Literal["utf-8", "base64"] = "utf-8"
    data: Annotated[str, Meta(max_length=ORIGINAL_MAX_CHARS)]


class Sealed(_Part, frozen=True, kw_only=True):
    """Personal fields encrypted under their subject's key (AES-256-GCM), erased with the key."""

    # The leaf commits to the ciphertext, so destroying the subject's key (proctor erase)
    # makes these fields unreadable while the ledger still verifies. `fields` names what was
    # taken out of the event (dotted paths, e.g. actor.email, original); the plaintext is a
    # JSON object of those paths' values, and the AEAD's associated data binds it to this
    # event's id, subject, key id and field list (proctor.privacy.seal).
    subject: _Name
    key_id: Annotated[str, Meta(pattern="^[0-9a-f]{32}$", max_length=32)]
    fields: Annotated[
        tuple[Annotated[str, Meta(max_length=64)], ...], Meta(min_length=1, max_length=32)
    ]
    nonce: Annotated[str, Meta(pattern="^[A-Za-z0-9_-]{16}$", max_length=16)]
    ciphertext: Annotated[str, Meta(max_length=SEALED_MAX_CHARS)]


class Links(_Part, frozen=True, kw_only=True):
    """Ids of related records: the session, the event this one follows, its decision."""

    session_id: _Uuid | None = None
    parent_id: _Uuid7 | None = None
    decision_id: _Uuid7 | None = None


class Event(_Part, frozen=True, kw_only=True, tag_field="schema", tag=SCHEMA):
    """One access-audit record: who did what to which target, when, why, and with what result."""

    # The schema id is the struct tag: msgspec always writes it (even with omit_defaults), checks
    # it when present and reads an event without it as v1. A later v2 joins a tagged union.
    schema: ClassVar[Literal["proctor.access/v1"]] = SCHEMA

    id: _Uuid7
    kind: Kind
    time: _Time
    clock: Clock
    actor: Actor | None = None
    session: Session | None = None
    target: Target | None = None
    action: Action | None = None
    risk: Risk | None = None
    decision: Decision | None = None
    outcome: Outcome | None = None
    source: Source | None = None
    links: Links | None = None
    original: Original | None = None
    sealed: Sealed | None = None
    input: DecisionInput | None = None
    attributes: Annotated[dict[_Slug, _Text], Meta(max_length=64)] = msgspec.field(
        default_factory=dict
    )
    flags: Annotated[tuple[_Slug, ...], Meta(max_length=32)] = ()

    def __post_init__(self) -> None:
        check_event(self)


class _CheckError(EventError, ValueError):
    """A post-decode check failed (a ValueError so msgspec reports it as a ValidationError)."""


def _fail(path: str, message: str) -> NoReturn:
    raise _CheckError(f"{message} - at `{path}`")


def _time(path: str, text: str | None) -> None:
    if text is not None:
        try:
            parse_time(text)
        except EventError as exc:
            _fail(path, str(exc))


def _uuid7(path: str, text: str | None) -> None:
    if text is not None:
        try:
            check_uuid7(text)
        except EventError as exc:
            _fail(path, str(exc))


def _slug(path: str, text: str) -> None:
    if _SLUG_RE.fullmatch(text) is None:
        _fail(path, f"invalid name {text!r}: expected {_SLUG_PATTERN}")


@functools.lru_cache(maxsize=4096)  # the same client and gateway addresses recur in every event
def _ip_version(text: str) -> int:
    """4 or 6 for a valid IP address, 0 otherwise."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return 0


# Only validity is checked, not one spelling: ipaddress's str() changed between Python versions
# (IPv4-mapped IPv6), and an upgrade must never make recorded events unreadable.
def _ip(path: str, text: str) -> int:
    version = _ip_version(text)
    if not version:
        _fail(path, f"invalid IP address {text!r}")
    return version


def _address(path: str, text: str) -> None:
    host, colon, port = text.rpartition(":")
    if not colon or re.fullmatch("[1-9][0-9]{0,4}", port) is None or int(port) > 65535:
        _fail(path, f"invalid address {text!r}: expected ip:port or [ipv6]:port")
    bracketed = host.startswith("[") and host.endswith("]")
    version = _ip(path, host[1:-1] if bracketed else host)
    if bracketed != (version == 6):  # RFC 3986 §3.2.2: IPv6 literals need brackets
        _fail(path, f"invalid address {text!r}: expected ip:port or [ipv6]:port")


def original_bytes(original: Original) -> bytes:
    """The bytes the source sent, which ``source.original_sha256`` digests."""
    if original.encoding == "base64":
        try:
            return base64.b64decode(original.data, validate=True)
        except binascii.Error as exc:
            _fail("$.original.data", f"invalid base64: {exc}")
    try:
        return original.data.encode()
    except UnicodeError as exc:  # a lone surrogate built in Python
        _fail("$.original.data", f"invalid UTF-8 text: {exc}")


def _sealed_digest(event: Event) -> bool:
    """Whether ``source.original_sha256`` is the keyed digest of a sealed original.

    A plain SHA-256 of a sealed original would let anyone confirm a guess of an erased record
    (a low-entropy line with one name in it), so a sealed original's digest is keyed by its
    subject's key (proctor.privacy.seal) and checked when the original is unsealed.
    """
    return event.sealed is not None and "original" in event.sealed.fields


def _original(event: Event) -> None:
    assert event.original is not None
    digest = hashlib.sha256(original_bytes(event.original)).hexdigest()
    claimed = event.source.original_sha256 if event.source is not None else None
    if claimed is None:
        _fail("$.source.original_sha256", "an event with `original` requires its SHA-256 here")
    if claimed != digest:
        _fail(
            "$.source.original_sha256",
            f"does not match `original`: expected {digest}, recorded {claimed}",
        )


def _lookup(event: Event, dotted: str) -> object:
    value: object = event
    for name in dotted.split("."):
        value = getattr(value, name, None)
    return value


def check_event(event: Event) -> None:
    """Run the checks msgspec constraints cannot express; raise ``EventError`` with the path."""
    _uuid7("$.id", event.id)
    _time("$.time", event.time)
    if (actor := event.actor) is not None:
        _time("$.actor.mfa_time", actor.mfa_time)
        if actor.ip is not None:
            _ip("$.actor.ip", actor.ip)
    if event.session is not None:
        _time("$.session.started", event.session.started)
    if event.target is not None:
        _slug("$.target.type", event.target.type)
    if event.risk is not None:
        for i, factor in enumerate(event.risk.factors):
            _slug(f"$.risk.factors[{i}].signal", factor.signal)
    if (source := event.source) is not None:
        _slug("$.source.system", source.system)
        if source.address is not None:
            _address("$.source.address", source.address)
    if event.original is not None and not _sealed_digest(event):
        _original(event)
    if (links := event.links) is not None:
        _uuid7("$.links.parent_id", links.parent_id)
        _uuid7("$.links.decision_id", links.decision_id)
    for key in event.attributes:
        _slug(f"$.attributes[{key!r}]", key)
    for i, flag in enumerate(event.flags):
        _slug(f"$.flags[{i}]", flag)
    for dotted in REQUIRED_FIELDS.get(event.kind, ()):
        if _lookup(event, dotted) is None:
            _fail(f"$.{dotted}", f"kind {event.kind!r} requires `{dotted}`")
    for key in REQUIRED_ATTRIBUTES.get(event.kind, ()):
        if not event.attributes.get(key):
            _fail(f"$.attributes[{key!r}]", f"kind {event.kind!r} requires attribute {key!r}")
