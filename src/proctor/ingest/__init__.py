"""Normalizers: records of other systems as ``proctor.access/v1`` events of kind ``ingest``.

- ``kubernetes``  ``audit.k8s.io/v1`` EventList/Event bodies (the API server's audit webhook)
  → one event per audit event.
- ``pgaudit``     pgaudit entries in PostgreSQL logs (``csvlog`` files, ``stderr`` lines with a
  ``log_line_prefix``) → one event per entry, statements redacted; other lines are skipped.
  ``_pglog`` cuts the logs into records.
- ``syslog``      RFC 5424 messages (sans-IO parser) and RFC 6587 TCP framing → one event per
  message; the sender or the ``proctor@32473`` structured data says who did what.
- ``syslog_server`` the asyncio TCP/TLS listener: framer → normalizer → an awaited sink per
  batch before it reads more (back-pressure), errors to a callback. The only module here that
  does I/O; import it by name (the package itself imports no asyncio).
- ``_common``     what they share: :class:`Received` (receive time, ingest instance, sender),
  the per-item results (``Event`` | :class:`IngestError` | :class:`Skipped`) and the builder
  that checks every event against the schema before it is returned.

Data flows: source bytes → a normalizer → ``list[Result]`` in input order → the caller
appends the events to the ledger and reports the errors. Every event keeps the source record
byte for byte in ``original`` (bound by ``source.original_sha256``); one bad record never
spoils the others. Every failure is an :class:`IngestError` (a ``proctor.errors.InputError``)
naming the item, line, field and byte offset, never quoting the record. See docs/ingest.md.
"""

from proctor.ingest._common import IngestError, Received, Result, Skipped
from proctor.ingest.kubernetes import K8sOptions, normalize_k8s_audit
from proctor.ingest.pgaudit import (
    LinePrefix,
    PgauditOptions,
    normalize_pgaudit_csvlog,
    normalize_pgaudit_stderr,
)
from proctor.ingest.syslog import (
    SD_ID,
    SdElement,
    SyslogFramer,
    SyslogMessage,
    normalize_syslog,
    parse_syslog,
)

__all__ = [
    "SD_ID",
    "IngestError",
    "K8sOptions",
    "LinePrefix",
    "PgauditOptions",
    "Received",
    "Result",
    "SdElement",
    "Skipped",
    "SyslogFramer",
    "SyslogMessage",
    "normalize_k8s_audit",
    "normalize_pgaudit_csvlog",
    "normalize_pgaudit_stderr",
    "normalize_syslog",
    "parse_syslog",
]
