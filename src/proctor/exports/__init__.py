"""Ledger events in the formats other tools read, exported in bulk or forwarded as they come.

- ``ocsf``     OCSF 1.8.0: Authentication, Datastore/API Activity, Entity Management, Event
               Log Activity, Base Event (the class table is in the module docstring).
- ``ecs``      Elastic Common Schema 9.0.0 documents; Proctor's own fields under ``proctor.*``.
- ``cef``      ArcSight CEF:0 records, escaped per the CEF guide, dictionary keys only.
- ``syslog``   RFC 5424 messages (structured data, BOM + JSON or CEF) and RFC 6587
               octet-counting frames, with the receiver's frame decoder; sans-IO.
- ``stream``   the export driver: a source of ``(index, canonical bytes)`` (an index range, or
               any iterable of indexes) → a formatter → a binary file, one record at a time.
- ``forward``  the asyncio forwarder: ledger → syslog over TCP/TLS, cursor in a state file,
               reconnects with back-off, at-least-once delivery.

Data flows: ``Ledger.entries`` → ``decode_event`` → ``to_ocsf``/``to_ecs``/``to_cef``/
``format_message`` → bytes. Every mapping shares ``_common`` (severity level, summary line),
so an event is equally severe in every format. Imports ``events``, ``errors`` and (for
streaming and forwarding) ``ledger``; docs/exports.md documents every mapping decision.
"""

from proctor.exports.cef import CefFormatter, to_cef
from proctor.exports.ecs import ECS_VERSION, EcsFormatter, to_ecs
from proctor.exports.forward import (
    Backoff,
    Cursor,
    Forwarder,
    ForwarderConfig,
    ForwardError,
    ForwardResult,
)
from proctor.exports.ocsf import OCSF_VERSION, OcsfFormatter, to_ocsf
from proctor.exports.stream import (
    FORMATS,
    ExportStats,
    Formatter,
    JsonlFormatter,
    export,
    ledger_indexes,
    ledger_range,
    make_formatter,
)
from proctor.exports.syslog import (
    FrameDecoder,
    SyslogConfig,
    SyslogFormatter,
    format_message,
    frame,
)

__all__ = [
    "ECS_VERSION",
    "FORMATS",
    "OCSF_VERSION",
    "Backoff",
    "CefFormatter",
    "Cursor",
    "EcsFormatter",
    "ExportStats",
    "Formatter",
    "ForwardError",
    "ForwardResult",
    "Forwarder",
    "ForwarderConfig",
    "FrameDecoder",
    "JsonlFormatter",
    "OcsfFormatter",
    "SyslogConfig",
    "SyslogFormatter",
    "export",
    "format_message",
    "frame",
    "ledger_indexes",
    "ledger_range",
    "make_formatter",
    "to_cef",
    "to_ecs",
    "to_ocsf",
]
