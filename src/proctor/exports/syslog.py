"""RFC 5424 syslog messages for Proctor events, and RFC 6587 octet-counting frames (sans-IO).

Written here: the PyPI syslog packages are ``logging`` handlers that own their socket (not
usable sans-IO), and none escapes structured data for untrusted values.

A message is::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
        [timeQuality …][origin …][proctor@32473 …] BOM MSG

- PRI = facility × 8 + severity; severity follows the shared level (info → 6 informational,
  low → 5 notice, medium → 4 warning, high → 3 error, critical → 2 critical). The facility is
  configurable, by default 13 ("log audit", RFC 5424 §6.2.1).
- TIMESTAMP is the event's time cut to microseconds: RFC 5424 §6.2.3 allows at most 6
  fractional digits (the MSG keeps the nanoseconds).
- HOSTNAME, APP-NAME, PROCID: printable US-ASCII within 255/48/128 characters, checked when the
  configuration is made; MSGID is the event kind (≤ 32).
- STRUCTURED-DATA: ``timeQuality`` (RFC 5424 §7.1) from the event's clock, ``origin`` (§7.2),
  and Proctor's own element. Its SD-ID ``proctor@32473`` uses 32473, the private enterprise
  number RFC 5612 reserves for documentation: operators with their own PEN configure theirs.
  PARAM-VALUEs escape ``"``, ``\\`` and ``]`` (§6.3.3); control characters, which the RFC
  allows but line-oriented receivers choke on, are written ``\\uXXXX`` (a backslash RFC
  receivers keep as text; :func:`unescape_param` reverses it exactly).
- MSG is UTF-8 with a BOM (§6.4): the entry's canonical JSON exactly as the ledger stores it
  (so ``SHA-256(0x00 ‖ MSG)`` is the leaf hash), or the CEF record.

Framing for TCP is RFC 6587 §3.4.1 octet counting, ``MSG-LEN SP SYSLOG-MSG``, which RFC 5425
§4.3 uses over TLS as well; a length prefix cannot be broken out of by any byte in the message.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Final, Literal

from proctor.errors import FormatError, UsageError
from proctor.events.canonical import decode_event
from proctor.events.schema import Event
from proctor.exports._common import PRODUCT, VERSION, Level, level, parse_endpoint
from proctor.exports.cef import to_cef

__all__ = [
    "BOM",
    "DEFAULT_SD_ID",
    "FACILITIES",
    "FrameDecoder",
    "SyslogConfig",
    "SyslogFormatter",
    "escape_param",
    "format_message",
    "frame",
    "unescape_param",
]

BOM: Final = b"\xef\xbb\xbf"
NILVALUE: Final = "-"
DEFAULT_SD_ID: Final = "proctor@32473"  # RFC 5612 documentation PEN; see the module docstring

# RFC 5424 §6.2.1 facility codes by their usual names.
FACILITIES: Final[dict[str, int]] = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "audit": 13,
    "alert": 14,
    "clock": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}
_SEVERITY: Final = {
    Level.INFO: 6,
    Level.LOW: 5,
    Level.MEDIUM: 4,
    Level.HIGH: 3,
    Level.CRITICAL: 2,
}
_PRINTABLE: Final = re.compile("[\x21-\x7e]+")
# SD-NAME (RFC 5424 §6.3.2): 1-32 PRINTUSASCII except '=', SP, ']', '"'. An SD-ID may add
# "@" and a private enterprise number.
_SD_NAME: Final = re.compile("[\x21-\x7e]{1,32}")
_SD_NAME_FORBIDDEN: Final = re.compile('[= \\]"]')
_PARAM_ESCAPES: Final = str.maketrans({'"': '\\"', "\\": "\\\\", "]": "\\]"})
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PARAM_SPECIAL: Final = re.compile('["\\\\\\]\x00-\x1f\x7f-\x9f\u2028\u2029]')
_UNESCAPE: Final = re.compile(r'\\(["\\\]]|u[0-9a-f]{4})')
MAX_FRAME_DIGITS: Final = 10  # octet counts beyond 9,999,999,999 are refused outright


def _check_field(name: str, value: str, limit: int) -> str:
    if value == NILVALUE:
        return value
    if not _PRINTABLE.fullmatch(value) or len(value) > limit:
        raise UsageError(
            f"syslog {name} {value!r} must be 1-{limit} printable US-ASCII characters (RFC 5424 §6)"
        )
    return value


def _check_sd_id(value: str) -> str:
    name, at, pen = value.partition("@")
    ok = (
        _SD_NAME.fullmatch(value) is not None
        and _SD_NAME_FORBIDDEN.search(value) is None
        and bool(name)
        and (not at or pen.isdigit())
    )
    if not ok:
        raise UsageError(f"syslog SD-ID {value!r} must be NAME@PEN in printable US-ASCII (§6.3.2)")
    return value


@functools.cache  # getfqdn may ask DNS: once per process is enough
def _default_hostname() -> str:
    """The host's FQDN (RFC 5424 §6.2.4 prefers it), or NILVALUE when it is unusable."""
    name = socket.getfqdn() or socket.gethostname()
    name = name.encode("ascii", "ignore").decode()
    return name[:255] if name and _PRINTABLE.fullmatch(name) else NILVALUE


@dataclass(frozen=True, kw_only=True)
class SyslogConfig:
    """How messages are built; every header field is checked here, once."""

    facility: int = FACILITIES["audit"]
    hostname: str = field(default_factory=_default_hostname)
    app_name: str = "proctor"
    procid: str = field(default_factory=lambda: str(os.getpid()))
    sd_id: str = DEFAULT_SD_ID
    body: Literal["json", "cef"] = "json"
    max_octets: int = 65536
    """Largest SYSLOG-MSG; RFC 5425 §4.3.1 receivers handle 8192 at least: match yours."""
    oversize: Literal["fail", "truncate"] = "fail"
    """A longer message is an error (default), or its MSG is cut and ``truncated`` set."""

    def __post_init__(self) -> None:
        if not 0 <= self.facility <= 23:
            raise UsageError(f"syslog facility must be 0-23, not {self.facility}")
        _check_field("HOSTNAME", self.hostname, 255)
        _check_field("APP-NAME", self.app_name, 48)
        _check_field("PROCID", self.procid, 128)
        _check_sd_id(self.sd_id)
        if self.body not in ("json", "cef"):
            raise UsageError(f"syslog body must be json or cef, not {self.body!r}")
        if self.oversize not in ("fail", "truncate"):
            raise UsageError(f"syslog oversize must be fail or truncate, not {self.oversize!r}")
        if self.max_octets < 480:  # RFC 5424 §6.1: every receiver accepts 480 octets
            raise UsageError(f"syslog max_octets must be at least 480, not {self.max_octets}")


def escape_param(value: str) -> str:
    """A PARAM-VALUE: ``"``, ``\\``, ``]`` escaped (§6.3.3), control characters as ``\\uXXXX``."""
    if _PARAM_SPECIAL.search(value) is None:
        return value
    escaped = value.translate(_PARAM_ESCAPES)
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", escaped)


def unescape_param(value: str) -> str:
    """The inverse of :func:`escape_param` (what a Proctor-aware receiver does)."""

    def one(m: re.Match[str]) -> str:
        text = m.group(1)
        return chr(int(text[1:], 16)) if text.startswith("u") else text

    return _UNESCAPE.sub(one, value)


def _element(sd_id: str, params: list[tuple[str, str]]) -> str:
    inner = "".join(f' {name}="{escape_param(value)}"' for name, value in params)
    return f"[{sd_id}{inner}]"


def _time_quality(event: Event) -> str:
    # RFC 5424 §7.1: times are UTC (tzKnown); isSynced when an NTP server set the clock, and
    # syncAccuracy (µs) is given only then.
    clock = event.clock
    params = [("tzKnown", "1"), ("isSynced", "1" if clock.source == "ntp" else "0")]
    if clock.source == "ntp" and clock.uncertainty_us is not None:
        params.append(("syncAccuracy", str(clock.uncertainty_us)))
    return _element("timeQuality", params)


def _origin(event: Event) -> str:
    params = [("software", PRODUCT), ("swVersion", VERSION)]
    address = parse_endpoint(event.source.address if event.source is not None else None)
    if address is not None:
        params.insert(0, ("ip", address.ip))
    return _element("origin", params)


def _proctor(event: Event, index: int | None, config: SyslogConfig, truncated: int) -> str:
    params = [("id", event.id), ("kind", event.kind)]
    if index is not None:
        params.append(("index", str(index)))
    if event.actor is not None:
        params.append(("actor", event.actor.id))
        if event.actor.ip is not None:
            params.append(("ip", event.actor.ip))
    if event.target is not None:
        params.append(("target", event.target.name or event.target.type))
        if event.target.database is not None:
            params.append(("database", event.target.database))
    if event.decision is not None:
        params.append(("effect", event.decision.effect))
    if event.risk is not None:
        params.append(("risk", str(event.risk.score)))
    if event.outcome is not None:
        params.append(("status", event.outcome.status))
    session_id = event.session.id if event.session else (event.links and event.links.session_id)
    if session_id:
        params.append(("session", session_id))
    params.append(("level", level(event).name.lower()))
    if truncated:
        params.append(("truncated", str(truncated)))
    return _element(config.sd_id, params)


def format_message(
    event: Event, raw: bytes, config: SyslogConfig, *, index: int | None = None
) -> bytes:
    """One RFC 5424 SYSLOG-MSG for ``event``, whose canonical bytes are ``raw``."""
    pri = config.facility * 8 + _SEVERITY[level(event)]
    # RFC 5424 §6.2.3: TIME-SECFRAC has at most 6 digits; event times have exactly 9.
    timestamp = event.time[:26] + "Z"
    header = (
        f"<{pri}>1 {timestamp} {config.hostname} {config.app_name} {config.procid} {event.kind} "
    )
    body = raw if config.body == "json" else to_cef(event, index=index).encode()
    sd = _time_quality(event) + _origin(event)
    message = (header + sd + _proctor(event, index, config, 0) + " ").encode() + BOM + body
    if len(message) <= config.max_octets:
        return message
    if config.oversize == "fail":
        raise UsageError(
            f"event {event.id} makes a {len(message)}-octet syslog message, more than the "
            f"{config.max_octets} allowed: raise the limit (what the receiver accepts) or "
            "choose truncation"
        )
    prefix = (header + sd + _proctor(event, index, config, len(body)) + " ").encode() + BOM
    room = config.max_octets - len(prefix)
    return prefix + _cut_utf8(body, room)


def _cut_utf8(data: bytes, size: int) -> bytes:
    """At most ``size`` bytes of UTF-8 ``data``, never ending inside a character."""
    if size <= 0:
        return b""
    cut = data[:size]
    return cut.decode("utf-8", "ignore").encode()


def _length_start(digits: bytes) -> bool:
    """MSG-LEN = NONZERO-DIGIT *DIGIT (RFC 6587 §3.4.1)."""
    return digits[:1] in (b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9") and (
        digits.isdigit()
    )


def frame(message: bytes) -> bytes:
    """RFC 6587 §3.4.1 octet-counting frame: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(message), message)


class FrameDecoder:
    """Receiver side of octet counting: bytes in, whole messages out (sans-IO).

    Anything but ``NONZERO-DIGIT *DIGIT SP`` where a frame starts, or a frame longer than
    ``max_octets``, raises :class:`~proctor.errors.FormatError`; the stream is then unusable.
    """

    def __init__(self, max_octets: int = 1 << 20) -> None:
        self.max_octets = max_octets
        self._buffer = bytearray()
        self._need: int | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Append received bytes; return the messages they complete, in order."""
        self._buffer += data
        messages: list[bytes] = []
        while True:
            if self._need is None:
                space = self._buffer.find(b" ", 0, MAX_FRAME_DIGITS + 1)
                if space < 0:  # the length is not complete yet: what is here must start one
                    head = bytes(self._buffer[: MAX_FRAME_DIGITS + 1])
                    if len(head) > MAX_FRAME_DIGITS or (head and not _length_start(head)):
                        raise FormatError(f"not an octet-counted syslog frame: {head!r}")
                    return messages
                digits = bytes(self._buffer[:space])
                if not digits or not _length_start(digits):
                    raise FormatError(f"not an octet-counted syslog frame: {digits!r}")
                need = int(digits)
                if need > self.max_octets:
                    raise FormatError(f"syslog frame of {need} octets exceeds {self.max_octets}")
                self._need = need
                del self._buffer[: space + 1]
            if len(self._buffer) < self._need:
                return messages
            messages.append(bytes(self._buffer[: self._need]))
            del self._buffer[: self._need]
            self._need = None

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buffer)


class SyslogFormatter:
    """Export driver plug-in: RFC 5424 messages, one per line (``lf``) or octet-counted."""

    name: Final = "syslog"

    def __init__(
        self, config: SyslogConfig | None = None, *, framing: Literal["lf", "octet"] = "lf"
    ) -> None:
        self.config = config or SyslogConfig()
        self._octet = framing == "octet"

    def format(self, index: int, raw: bytes) -> bytes:
        """The message for the ledger entry ``raw`` at ``index``, framed."""
        message = format_message(decode_event(raw), raw, self.config, index=index)
        # LF framing is safe: neither the header, the escaped SD nor a canonical-JSON or CEF
        # MSG can hold a raw line break.
        return frame(message) if self._octet else message + b"\n"
