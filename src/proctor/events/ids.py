"""Event ids (UUIDv7, RFC 9562) and event times (RFC 3339 UTC with nanoseconds).

Ids sort by creation time because UUIDv7 puts a Unix millisecond timestamp in its first 48 bits;
times are fixed-width strings (``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ``) so they sort as text too.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import threading
import time
import uuid
from typing import Final

from proctor.errors import EventError

__all__ = [
    "TIME_PATTERN",
    "UUID7_PATTERN",
    "UUID_PATTERN",
    "check_uuid7",
    "event_id_ms",
    "format_time",
    "new_event_id",
    "now_ns",
    "parse_time",
]

# Lowercase canonical text form (RFC 9562 §4). The v7 pattern also pins the version nibble (7)
# and the variant bits (10xx, RFC 9562 §4.1: first hex digit of the 4th group is 8, 9, a or b).
UUID_PATTERN: Final = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
UUID7_PATTERN: Final = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

# The RFC 3339 §5.6 profile Proctor writes: UTC only, upper-case 'T' and 'Z', exactly nine
# fractional digits. One spelling per instant keeps canonical JSON (and thus leaf hashes) unique.
# [0-9] not \d: Python's \d also matches non-ASCII digits.
TIME_PATTERN: Final = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}Z$"
_TIME_RE: Final = re.compile(TIME_PATTERN[1:-1])
_UUID_RE: Final = re.compile(UUID_PATTERN[1:-1])

_NS_PER_S: Final = 1_000_000_000
_NS_PER_MS: Final = 1_000_000
_EPOCH: Final = _dt.datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = _EPOCH.toordinal()
_MIN_NS: Final = (_dt.date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86_400 * _NS_PER_S
_MAX_NS: Final = (_dt.date(9999, 12, 31).toordinal() - _EPOCH_ORDINAL + 1) * 86_400 * _NS_PER_S - 1

_RAND_A_MAX: Final = 0xFFF


def now_ns() -> int:
    """Wall-clock time as integer nanoseconds since the Unix epoch (UTC, no leap seconds)."""
    return time.time_ns()


def format_time(ns: int) -> str:
    """Format nanoseconds since the epoch as ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`` (RFC 3339 UTC).

    Raises ``ValueError`` outside years 0001-9999, which RFC 3339 §5.6 cannot spell in 4 digits.
    """
    if not _MIN_NS <= ns <= _MAX_NS:
        raise ValueError(f"time {ns} ns is outside years 0001-9999")
    seconds, fraction = divmod(ns, _NS_PER_S)  # floor division: pre-1970 fractions stay positive
    days, second_of_day = divmod(seconds, 86_400)
    day = _dt.date.fromordinal(_EPOCH_ORDINAL + days)
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}.{fraction:09d}Z"


def parse_time(text: str) -> int:
    """Parse the strict RFC 3339 profile of :func:`format_time` back to nanoseconds.

    Raises :class:`~proctor.errors.EventError` for any other spelling, an impossible date
    (2026-02-30) or a leap second (:60): POSIX time, which Proctor stamps, has no leap seconds.
    """
    if _TIME_RE.fullmatch(text) is None:
        raise EventError(
            f"invalid time {text!r}: expected RFC 3339 UTC with 9 fractional digits, "
            "like '2026-11-23T10:15:30.123456789Z'"
        )
    # The pattern fixed the layout and ASCII digits; fromisoformat (C code) rejects impossible
    # dates and hour 24 or second 60 on the seconds part; the 9 digits are added exactly.
    try:
        moment = _dt.datetime.fromisoformat(text[:19])
    except ValueError as exc:
        raise EventError(f"invalid time {text!r}: {exc}") from None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _NS_PER_S + int(text[20:29])


class _Uuid7Clock:
    """Mints UUIDv7 values that increase strictly within this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def next(self, ms: int) -> tuple[int, int]:
        """Return (unix_ts_ms, rand_a) for a new id, never repeating or going backwards."""
        with self._lock:
            if ms > self._last_ms:
                # RFC 9562 §6.2 method 1: rand_a is a counter seeded at random with its top bit
                # clear, so thousands of ids in one millisecond still fit before it rolls over.
                counter = int.from_bytes(os.urandom(2)) & 0x7FF
            else:
                # Same millisecond or the clock stepped back: keep the last timestamp and count.
                ms, counter = self._last_ms, self._counter + 1
                if counter > _RAND_A_MAX:
                    # §6.2 counter rollover: borrow the next millisecond rather than repeat.
                    ms, counter = ms + 1, int.from_bytes(os.urandom(2)) & 0x7FF
            self._last_ms, self._counter = ms, counter
            return ms, counter


_CLOCK: Final = _Uuid7Clock()


def _uuid7(unix_ts_ms: int, rand_a: int, rand_b: int) -> str:
    """Lay out the RFC 9562 §5.7 fields: 48-bit ms, ver 0111, 12-bit rand_a, var 10, 62 bits."""
    value = (
        (unix_ts_ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (rand_a & _RAND_A_MAX) << 64
        | 0b10 << 62
        | (rand_b & 0x3FFF_FFFF_FFFF_FFFF)
    )
    return str(uuid.UUID(int=value))


def new_event_id() -> str:
    """A fresh UUIDv7 in lowercase canonical form; ids from one process sort in mint order."""
    ms, counter = _CLOCK.next(time.time_ns() // _NS_PER_MS)
    return _uuid7(ms, counter, int.from_bytes(os.urandom(8)))


def check_uuid7(text: str) -> None:
    """Raise :class:`~proctor.errors.EventError` unless ``text`` is a canonical UUIDv7."""
    if _UUID_RE.fullmatch(text) is None:
        raise EventError(f"invalid UUIDv7 {text!r}: expected lowercase 8-4-4-4-12 hex")
    # RFC 9562 §4.1 variant 10xx: the first hex digit of the 4th group is 8, 9, a or b;
    # §4.2 version: the first hex digit of the 3rd group.
    if text[19] not in "89ab":
        raise EventError(f"invalid UUIDv7 {text!r}: variant is not RFC 9562 (10xx)")
    if text[14] != "7":
        raise EventError(f"invalid UUIDv7 {text!r}: version is {text[14]}, expected 7")


def event_id_ms(event_id: str) -> int:
    """The Unix millisecond timestamp embedded in a UUIDv7 event id (RFC 9562 §5.7)."""
    check_uuid7(event_id)
    return int(event_id[:8] + event_id[9:13], 16)
