"""stream.py: ranges and index lists from a real ledger, every format, flat memory, fail closed."""

from __future__ import annotations

import io
import itertools
import tracemalloc
from pathlib import Path

import pytest

from proctor.errors import EventError, UsageError
from proctor.events import canonical_bytes, decode_event
from proctor.exports.stream import (
    FORMATS,
    JsonlFormatter,
    export,
    ledger_indexes,
    ledger_range,
    make_formatter,
)
from proctor.exports.syslog import FrameDecoder, SyslogConfig
from proctor.ledger.ledger import DB_NAME, Ledger
from tests.exports.conftest import EXAMPLES, append, make_ledger
from tests.ledger.conftest import tamper

RAW = [canonical_bytes(e) for e in EXAMPLES]


def test_jsonl_export_is_the_ledger_bytes(ledger_dir: Path) -> None:
    out = io.BytesIO()
    with Ledger(ledger_dir) as lg:
        stats = export(ledger_range(lg), JsonlFormatter(), out)
    assert out.getvalue().splitlines() == RAW
    assert (stats.count, stats.first, stats.last) == (len(RAW), 0, len(RAW) - 1)
    assert stats.bytes == len(out.getvalue())


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_writes_one_record_per_entry(ledger_dir: Path, fmt: str) -> None:
    out = io.BytesIO()
    with Ledger(ledger_dir) as lg:
        formatter = make_formatter(fmt, log_name=lg.origin, syslog=SyslogConfig(hostname="h"))
        stats = export(ledger_range(lg, 3, 10), formatter, out)
    lines = out.getvalue().splitlines()
    assert stats.count == len(lines) == 7 and (stats.first, stats.last) == (3, 9)
    if fmt == "ocsf":
        assert b'"log_name":"test.example/exports"' in lines[0]
        assert b'"sequence":3' in lines[0]


def test_octet_framed_syslog_export(ledger_dir: Path) -> None:
    out = io.BytesIO()
    with Ledger(ledger_dir) as lg:
        formatter = make_formatter("syslog", syslog_framing="octet")
        export(ledger_range(lg), formatter, out)
    assert len(FrameDecoder().feed(out.getvalue())) == len(RAW)


def test_indexes_in_any_order_with_runs_read_together(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as lg:
        got = list(ledger_indexes(lg, [5, 6, 7, 2, 20, 0, 1]))
        assert [i for i, _ in got] == [5, 6, 7, 2, 20, 0, 1]
        assert [raw for _, raw in got] == [RAW[i] for i in (5, 6, 7, 2, 20, 0, 1)]
        assert list(ledger_indexes(lg, iter(()))) == []
        with pytest.raises(UsageError, match="no entry at index 21"):
            list(ledger_indexes(lg, [19, 20, 21]))
        with pytest.raises(UsageError, match="no entry at index -1"):
            list(ledger_indexes(lg, [-1]))


def test_range_bounds(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as lg:
        assert [i for i, _ in ledger_range(lg, 19)] == [19, 20]
        assert [i for i, _ in ledger_range(lg, 5, 100)] == list(range(5, 21))
        assert list(ledger_range(lg, 30)) == []
        with pytest.raises(UsageError):
            ledger_range(lg, -1)
        with pytest.raises(UsageError):
            ledger_range(lg, 5, 4)


def test_missing_entries_are_reported_not_hidden(ledger_dir: Path) -> None:
    tamper(ledger_dir / DB_NAME)("DELETE FROM entries WHERE idx IN (3, 4, 10)")
    with Ledger(ledger_dir) as lg:
        source = ledger_range(lg)
        stats = export(source, JsonlFormatter(), io.BytesIO())
    assert stats.count == len(RAW) - 3
    assert source.missing == [(3, 4), (10, 10)]


def test_an_entry_that_is_not_an_event_stops_the_export(tmp_path: Path) -> None:
    d = make_ledger(tmp_path / "l", [*RAW[:2], b'{"not":"an event"}', *RAW[2:4]])
    out = io.BytesIO()
    with Ledger(d) as lg, pytest.raises(EventError, match="ledger entry 2"):
        export(ledger_range(lg), make_formatter("ocsf"), out)
    assert len(out.getvalue().splitlines()) == 2  # what came before, nothing after


def test_unknown_format() -> None:
    with pytest.raises(UsageError, match="unknown export format"):
        make_formatter("xml")


class _Counter:
    """A sink that keeps nothing (so memory measures the exporter, not the output)."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def _peak(count: int, fmt: str) -> tuple[int, int]:
    """(records written, peak traced bytes) exporting ``count`` example entries in ``fmt``."""
    entries = zip(range(count), itertools.cycle(RAW), strict=False)
    sink = _Counter()
    tracemalloc.start()
    try:
        stats = export(entries, make_formatter(fmt), sink)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.bytes == stats.bytes
    return stats.count, peak


def test_memory_stays_flat_over_200k_events() -> None:
    # The driver holds one record at a time: 200k entries (~220 MB of output) peak like one.
    count, peak = _peak(200_000, "jsonl")
    assert count == 200_000 and peak < 256 * 1024, peak


@pytest.mark.parametrize("fmt", ["ocsf", "ecs", "cef", "syslog"])
def test_formatters_keep_nothing_per_event(fmt: str) -> None:
    small, large = _peak(1_000, fmt)[1], _peak(10_000, fmt)[1]
    assert large < 2 * 1024 * 1024 and large < small + 256 * 1024, (small, large)


def test_memory_stays_flat_reading_a_real_ledger(tmp_path: Path) -> None:
    d = make_ledger(tmp_path / "l", [RAW[i % len(RAW)] for i in range(50_000)])
    sink = _Counter()
    with Ledger(d) as lg:
        tracemalloc.start()
        try:
            stats = export(ledger_range(lg), JsonlFormatter(), sink)  # type: ignore[arg-type]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert stats.count == 50_000 and sink.bytes > 50_000_000
    # Bounded by the ledger's read chunk (4096 entries at a time), not by the ledger's size.
    assert peak < 16 * 1024 * 1024, peak


def test_new_entries_after_the_start_wait_for_the_next_export(ledger_dir: Path) -> None:
    with Ledger(ledger_dir) as lg:
        source = iter(ledger_range(lg))
        next(source)
        append(ledger_dir, RAW[:3])
        assert len(list(source)) == len(RAW) - 1
    assert decode_event(RAW[0]).kind == "policy.reloaded"
