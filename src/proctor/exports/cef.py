"""Proctor events as ArcSight Common Event Format (CEF:0) records.

Written here rather than with a library: the PyPI CEF packages (``cef``, ``cefevent``) are
unmaintained and neither limits keys to the extension dictionary nor escapes header and
extension values as the "Implementing ArcSight CEF" guide says. The rules applied:

- header ``CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension``: ``\\`` and ``|``
  are backslash-escaped; a header field can hold no line break, so any becomes a space;
- extension values: ``\\`` and ``=`` are backslash-escaped, CR and LF are written ``\\r``/``\\n``
  (the only multi-line form CEF has); other control and line-separator characters, which some
  collectors treat as record ends, become U+FFFD;
- keys come only from the extension dictionary (``rt``, ``suser``, ``src``…) or its
  ``cs1..cs6``/``cn1..cn3``/``flexString1..2`` custom fields, each with its ``…Label``;
- values longer than the dictionary's length limit are cut at it (the ledger keeps the whole).

Severity is 0-10 (the header's integer form). One record never spans lines, so a value cannot
start a new record, and an escaped ``=`` cannot start a new key.
"""

from __future__ import annotations

import re
from typing import Final

from proctor.events.canonical import decode_event
from proctor.events.schema import Event
from proctor.exports._common import PRODUCT, VENDOR, VERSION, Level, level, parse_endpoint
from proctor.exports._common import summary as _summary
from proctor.exports._common import time_ms as _time_ms

__all__ = [
    "EXTENSION_KEYS",
    "CefFormatter",
    "escape_extension",
    "escape_header",
    "severity",
    "to_cef",
]

# Extension dictionary keys this module writes, with their length limits (characters) from
# the "Implementing ArcSight CEF" extension dictionary; 0 means a number or a timestamp.
EXTENSION_KEYS: Final[dict[str, int]] = {
    "rt": 0,
    "start": 0,
    "end": 0,
    "externalId": 40,
    "cat": 1023,
    "act": 63,
    "outcome": 63,
    "reason": 1023,
    "msg": 1023,
    "suser": 1023,
    "spriv": 1023,
    "src": 0,
    "dst": 0,
    "dpt": 0,
    "c6a2": 0,
    "c6a2Label": 1023,
    "c6a3": 0,
    "c6a3Label": 1023,
    "dvchost": 100,
    "destinationServiceName": 1023,
    "app": 31,
    "requestClientApplication": 1023,
    **{f"cs{i}": 4000 for i in range(1, 7)},
    **{f"cs{i}Label": 1023 for i in range(1, 7)},
    **{f"cn{i}": 0 for i in range(1, 4)},
    **{f"cn{i}Label": 1023 for i in range(1, 4)},
    "flexString1": 1023,
    "flexString1Label": 128,
    "flexString2": 1023,
    "flexString2Label": 128,
}

_NAMES: Final = {
    "session.start": "Session started",
    "session.end": "Session ended",
    "session.revoked": "Session revoked",
    "auth.failed": "Authentication failed",
    "query": "Request received",
    "policy.reloaded": "Policy reloaded",
    "ingest": "Record ingested",
    "retention.pruned": "Ledger entries pruned",
    "erasure": "Subject key erased",
    "checkpoint": "Ledger checkpoint signed",
}
_DECISION_NAMES: Final = {
    "allow": "Access allowed",
    "deny": "Access denied",
    "step_up": "Step-up authentication required",
}
_OUTCOME_NAMES: Final = {
    "ok": "Request completed",
    "error": "Request failed",
    "cancelled": "Request cancelled",
    "revoked": "Request revoked",
}
# CEF severity 0-3 low, 4-6 medium, 7-8 high, 9-10 very high.
_SEVERITY: Final = {
    Level.INFO: 1,
    Level.LOW: 3,
    Level.MEDIUM: 5,
    Level.HIGH: 8,
    Level.CRITICAL: 10,
}
# C0 controls but TAB, DEL, C1 controls and the Unicode line/paragraph separators: characters
# that some readers treat as line ends or that break terminals. CR and LF are handled apart.
_UNSAFE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_HEADER_BREAKS: Final = re.compile("[\r\n]")
_EXT_ESCAPES: Final = str.maketrans({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"})
_HEADER_ESCAPES: Final = str.maketrans({"\\": "\\\\", "|": "\\|"})
# Fast path: most values need no change at all.
_HEADER_SPECIAL: Final = re.compile("[\\\\|\r\n\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_EXT_SPECIAL: Final = re.compile("[\\\\=\r\n\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def escape_header(value: str) -> str:
    """A CEF header field: ``\\`` and ``|`` escaped, line breaks and controls neutralised."""
    if _HEADER_SPECIAL.search(value) is None:
        return value
    value = _UNSAFE.sub("\ufffd", _HEADER_BREAKS.sub(" ", value))
    return value.translate(_HEADER_ESCAPES)


def escape_extension(value: str) -> str:
    """A CEF extension value: ``\\`` and ``=`` escaped, CR/LF as ``\\r``/``\\n``, controls fixed."""
    if _EXT_SPECIAL.search(value) is None:
        return value
    return _UNSAFE.sub("\ufffd", value).translate(_EXT_ESCAPES)


def severity(event: Event) -> int:
    """CEF severity 0-10: the shared level, or the risk score's tenth when that is higher."""
    base = _SEVERITY[level(event)]
    if event.risk is not None:
        base = max(base, min(10, (event.risk.score + 5) // 10))
    return base


def _name(event: Event) -> str:
    if event.kind == "decision" and event.decision is not None:
        return _DECISION_NAMES[event.decision.effect]
    if event.kind == "outcome" and event.outcome is not None:
        return _OUTCOME_NAMES[event.outcome.status]
    return _NAMES.get(event.kind, event.kind)


def _signature(event: Event) -> str:
    if event.kind == "decision" and event.decision is not None:
        return f"decision.{event.decision.effect}"
    if event.kind == "outcome" and event.outcome is not None:
        return f"outcome.{event.outcome.status}"
    return event.kind


def _extension(event: Event, index: int | None) -> list[tuple[str, str]]:
    """(key, value) pairs in a stable order; values unescaped."""
    pairs: list[tuple[str, str]] = [
        ("rt", str(_time_ms(event.time))),
        ("externalId", event.id),
        ("cat", event.kind),
        ("msg", _summary(event)),
    ]
    _who_where(event, pairs)
    _what(event, pairs)
    _why_result(event, pairs)
    if index is not None:
        pairs += [("cn3", str(index)), ("cn3Label", "ledgerIndex")]
    if event.source is not None and event.source.original_sha256 is not None:
        pairs += [
            ("flexString2", event.source.original_sha256),
            ("flexString2Label", "originalSha256"),
        ]
    return pairs


def _who_where(event: Event, pairs: list[tuple[str, str]]) -> None:
    actor = event.actor
    if actor is not None:
        pairs.append(("suser", actor.id))
        if actor.roles:
            pairs.append(("spriv", ",".join(actor.roles)))
        if actor.ip is not None:
            if ":" in actor.ip:  # src is IPv4 only; c6a2 is the dictionary's source IPv6
                pairs += [("c6a2", actor.ip), ("c6a2Label", "Source IPv6 Address")]
            else:
                pairs.append(("src", actor.ip))
    address = parse_endpoint(event.source.address if event.source is not None else None)
    if address is not None:
        if address.version == 6:
            pairs += [("c6a3", address.ip), ("c6a3Label", "Destination IPv6 Address")]
        else:
            pairs.append(("dst", address.ip))
        pairs.append(("dpt", str(address.port)))
    if event.source is not None and event.source.gateway is not None:
        pairs.append(("dvchost", event.source.gateway))


def _what(event: Event, pairs: list[tuple[str, str]]) -> None:
    target = event.target
    if target is not None:
        if target.name is not None:
            pairs.append(("destinationServiceName", target.name))
        if target.database is not None:
            pairs += [("cs1", target.database), ("cs1Label", "database")]
        if target.objects:
            pairs += [("cs5", ",".join(target.objects)), ("cs5Label", "objects")]
    session = event.session
    protocol = session.protocol if session is not None else None
    if protocol is not None:
        pairs.append(("app", protocol))
    elif target is not None:
        pairs.append(("app", target.type))
    if session is not None:
        if session.client is not None:
            pairs.append(("requestClientApplication", session.client))
        pairs += [("cs4", session.id), ("cs4Label", "sessionId")]
    action = event.action
    if action is not None and action.statement is not None:
        pairs += [("cs2", action.statement), ("cs2Label", "statement")]


def _why_result(event: Event, pairs: list[tuple[str, str]]) -> None:
    decision = event.decision
    if decision is not None:
        pairs += [("act", decision.effect), ("reason", "; ".join(decision.reasons))]
        if decision.policies:
            pairs += [("cs3", ",".join(decision.policies)), ("cs3Label", "policies")]
    risk = event.risk
    if risk is not None:
        pairs += [("cn1", str(risk.score)), ("cn1Label", "riskScore")]
        if risk.factors:
            factors = ",".join(f"{f.signal}:{f.points:+d}" for f in risk.factors)
            pairs += [("cs6", factors), ("cs6Label", "riskFactors")]
    out = event.outcome
    if out is not None:
        pairs.append(("outcome", out.status))
        if out.rows is not None:
            pairs += [("cn2", str(out.rows)), ("cn2Label", "rows")]
        if out.sqlstate is not None:
            pairs += [("flexString1", out.sqlstate), ("flexString1Label", "sqlstate")]
        if out.duration_us is not None:
            end = _time_ms(event.time)
            pairs += [("start", str(end - out.duration_us // 1000)), ("end", str(end))]


def to_cef(
    event: Event,
    *,
    index: int | None = None,
    vendor: str = VENDOR,
    product: str = PRODUCT,
    version: str = VERSION,
) -> str:
    """One CEF:0 record (no line end) for a Proctor event."""
    header = "|".join(
        escape_header(field)
        for field in (vendor, product, version, _signature(event), _name(event)[:512])
    )
    parts = []
    for key, value in _extension(event, index):
        limit = EXTENSION_KEYS[key]  # a KeyError here is a bug: only dictionary keys
        parts.append(f"{key}={escape_extension(value[:limit] if limit else value)}")
    return f"CEF:0|{header}|{severity(event)}|{' '.join(parts)}"


class CefFormatter:
    """Export driver plug-in: one CEF record per line."""

    name: Final = "cef"

    def __init__(
        self, *, vendor: str = VENDOR, product: str = PRODUCT, version: str = VERSION
    ) -> None:
        self._header = {"vendor": vendor, "product": product, "version": version}

    def format(self, index: int, raw: bytes) -> bytes:
        """The CEF line for the ledger entry ``raw`` at ``index``."""
        return (to_cef(decode_event(raw), index=index, **self._header) + "\n").encode()
