"""pgaudit records in PostgreSQL server logs as ``proctor.access/v1`` ingest events.

pgaudit writes each audit entry as a server log message ``AUDIT: <AUDIT_TYPE>,<STATEMENT_ID>,
<SUBSTATEMENT_ID>,<CLASS>,<COMMAND>,<OBJECT_TYPE>,<OBJECT_NAME>,<STATEMENT>,<PARAMETER>``
(CSV quoting; a tenth field ``ROWS`` with ``pgaudit.log_rows``); who, where and when come from
the log record around it. :func:`normalize_pgaudit_csvlog` reads ``csvlog`` files and
:func:`normalize_pgaudit_stderr` plain ``stderr`` logs with a :class:`LinePrefix`; both return
one result per log record: an event, an error, or :class:`Skipped` for a record that is not
an audit entry.

Statements are recorded redacted. The text goes through the gateway's analysis
(``gateway.postgres.sql.analyze``: PostgreSQL's parser via pglast) and its normalized form
(constants as ``$n``), then through PostgreSQL's own lexer (``pglast.parser.scan``), which
replaces any constant the normalizer left (it keeps ``EXECUTE p('…')`` arguments and DDL
defaults) and drops comments. A statement pglast cannot parse is redacted by the lexer alone
(flag ``statement_unparsed``), as is one too long to parse safely (``MAX_ANALYSED_TOKENS``);
one the lexer cannot read is left out (``statement_omitted``).
Parameters (``PARAMETER``) are never mapped. The original keeps the full text.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pglast

from proctor.errors import UsageError
from proctor.events import Action, Actor, Event, Outcome, Target
from proctor.events.context import ActionClass
from proctor.gateway.postgres.sql import Analysis, SqlError, analyze, redact
from proctor.ingest._common import (
    MAX_NAME,
    MAX_OPERATION,
    MAX_STATEMENT,
    Draft,
    IngestError,
    Received,
    Result,
    Skipped,
    compressed_ip,
    name,
    names,
)
from proctor.ingest._pglog import (
    LinePrefix,
    LogRecord,
    epoch_ns,
    log_time_ns,
    read_csvlog,
    read_stderr,
)

__all__ = [
    "LinePrefix",
    "PgauditOptions",
    "normalize_pgaudit_csvlog",
    "normalize_pgaudit_stderr",
    "redact_statement",
]

_AUDIT: Final = "AUDIT: "
_FIELDS: Final = (
    "AUDIT_TYPE",
    "STATEMENT_ID",
    "SUBSTATEMENT_ID",
    "CLASS",
    "COMMAND",
    "OBJECT_TYPE",
    "OBJECT_NAME",
    "STATEMENT",
    "PARAMETER",
    "ROWS",
)
_NOT_LOGGED: Final = frozenset({"<not logged>", "<previously logged>", "<none>"})
# pgaudit's class when the statement cannot be analysed. FUNCTION (calls, DO blocks) and
# MISC (CHECKPOINT, VACUUM…) can do anything: admin, as for an unknown statement.
_CLASS: Final[dict[str, ActionClass]] = {
    "READ": "read",
    "WRITE": "write",
    "DDL": "ddl",
    "ROLE": "admin",
    "FUNCTION": "admin",
    "MISC": "admin",
    "MISC_SET": "utility",
}
_MAX_OBJECTS: Final = 1024
MAX_ANALYSED_TOKENS: Final = 10_000
"""Longer statements are redacted by the lexer alone, never given to ``pglast.parse_sql``: it
builds its Python tree recursively and overflows the C stack (a segfault that ends the whole
process, not an exception) on a left-deep expression such as ``1 + 1 + …`` with ~25,000 terms.
A tree is at most about half as deep as the statement has tokens (the grammar itself refuses
right-nested constructs deeper than 10,000), so this bound keeps a wide margin."""


@dataclass(frozen=True, kw_only=True)
class PgauditOptions:
    """How the logs of one PostgreSQL server are read and mapped."""

    server: str | None = None
    """The server's name (``target.name``): log records do not carry it."""
    log_timezone: str | None = None
    """The server's ``log_timezone`` (IANA name) when its log times use an abbreviation
    other than UTC/GMT (``CET``): needed to read them, and to tell a repeated DST hour."""
    encoding: str = "utf-8"
    """The log file's encoding (the server's; ``latin-1`` for a LATIN1 cluster)."""
    service_users: frozenset[str] = frozenset()
    """Database users recorded as actor kind ``service`` (applications, ETL jobs)."""
    agent_users: frozenset[str] = frozenset()
    """Database users recorded as actor kind ``agent``."""

    def __post_init__(self) -> None:
        if self.server is not None and len(self.server) > MAX_NAME:
            raise UsageError(f"server name is longer than {MAX_NAME} characters")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise UsageError(f"unknown log encoding {self.encoding!r}") from None
        if self.log_timezone is not None:
            try:
                ZoneInfo(self.log_timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise UsageError(f"unknown log_timezone {self.log_timezone!r}") from None

    @property
    def zone(self) -> ZoneInfo | None:
        """``log_timezone`` as a zone."""
        return ZoneInfo(self.log_timezone) if self.log_timezone is not None else None


def normalize_pgaudit_csvlog(
    data: bytes, *, received: Received, options: PgauditOptions | None = None, first_line: int = 1
) -> list[Result]:
    """Map the records of a ``csvlog`` batch (whole records; ``first_line`` numbers its first
    line for error messages). One result per record, in order."""
    options = options or PgauditOptions()
    records = read_csvlog(data, encoding=options.encoding, first_line=first_line)
    return _normalize(records, "pgaudit.csvlog", received, options)


def normalize_pgaudit_stderr(
    data: bytes,
    *,
    prefix: LinePrefix,
    received: Received,
    options: PgauditOptions | None = None,
    first_line: int = 1,
) -> list[Result]:
    """Map the records of a ``stderr`` log batch written with ``log_line_prefix`` ``prefix``
    (whole records: a line and its tab-indented continuation lines)."""
    options = options or PgauditOptions()
    records = read_stderr(data, prefix, encoding=options.encoding, first_line=first_line)
    return _normalize(records, "pgaudit.stderr", received, options)


def _normalize(
    records: Iterable[LogRecord | IngestError | tuple[int, str]],
    fmt: str,
    received: Received,
    options: PgauditOptions,
) -> list[Result]:
    results: list[Result] = []
    for index, record in enumerate(records):
        if isinstance(record, IngestError):
            results.append(record.at(index, record.line))
        elif isinstance(record, tuple):
            results.append(Skipped(item=index, line=record[0], reason=record[1]))
        elif not record.fields.get("message", "").startswith(_AUDIT):
            results.append(Skipped(item=index, line=record.line, reason="not a pgaudit record"))
        else:
            try:
                results.append(_event(record, fmt, received, options))
            except IngestError as exc:
                results.append(exc.at(index, record.line))
    return results


def _audit_fields(message: str) -> list[str]:
    """The CSV fields after ``AUDIT: `` (pgaudit quotes a field holding , " CR or LF)."""
    try:
        rows = list(csv.reader(io.StringIO(message[len(_AUDIT) :], newline=""), strict=True))
    except csv.Error:
        raise IngestError("the AUDIT entry is not CSV", field="message") from None
    if len(rows) != 1 or len(rows[0]) not in (9, 10):
        raise IngestError("expected an AUDIT entry of 9 or 10 fields", field="message")
    return rows[0]


def _event(record: LogRecord, fmt: str, received: Received, options: PgauditOptions) -> Event:
    f = record.fields
    audit = dict(zip(_FIELDS, _audit_fields(f["message"]), strict=False))
    for key in ("STATEMENT_ID", "SUBSTATEMENT_ID"):
        if not audit[key].isdigit() or not audit[key].isascii():
            raise IngestError("expected a number", field=f"message {key}")
    draft = Draft(system="pgaudit", fmt=fmt, raw=record.raw, received=received)
    for key in ("AUDIT_TYPE", "STATEMENT_ID", "SUBSTATEMENT_ID", "CLASS", "OBJECT_TYPE"):
        draft.attr(f"pgaudit.{key.lower()}", audit[key])
    command = name(audit["COMMAND"], "message COMMAND", MAX_OPERATION) or None

    text, analysis = _statement(audit["STATEMENT"], draft)
    if analysis is not None:
        action_class: ActionClass = analysis.action
    else:
        action_class = _CLASS.get(audit["CLASS"], "admin")
    fingerprint = None
    if analysis is not None and len(analysis.statements) == 1:
        fingerprint = analysis.statements[0].fingerprint or None

    if audit["OBJECT_NAME"]:
        objects: tuple[str, ...] = (name(audit["OBJECT_NAME"], "message OBJECT_NAME"),)
    elif analysis is not None:
        found = list(dict.fromkeys(o for s in analysis.statements for o in s.objects))
        objects = names(found, "message STATEMENT objects", limit=_MAX_OBJECTS)
    else:
        objects = ()

    outcome = None
    if "ROWS" in audit:  # pgaudit.log_rows logs when the statement has finished
        if not audit["ROWS"].isdigit() or not audit["ROWS"].isascii():
            raise IngestError("expected a number", field="message ROWS")
        outcome = Outcome(status="ok", rows=int(audit["ROWS"]))

    database = f.get("database_name") or None
    return draft.build(
        time_ns=_time(f, options),
        actor=_actor(f, draft, options),
        target=Target(
            type="postgres",
            name=options.server,
            database=name(database, "database_name") if database else None,
            objects=objects,
        ),
        action=Action(
            class_=action_class, operation=command, statement=text, fingerprint=fingerprint
        ),
        outcome=outcome,
    )


def _time(fields: dict[str, str], options: PgauditOptions) -> int | None:
    if fields.get("log_time"):
        return log_time_ns(fields["log_time"], "log_time", options.zone)
    if fields.get("log_epoch"):
        return epoch_ns(fields["log_epoch"], "log_epoch")
    return None


def _actor(fields: dict[str, str], draft: Draft, options: PgauditOptions) -> Actor | None:
    draft.attr("pg.session_id", fields.get("session_id"))
    draft.attr("pg.session_line", fields.get("session_line_num"))
    draft.attr("pg.pid", fields.get("process_id"))
    draft.attr("pg.application_name", fields.get("application_name"))
    draft.attr("pg.backend_type", fields.get("backend_type"))
    if fields.get("transaction_id", "0") != "0":
        draft.attr("pg.transaction_id", fields.get("transaction_id"))
    if fields.get("query_id", "0") != "0":
        draft.attr("pg.query_id", fields.get("query_id"))
    host, port = fields.get("remote_host"), fields.get("remote_port")
    if (remote := fields.get("connection_from")) and ":" in remote:
        host, _, port = remote.rpartition(":")  # csvlog writes host:port, IPv6 unbracketed
        host = host.removeprefix("[").removesuffix("]")
    elif remote:  # [local]: a Unix socket
        host = remote
    ip = compressed_ip(host) if host else None
    if host and ip is None:  # [local] (a Unix socket) or a host name (log_hostname = on)
        draft.attr("pg.client", host)
    if port:
        draft.attr("pg.client_port", port)
    user = fields.get("user_name")
    if not user:
        return None
    return Actor(id=name(user, "user_name"), kind=_kind(user, fields, options), ip=ip)


def _kind(
    user: str, fields: dict[str, str], options: PgauditOptions
) -> Literal["human", "agent", "service"]:
    """``agent``/``service`` as configured; a background process is a ``service``; anyone
    else is taken for a ``human``."""
    if user in options.agent_users:
        return "agent"
    if user in options.service_users:
        return "service"
    backend = fields.get("backend_type")
    if backend and backend != "client backend":
        return "service"
    return "human"


def _statement(statement: str, draft: Draft) -> tuple[str | None, Analysis | None]:
    if not statement or statement in _NOT_LOGGED:
        return None, None
    text, analysis = redact_statement(statement)
    if text is None:
        draft.flag("statement_omitted")
        return None, None
    if analysis is None:
        draft.flag("statement_unparsed")
    return draft.text("action.statement", text, MAX_STATEMENT), analysis


def redact_statement(sql: str) -> tuple[str | None, Analysis | None]:
    """``sql`` with every literal replaced by ``$n`` and comments dropped, and its analysis.

    The text is None when it cannot be redacted safely (PostgreSQL's lexer rejects it); the
    analysis is None when PostgreSQL's parser rejects it, or the statement has more than
    ``MAX_ANALYSED_TOKENS`` tokens (the text is then redacted by the lexer alone).
    """
    try:
        tokens = pglast.parser.scan(sql)
    except pglast.parser.ParseError:
        return None, None
    analysis: Analysis | None = None
    if len(tokens) <= MAX_ANALYSED_TOKENS:
        with contextlib.suppress(SqlError):  # the parser rejects it: lexer only
            analysis = analyze(sql)
    base = sql
    if analysis is not None and all(s.normalized for s in analysis.statements):
        base = "; ".join(s.normalized for s in analysis.statements)
    return redact(base), analysis
