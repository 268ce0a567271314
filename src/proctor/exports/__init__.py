"""Ledger events in the formats other tools read, exported in bulk or forwarded as they come.

- ``ocsf``     OCSF 1.8.0: Authentication, Datastore/API Activity, Entity Management, Event
               Log Activity, Base Event (the class table is in the module docstring).
- ``ecs``      Elastic Common Schema 9.0.0 documents; Proctor's own fields under ``proctor.*``.
- ``cef``      ArcSight CEF:0 records, escaped per the CEF guide, dictionary keys only.
- ``syslog``   RFC 5424 messages (structured data, BOM + JSON or CEF) and RFC 6587
               octet-counting frames, with the receiver's frame decoder; sans-IO.

Data flows: ``Ledger.entries`` → ``decode_event`` → ``to_ocsf``/``to_ecs``/``to_cef``/
``format_message`` → bytes. Every mapping shares ``_common`` (severity level, summary line),
so an event is equally severe in every format. Imports ``events`` and ``errors`` only.
"""

from proctor.exports.cef import CefFormatter, to_cef
from proctor.exports.ecs import ECS_VERSION, EcsFormatter, to_ecs
from proctor.exports.ocsf import OCSF_VERSION, OcsfFormatter, to_ocsf
from proctor.exports.syslog import (
    FrameDecoder,
    SyslogConfig,
    SyslogFormatter,
    format_message,
    frame,
)

__all__ = [
    "ECS_VERSION",
    "OCSF_VERSION",
    "CefFormatter",
    "EcsFormatter",
    "FrameDecoder",
    "OcsfFormatter",
    "SyslogConfig",
    "SyslogFormatter",
    "format_message",
    "frame",
    "to_cef",
    "to_ecs",
    "to_ocsf",
]
