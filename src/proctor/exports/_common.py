"""What every export format derives the same way: severity, a one-line summary, times, addresses.

Keeping these in one place means an event is "high" in OCSF, ECS, CEF and syslog alike, and
the summary a SIEM shows is the same sentence whichever format carried it.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from typing import Final

from proctor import __version__
from proctor.events.ids import parse_time
from proctor.events.schema import Event

__all__ = [
    "PRODUCT",
    "VENDOR",
    "VERSION",
    "Endpoint",
    "Level",
    "db_target",
    "http_target",
    "level",
    "parse_endpoint",
    "summary",
    "time_ms",
    "time_ns",
]

PRODUCT: Final = "Proctor"
VENDOR: Final = "Proctor"
VERSION: Final = __version__

# target.type values that name a database (Datastore Activity, ECS category "database") and
# those that name an HTTP-style API (API Activity, ECS category "api"). Anything else is
# mapped as a generic event; docs/exports.md lists the table.
DB_TYPES: Final = frozenset(
    {
        "postgres",
        "postgresql",
        "mysql",
        "mariadb",
        "sqlserver",
        "mssql",
        "oracle",
        "sqlite",
        "cockroachdb",
        "mongodb",
        "redis",
        "clickhouse",
        "snowflake",
        "bigquery",
    }
)
HTTP_TYPES: Final = frozenset({"k8s", "kubernetes", "http", "https", "grpc", "mcp", "api"})


class Level(enum.IntEnum):
    """Proctor's one severity scale; its values are OCSF ``severity_id`` 1-5."""

    INFO = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5


_RISK_LEVEL: Final = {
    "low": Level.LOW,
    "medium": Level.MEDIUM,
    "high": Level.HIGH,
    "critical": Level.CRITICAL,
}


def level(event: Event) -> Level:
    """The event's severity: its risk level, raised for denials, failures and data removal."""
    result = Level.INFO
    if event.risk is not None:
        result = max(result, _RISK_LEVEL[event.risk.level])
    decision = event.decision
    if decision is not None and event.kind != "ingest":
        if decision.effect == "deny":
            result = max(result, Level.MEDIUM)
        elif decision.effect == "step_up":
            result = max(result, Level.LOW)
    if event.outcome is not None:
        if event.outcome.status == "revoked":
            result = max(result, Level.MEDIUM)
        elif event.outcome.status == "error":
            result = max(result, Level.LOW)
    if event.kind == "auth.failed":
        result = max(result, Level.MEDIUM)
    elif event.kind in ("erasure", "retention.pruned", "policy.reloaded"):
        result = max(result, Level.LOW)
    return result


@functools.lru_cache(maxsize=1024)
def _second_ns(prefix: str) -> int:
    return parse_time(f"{prefix}.000000000Z")


def time_ns(text: str) -> int:
    """An event time (RFC 3339 UTC, 9 digits) as nanoseconds since the epoch.

    Event times were checked when the event was decoded, and an export's events share their
    seconds, so the date is parsed once per second and the nine digits are added.
    """
    frac = text[20:29]
    if (
        len(text) == 30
        and text[19] == "."
        and text[29] == "Z"
        and frac.isascii()
        and frac.isdigit()
    ):
        return _second_ns(text[:19]) + int(frac)  # _second_ns checks the rest
    return parse_time(text)  # raises EventError for anything else


def time_ms(text: str) -> int:
    """An event time as integer milliseconds since the epoch (OCSF ``timestamp_t``)."""
    return time_ns(text) // 1_000_000


def db_target(event: Event) -> bool:
    """Whether the event is about a database."""
    return event.target is not None and event.target.type in DB_TYPES


def http_target(event: Event) -> bool:
    """Whether the event is about an HTTP-style API (Kubernetes, HTTP, MCP)."""
    return event.target is not None and event.target.type in HTTP_TYPES


class Endpoint:
    """An ``ip:port`` or ``[ipv6]:port`` address (``Source.address``) split in two."""

    __slots__ = ("ip", "port", "version")

    def __init__(self, ip: str, port: int, version: int) -> None:
        self.ip = ip
        self.port = port
        self.version = version


def parse_endpoint(address: str | None) -> Endpoint | None:
    """Split an address the event schema already validated; None when absent."""
    return None if address is None else _endpoint(address)


@functools.lru_cache(maxsize=1024)  # a gateway's events share a handful of addresses
def _endpoint(address: str) -> Endpoint | None:
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        version = ipaddress.ip_address(host).version
        return Endpoint(host, int(port), version)
    except ValueError:  # not reachable for a decoded event; exports never fail on it
        return None


def _who(event: Event) -> str:
    return event.actor.id if event.actor is not None else "unknown actor"


def _where(event: Event) -> str:
    target = event.target
    if target is None:
        return ""
    name = target.name or target.type
    return f" on {name}/{target.database}" if target.database else f" on {name}"


def summary(event: Event) -> str:  # noqa: PLR0911 (one sentence per kind, as a table)
    """One human sentence for the event (CEF ``msg``, ECS ``message``, OCSF ``message``)."""
    kind, attrs = event.kind, event.attributes
    if kind == "session.start":
        return f"{_who(event)} started a session{_where(event)}"
    if kind == "session.end":
        return f"session of {_who(event)} ended{_where(event)}"
    if kind == "session.revoked":
        reasons = "; ".join(event.decision.reasons) if event.decision else "revoked"
        return f"session of {_who(event)} revoked{_where(event)}: {reasons}"
    if kind == "auth.failed":
        why = f": {event.outcome.message}" if event.outcome and event.outcome.message else ""
        return f"authentication failed for {_who(event)}{_where(event)}{why}"
    if kind in ("query", "ingest"):
        what = event.action.operation or event.action.class_ if event.action else "access"
        return f"{_who(event)} {what}{_where(event)}"
    if kind == "decision" and event.decision is not None:
        reasons = "; ".join(event.decision.reasons)
        return f"{event.decision.effect} {_who(event)}{_where(event)}: {reasons}"
    if kind == "outcome" and event.outcome is not None:
        out = event.outcome
        detail = f": {out.message}" if out.message else ""
        rows = f", {out.rows} rows" if out.rows is not None else ""
        return f"{out.status}{rows} for {_who(event)}{_where(event)}{detail}"
    if kind == "policy.reloaded":
        return f"policy revision {attrs.get('policy.revision', '?')} active"
    if kind == "retention.pruned":
        return f"entry bodies below index {attrs.get('retention.below_index', '?')} pruned"
    if kind == "erasure":
        return f"subject key {attrs.get('erasure.key_id', '?')} destroyed"
    if kind == "checkpoint":
        return f"checkpoint signed at size {attrs.get('checkpoint.size', '?')}"
    return kind
