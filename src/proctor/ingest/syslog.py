"""Syslog (RFC 5424) messages as ``proctor.access/v1`` ingest events; RFC 6587 TCP framing.

Three sans-IO pieces, no sockets here (``syslog_server`` is the asyncio shell):

- :class:`SyslogFramer` cuts a TCP byte stream into messages (RFC 6587 §3.4.1 octet counting
  ``LEN SP MSG`` and §3.4.2 non-transparent framing with an LF trailer, chosen per frame by its
  first byte) under a frame-size limit; a framing error ends the connection.
- :func:`parse_syslog` reads one message by the RFC 5424 §6 ABNF into :class:`SyslogMessage`;
  an error names the field and its byte offset, never the content.
- :func:`normalize_syslog` maps messages to events: who, what and the result come from the
  structured-data element ``proctor@32473`` when the sender wrote one (parameters below and in
  docs/ingest.md), else the sender (APP-NAME@HOSTNAME) is a ``service`` actor; facility,
  severity, host, app, procid and msgid become attributes. MSG is not mapped: it is free text
  that may hold anything, kept in the original.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn, TypeVar, get_args, get_type_hints

from proctor.events import Action, Actor, Decision, Event, Outcome, Target
from proctor.ingest._common import (
    MAX_OPERATION,
    Draft,
    IngestError,
    Received,
    compressed_ip,
    name,
    names,
    rfc3339_ns,
)

__all__ = [
    "SD_ID",
    "SdElement",
    "SyslogFramer",
    "SyslogMessage",
    "normalize_syslog",
    "parse_syslog",
]

SD_ID: Final = "proctor@32473"
"""Proctor's SD-ID. 32473 is the private enterprise number IANA reserves for documentation
(RFC 5612); a deployment with its own number may send the same parameters under it."""

# RFC 5424 §6.2.1 table 1 and 2, by code.
_FACILITIES: Final = (
    *("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news"),
    *("uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock"),
    *(f"local{i}" for i in range(8)),
)
_SEVERITIES: Final = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_BOM: Final = b"\xef\xbb\xbf"
# RFC 5424 §6.2.3: FULL-DATE "T" FULL-TIME, TIME-SECFRAC of 1 to 6 digits, "T" and "Z" upper.
_TIMESTAMP: Final = re.compile(
    rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    rb"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


@dataclass(frozen=True, slots=True)
class SdElement:
    """One STRUCTURED-DATA element: its SD-ID and its parameters in order (names repeat)."""

    id: str
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    """An RFC 5424 message; ``None`` stands for the NILVALUE ``-``."""

    facility: int
    severity: int
    version: int
    timestamp_ns: int | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: tuple[SdElement, ...]
    msg: bytes | None
    """MSG without its BOM; UTF-8 text when ``msg_utf8`` (RFC 5424 §6.4 MSG-UTF8)."""
    msg_utf8: bool = False


class _Reader:
    """A cursor over one message; every failure names the field and the byte offset."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, field: str, reason: str, offset: int | None = None) -> IngestError:
        return IngestError(reason, field=field, offset=self.pos if offset is None else offset)

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def expect(self, byte: bytes, field: str, what: str) -> None:
        if self.data[self.pos : self.pos + 1] != byte:
            raise self.fail(field, f"expected {what}")
        self.pos += 1

    def token(self, field: str, limit: int) -> str | None:
        """A header field: NILVALUE or 1 to ``limit`` PRINTUSASCII (%d33-126), then SP."""
        start = self.pos
        while (byte := self.peek()) is not None and 33 <= byte <= 126:
            self.pos += 1
        if self.pos == start:
            raise self.fail(field, "expected printable US-ASCII or '-'")
        if self.pos - start > limit:
            raise self.fail(field, f"longer than {limit} characters", start)
        self.expect(b" ", field, "SP after it")
        text = self.data[start : self.pos - 1].decode("ascii")
        return None if text == "-" else text


def parse_syslog(data: bytes) -> SyslogMessage:
    """Parse one RFC 5424 message (no framing); raise :class:`IngestError` naming the field."""
    r = _Reader(data)
    # PRI = "<" PRIVAL ">", PRIVAL = 1*3DIGIT in 0..191 (§6.2.1)
    r.expect(b"<", "PRI", "'<'")
    start = r.pos
    while (byte := r.peek()) is not None and 48 <= byte <= 57 and r.pos - start < 3:
        r.pos += 1
    if r.pos == start:
        raise r.fail("PRI", "expected 1 to 3 digits")
    prival = int(data[start : r.pos])
    r.expect(b">", "PRI", "'>'")
    if prival > 191:
        raise r.fail("PRI", "greater than 191", start)
    # VERSION = NONZERO-DIGIT 0*2DIGIT (§6.2.2); this is RFC 5424, version 1
    start = r.pos
    while (byte := r.peek()) is not None and 48 <= byte <= 57:
        r.pos += 1
    if r.pos == start or data[start] == 48:
        raise r.fail("VERSION", "expected a version number", start)
    if data[start : r.pos] != b"1":
        raise r.fail("VERSION", "only version 1 (RFC 5424) is supported", start)
    r.expect(b" ", "VERSION", "SP after it")
    timestamp_ns = _timestamp(r)
    hostname = r.token("HOSTNAME", 255)
    app_name = r.token("APP-NAME", 48)
    procid = r.token("PROCID", 128)
    msgid = r.token("MSGID", 32)
    elements = _structured_data(r)
    msg, utf8 = None, False
    if r.pos < len(data):
        r.expect(b" ", "MSG", "SP before MSG")
        msg = data[r.pos :]
        if msg.startswith(_BOM):  # MSG-UTF8 (§6.4): the rest must be UTF-8
            msg, utf8 = msg[len(_BOM) :], True
            try:
                msg.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise r.fail("MSG", "not UTF-8 after the BOM", r.pos + 3 + exc.start) from None
    return SyslogMessage(
        facility=prival >> 3,
        severity=prival & 7,
        version=1,
        timestamp_ns=timestamp_ns,
        hostname=hostname,
        app_name=app_name,
        procid=procid,
        msgid=msgid,
        structured_data=elements,
        msg=msg,
        msg_utf8=utf8,
    )


def _timestamp(r: _Reader) -> int | None:
    start = r.pos
    end = r.data.find(b" ", start)
    end = len(r.data) if end < 0 else end
    text = r.data[start:end]
    if text == b"-":
        r.pos = end
        r.expect(b" ", "TIMESTAMP", "SP after it")
        return None
    if _TIMESTAMP.fullmatch(text) is None:
        raise r.fail("TIMESTAMP", "expected an RFC 5424 timestamp or '-'", start)
    try:
        ns = rfc3339_ns(text.decode("ascii"), "TIMESTAMP")
    except IngestError as exc:  # an impossible date, a leap second (§6.2.3 forbids them)
        raise r.fail("TIMESTAMP", exc.reason, start) from None
    r.pos = end
    r.expect(b" ", "TIMESTAMP", "SP after it")
    return ns


def _sd_name(r: _Reader, field: str) -> str:
    """SD-NAME = 1*32PRINTUSASCII except '=', SP, ']', '"' (§6.3)."""
    start = r.pos
    while (byte := r.peek()) is not None and 33 <= byte <= 126 and byte not in b'= ]"':
        r.pos += 1
    if r.pos == start:
        raise r.fail(field, "expected a name")
    if r.pos - start > 32:
        raise r.fail(field, "longer than 32 characters", start)
    return r.data[start : r.pos].decode("ascii")


def _param_value(r: _Reader) -> str:
    """PARAM-VALUE: UTF-8 up to an unescaped '"'; \\" \\\\ \\] are escapes, any other
    backslash is kept as it is (§6.3.3)."""
    out = bytearray()
    start = r.pos
    while True:
        byte = r.peek()
        if byte is None:
            raise r.fail("PARAM-VALUE", "unterminated value", start)
        r.pos += 1
        if byte == 0x22:  # '"'
            break
        if byte == 0x5C and r.peek() in (0x22, 0x5C, 0x5D):  # '\' before '"', '\', ']'
            out.append(r.data[r.pos])
            r.pos += 1
        else:
            out.append(byte)
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise r.fail("PARAM-VALUE", "not UTF-8", start) from None


def _structured_data(r: _Reader) -> tuple[SdElement, ...]:
    if r.peek() == 0x2D:  # NILVALUE
        r.pos += 1
        return ()
    if r.peek() != 0x5B:
        raise r.fail("STRUCTURED-DATA", "expected '-' or '['")
    elements: list[SdElement] = []
    while r.peek() == 0x5B:  # '['
        start = r.pos
        r.pos += 1
        sd_id = _sd_name(r, "SD-ID")
        if any(e.id == sd_id for e in elements):  # §6.3.2: an SD-ID appears once
            raise r.fail("SD-ID", "appears twice in the message", start + 1)
        params: list[tuple[str, str]] = []
        while r.peek() == 0x20:
            r.pos += 1
            param = _sd_name(r, "PARAM-NAME")
            r.expect(b"=", "PARAM-NAME", "'=' after it")
            r.expect(b'"', "PARAM-VALUE", "'\"'")
            params.append((param, _param_value(r)))
        r.expect(b"]", "SD-ELEMENT", "SP or ']'")
        elements.append(SdElement(sd_id, tuple(params)))
    return tuple(elements)


# --- mapping -------------------------------------------------------------------------

_ONCE: Final = frozenset(
    {
        "actor",
        "actor_kind",
        "actor_ip",
        "target_type",
        "target",
        "database",
        "action_class",
        "operation",
        "decision",
        "reason",
        "outcome",
        "sqlstate",
    }
)
_REPEATED: Final = frozenset({"group", "object"})
_KINDS: Final[tuple[Literal["human", "agent", "service"], ...]] = ("human", "agent", "service")
_EFFECTS: Final[tuple[Literal["allow", "deny", "step_up"], ...]] = ("allow", "deny", "step_up")
_STATUSES: Final[tuple[Literal["ok", "error", "cancelled", "revoked"], ...]] = (
    "ok",
    "error",
    "cancelled",
    "revoked",
)
_C = TypeVar("_C", bound=str)
# The schema's action classes, read from Action so the two never drift apart.
_CLASSES: Final[tuple[Any, ...]] = get_args(get_type_hints(Action)["class_"])


def normalize_syslog(messages: Sequence[bytes], *, received: Received) -> list[Event | IngestError]:
    """Map RFC 5424 messages (each without its framing), one result per message, in order."""
    results: list[Event | IngestError] = []
    for index, message in enumerate(messages):
        try:
            results.append(_event(message, received))
        except IngestError as exc:
            results.append(exc.at(index))
    return results


def _proctor_params(message: SyslogMessage) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for element in message.structured_data:
        if element.id != SD_ID:
            continue
        for param, value in element.params:
            field = f"SD-PARAM {SD_ID} {param}"
            if param not in _ONCE and param not in _REPEATED:
                raise IngestError("unknown parameter", field=field)
            if param in _ONCE and param in found:
                raise IngestError("given twice", field=field)
            found.setdefault(param, []).append(value)
    return found


def _one(params: dict[str, list[str]], key: str) -> str | None:
    return params.get(key, [None])[0]


def _choice(params: dict[str, list[str]], key: str, choices: tuple[_C, ...]) -> _C | None:
    """The parameter as one of ``choices`` (so typed as the schema's literal)."""
    value = _one(params, key)
    if value is None:
        return None
    for choice in choices:
        if value == choice:
            return choice
    raise IngestError(f"expected one of {', '.join(choices)}", field=f"SD-PARAM {SD_ID} {key}")


def _event(data: bytes, received: Received) -> Event:
    message = parse_syslog(data)
    params = _proctor_params(message)
    draft = Draft(system="syslog", fmt="syslog.rfc5424", raw=data, received=received)
    draft.attr("syslog.facility", _FACILITIES[message.facility])
    draft.attr("syslog.severity", _SEVERITIES[message.severity])
    draft.attr("syslog.hostname", message.hostname)
    draft.attr("syslog.app_name", message.app_name)
    draft.attr("syslog.procid", message.procid)
    draft.attr("syslog.msgid", message.msgid)
    draft.attr("syslog.sd_ids", ",".join(e.id for e in message.structured_data))
    for element in message.structured_data:
        # RFC 5424 §7.1.1/§7.1.2: the sender says its clock is not synchronized.
        if element.id == "timeQuality" and (
            ("tzKnown", "0") in element.params or ("isSynced", "0") in element.params
        ):
            draft.flag("source_clock_unsynced")
    return draft.build(
        time_ns=message.timestamp_ns,
        actor=_actor(message, params),
        target=_target(params),
        action=_action(params),
        decision=_decision(params, draft),
        outcome=_outcome(params),
    )


def _ip(text: str, field: str) -> str:
    ip = compressed_ip(text)
    if ip is None:
        raise IngestError("not an IP address", field=field)
    return ip


def _actor(message: SyslogMessage, params: dict[str, list[str]]) -> Actor | None:
    field = f"SD-PARAM {SD_ID}"
    actor_id = _one(params, "actor")
    groups = names(params.get("group", []), f"{field} group")
    ip = _one(params, "actor_ip")
    if actor_id is not None:
        kind = _choice(params, "actor_kind", _KINDS) or "human"
        return Actor(
            id=name(actor_id, f"{field} actor"),
            kind=kind,
            groups=groups,
            ip=_ip(ip, f"{field} actor_ip") if ip is not None else None,
        )
    if ip is not None or groups or "actor_kind" in params:
        raise IngestError("actor_kind, actor_ip and group need actor", field=f"{field} actor")
    # No actor named: the sender itself, a service, at the address RFC 5424 §7.2 origin gives.
    sender = "@".join(p for p in (message.app_name, message.hostname) if p)
    if not sender:
        return None
    origin_ip = None
    for element in message.structured_data:
        if element.id == "origin":
            origin_ip = next((compressed_ip(v) for k, v in element.params if k == "ip"), None)
    return Actor(id=name(sender, "APP-NAME@HOSTNAME"), kind="service", ip=origin_ip)


def _target(params: dict[str, list[str]]) -> Target | None:
    field = f"SD-PARAM {SD_ID}"
    target_type = _one(params, "target_type")
    rest = [k for k in ("target", "database", "object") if k in params]
    if target_type is None:
        if rest:
            raise IngestError(f"{rest[0]} needs target_type", field=f"{field} target_type")
        return None
    target = _one(params, "target")
    database = _one(params, "database")
    return Target(
        type=name(target_type, f"{field} target_type", 64),
        name=name(target, f"{field} target") if target is not None else None,
        database=name(database, f"{field} database") if database is not None else None,
        objects=names(params.get("object", []), f"{field} object", limit=1024),
    )


def _action(params: dict[str, list[str]]) -> Action | None:
    action_class = _choice(params, "action_class", _CLASSES)
    operation = _one(params, "operation")
    if action_class is None:
        if operation is not None:
            raise IngestError(
                "operation needs action_class", field=f"SD-PARAM {SD_ID} action_class"
            )
        return None
    return Action(
        class_=action_class,
        operation=name(operation, f"SD-PARAM {SD_ID} operation", MAX_OPERATION)
        if operation is not None
        else None,
    )


def _decision(params: dict[str, list[str]], draft: Draft) -> Decision | None:
    effect = _choice(params, "decision", _EFFECTS)
    reason = _one(params, "reason")
    if effect is None:
        if reason is not None:
            raise IngestError("reason needs decision", field=f"SD-PARAM {SD_ID} decision")
        return None
    text = draft.text("decision.reasons", reason) if reason else f"reported by syslog: {effect}"
    return Decision(effect=effect, reasons=(text,))


def _outcome(params: dict[str, list[str]]) -> Outcome | None:
    status = _choice(params, "outcome", _STATUSES)
    sqlstate = _one(params, "sqlstate")
    if sqlstate is not None and (
        len(sqlstate) != 5
        or not all(c.isascii() and (c.isdigit() or c.isupper()) for c in sqlstate)
    ):
        raise IngestError("expected 5 characters 0-9 A-Z", field=f"SD-PARAM {SD_ID} sqlstate")
    if status is None:
        if sqlstate is not None:
            raise IngestError("sqlstate needs outcome", field=f"SD-PARAM {SD_ID} outcome")
        return None
    return Outcome(status=status, sqlstate=sqlstate)


# --- RFC 6587 framing -------------------------------------------------------------------


class _State(enum.Enum):
    IDLE = "between frames"
    LENGTH = "reading MSG-LEN"
    BODY = "reading an octet-counted frame"
    LINE = "reading an LF-terminated frame"
    FAILED = "failed"


_TRANSITIONS: Final[dict[_State, frozenset[_State]]] = {
    _State.IDLE: frozenset({_State.LENGTH, _State.LINE, _State.FAILED}),
    _State.LENGTH: frozenset({_State.BODY, _State.FAILED}),
    _State.BODY: frozenset({_State.IDLE, _State.FAILED}),
    _State.LINE: frozenset({_State.IDLE, _State.FAILED}),
    _State.FAILED: frozenset(),
}
DEFAULT_MAX_FRAME: Final = 64 * 1024
"""RFC 5425 §4.3.1 asks receivers for at least 2,048 octets, SHOULD 8,192; Proctor takes 64 KiB."""


class SyslogFramer:
    """RFC 6587 framing, sans-IO: :meth:`feed` bytes as they arrive, get whole messages back.

    Each frame picks its method by its first byte (as rsyslog does): a digit starts octet
    counting (``MSG-LEN SP SYSLOG-MSG``, §3.4.1), ``<`` a non-transparent frame ended by LF
    (§3.4.2; a CR before the LF is part of the trailer, as some senders write CRLF). LF and CR
    between frames are ignored. A frame longer than ``max_frame`` octets, or one that starts
    with anything else, is an :class:`IngestError`, after which the framer stays failed: the
    rest of the stream cannot be trusted to be cut right, so the connection must end. Messages
    completed before the error are still returned.
    """

    def __init__(self, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be positive")
        self.max_frame = max_frame
        self._max_digits = len(str(max_frame))
        self._state = _State.IDLE
        self._buffer = bytearray()
        self._pos = 0  # next byte to look at
        self._start = 0  # first byte of the frame (or MSG-LEN) being read
        self._need = 0  # an octet-counted frame's length
        self._offset = 0  # stream offset of the buffer's first byte, for error messages
        self._pending: IngestError | None = None  # an error found after frames returned

    @property
    def state(self) -> str:
        """Where the framer is, for diagnostics."""
        return self._state.value

    def _to(self, state: _State) -> None:
        if state not in _TRANSITIONS[self._state]:
            raise AssertionError(f"framer: {self._state.name} -> {state.name}")
        self._state = state

    def _fail(self, reason: str, at: int) -> IngestError:
        error = IngestError(reason, field="frame", offset=self._offset + at)
        self._to(_State.FAILED)
        self._buffer.clear()
        return error

    @property
    def failed(self) -> bool:
        """True once the stream failed framing (the next :meth:`feed` or :meth:`end` raises)."""
        return self._state is _State.FAILED

    def _raise_failure(self) -> NoReturn:
        error, self._pending = self._pending, None
        raise error or IngestError("the stream already failed framing", field="frame")

    def feed(self, data: bytes) -> list[bytes]:
        """The messages completed by ``data`` (possibly none), in order.

        When ``data`` completes some messages and then breaks the framing, those messages
        are returned and the error is raised by the next call (see :attr:`failed`).
        """
        if self._state is _State.FAILED:
            self._raise_failure()
        frames: list[bytes] = []
        try:
            self._cut(data, frames)
        except IngestError as exc:
            if not frames:
                raise
            self._pending = exc
        return frames

    def _cut(self, data: bytes, frames: list[bytes]) -> None:
        buf = self._buffer
        buf += data
        pos = self._pos
        while pos < len(buf):
            state = self._state
            if state is _State.IDLE:
                byte = buf[pos]
                if byte in (0x0A, 0x0D):  # stray line ends between frames
                    pos += 1
                    continue
                if 0x31 <= byte <= 0x39:  # NONZERO-DIGIT: MSG-LEN
                    self._to(_State.LENGTH)
                elif byte == 0x3C:  # '<' of PRI: an LF-terminated frame
                    self._to(_State.LINE)
                else:
                    raise self._fail("a frame starts with neither a length nor '<'", pos)
                self._start = pos
            elif state is _State.LENGTH:
                byte = buf[pos]
                if 0x30 <= byte <= 0x39:
                    if pos - self._start >= self._max_digits:
                        raise self._fail(f"frame longer than {self.max_frame} octets", self._start)
                    pos += 1
                elif byte == 0x20:
                    self._need = int(buf[self._start : pos])
                    if self._need > self.max_frame:
                        raise self._fail(f"frame longer than {self.max_frame} octets", self._start)
                    self._to(_State.BODY)
                    pos = self._start = pos + 1
                else:
                    raise self._fail("expected MSG-LEN digits and SP", pos)
            elif state is _State.BODY:
                end = self._start + self._need
                if len(buf) < end:
                    pos = len(buf)
                    break
                frames.append(bytes(buf[self._start : end]))
                self._to(_State.IDLE)
                pos = end
            else:  # LINE
                end = buf.find(b"\n", pos)
                if end < 0:
                    pos = len(buf)
                    if pos - self._start > self.max_frame + 1:  # + a CR of a CRLF trailer
                        raise self._fail(f"frame longer than {self.max_frame} octets", self._start)
                    break
                stop = end - 1 if end > self._start and buf[end - 1] == 0x0D else end
                if stop - self._start > self.max_frame:
                    raise self._fail(f"frame longer than {self.max_frame} octets", self._start)
                frames.append(bytes(buf[self._start : stop]))
                self._to(_State.IDLE)
                pos = end + 1
        # Keep only the frame in progress, so the buffer never holds more than one frame.
        drop = pos if self._state is _State.IDLE else self._start
        del buf[:drop]
        self._offset += drop
        self._start = self._start - drop if self._state is not _State.IDLE else 0
        self._pos = pos - drop

    def end(self) -> None:
        """The stream ended: an error if it ended inside a frame or had failed."""
        if self._state is _State.FAILED:
            self._raise_failure()
        if self._state in (_State.LENGTH, _State.BODY, _State.LINE):
            reason = f"the stream ended while {self._state.value}"
            raise self._fail(reason, len(self._buffer))
