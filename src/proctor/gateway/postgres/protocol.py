"""PostgreSQL frontend/backend protocol 3.0, sans-IO: bytes in, typed messages out.

Framing (PostgreSQL docs, "Message Formats"): after the connection opens, the client sends
one untyped packet (``Int32 length`` including itself, then ``Int32 code``: a protocol
version for StartupMessage, or a magic code for SSLRequest, GSSENCRequest and CancelRequest).
Every later message in either direction is ``Byte1 type``, ``Int32 length`` (including
itself, not the type byte), then the body.

:class:`FrontendReader` and :class:`BackendReader` take bytes as they arrive and return the
complete messages; nothing here touches a socket. Messages the gateway must understand are
decoded into dataclasses; every other one stays a :class:`Raw` (type and body) that can be
forwarded unchanged. Anything malformed or over the configured size raises
:class:`ProtocolError` (the gateway answers SQLSTATE 08P01 and closes), never a bare
``IndexError`` or ``UnicodeDecodeError``.

The server is trusted less than fully: :func:`check_backend` checks the body of every server
message the gateway reads or passes on against its format before anything else looks at it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from proctor.errors import InputError

__all__ = [
    "CANCEL_REQUEST_CODE",
    "MAX_MESSAGE",
    "PROTOCOL_3_0",
    "BackendReader",
    "Bind",
    "CancelRequest",
    "Close",
    "CommandComplete",
    "Describe",
    "ErrorResponse",
    "Execute",
    "FrontendReader",
    "GSSENCRequest",
    "Parse",
    "ProtocolError",
    "Query",
    "Raw",
    "ReadyForQuery",
    "SSLRequest",
    "StartupMessage",
    "Sync",
    "Terminate",
    "check_backend",
    "error_response",
    "notice_response",
    "ready_for_query",
    "response_fields",
]

MAX_MESSAGE: Final = 64 << 20  # default limit on one message; config may lower it
PROTOCOL_3_0: Final = 196608  # 3 << 16
SSL_REQUEST_CODE: Final = 80877103  # 1234 << 16 | 5679
GSSENC_REQUEST_CODE: Final = 80877104  # 1234 << 16 | 5680
CANCEL_REQUEST_CODE: Final = 80877102  # 1234 << 16 | 5678
_INT32 = struct.Struct("!i")
_INT16 = struct.Struct("!h")
_HEADER = struct.Struct("!ci")


class ProtocolError(InputError):
    """A message that breaks the protocol; the session answers SQLSTATE 08P01 and ends."""

    sqlstate = "08P01"


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A message kept as it came: its type byte and body (forwarded unchanged)."""

    type: bytes
    body: bytes

    def encode(self) -> bytes:
        """The message on the wire."""
        return self.type + _INT32.pack(len(self.body) + 4) + self.body


@dataclass(frozen=True)
class StartupMessage:
    """The first packet of a session: protocol version and parameters (user, database, …)."""

    version: int
    parameters: dict[str, str]

    def encode(self) -> bytes:
        """The packet on the wire."""
        body = b"".join(_cstr(k) + _cstr(v) for k, v in self.parameters.items()) + b"\x00"
        return _INT32.pack(len(body) + 8) + _INT32.pack(self.version) + body


@dataclass(frozen=True)
class SSLRequest:
    """The client asks for TLS before the startup packet."""


@dataclass(frozen=True)
class GSSENCRequest:
    """The client asks for GSSAPI encryption (Proctor refuses it)."""


@dataclass(frozen=True)
class CancelRequest:
    """Cancel the query running in the backend with this key."""

    process_id: int
    secret: bytes


@dataclass(frozen=True)
class Query:
    """Simple query: one string, possibly several statements."""

    sql: str


@dataclass(frozen=True)
class Parse:
    """Extended query: prepare ``sql`` as statement ``name`` ('' is the unnamed one)."""

    name: str
    sql: str
    param_types: tuple[int, ...]


@dataclass(frozen=True)
class Bind:
    """Bind a prepared statement's parameters into a portal."""

    portal: str
    statement: str
    raw: bytes
    """The whole body, forwarded as it is (parameters are not decoded here)."""


@dataclass(frozen=True)
class Execute:
    """Run a portal, returning at most ``max_rows`` rows (0: all)."""

    portal: str
    max_rows: int


@dataclass(frozen=True)
class Describe:
    """Describe a prepared statement (``S``) or a portal (``P``)."""

    kind: bytes
    name: str


@dataclass(frozen=True)
class Close:
    """Close a prepared statement (``S``) or a portal (``P``)."""

    kind: bytes
    name: str


@dataclass(frozen=True)
class Sync:
    """End of an extended-query batch."""


@dataclass(frozen=True)
class Terminate:
    """The client is leaving."""


@dataclass(frozen=True)
class CommandComplete:
    """A command finished; ``tag`` like ``SELECT 3`` or ``UPDATE 7``."""

    tag: str

    @property
    def rows(self) -> int | None:
        """The row count the tag carries, if any."""
        last = self.tag.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() and " " in self.tag else None


@dataclass(frozen=True)
class ReadyForQuery:
    """The backend is idle (``I``), in a transaction (``T``) or in a failed one (``E``)."""

    status: bytes


@dataclass(frozen=True)
class ErrorResponse:
    """An error with its fields by code (``S`` severity, ``C`` SQLSTATE, ``M`` message…)."""

    fields: dict[str, str]

    @property
    def sqlstate(self) -> str:
        """The SQLSTATE code ('' when absent)."""
        return self.fields.get("C", "")


FrontendMessage = (
    StartupMessage
    | SSLRequest
    | GSSENCRequest
    | CancelRequest
    | Query
    | Parse
    | Bind
    | Execute
    | Describe
    | Close
    | Sync
    | Terminate
    | Raw
)
BackendMessage = CommandComplete | ReadyForQuery | ErrorResponse | Raw


# -- building what the gateway sends ------------------------------------------------------------


def _cstr(text: str) -> bytes:
    data = text.encode()
    if b"\x00" in data:
        raise ValueError("protocol strings cannot hold NUL")
    return data + b"\x00"


def _fields_message(kind: bytes, severity: str, sqlstate: str, message: str, detail: str) -> bytes:
    fields = [("S", severity), ("V", severity), ("C", sqlstate), ("M", message)]
    if detail:
        fields.append(("D", detail))
    body = b"".join(code.encode() + _cstr(value.replace("\x00", "")) for code, value in fields)
    return Raw(kind, body + b"\x00").encode()


def error_response(sqlstate: str, message: str, detail: str = "", severity: str = "ERROR") -> bytes:
    """An ErrorResponse (``E``) with severity, SQLSTATE, message and optional detail."""
    return _fields_message(b"E", severity, sqlstate, message, detail)


def notice_response(message: str, sqlstate: str = "01000", detail: str = "") -> bytes:
    """A NoticeResponse (``N``), e.g. to say a result was cut at ``max_rows``."""
    return _fields_message(b"N", "NOTICE", sqlstate, message, detail)


def ready_for_query(status: bytes = b"I") -> bytes:
    """ReadyForQuery (``Z``)."""
    return Raw(b"Z", status).encode()


# -- reading --------------------------------------------------------------------------------------


class _Body:
    """A cursor over one message body whose reads raise ProtocolError when they run out."""

    def __init__(self, what: str, data: bytes) -> None:
        self.what = what
        self.data = data
        self.at = 0

    def cstr(self) -> str:
        end = self.data.find(b"\x00", self.at)
        if end < 0:
            raise ProtocolError(f"{self.what}: string not terminated")
        raw = self.data[self.at : end]
        self.at = end + 1
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise ProtocolError(f"{self.what}: string is not UTF-8") from None

    def integer(self, size: int = 4) -> int:
        if self.at + size > len(self.data):
            raise ProtocolError(f"{self.what}: message too short")
        value = int.from_bytes(self.data[self.at : self.at + size], "big", signed=True)
        self.at += size
        return value

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise ProtocolError(f"{self.what}: message too short")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def end(self) -> None:
        if self.at != len(self.data):
            raise ProtocolError(
                f"{self.what}: {len(self.data) - self.at} unexpected trailing bytes"
            )


class _Reader:
    """Typed-message framing shared by both directions."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a message."""
        return len(self._buf)

    def _frames(self) -> list[tuple[bytes, bytes]]:
        out = []
        buf, at, size = self._buf, 0, len(self._buf)
        view = memoryview(buf)
        try:
            while size - at >= 5:
                kind, length = _HEADER.unpack_from(buf, at)
                if length < 4 or length > self.max_message:
                    raise ProtocolError(f"message {kind!r} claims length {length}")
                if size - at < 1 + length:
                    break
                out.append((kind, bytes(view[at + 5 : at + 1 + length])))
                at += 1 + length
        finally:
            view.release()
            del buf[:at]  # once per call, not per message
        return out


class FrontendReader(_Reader):
    """What a client sends: one startup-phase packet, then typed messages."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        super().__init__(max_message)
        self.started = False

    def feed(self, data: bytes) -> list[FrontendMessage]:
        """Take bytes from the client; return every message they complete."""
        self._buf += data
        out: list[FrontendMessage] = []
        if not self.started:
            first = self._startup()
            if first is None:
                return out
            out.append(first)
            # After SSLRequest/GSSENCRequest the real startup packet still follows.
            if not isinstance(first, SSLRequest | GSSENCRequest):
                self.started = True
            if not self.started:
                return out + self.feed(b"")
        out.extend(_frontend(kind, body) for kind, body in self._frames())
        return out

    def _startup(self) -> FrontendMessage | None:
        if len(self._buf) < 8:
            return None
        (length,) = _INT32.unpack_from(self._buf)
        if length < 8 or length > min(self.max_message, 10_000):  # the server's own bound
            raise ProtocolError(f"startup packet claims length {length}")
        if len(self._buf) < length:
            return None
        packet = bytes(self._buf[4:length])
        del self._buf[:length]
        body = _Body("startup packet", packet)
        code = body.integer()
        if code == SSL_REQUEST_CODE:
            body.end()
            return SSLRequest()
        if code == GSSENC_REQUEST_CODE:
            body.end()
            return GSSENCRequest()
        if code == CANCEL_REQUEST_CODE:
            pid = body.integer()
            secret = body.take(len(packet) - body.at)
            if not 4 <= len(secret) <= 256:
                raise ProtocolError("CancelRequest: bad key length")
            self.started = True
            return CancelRequest(pid, secret)
        if code >> 16 != 3:
            raise ProtocolError(f"unsupported protocol version {code >> 16}.{code & 0xFFFF}")
        params: dict[str, str] = {}
        while True:
            name = body.cstr()
            if not name:
                break
            params[name] = body.cstr()
        body.end()
        return StartupMessage(code, params)


def _frontend(kind: bytes, data: bytes) -> FrontendMessage:
    body = _Body(f"message {kind.decode(errors='replace')!r}", data)
    if kind == b"Q":
        msg: FrontendMessage = Query(body.cstr())
    elif kind == b"P":
        name, sql = body.cstr(), body.cstr()
        n = body.integer(2)
        if n < 0:
            raise ProtocolError("Parse: negative parameter count")
        msg = Parse(name, sql, tuple(body.integer() for _ in range(n)))
    elif kind == b"B":
        portal, statement = body.cstr(), body.cstr()
        body.at = len(data)  # parameters and formats are forwarded, not read
        msg = Bind(portal, statement, data)
    elif kind == b"E":
        msg = Execute(body.cstr(), body.integer())
    elif kind in (b"D", b"C"):
        which = body.take(1)
        if which not in (b"S", b"P"):
            raise ProtocolError(f"{'Describe' if kind == b'D' else 'Close'}: bad kind {which!r}")
        name = body.cstr()
        msg = Describe(which, name) if kind == b"D" else Close(which, name)
    elif kind == b"S":
        msg = Sync()
    elif kind == b"X":
        msg = Terminate()
    else:
        return Raw(kind, data)  # password/SASL, CopyData/Done/Fail, Flush, FunctionCall
    body.end()
    return msg


class BackendReader(_Reader):
    """What a server sends: typed messages only."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        super().__init__(max_message)

    def feed(self, data: bytes) -> list[BackendMessage]:
        """Take bytes from the server; return every message they complete."""
        self._buf += data
        return [_backend(kind, body) for kind, body in self._frames()]

    def frames(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Take bytes from the server; return each complete message as (type, body), undecoded
        (the proxy's hot path decodes only what it must)."""
        self._buf += data
        return self._frames()


def _backend(kind: bytes, data: bytes) -> BackendMessage:
    body = _Body(f"message {kind.decode(errors='replace')!r}", data)
    if kind == b"C":
        msg: BackendMessage = CommandComplete(body.cstr())
    elif kind == b"Z":
        status = body.take(1)
        if status not in (b"I", b"T", b"E"):
            raise ProtocolError(f"ReadyForQuery: bad status {status!r}")
        msg = ReadyForQuery(status)
    elif kind in (b"E",):
        fields: dict[str, str] = {}
        while (code := body.take(1)) != b"\x00":
            fields[code.decode(errors="replace")] = body.cstr()
        msg = ErrorResponse(fields)
    else:
        return Raw(kind, data)
    body.end()
    return msg


# -- checking what the server sends ----------------------------------------------------------------


def check_backend(kind: bytes, body: bytes) -> None:
    """Raise ProtocolError when the body of a server message breaks its format (PostgreSQL docs,
    "Message Formats"). Types not known here are left to the caller, which expects none."""
    check = _BACKEND_FORMATS.get(kind)
    if check is not None and not check(body):
        raise ProtocolError(f"upstream sent a malformed {_BACKEND_NAMES[kind]}")


def response_fields(body: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse body, by code (``S``, ``V``, ``C``…)."""
    if not _fields(body):
        raise ProtocolError("upstream sent a malformed ErrorResponse or NoticeResponse")
    out: dict[str, str] = {}
    at = 0
    while body[at] != 0:
        end = body.index(b"\x00", at + 1)
        out[chr(body[at])] = body[at + 1 : end].decode(errors="replace")
        at = end + 1
    return out


def _empty(body: bytes) -> bool:
    return not body


def _ready(body: bytes) -> bool:
    return body in (b"I", b"T", b"E")


def _fields(body: bytes) -> bool:
    """Code byte and string pairs, then a NUL (ErrorResponse, NoticeResponse)."""
    at, size = 0, len(body)
    while at < size and body[at] != 0:
        at = body.find(b"\x00", at + 1)
        if at < 0:
            return False
        at += 1
    return at == size - 1


def _strings(count: int) -> Callable[[bytes], bool]:
    def check(body: bytes) -> bool:
        return body.count(b"\x00") == count and body.endswith(b"\x00")

    return check


_TWO_STRINGS: Final = _strings(2)


def _notification(body: bytes) -> bool:
    return len(body) >= 4 and _TWO_STRINGS(body[4:])  # process id, channel, payload


def _row_description(body: bytes) -> bool:
    try:
        (count,) = _INT16.unpack_from(body)
        at = 2
        for _ in range(count):
            at = body.index(b"\x00", at) + 19  # name, table oid, column, type, size, mod, format
    except (struct.error, ValueError):
        return False
    return count >= 0 and at == len(body)


def _data_row(body: bytes) -> bool:
    try:
        (count,) = _INT16.unpack_from(body)
        at = 2
        for _ in range(count):
            (size,) = _INT32.unpack_from(body, at)
            if size < -1:
                return False
            at += 4 + max(size, 0)
    except struct.error:
        return False
    return count >= 0 and at == len(body)


def _parameter_description(body: bytes) -> bool:
    return len(body) >= 2 and len(body) == 2 + 4 * int.from_bytes(body[:2], "big", signed=True)


def _copy_response(body: bytes) -> bool:
    if len(body) < 3 or body[0] not in (0, 1):
        return False
    count = int.from_bytes(body[1:3], "big", signed=True)
    return count >= 0 and len(body) == 3 + 2 * count


def _key_data(body: bytes) -> bool:
    return 8 <= len(body) <= 260  # process id, then a secret of 4 to 256 bytes


def _authentication(body: bytes) -> bool:
    return len(body) >= 4


_BACKEND_FORMATS: Final[dict[bytes, Callable[[bytes], bool]]] = {
    b"1": _empty,  # ParseComplete
    b"2": _empty,  # BindComplete
    b"3": _empty,  # CloseComplete
    b"n": _empty,  # NoData
    b"s": _empty,  # PortalSuspended
    b"I": _empty,  # EmptyQueryResponse
    b"c": _empty,  # CopyDone
    b"Z": _ready,
    b"E": _fields,
    b"N": _fields,
    b"S": _TWO_STRINGS,  # ParameterStatus: name, value
    b"C": _strings(1),  # CommandComplete: the tag
    b"A": _notification,
    b"T": _row_description,
    b"D": _data_row,
    b"t": _parameter_description,
    b"G": _copy_response,
    b"H": _copy_response,
    b"W": _copy_response,
    b"K": _key_data,
    b"R": _authentication,
}
_BACKEND_NAMES: Final = {
    b"1": "ParseComplete",
    b"2": "BindComplete",
    b"3": "CloseComplete",
    b"n": "NoData",
    b"s": "PortalSuspended",
    b"I": "EmptyQueryResponse",
    b"c": "CopyDone",
    b"Z": "ReadyForQuery",
    b"E": "ErrorResponse",
    b"N": "NoticeResponse",
    b"S": "ParameterStatus",
    b"C": "CommandComplete",
    b"A": "NotificationResponse",
    b"T": "RowDescription",
    b"D": "DataRow",
    b"t": "ParameterDescription",
    b"G": "CopyInResponse",
    b"H": "CopyOutResponse",
    b"W": "CopyBothResponse",
    b"K": "BackendKeyData",
    b"R": "Authentication request",
}
