"""``proctor export``: the ledger in other tools' formats."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from proctor.cli._app import app, err, handled, plain
from proctor.cli.options import LedgerDir, ledger_dir
from proctor.errors import UsageError
from proctor.exports.stream import FORMATS, ExportStats, export, ledger_range, make_formatter
from proctor.exports.syslog import FACILITIES, SyslogConfig
from proctor.ledger.ledger import Ledger

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

    jsonl is each entry exactly as hashed; ocsf, ecs and cef are JSON lines or CEF lines;
    syslog is RFC 5424. Records go to stdout (or --out); the summary goes to stderr, or to
    stdout as JSON with --out and --json.
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
        source = ledger_range(lg, start, end)
        total = max(0, (lg.size() if end is None else min(end, lg.size())) - start)
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
    for first, last in source.missing:
        err.print(f"[yellow]warning:[/] indexes {first}..{last} have no stored entry (skipped)")
    _summary(stats, fmt, out_file, source.missing, as_json=as_json)


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
