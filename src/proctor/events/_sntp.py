"""Sans-IO SNTPv4 client codec (RFC 4330, on-wire format of RFC 5905).

``build_request(t1)`` returns the 48 bytes to send; ``parse_response(reply, sent, t1, t4)``
checks the server's answer as untrusted input and returns a :class:`Sample` (offset, round-trip
delay and an error bound, all integers). No sockets here: :mod:`proctor.events.clock` does the
I/O. Every rejection raises :class:`~proctor.errors.FormatError` saying what was wrong.

Times on our side are integer nanoseconds since the Unix epoch; NTP timestamps are 64-bit fixed
point seconds since 1900 (RFC 5905 §6). All arithmetic is on integers: both kinds of time are
scaled to a common unit of 2**-32 ns, where each is exact, and rounded once at the end.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proctor.errors import FormatError, UsageError

__all__ = [
    "NTP_PORT",
    "PACKET_SIZE",
    "Sample",
    "build_request",
    "from_ntp64",
    "parse_response",
    "to_ntp64",
]

NTP_PORT = 123
PACKET_SIZE = 48  # header without extension fields or MAC (RFC 5905 §7.3, Figure 8)

_VERSION = 4
_MODE_CLIENT = 3
_MODE_SERVER = 4
_LEAP_UNSYNCHRONIZED = 3  # "clock unsynchronized" (RFC 5905 §7.3, Figure 9)
_MAX_STRATUM = 15  # 16 means unsynchronized, 17-255 are reserved (RFC 5905 §7.3, Figure 11)

_NS_PER_S = 1_000_000_000
_NS_PER_US = 1_000
# Seconds from the NTP prime epoch (1900-01-01, era 0) to the Unix epoch (RFC 5905 §6, Figure 4).
_UNIX_EPOCH_NTP_S = 2_208_988_800
_UNIX_EPOCH_NTP_NS = _UNIX_EPOCH_NTP_S * _NS_PER_S
_ERA = 1 << 64  # one NTP era: 2**32 seconds in 64-bit fixed point

# Byte 0 (LI, VN, Mode), stratum, poll, precision, root delay, root dispersion, reference ID,
# then the reference, origin, receive and transmit timestamps (RFC 5905 §7.3, Figure 8).
_HEADER = struct.Struct("!BBbbII4sQQQQ")

# What the common kiss codes ask of a client (RFC 5905 §7.4, Figure 13).
_KISS_MEANINGS = {
    "DENY": "access denied, stop querying this server",
    "RSTR": "access restricted, stop querying this server",
    "RATE": "rate exceeded, query less often",
}


@dataclass(frozen=True, slots=True)
class Sample:
    """One validated client/server exchange: our clock's offset from the server's, and its bound.

    ``offset_ns`` is what to add to our clock to get the server's time; ``uncertainty_us`` bounds
    the error of that corrected time against the server's primary reference at the moment of
    the exchange (see :func:`parse_response`).
    """

    offset_ns: int
    delay_ns: int
    root_delay_ns: int
    root_dispersion_ns: int
    uncertainty_us: int
    stratum: int
    leap: int
    version: int


def to_ntp64(unix_ns: int) -> int:
    """Unix nanoseconds to an NTP 64-bit timestamp (RFC 5905 §6), rounded, modulo the era."""
    if not isinstance(unix_ns, int):
        raise UsageError(f"time must be integer nanoseconds, got {type(unix_ns).__name__}")
    scaled = ((unix_ns + _UNIX_EPOCH_NTP_NS) << 32) + _NS_PER_S // 2
    # The 32-bit seconds field wraps at the era boundary (2036-02-07); the era number is not
    # sent and the receiver infers it (RFC 5905 §6), see from_ntp64.
    return (scaled // _NS_PER_S) % _ERA


def from_ntp64(timestamp: int, near_ns: int) -> int:
    """An NTP 64-bit timestamp to Unix nanoseconds, in the era that puts it nearest ``near_ns``."""
    return _round_div(_resolve(timestamp, near_ns), 1 << 32)


def build_request(transmit_ns: int) -> bytes:
    """The 48-byte client request: mode 3, version 4, transmit timestamp = ``transmit_ns``.

    RFC 4330 §5: every header field is zero except LI/VN/Mode and the Transmit Timestamp, which
    carries our send time so the server echoes it as the Originate Timestamp. That echo lets us
    compute delay and offset and reject replies that do not answer this request.
    """
    first = (0 << 6) | (_VERSION << 3) | _MODE_CLIENT  # LI 0 (no warning), VN 4, mode 3
    return _HEADER.pack(first, 0, 0, 0, 0, 0, b"\0\0\0\0", 0, 0, 0, to_ntp64(transmit_ns))


def parse_response(data: bytes, request_transmit: bytes | int, t1_ns: int, t4_ns: int) -> Sample:
    """Validate a server reply to our request and compute offset, delay and uncertainty.

    ``request_transmit`` is the Transmit Timestamp we sent, as its 8 bytes (``request[40:48]``)
    or as the 64-bit integer; ``t1_ns`` and ``t4_ns`` are our clock when the request left and
    when the reply arrived, in Unix nanoseconds.
    """
    expected_origin = _origin_bytes(request_transmit)
    if len(data) < PACKET_SIZE:
        raise FormatError(
            f"SNTP reply is {len(data)} bytes, shorter than the {PACKET_SIZE}-byte header"
        )
    fields = _HEADER.unpack_from(data)
    first, stratum, _poll, _precision, root_delay, root_disp, ref_id = fields[:7]
    _reference, _origin, receive, transmit = fields[7:]
    leap, version, mode = first >> 6, (first >> 3) & 0b111, first & 0b111

    # Reply checks of RFC 4330 §5 (table and suggested checks 3 and 4).
    if mode != _MODE_SERVER:
        raise FormatError(f"SNTP reply has mode {mode}, expected {_MODE_SERVER} (server)")
    if version not in (3, 4):
        raise FormatError(f"SNTP reply has version {version}, expected 3 or 4")
    if stratum == 0:
        raise FormatError(_kiss_message(ref_id))
    if stratum > _MAX_STRATUM:
        raise FormatError(f"SNTP server is unsynchronized (stratum {stratum}, expected 1-15)")
    if leap == _LEAP_UNSYNCHRONIZED:
        raise FormatError("SNTP server is unsynchronized (leap indicator 3)")
    # The server copies our Transmit Timestamp into Originate: anything else is a stale
    # duplicate or a forgery from someone who did not see our request (RFC 4330 §5 check 3,
    # RFC 5905 §8 "bogus" packet).
    got_origin = data[24:32]
    if got_origin != expected_origin:
        raise FormatError(
            "SNTP reply does not answer our request: originate timestamp "
            f"{got_origin.hex()} != our transmit timestamp {expected_origin.hex()}"
        )
    if transmit == 0:
        raise FormatError("SNTP reply has a zero transmit timestamp")
    # Not in RFC 4330's list, but a zero receive timestamp leaves T2 undefined: θ and δ computed
    # from it would be nonsense rather than merely imprecise.
    if receive == 0:
        raise FormatError("SNTP reply has a zero receive timestamp")

    # Everything in units of 2**-32 ns so that both our nanoseconds and NTP's 2**-32 s are exact.
    t1 = t1_ns << 32
    t4 = t4_ns << 32
    t2 = _resolve(receive, t1_ns)
    t3 = _resolve(transmit, t1_ns)
    if t3 < t2:
        raise FormatError(
            f"SNTP reply claims it was sent {_fmt_ns(t2 - t3)} before the request arrived"
        )
    # RFC 4330 §5 / RFC 5905 §8 on-wire equations.
    offset2 = (t2 - t1) + (t3 - t4)  # twice the offset θ
    delay = (t4 - t1) - (t3 - t2)  # δ
    if delay < 0:
        # A client/server exchange cannot have negative delay (RFC 4330 §5): the server's
        # processing time exceeds our whole round trip, or our clock went backwards.
        raise FormatError(
            f"SNTP exchange has negative round-trip delay ({_fmt_ns(delay)}): the server "
            f"held the request {_fmt_ns(t3 - t2)} but the round trip took {_fmt_ns(t4 - t1)}"
        )
    # NTP short format, 16.16 fixed point seconds (RFC 5905 §6): to 2**-32 ns, exactly.
    root_delay_q = root_delay * _NS_PER_S << 16
    root_disp_q = root_disp * _NS_PER_S << 16
    # Error bound, the root distance of RFC 5905 Appendix A.5.5.2 (root_dist) for one sample:
    # - δ/2: the true offset lies within θ ± δ/2, since how the round trip split between the
    #   outbound and return paths is unknown (all of it might have been one way);
    # - root_delay/2 + root_dispersion: the server's own bound against its primary reference,
    #   which it reports in the header. Jitter and our local dispersion are left out: with one
    #   sample per exchange there is nothing to estimate them from.
    uncertainty = -(-(delay + root_delay_q) // 2) + root_disp_q
    return Sample(
        offset_ns=_round_div(offset2, 2 << 32),
        delay_ns=_round_div(delay, 1 << 32),
        root_delay_ns=_round_div(root_delay_q, 1 << 32),
        root_dispersion_ns=_round_div(root_disp_q, 1 << 32),
        uncertainty_us=-(-uncertainty // (_NS_PER_US << 32)),  # a bound rounds outward
        stratum=stratum,
        leap=leap,
        version=version,
    )


def _resolve(timestamp: int, near_ns: int) -> int:
    """An NTP timestamp as Unix time in 2**-32 ns, in the era nearest ``near_ns``.

    The packet carries only 32 bits of seconds, so era 0 (from 1900) and era 1 (from
    2036-02-07 06:28:16 UTC) look alike. RFC 5905 §6: the era is recovered from a local clock
    known to be within 68 years, picking the candidate closest to it.
    """
    near = ((near_ns + _UNIX_EPOCH_NTP_NS) << 32) // _NS_PER_S  # our clock in NTP fixed point
    era = (near - timestamp + _ERA // 2) // _ERA
    full = timestamp + era * _ERA
    return full * _NS_PER_S - (_UNIX_EPOCH_NTP_NS << 32)


def _origin_bytes(request_transmit: bytes | int) -> bytes:
    """Our transmit timestamp as the 8 bytes the server must echo."""
    if isinstance(request_transmit, bytes):
        if len(request_transmit) != 8:
            raise UsageError(
                f"request transmit timestamp must be 8 bytes, got {len(request_transmit)}"
            )
        return request_transmit
    if not 0 <= request_transmit < _ERA:
        raise UsageError(f"request transmit timestamp {request_transmit} is not a 64-bit value")
    return request_transmit.to_bytes(8, "big")


def _kiss_message(ref_id: bytes) -> str:
    """Describe a kiss-o'-death reply: stratum 0 with an ASCII code in Reference ID."""
    code = ref_id.rstrip(b"\0")
    if code and code.isascii() and code.decode().isprintable():
        text = code.decode()
        meaning = _KISS_MEANINGS.get(text, "unknown code")
        return f"SNTP server sent a kiss-o'-death (stratum 0), code {text!r}: {meaning}"
    # RFC 5905 §7.4: an unreadable code still means the packet carries no time.
    return f"SNTP server sent a kiss-o'-death (stratum 0) with unreadable code {ref_id.hex()}"


def _round_div(n: int, d: int) -> int:
    """``n / d`` rounded to the nearest integer (halves up), for positive ``d``."""
    return (n + d // 2) // d


def _fmt_ns(q: int) -> str:
    """A duration in 2**-32 ns, for messages."""
    return f"{_round_div(q, 1 << 32)} ns"
