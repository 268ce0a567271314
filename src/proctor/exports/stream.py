"""The streaming export driver: ledger entries in, formatted records out, in flat memory.

A *source* is any iterable of ``(index, canonical bytes)``: :func:`ledger_range` for an index
range (read in the ledger's chunks), :func:`ledger_indexes` for any iterable of indexes (a
search's results), or a test's generator. A *formatter* turns one entry into one record's bytes
(line end or frame included). :func:`export` pulls one entry at a time, writes its record and
forgets it, so memory does not grow with the number of events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final, Literal, Protocol

from proctor.errors import EventError, UsageError
from proctor.exports.cef import CefFormatter
from proctor.exports.ecs import EcsFormatter
from proctor.exports.ocsf import OcsfFormatter
from proctor.exports.syslog import SyslogConfig, SyslogFormatter
from proctor.ledger.ledger import ENTRIES_CHUNK, Ledger

__all__ = [
    "FORMATS",
    "ExportStats",
    "FormatName",
    "Formatter",
    "JsonlFormatter",
    "LedgerRange",
    "export",
    "ledger_indexes",
    "ledger_range",
    "make_formatter",
]

FormatName = Literal["jsonl", "ocsf", "ecs", "cef", "syslog"]
FORMATS: Final[tuple[FormatName, ...]] = ("jsonl", "ocsf", "ecs", "cef", "syslog")
PROGRESS_EVERY: Final = 1024  # records between progress callbacks


class Formatter(Protocol):
    """Turns one ledger entry into the bytes of one output record."""

    @property
    def name(self) -> str:
        """The format's name (``FORMATS``)."""
        ...

    def format(self, index: int, raw: bytes) -> bytes:
        """The record for the entry ``raw`` stored at ``index``."""
        ...


class JsonlFormatter:
    """The entries exactly as the ledger stores them, one per line.

    Each line is the canonical JSON the leaf hashes: ``SHA-256(0x00 ‖ line)`` (without its
    newline) is the entry's leaf hash, so an export can be checked against a receipt.
    """

    name: Final = "jsonl"

    def format(self, index: int, raw: bytes) -> bytes:
        """``raw`` and a newline (canonical JSON holds no raw line break)."""
        return raw + b"\n"


def make_formatter(
    name: str,
    *,
    log_name: str | None = None,
    syslog: SyslogConfig | None = None,
    syslog_framing: Literal["lf", "octet"] = "lf",
) -> Formatter:
    """The formatter for a format name; ``log_name`` names the log in OCSF metadata."""
    if name == "jsonl":
        return JsonlFormatter()
    if name == "ocsf":
        return OcsfFormatter(log_name=log_name)
    if name == "ecs":
        return EcsFormatter()
    if name == "cef":
        return CefFormatter()
    if name == "syslog":
        return SyslogFormatter(syslog, framing=syslog_framing)
    raise UsageError(f"unknown export format {name!r}: expected one of {', '.join(FORMATS)}")


@dataclass
class LedgerRange:
    """Entries ``start <= index < end`` in order; indexes with no stored body are counted.

    ``end`` defaults to the ledger's size when iteration starts: entries appended during a
    long export are left for the next one.
    """

    ledger: Ledger
    start: int = 0
    end: int | None = None
    missing: list[tuple[int, int]] = field(default_factory=list)
    """(first, last) runs of indexes in the range with no stored entry (pruned or damaged)."""

    def __post_init__(self) -> None:
        if self.start < 0:
            raise UsageError(f"--from must be 0 or more, not {self.start}")
        if self.end is not None and self.end < self.start:
            raise UsageError(f"--to ({self.end}) is before --from ({self.start})")

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        size = self.ledger.size()
        end = size if self.end is None else min(self.end, size)
        expected = self.start
        for index, raw in self.ledger.entries(self.start, end):
            if index != expected:
                self.missing.append((expected, index - 1))
            yield index, raw
            expected = index + 1
        if expected < end:
            self.missing.append((expected, end - 1))


def ledger_range(ledger: Ledger, start: int = 0, end: int | None = None) -> LedgerRange:
    """Entries ``start <= index < end`` (``end`` defaults to the current size)."""
    return LedgerRange(ledger, start, end)


def ledger_indexes(ledger: Ledger, indexes: Iterable[int]) -> Iterator[tuple[int, bytes]]:
    """Entries at the given indexes, in the order given (search results, say).

    Consecutive runs are read as one range (up to the ledger's read chunk), so a dense result
    set costs about what a range export does. A missing index is an error: a caller asked for
    that record.
    """
    run_start: int | None = None
    run_end = 0
    for index in indexes:
        if run_start is not None and index == run_end and run_end - run_start < ENTRIES_CHUNK:
            run_end += 1
            continue
        if run_start is not None:
            yield from _read_run(ledger, run_start, run_end)
        run_start, run_end = index, index + 1
    if run_start is not None:
        yield from _read_run(ledger, run_start, run_end)


def _read_run(ledger: Ledger, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    if start < 0:
        raise UsageError(f"no entry at index {start}")
    expected = start
    for index, raw in ledger.entries(start, end):
        if index != expected:
            break
        yield index, raw
        expected += 1
    if expected < end:
        raise UsageError(f"no entry at index {expected} (the ledger has {ledger.size()})")


@dataclass
class ExportStats:
    """What an export wrote."""

    count: int = 0
    first: int | None = None
    last: int | None = None
    bytes: int = 0


def export(
    entries: Iterable[tuple[int, bytes]],
    formatter: Formatter,
    out: BinaryIO,
    *,
    progress: Callable[[int], None] | None = None,
) -> ExportStats:
    """Write one record per entry to ``out``; entries are read, formatted and dropped one by one.

    A stored entry that is not a valid event stops the export with an ``EventError`` naming its
    index (fail closed: an export never skips a record silently). ``progress`` is called with
    the running count every ``PROGRESS_EVERY`` records and at the end.
    """
    stats = ExportStats()
    write = out.write
    for index, raw in entries:
        try:
            record = formatter.format(index, raw)
        except EventError as exc:
            raise EventError(f"ledger entry {index}: {exc}") from None
        write(record)
        if stats.first is None:
            stats.first = index
        stats.last = index
        stats.count += 1
        stats.bytes += len(record)
        if progress is not None and stats.count % PROGRESS_EVERY == 0:
            progress(stats.count)
    if progress is not None:
        progress(stats.count)
    return stats
