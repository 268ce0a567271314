"""``proctor export`` and ``proctor forward``: the ledger in other tools' formats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from proctor.cli._app import app, err, handled, out, plain
from proctor.cli.options import LedgerDir, ledger_dir
from proctor.errors import UsageError
from proctor.exports.forward import Backoff, Forwarder, ForwarderConfig, ForwardResult
from proctor.exports.stream import (
    FORMATS,
    ExportStats,
    LedgerRange,
    export,
    ledger_indexes,
    ledger_range,
    make_formatter,
)
from proctor.exports.syslog import FACILITIES, SyslogConfig
from proctor.ledger.ledger import Ledger
from proctor.search import SearchIndex, catch_up, matching_indexes

FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help=f"One of: {', '.join(FORMATS)}.", show_default=True)
]
FacilityOpt = Annotated[
    str,
    typer.Option("--facility", help="syslog facility: a name (audit, authpriv, local0…) or 0-23."),
]
HostnameOpt = Annotated[
    str | None,
    typer.Option(
        "--hostname", help="syslog HOSTNAME (default: this host's FQDN).", show_default=False
    ),
]
BodyOpt = Annotated[
    str, typer.Option("--syslog-body", help="syslog MSG: json (the ledger entry) or cef.")
]
MaxOctetsOpt = Annotated[
    int, typer.Option("--max-octets", help="Largest syslog message the receiver accepts.")
]
TruncateOpt = Annotated[
    bool,
    typer.Option(
        "--truncate",
        help="Cut syslog messages over --max-octets (marked truncated=) instead of failing.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


def _facility(value: str) -> int:
    if value.isdigit():
        return int(value)
    if value in FACILITIES:
        return FACILITIES[value]
    raise UsageError(f"unknown syslog facility {value!r}: a name ({', '.join(FACILITIES)}) or 0-23")


def _syslog_config(
    facility: str, hostname: str | None, body: str, max_octets: int, truncate: bool
) -> SyslogConfig:
    if body not in ("json", "cef"):
        raise UsageError(f"--syslog-body must be json or cef, not {body!r}")
    body_: Literal["json", "cef"] = "json" if body == "json" else "cef"
    extra = {"hostname": hostname} if hostname is not None else {}
    return SyslogConfig(
        facility=_facility(facility),
        body=body_,
        max_octets=max_octets,
        oversize="truncate" if truncate else "fail",
        **extra,
    )


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[BinaryIO]:
    """stdout, or ``path`` written under a temporary name and renamed only when complete."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    tmp = path.with_name(path.name + ".partial")
    try:
        f = tmp.open("wb")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _query_hits(lg: Ledger, query: str, start: int, end: int | None) -> list[int]:
    """Ledger indexes in [start, end) that the search matches, the index caught up first."""
    catch_up(lg)
    with SearchIndex(lg) as index:
        return [
            i
            for i in matching_indexes(index, query, order="asc")
            if i >= start and (end is None or i < end)
        ]


@app.command("export")
@handled
def export_cmd(
    *,
    fmt: FormatOpt = "jsonl",
    ledger: LedgerDir = None,
    start: Annotated[int, typer.Option("--from", help="First ledger index.")] = 0,
    end: Annotated[
        int | None,
        typer.Option(
            "--to", help="Stop before this index (default: the size at start).", show_default=False
        ),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(
            "--query",
            help="Only the events this search matches (docs/search.md).",
            show_default=False,
        ),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output file (default: stdout).", show_default=False),
    ] = None,
    framing: Annotated[
        str, typer.Option("--framing", help="syslog records: lf (one a line) or octet (RFC 6587).")
    ] = "lf",
    facility: FacilityOpt = "audit",
    hostname: HostnameOpt = None,
    body: BodyOpt = "json",
    max_octets: MaxOctetsOpt = 65536,
    truncate: TruncateOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write ledger entries in a standard format, one record at a time (flat memory).

    jsonl: each entry exactly as hashed; ocsf, ecs: JSON lines; cef: CEF; syslog: RFC 5424.

    Records go to stdout or --out; the summary to stderr (stdout as JSON with --out --json).
    """
    if framing not in ("lf", "octet"):
        raise UsageError(f"--framing must be lf or octet, not {framing!r}")
    syslog = _syslog_config(facility, hostname, body, max_octets, truncate)
    with Ledger(ledger_dir(ledger)) as lg:
        formatter = make_formatter(
            fmt,
            log_name=lg.origin,
            syslog=syslog,
            syslog_framing="octet" if framing == "octet" else "lf",
        )
        if query is None:
            source: Iterable[tuple[int, bytes]] = ledger_range(lg, start, end)
            total = max(0, (lg.size() if end is None else min(end, lg.size())) - start)
        else:
            hits = _query_hits(lg, query, start, end)
            source, total = ledger_indexes(lg, hits), len(hits)
        show = sys.stderr.isatty() and not as_json
        try:
            with (
                _output(out_file) as sink,
                Progress(
                    TextColumn(f"exporting {fmt}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=err,
                    transient=True,
                    disable=not show,
                ) as bar,
            ):
                task = bar.add_task("export", total=total)
                stats = export(
                    source, formatter, sink, progress=lambda n: bar.update(task, completed=n)
                )
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
    missing = source.missing if isinstance(source, LedgerRange) else []
    for first, last in missing:
        err.print(f"[yellow]warning:[/] indexes {first}..{last} have no stored entry (skipped)")
    _summary(stats, fmt, out_file, missing, as_json=as_json)


def _summary(
    stats: ExportStats,
    fmt: str,
    path: Path | None,
    missing: list[tuple[int, int]],
    *,
    as_json: bool,
) -> None:
    report = {
        "format": fmt,
        "count": stats.count,
        "first": stats.first,
        "last": stats.last,
        "bytes": stats.bytes,
        "out": str(path) if path is not None else None,
        "missing": [list(m) for m in missing],
    }
    if as_json and path is not None:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    where = f"to {path}" if path is not None else "to stdout"
    span = f" (index {stats.first}..{stats.last})" if stats.count else ""
    err.print(f"exported {stats.count} events{span} as {fmt} {plain(where)}")


def _parse_target(value: str) -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--to must be HOST:PORT or [IPv6]:PORT, not {value!r}")
    return host, int(port)


def _tls_context(ca: Path | None) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load CA file {ca}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 9662 updates RFC 5425 to TLS 1.2+
    return ctx


class _ErrLog(logging.Handler):
    """The forwarder's log lines on stderr (connects, retries, skipped indexes)."""

    def emit(self, record: logging.LogRecord) -> None:
        style = "yellow" if record.levelno >= logging.WARNING else "dim"
        err.print(f"[{style}]forward:[/] {plain(record.getMessage())}")


@app.command("forward")
@handled
def forward_cmd(
    *,
    to: Annotated[str, typer.Option("--to", help="Receiver HOST:PORT (syslog over TCP).")],
    ledger: LedgerDir = None,
    tls: Annotated[bool, typer.Option("--tls", help="TLS (RFC 5425), server verified.")] = False,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca", help="CA bundle to verify the receiver (implies --tls).", show_default=False
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="Cursor file (default: LEDGER/forward-HOST-PORT.state).",
            show_default=False,
        ),
    ] = None,
    start: Annotated[
        int | None,
        typer.Option("--from", help="First index when there is no state yet.", show_default=False),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Stop at the end of the ledger instead of following.")
    ] = False,
    retries: Annotated[
        int | None,
        typer.Option(
            "--retries",
            help="Give up after N failed attempts in a row (default: never).",
            show_default=False,
        ),
    ] = None,
    backoff_max: Annotated[
        float, typer.Option("--backoff-max", help="Longest wait between attempts, seconds.")
    ] = 30.0,
    facility: FacilityOpt = "audit",
    hostname: HostnameOpt = None,
    body: BodyOpt = "json",
    max_octets: MaxOctetsOpt = 65536,
    truncate: TruncateOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Send ledger events to a syslog receiver (RFC 5424, octet-counted), at least once.

    Resumes from the cursor in --state, saved after each batch is flushed to the socket.

    A new connection first resends the last few MiB: duplicates across a reconnect, no gaps.

    When it cannot go on, it stops with an error naming the index to resume from.
    """
    host, port = _parse_target(to)
    d = ledger_dir(ledger)
    state_path = state or d / f"forward-{host.replace(':', '_')}-{port}.state"
    if start is not None and state_path.exists():
        raise UsageError(f"{state_path} already records where to resume; --from applies without it")
    config = ForwarderConfig(
        host=host,
        port=port,
        state_path=state_path,
        ssl=_tls_context(ca) if tls or ca is not None else None,
        syslog=_syslog_config(facility, hostname, body, max_octets, truncate),
        start=start or 0,
        follow=not once,
        backoff=Backoff(maximum=max(backoff_max, 0.5)),
        max_retries=retries,
    )
    logger = logging.getLogger("proctor.exports.forward")
    handler = _ErrLog()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with Ledger(d) as lg:
            result = asyncio.run(_forward(lg, config))
    finally:
        logger.removeHandler(handler)
    report = {
        "to": config.destination,
        "sent": result.sent,
        "next_index": result.next_index,
        "reconnects": result.reconnects,
        "missing": [list(m) for m in result.missing],
        "state": str(state_path),
    }
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        out.print(
            f"forwarded {result.sent} messages to {plain(config.destination)}; next index "
            f"{result.next_index} ({result.reconnects} reconnects)"
        )


async def _forward(ledger: Ledger, config: ForwarderConfig) -> ForwardResult:
    forwarder = Forwarder(ledger, config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, forwarder.stop)
    try:
        return await forwarder.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
