"""The request context: everything Proctor knows about one request when it decides it.

Decision events record it (``Event.input``), so it lives with the event schema.

The gateway (or ``proctor policy explain``/``test``) builds a :class:`RequestContext`; the risk
engine scores it and the policy engine decides it. The structs are strict: an unknown field,
a wrong type or a bad value is an error that names the field path (``$.principal.roles[0]``),
so a typo in a test case or a gateway bug can never quietly change a decision.

Coordinates are integers (degrees times 10^6) because the context is recorded in hashed
ledger events, which carry no floats.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from proctor.errors import InputError
from proctor.events.ids import UUID_PATTERN

__all__ = [
    "ACTION_CLASSES",
    "ActionClass",
    "ActionInfo",
    "Activity",
    "ContextError",
    "DecisionInput",
    "DeviceInfo",
    "ExternalSignals",
    "Geo",
    "NetworkInfo",
    "Principal",
    "RequestContext",
    "Resource",
    "Sensitivity",
    "SqlFeatures",
    "decode_context",
    "parse_rfc3339",
]

ActionClass = Literal["connect", "read", "write", "ddl", "admin", "transaction", "utility"]
ACTION_CLASSES: tuple[ActionClass, ...] = (
    "connect",
    "read",
    "write",
    "ddl",
    "admin",
    "transaction",
    "utility",
)
ResourceType = Literal["database", "table", "route", "service"]
Sensitivity = Literal["public", "internal", "confidential", "restricted"]

_Name = Annotated[str, Meta(min_length=1, max_length=256)]
_Names = Annotated[tuple[_Name, ...], Meta(max_length=256)]
_Label = Annotated[str, Meta(pattern="^[a-z][a-z0-9_.-]{0,63}$", max_length=64)]
_Time = Annotated[str, Meta(max_length=40, description="RFC 3339 date-time with offset or Z")]
_RFC3339_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class ContextError(InputError):
    """A request context that cannot be decided: the message names the field path."""


class _Part(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Settings every part shares (subclasses restate frozen and kw_only for type checkers).

    The same settings as the event's parts (``omit_defaults``: a field equal to its default
    is not written), because a decision event records its request context.
    """


class Geo(_Part, frozen=True, kw_only=True):
    """Where an IP address is, from a GeoIP database; coordinates are degrees times 10^6."""

    country: Annotated[str, Meta(pattern="^[A-Z]{2}$", max_length=2)] | None = None
    city: Annotated[str, Meta(max_length=256)] | None = None
    lat_e6: Annotated[int, Meta(ge=-90_000_000, le=90_000_000)] | None = None
    lon_e6: Annotated[int, Meta(ge=-180_000_000, le=180_000_000)] | None = None
    asn: Annotated[int, Meta(ge=0, le=2**32 - 1)] | None = None


class Principal(_Part, frozen=True, kw_only=True):
    """Who asks: a person, an AI agent or a service, and how they proved it."""

    id: _Name
    kind: Literal["human", "agent", "service"] = "human"
    display_name: _Name | None = None
    roles: _Names = ()
    groups: _Names = ()
    attributes: Annotated[
        dict[_Label, Annotated[str, Meta(max_length=256)]], Meta(max_length=64)
    ] = msgspec.field(default_factory=dict)
    auth_method: Literal["password", "scram", "jwt", "mtls", "trust", "none"] = "none"
    mfa: bool = False
    mfa_time: _Time | None = None
    token_issuer: _Name | None = None


class DeviceInfo(_Part, frozen=True, kw_only=True):
    """The client device, as an identity provider or MDM reports it."""

    id: _Name | None = None
    managed: bool = False
    compliant: bool = False
    user_agent: Annotated[str, Meta(max_length=512)] | None = None


class NetworkInfo(_Part, frozen=True, kw_only=True):
    """Where the request comes from: address, configured labels (``corp``, ``vpn``) and geo."""

    ip: Annotated[str, Meta(max_length=64)] | None = None
    labels: Annotated[tuple[_Label, ...], Meta(max_length=64)] = ()
    geo: Geo | None = None


class Resource(_Part, frozen=True, kw_only=True):
    """What is touched: a database, a table, an HTTP route or a service."""

    type: ResourceType
    name: _Name
    database: _Name | None = None
    objects: _Names = ()
    sensitivity: Sensitivity | None = None
    """From the caller, else from the configured map (``RiskEngine.enrich``), else internal."""


class SqlFeatures(_Part, frozen=True, kw_only=True):
    """What the SQL analysis found in a statement (filled by the gateway from pglast)."""

    statement_count: Annotated[int, Meta(ge=0, le=10_000)] = 1
    has_where: bool = True
    objects: _Names = ()
    functions: _Names = ()
    writes_in_cte: bool = False
    copy_program: bool = False


class ActionInfo(_Part, frozen=True, kw_only=True):
    """What is attempted: its class, the operation (``SELECT``, ``DROP TABLE``) and SQL facts."""

    class_: ActionClass = msgspec.field(name="class")
    operation: Annotated[str, Meta(max_length=64)] | None = None
    sql: SqlFeatures | None = None


class Activity(_Part, frozen=True, kw_only=True):
    """What the session has done so far (filled by the gateway): for volume and rate signals."""

    session_rows: Annotated[int, Meta(ge=0, le=2**53 - 1)] = 0
    statements_per_minute: Annotated[int, Meta(ge=0, le=2**53 - 1)] | None = None


class ExternalSignals(_Part, frozen=True, kw_only=True):
    """Risk reported by others: the identity provider, device management (CAEP-style)."""

    idp_risk: Literal["none", "low", "medium", "high"] = "none"
    device_compliance_lost: bool = False


class RequestContext(_Part, frozen=True, kw_only=True):
    """One request to decide: principal, action, resource, time, device and network."""

    principal: Principal
    action: ActionInfo
    resource: Resource
    time: _Time
    device: DeviceInfo | None = None
    network: NetworkInfo | None = None
    activity: Activity = Activity()
    signals: ExternalSignals = ExternalSignals()
    session_start: bool = False
    """True for the request that opens a session (its features are what baselines learn)."""
    session_id: Annotated[str, Meta(pattern=UUID_PATTERN, max_length=36)] | None = None

    def __post_init__(self) -> None:
        for path, text in (
            ("$.time", self.time),
            ("$.principal.mfa_time", self.principal.mfa_time),
        ):
            if text is not None:
                try:
                    parse_rfc3339(text)
                except ContextError as exc:
                    raise ValueError(f"{exc} - at `{path}`") from None
        if self.network is not None and self.network.ip is not None:
            try:
                ipaddress.ip_address(self.network.ip)
            except ValueError:
                raise ValueError(
                    f"invalid IP address {self.network.ip!r} - at `$.network.ip`"
                ) from None


class DecisionInput(_Part, frozen=True, kw_only=True):
    """What a decision was made from, as recorded (minus ``redacted`` fields): its replay input."""

    context: RequestContext
    approved: bool = False
    redacted: Annotated[tuple[Annotated[str, Meta(max_length=128)], ...], Meta(max_length=64)] = ()
    timezone: Annotated[str, Meta(max_length=64)] = "UTC"
    mfa_fresh_s: Annotated[int, Meta(ge=0, le=2**31 - 1)] = 900


def parse_rfc3339(text: str) -> int:
    """An RFC 3339 date-time (any offset, up to 9 fractional digits) → Unix nanoseconds."""
    m = _RFC3339_RE.fullmatch(text)
    if m is None:
        raise ContextError(f"invalid time {text!r}: expected RFC 3339, like 2026-11-23T10:15:30Z")
    day, clock, frac, offset = m.groups()
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        moment = _dt.datetime.fromisoformat(f"{day}T{clock}{zone}")
    except ValueError as exc:
        raise ContextError(f"invalid time {text!r}: {exc}") from None
    delta = moment - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    return seconds * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def decode_context(data: bytes | str | Mapping[str, Any]) -> RequestContext:
    """A RequestContext from JSON text or an already parsed mapping (YAML, a test case)."""
    try:
        if isinstance(data, bytes | str):
            return msgspec.json.decode(data, type=RequestContext)
        return msgspec.convert(data, type=RequestContext)
    except msgspec.ValidationError as exc:
        raise ContextError(f"invalid request context: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ContextError(f"request context is not valid JSON: {exc}") from None
