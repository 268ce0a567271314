"""PostgreSQL server log records: ``csvlog`` files and ``stderr`` lines with a log_line_prefix.

Both readers cut a batch of bytes into records and keep each record's exact bytes (its
``original``) and first line number. A ``csvlog`` record is one CSV row (the ``csv`` module;
quoted fields span lines); a ``stderr`` record is one line plus the lines PostgreSQL continued
it on, which start with a tab (elog.c inserts one after each newline of a message).

``log_line_prefix`` is a template of literal text and ``%`` escapes set by the operator.
:class:`LinePrefix` compiles it once into a matcher built from one small pattern per escape;
the line's severity and its ``:  `` separator (``LOG:  AUDIT: …``) anchor the end, so text
escapes (``%u``, ``%d``, ``%a``) stop at the first point where the rest of the prefix fits.
"""

from __future__ import annotations

import csv
import datetime as _dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final
from zoneinfo import ZoneInfo

from proctor.errors import UsageError
from proctor.events import format_time
from proctor.events.schema import ORIGINAL_MAX_CHARS
from proctor.ingest._common import IngestError, utc_ns

__all__ = ["LinePrefix", "LogRecord", "epoch_ns", "log_time_ns", "read_csvlog", "read_stderr"]

# A csvlog field may hold a whole statement; the csv module's default cap (128 KiB) is lower
# than what an event's original can keep. The cap is process-wide, so it is only ever raised.
csv.field_size_limit(max(csv.field_size_limit(), ORIGINAL_MAX_CHARS + 1))

# csvlog columns (PostgreSQL 15 "Using CSV-Format Log Output"); 13 added backend_type, 14
# leader_pid and query_id. The first 23 are the same since 9.0.
CSV_COLUMNS: Final = (
    "log_time",
    "user_name",
    "database_name",
    "process_id",
    "connection_from",
    "session_id",
    "session_line_num",
    "command_tag",
    "session_start_time",
    "virtual_transaction_id",
    "transaction_id",
    "error_severity",
    "sql_state_code",
    "message",
    "detail",
    "hint",
    "internal_query",
    "internal_query_pos",
    "context",
    "query",
    "query_pos",
    "location",
    "application_name",
    "backend_type",
    "leader_pid",
    "query_id",
)
_MIN_COLUMNS: Final = 23


@dataclass(frozen=True, kw_only=True)
class LogRecord:
    """One server log record: its bytes, where it starts, and its fields by csvlog name."""

    raw: bytes
    line: int
    fields: dict[str, str] = field(default_factory=dict)
    """Values by csvlog column name (``log_time``, ``user_name``, ``message``…); a stderr
    line's prefix fills the ones its escapes name, plus ``log_epoch`` for ``%n``."""


def _lines(data: bytes) -> list[bytes]:
    """``data`` cut after each LF, every byte kept."""
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


class _LineFeed:
    """The lines of a batch for ``csv.reader``, counting how many it has taken."""

    def __init__(self, lines: list[bytes], encoding: str) -> None:
        self.lines = lines
        self.encoding = encoding
        self.taken = 0

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.taken >= len(self.lines):
            raise StopIteration
        line = self.lines[self.taken]
        self.taken += 1
        # Undecodable bytes become lone surrogates, so the record boundary is still found;
        # the record holding them is refused afterwards (see read_csvlog).
        return line.decode(self.encoding, "surrogateescape")


def _clean(values: list[str], encoding: str) -> list[str]:
    for value in values:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise IngestError(f"not valid {encoding}", field="$") from None
    return values


def read_csvlog(
    data: bytes, *, encoding: str = "utf-8", first_line: int = 1
) -> Iterator[LogRecord | IngestError]:
    """The records of a csvlog batch in order (blank lines are not records).

    A row that is not CSV, has too few or too many columns, or holds bytes that are not
    ``encoding`` is an ``IngestError`` with its line; the rows after it still read.
    """
    lines = _lines(data)
    feed = _LineFeed(lines, encoding)
    reader = csv.reader(feed, strict=True)
    while True:
        start = feed.taken
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # bad quoting; the reader resumes on the next line
            yield IngestError(f"not a CSV record ({exc})", field="$", line=first_line + start)
            continue
        if not row:
            continue
        raw = b"".join(lines[start : feed.taken])
        line = first_line + start
        if not _MIN_COLUMNS <= len(row) <= len(CSV_COLUMNS):
            yield IngestError(
                f"expected {_MIN_COLUMNS} to {len(CSV_COLUMNS)} csvlog columns, got {len(row)}",
                field="$",
                line=line,
            )
            continue
        try:
            values = _clean(row, encoding)
        except IngestError as exc:
            yield IngestError(exc.reason, field=exc.field, line=line)
            continue
        yield LogRecord(raw=raw, line=line, fields=dict(zip(CSV_COLUMNS, values, strict=False)))


# --- stderr lines and log_line_prefix ---------------------------------------------------

# Every token is bounded, so a line that does not match (a megabyte of statement) costs at
# most a few thousand steps per text escape, never a backtracking blow-up. Names are at most
# NAMEDATALEN - 1 = 63 bytes (user, database, application name); host names 255.
_TEXT: Final = ".{0,63}?"
_STAMP: Final = "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
_ZONE: Final = "[A-Za-z0-9:+-]{1,16}"
# escape → (field name, token pattern). Session-only escapes print nothing outside a session,
# so their patterns accept the empty string.
_ESCAPES: Final[dict[str, tuple[str, str]]] = {
    "a": ("application_name", _TEXT),
    "u": ("user_name", _TEXT),
    "d": ("database_name", _TEXT),
    "r": ("remote", r"\[local\]|[^\s()]{1,255}\([0-9]{1,5}\)|"),
    "h": ("remote_host", r"[^\s]{0,255}"),
    "b": ("backend_type", _TEXT),
    "p": ("process_id", "[0-9]{1,10}"),
    "P": ("leader_pid", "[0-9]{0,10}"),
    "t": ("log_time", f"{_STAMP} {_ZONE}"),
    "m": ("log_time", rf"{_STAMP}\.[0-9]{{3}} {_ZONE}"),
    "n": ("log_epoch", r"[0-9]{1,12}\.[0-9]{3}"),
    "i": ("command_tag", _TEXT),
    "e": ("sql_state_code", "[0-9A-Z]{5}"),
    "c": ("session_id", r"[0-9a-f]{1,16}\.[0-9a-f]{1,16}"),
    "l": ("session_line_num", "[0-9]{1,20}"),
    "s": ("session_start_time", f"{_STAMP} {_ZONE}"),
    "v": ("virtual_transaction_id", r"[^\s]{0,32}"),
    "x": ("transaction_id", "[0-9]{1,20}"),
    "Q": ("query_id", "-?[0-9]{1,20}"),
}
# After the prefix: the severity (English server messages) and two spaces (elog.c).
_MESSAGE: Final = "(?P<error_severity>[A-Z]{1,10}[0-9]?):  (?P<message>.*)"


class LinePrefix:
    """A compiled ``log_line_prefix``: supported escapes are those in ``_ESCAPES`` plus ``%q``
    (non-session processes stop there) and ``%%``. Anything else is a :class:`UsageError`."""

    def __init__(self, template: str) -> None:
        self.template = template
        head: list[str] = []
        tail: list[str] = []
        parts = head
        self._names: list[str] = []
        i = 0
        while i < len(template):
            char = template[i]
            if char != "%":
                parts.append(re.escape(char))
                i += 1
                continue
            if i + 1 >= len(template):
                raise UsageError("log_line_prefix ends with a lone '%'")
            escape = template[i + 1]
            i += 2
            if escape == "%":
                parts.append("%")
            elif escape == "q":
                if parts is tail:
                    raise UsageError("log_line_prefix has %q twice")
                parts = tail
            elif escape == "-" or escape.isdigit():
                raise UsageError("log_line_prefix padding (like %-10u) is not supported")
            elif escape in _ESCAPES:
                field_name, pattern = _ESCAPES[escape]
                self._names.append(field_name)
                parts.append(f"({pattern})")
            else:
                raise UsageError(f"log_line_prefix escape %{escape} is not supported")
        pattern = "".join(head) + (f"(?:{''.join(tail)})?" if tail else "") + _MESSAGE
        self._regex = re.compile(pattern)

    def match(self, line: str) -> dict[str, str] | None:
        """The prefix fields, severity and message of a line's first line, or None."""
        found = self._regex.fullmatch(line)
        if found is None:
            return None
        fields = {n: v for n, v in zip(self._names, found.groups(), strict=False) if v}
        fields["error_severity"] = found["error_severity"]
        fields["message"] = found["message"]
        remote = fields.pop("remote", None)
        if remote and remote != "[local]":
            host, _, port = remote.rpartition("(")
            fields["remote_host"], fields["remote_port"] = host, port.rstrip(")")
        elif remote:
            fields["remote_host"] = remote
        return fields


def read_stderr(
    data: bytes, prefix: LinePrefix, *, encoding: str = "utf-8", first_line: int = 1
) -> Iterator[LogRecord | IngestError | tuple[int, str]]:
    """The records of a stderr batch; ``(line, reason)`` for lines that are not one."""
    lines = _lines(data)
    i = 0
    while i < len(lines):
        start = i
        i += 1
        while i < len(lines) and lines[i].startswith(b"\t"):
            i += 1
        raw = b"".join(lines[start:i])
        line = first_line + start
        if lines[start].startswith(b"\t"):
            yield line, "continues a record that started before this batch"
            continue
        if not raw.strip():
            continue
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            yield IngestError(f"not valid {encoding}", field="$", line=line)
            continue
        first, *rest = text.removesuffix("\n").split("\n")
        fields = prefix.match(first.removesuffix("\r"))
        if fields is None:
            if "AUDIT: " in text:  # an audit record this prefix cannot read: never drop quietly
                yield IngestError("does not match log_line_prefix", field="$", line=line)
            else:
                yield line, "does not match log_line_prefix"
            continue
        # elog.c's append_with_tabs put a tab after every newline of the message.
        fields["message"] = "\n".join([fields["message"], *(r[1:] for r in rest)])
        yield LogRecord(raw=raw, line=line, fields=fields)


# --- times ----------------------------------------------------------------------------

_LOG_TIME: Final = re.compile(
    "([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\\.([0-9]{1,6}))? "
    "([A-Za-z]{1,10}|[+-][0-9]{2}(?::?[0-9]{2})?)"
)
_UTC_NAMES: Final = frozenset({"UTC", "GMT", "UCT", "Z"})


def log_time_ns(text: str, field_name: str, zone: ZoneInfo | None) -> int:
    """A server log time (``2026-11-23 11:26:40.123 CET``) as epoch nanoseconds.

    The server writes ``log_timezone``'s abbreviation: UTC/GMT and numeric offsets are read
    as such; any other abbreviation needs that zone (``zone``) and must be one it uses at that
    local time, which also settles the hour a DST change repeats.
    """
    found = _LOG_TIME.fullmatch(text)
    if found is None:
        raise IngestError("expected a PostgreSQL log time", field=field_name)
    year, month, day, hour, minute, second, fraction, abbrev = found.groups()
    parts = (int(year), int(month), int(day), int(hour), int(minute), int(second))
    fraction_ns = int((fraction or "0").ljust(9, "0"))
    try:
        if abbrev in _UTC_NAMES:
            moment = _dt.datetime(*parts, tzinfo=_dt.UTC)
        elif abbrev[0] in "+-":
            digits = abbrev[1:].replace(":", "")
            offset = _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            sign = -1 if abbrev[0] == "-" else 1
            moment = _dt.datetime(*parts, tzinfo=_dt.timezone(sign * offset))
        elif zone is None:
            raise IngestError(
                "a time zone abbreviation other than UTC needs the server's log_timezone",
                field=field_name,
            )
        else:
            candidates = [_dt.datetime(*parts, tzinfo=zone, fold=fold) for fold in (0, 1)]
            matching = [m for m in candidates if m.tzname() == abbrev]
            if not matching:
                raise IngestError(
                    "the time zone abbreviation is not log_timezone's at that time",
                    field=field_name,
                )
            moment = matching[0]
    except ValueError:
        raise IngestError("not a valid date and time", field=field_name) from None
    ns = utc_ns(moment, fraction_ns)
    try:
        format_time(ns)
    except ValueError:
        raise IngestError("outside years 0001-9999 in UTC", field=field_name) from None
    return ns


def epoch_ns(text: str, field_name: str) -> int:
    """``%n``: seconds since the epoch with milliseconds (``1700000000.123``)."""
    seconds, _, millis = text.partition(".")
    ns = int(seconds) * 1_000_000_000 + int(millis) * 1_000_000
    try:
        format_time(ns)
    except ValueError:
        raise IngestError("outside years 0001-9999 in UTC", field=field_name) from None
    return ns
