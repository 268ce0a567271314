"""PostgreSQL log records: csvlog rows and stderr lines cut exactly, prefixes matched in
bounded time, log times in any zone PostgreSQL writes."""

from __future__ import annotations

import time

import pytest

from proctor.ingest import IngestError, LinePrefix
from proctor.ingest._pglog import LogRecord, log_time_ns, read_csvlog, read_stderr


def _row(message: str, *, extra: str = ',,,,,,,,,"psql","client backend",,0') -> bytes:
    quoted = '"' + message.replace('"', '""') + '"'
    return (
        '2026-11-23 11:20:40.123 UTC,"alice","shop",1,"192.0.2.1:5000",a.b,1,"",,,0,LOG,00000,'
        + quoted
        + extra
    ).encode()


def test_csvlog_records_keep_their_exact_bytes() -> None:
    one = _row("a\nmultiline\r\nmessage") + b"\n"
    two = _row("second") + b"\r\n"
    three = _row("no newline at the end", extra=",,,,,,,,,")  # a PostgreSQL 12 row: 23 columns
    records = list(read_csvlog(one + b"\n" + two + three, first_line=10))
    assert [r.line for r in records if isinstance(r, LogRecord)] == [10, 14, 15]
    first, second, third = records
    assert isinstance(first, LogRecord) and first.raw == one
    assert first.fields["message"] == "a\nmultiline\r\nmessage"
    assert isinstance(second, LogRecord) and second.raw == two
    assert isinstance(third, LogRecord) and third.raw == three
    assert third.fields["application_name"] == "" and "backend_type" not in third.fields


def test_csvlog_an_unterminated_quote_takes_what_it_swallowed() -> None:
    good = _row("fine") + b"\n"
    broken = b'2026,"open quote\nand more\n'
    records = list(read_csvlog(good + broken + good + good))
    # The open quote runs into the next row (CSV cannot tell); reading resumes after it.
    assert [r.line if isinstance(r, LogRecord) else str(r) for r in records] == [
        1,
        "line 2: $: not a CSV record (',' expected after '\"')",
        5,
    ]
    (error,) = read_csvlog(broken)
    assert str(error) == "line 1: $: not a CSV record (unexpected end of data)"


def test_csvlog_too_many_columns() -> None:
    (error,) = read_csvlog(_row("x", extra=",,,,,,,,,,,,,,,") + b"\n")
    assert isinstance(error, IngestError)
    assert str(error) == "line 1: $: expected 23 to 26 csvlog columns, got 29"


def test_stderr_groups_continuation_lines() -> None:
    data = (
        b"2026-11-23 11:20:40 UTC [1] LOG:  first\n\tsecond\n\t\tthird\n"
        b"2026-11-23 11:20:41 UTC [1] LOG:  next\r\n"
    )
    prefix = LinePrefix("%t [%p] ")
    first, second = read_stderr(data, prefix)
    assert isinstance(first, LogRecord) and isinstance(second, LogRecord)
    assert first.raw == data[: data.index(b"2026", 1)]
    assert first.fields["message"] == "first\nsecond\n\tthird"
    assert first.fields["error_severity"] == "LOG"
    assert second.fields["message"] == "next" and second.line == 4


def test_q_ends_the_prefix_of_processes_without_a_session() -> None:
    prefix = LinePrefix("%m [%p] %q%u@%d ")
    lines = b"2026-11-23 11:20:40.000 UTC [9] LOG:  checkpoint starting: time\n"
    (record,) = read_stderr(lines, prefix)
    assert isinstance(record, LogRecord)
    assert "user_name" not in record.fields
    assert record.fields["process_id"] == "9"


def test_text_escapes_stop_at_the_first_fit() -> None:
    # Documented limit: a user name holding the text after %u is read up to that text.
    prefix = LinePrefix("%u@%d ")
    (record,) = read_stderr(b"alice@corp.com@shop LOG:  x\n", prefix)
    assert isinstance(record, LogRecord)
    assert (record.fields["user_name"], record.fields["database_name"]) == (
        "alice",
        "corp.com@shop",
    )


@pytest.mark.parametrize("template", ["%u@%d %a ", "%a%u%d", "%m %u %d %a %i %b "])
def test_a_long_line_that_does_not_match_costs_little(template: str) -> None:
    line = ("@ " * 500_000).encode() + b"\n"
    start = time.perf_counter()
    list(read_stderr(line, LinePrefix(template)))
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23 11:20:40 UTC", "2026-11-23T11:20:40.000000000Z"),
        ("2026-11-23 11:20:40.5 UTC", "2026-11-23T11:20:40.500000000Z"),
        ("2026-11-23 11:20:40.123456 +05:30", "2026-11-23T05:50:40.123456000Z"),
        ("0001-01-01 00:30:00 +01", None),
        ("2026-02-29 00:00:00 UTC", None),
        ("2026-11-23 24:00:00 UTC", None),
        ("2026-11-23 11:20:40 +99", None),
        ("2026-11-23T11:20:40 UTC", None),
    ],
)
def test_log_time(text: str, expected: str | None) -> None:
    from proctor.events import format_time

    if expected is None:
        with pytest.raises(IngestError):
            log_time_ns(text, "log_time", None)
    else:
        assert format_time(log_time_ns(text, "log_time", None)) == expected
