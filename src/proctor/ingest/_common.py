"""What every normalizer shares: the receive context, per-item results, and the event builder.

A normalizer maps one source record at a time into a :class:`Draft`, which collects attributes,
flags and the names of cut fields, and whose :meth:`Draft.build` returns an ``Event`` that has
passed every schema check (including the ``Meta`` limits, which only decoding enforces: the
built event is run through ``canonical_bytes``). So a returned event is ready for the ledger,
and a record that cannot become one is an :class:`IngestError`, never half an event.

Limits (docs/ingest.md): identifying values (ids, names, groups, objects) are never cut, a
record whose identity does not fit the schema is refused; free text (messages, reasons, user
agents, statements) is cut to the schema's limit, flagged ``truncated`` and named in the
``proctor.truncated`` attribute. Error messages never quote a record's content (it may carry
secrets); they name the item, line, field and byte offset.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from proctor.errors import EventError, InputError, UsageError
from proctor.events import (
    Action,
    Actor,
    Clock,
    Decision,
    Event,
    Original,
    Outcome,
    Source,
    Target,
    canonical_bytes,
    format_time,
    new_event_id,
)
from proctor.events.schema import ORIGINAL_MAX_CHARS

__all__ = [
    "MAX_NAME",
    "MAX_OPERATION",
    "MAX_STATEMENT",
    "MAX_TEXT",
    "Draft",
    "IngestError",
    "Received",
    "Result",
    "Skipped",
    "compressed_ip",
    "name",
    "names",
    "rfc3339_ns",
    "utc_ns",
]

MAX_NAME: Final = 256
"""Schema limit of names (actor id, groups, target name, database, objects)."""
MAX_TEXT: Final = 4096
"""Schema limit of free text (attribute values, reasons, outcome messages)."""
MAX_OPERATION: Final = 64
"""Schema limit of ``action.operation``."""
MAX_STATEMENT: Final = 65536
"""Schema limit of ``action.statement``."""
DEFAULT_FUTURE_SKEW_NS: Final = 60 * 1_000_000_000


class IngestError(InputError):
    """A source record (or a whole body) that could not be normalized.

    ``item`` is the record's index in its batch, ``line`` the first line it starts on (line
    based sources), ``field`` the source's field (``$.objectRef.resource``, ``TIMESTAMP``,
    ``log_time``) and ``offset`` a byte offset inside the record, where known.
    """

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        item: int | None = None,
        line: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.field = field
        self.item = item
        self.line = line
        self.offset = offset
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = [f"item {self.item}"] if self.item is not None else []
        if self.line is not None:
            where.append(f"line {self.line}")
        text = self.reason
        if self.offset is not None:
            text = f"{text} (at byte {self.offset})"
        if self.field is not None:
            text = f"{self.field}: {text}"
        return f"{', '.join(where)}: {text}" if where else text

    def at(self, item: int, line: int | None = None) -> IngestError:
        """The same error, located at ``item`` (and ``line``) of a batch."""
        return IngestError(self.reason, field=self.field, item=item, line=line, offset=self.offset)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record of a batch that is not for this normalizer (a non-AUDIT log line)."""

    item: int
    line: int | None
    reason: str


Result: TypeAlias = Event | IngestError | Skipped
"""One entry of a batch's result list, in input order."""


@dataclass(frozen=True, kw_only=True)
class Received:
    """The receiving side of a batch: when it arrived, at which ingest instance, from whom."""

    at_ns: int
    """Receive time, nanoseconds since the Unix epoch (``attributes["proctor.received_at"]``)."""
    gateway: str | None = None
    """Name of the ingest instance (``source.gateway``)."""
    address: str | None = None
    """The sender, ``ip:port`` or ``[ipv6]:port`` (``source.address``)."""
    clock: Clock = field(default_factory=lambda: Clock(source="system"))
    """Quality of the receive clock; a source's own time is recorded with this clock."""
    future_skew_ns: int = DEFAULT_FUTURE_SKEW_NS
    """A record timed further ahead of ``at_ns`` than this is flagged ``time_skew``."""

    def __post_init__(self) -> None:
        # The caller's values go into every event: check them once, as a usage error.
        try:
            probe = Event(
                id=new_event_id(),
                kind="ingest",
                time=format_time(self.at_ns),
                clock=self.clock,
                source=Source(
                    system="proctor",
                    gateway=self.gateway,
                    address=self.address,
                    original_sha256="0" * 64,
                ),
            )
            canonical_bytes(probe)
        except (EventError, ValueError) as exc:
            raise UsageError(f"receive context does not fit an event: {exc}") from None
        if self.future_skew_ns < 0:
            raise UsageError("future_skew_ns must not be negative")


_EPOCH_ORDINAL: Final = _dt.date(1970, 1, 1).toordinal()


def utc_ns(moment: _dt.datetime, fraction_ns: int = 0) -> int:
    """Nanoseconds since the epoch of an aware ``moment`` (its microseconds are ignored)."""
    offset = moment.utcoffset()
    assert offset is not None, "utc_ns needs an aware datetime"
    days = moment.toordinal() - _EPOCH_ORDINAL
    seconds = days * 86_400 + moment.hour * 3600 + moment.minute * 60 + moment.second
    seconds -= offset.days * 86_400 + offset.seconds
    return seconds * 1_000_000_000 + fraction_ns


# RFC 3339 §5.6 date-time, validated as one token before its parts are read (the parse of the
# parts is datetime's, which also refuses impossible dates and second 60).
_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def rfc3339_ns(text: str, field: str) -> int:
    """An RFC 3339 date-time (any offset, up to 9 fractional digits) as epoch nanoseconds.

    Leap seconds (``:60``) are refused: the event schema has none.
    """
    found = _RFC3339.fullmatch(text)
    if found is None:
        raise IngestError("expected an RFC 3339 date-time", field=field)
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    if fraction is not None and len(fraction) > 9:
        raise IngestError("more than 9 fractional digits", field=field)
    if zone in ("Z", "z"):
        tz = _dt.UTC
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise IngestError("invalid UTC offset", field=field)
        sign = -1 if zone[0] == "-" else 1
        tz = _dt.timezone(sign * _dt.timedelta(hours=hours, minutes=minutes))
    try:
        moment = _dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz
        )
    except ValueError:
        raise IngestError(
            "not a valid date and time (leap seconds are refused)", field=field
        ) from None
    ns = utc_ns(moment, int((fraction or "0").ljust(9, "0")))
    try:
        format_time(ns)
    except ValueError:
        raise IngestError("outside years 0001-9999 in UTC", field=field) from None
    return ns


def compressed_ip(text: str) -> str | None:
    """``text`` as a compressed lowercase IP address, or None when it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def name(text: str, field: str, limit: int = MAX_NAME) -> str:
    """An identifying value, refused (never cut) when longer than the schema allows."""
    if len(text) > limit:
        raise IngestError(f"longer than {limit} characters", field=field)
    return text


def names(items: list[str], field: str, *, limit: int = 256) -> tuple[str, ...]:
    """A list of identifying values (groups, objects), refused when it does not fit."""
    if len(items) > limit:
        raise IngestError(f"more than {limit} entries", field=field)
    return tuple(name(item, f"{field}[{i}]") for i, item in enumerate(items))


def _path(message: str) -> str:
    """The field path at the end of an ``EventError`` message (``... - at `$.x` ``)."""
    _, _, tail = message.rpartition(" - at `")
    return tail.rstrip("`") or "$"


class Draft:
    """One event of kind ``ingest`` while a record is mapped into it."""

    def __init__(self, *, system: str, fmt: str, raw: bytes, received: Received) -> None:
        self.system = system
        self.fmt = fmt
        self.raw = raw
        self.received = received
        self.attributes: dict[str, str] = {}
        self.flags: list[str] = []
        self.truncated: list[str] = []

    def flag(self, flag: str) -> None:
        """Add a data-quality flag (once)."""
        if flag not in self.flags:
            self.flags.append(flag)

    def text(self, where: str, value: str, limit: int = MAX_TEXT) -> str:
        """Free text cut to ``limit`` characters; a cut is flagged and named."""
        if len(value) <= limit:
            return value
        self.flag("truncated")
        self.truncated.append(where)
        return value[:limit]

    def attr(self, key: str, value: str | int | None) -> None:
        """Set attribute ``key`` unless the value is missing; long values are cut."""
        if value is None or value == "":
            return
        self.attributes[key] = self.text(f"attributes.{key}", str(value))

    def _original(self) -> Original:
        try:
            original = Original(format=self.fmt, data=self.raw.decode("utf-8"))
        except UnicodeDecodeError:  # bytes that are not UTF-8 are kept exactly, as base64
            data = base64.b64encode(self.raw).decode("ascii")
            original = Original(format=self.fmt, encoding="base64", data=data)
        if len(original.data) > ORIGINAL_MAX_CHARS:
            raise IngestError(
                f"larger than an event's original can hold ({ORIGINAL_MAX_CHARS} characters "
                f"as {original.encoding})",
                field="$",
            )
        return original

    def build(
        self,
        *,
        time_ns: int | None,
        actor: Actor | None = None,
        target: Target | None = None,
        action: Action | None = None,
        decision: Decision | None = None,
        outcome: Outcome | None = None,
    ) -> Event:
        """The checked event; anything that does not fit is an :class:`IngestError`."""
        received = self.received
        if time_ns is None:  # the source gave no time: the receive time stands in, marked
            time_ns = received.at_ns
            self.flag("time_from_receipt")
        elif time_ns > received.at_ns + received.future_skew_ns:
            self.flag("time_skew")
        self.attr("proctor.received_at", format_time(received.at_ns))
        if self.truncated:
            self.attr("proctor.truncated", ",".join(self.truncated))
        original = self._original()
        try:
            event = Event(
                id=new_event_id(),
                kind="ingest",
                time=format_time(time_ns),
                clock=received.clock,
                actor=actor,
                target=target,
                action=action,
                decision=decision,
                outcome=outcome,
                source=Source(
                    system=self.system,
                    gateway=received.gateway,
                    address=received.address,
                    original_sha256=hashlib.sha256(self.raw).hexdigest(),
                ),
                original=original,
                attributes=self.attributes,
                flags=tuple(self.flags),
            )
            canonical_bytes(event)  # the Meta limits and types, on the exact ledger bytes
        except EventError as exc:
            # The schema's message may quote the value; name only the event field.
            raise IngestError(
                "the mapped value does not fit proctor.access/v1",
                field=f"event {_path(str(exc))}",
            ) from None
        return event
