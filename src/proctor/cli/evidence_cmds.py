"""``proctor evidence`` and ``proctor verify-bundle``: evidence bundles for auditors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from proctor.cli._app import EXIT_FAILED, app, err, handled, out, plain
from proctor.cli.options import LedgerDir, SignerKey, ledger_dir, signer_for
from proctor.errors import UsageError
from proctor.evidence import BundleReport, verify_bundle, write_bundle
from proctor.ledger.ledger import Ledger, load_verifier
from proctor.search import SearchIndex, catch_up, matching_indexes

__all__ = ["index_ranges", "indexes_of"]


def index_ranges(specs: Sequence[str]) -> list[tuple[int, int]]:
    """``--index`` values (``12``, ``40-55``, ``1,2,7-9``) as sorted, merged inclusive ranges."""
    ranges: list[tuple[int, int]] = []
    for spec in specs:
        for part in spec.split(","):
            first_s, dash, last_s = part.strip().partition("-")
            try:
                first = int(first_s)
                last = int(last_s) if dash else first
            except ValueError:
                raise UsageError(f"--index {part.strip()!r} is not N or N-M") from None
            if first < 0 or last < first:
                raise UsageError(f"--index {part.strip()!r} is not an ascending range from 0")
            ranges.append((first, last))
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def indexes_of(ranges: Iterable[tuple[int, int]]) -> Iterator[int]:
    """Every index of the ranges, ascending: what ``write_bundle`` takes."""
    for first, last in ranges:
        yield from range(first, last + 1)


def _query_ranges(directory: Path, query: str) -> list[tuple[int, int]]:
    """The inclusive index ranges a search matches (the index caught up first, if it can be)."""
    with Ledger(directory) as lg:
        catch_up(lg)
        with SearchIndex(lg) as index:
            hits = list(matching_indexes(index, query, order="asc"))
    ranges: list[tuple[int, int]] = []
    for i in hits:
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
    return ranges


@app.command("evidence")
@handled
def evidence(
    out_path: Annotated[
        Path, typer.Option("--out", help="The bundle to write (a .zip; must not exist).")
    ],
    index: Annotated[
        list[str] | None,
        typer.Option(
            "--index",
            help="Ledger index or range to include (12, 40-55, 1,2,3); repeatable.",
            show_default=False,
        ),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(
            "--query", help="Every event this search matches (docs/search.md).", show_default=False
        ),
    ] = None,
    ledger: LedgerDir = None,
    signer_key: SignerKey = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Write an evidence bundle: events, their inclusion proofs, one signed checkpoint."""
    d = ledger_dir(ledger)
    if (query is None) == (not index):
        raise UsageError("select events with --query TEXT or --index N / N-M (one of them)")
    ranges = index_ranges(index or []) if query is None else _query_ranges(d, query)
    if not ranges:
        raise UsageError(f"no event matches --query {query!r}" if query else "no --index given")
    # Open read-only unless no signed checkpoint covers the selection yet: then the signer key
    # (when at hand) lets the ledger sign one.
    with Ledger(d) as lg:
        latest = lg.latest_checkpoint()
        covered = latest is not None and latest.size > ranges[-1][1]
    signer = None if covered else signer_for(d, signer_key, required=False)
    with Ledger(d, signer=signer) as lg:
        summary = write_bundle(lg, indexes_of(ranges), out_path, query=query)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "path": str(summary.path),
                    "count": summary.count,
                    "first_index": summary.first_index,
                    "last_index": summary.last_index,
                    "origin": summary.origin,
                    "checkpoint_size": summary.checkpoint_size,
                    "checkpoint_root": summary.checkpoint_root.hex(),
                    "bytes": summary.bytes,
                }
            )
            + "\n"
        )
        return
    out.print(
        f"wrote {plain(str(summary.path))}: {summary.count} events "
        f"({summary.first_index}..{summary.last_index}) of {plain(summary.origin)}, proved "
        f"against its checkpoint of size {summary.checkpoint_size}; {summary.bytes} bytes"
    )


@app.command("verify-bundle")
@handled
def verify_bundle_cmd(
    bundle: Annotated[Path, typer.Argument(help="An evidence bundle (.zip).")],
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="The ledger's verifier key, obtained out of band (proves origin).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
) -> None:
    """Verify a bundle offline; exit 0 only when every check passed."""
    verifier = load_verifier(key) if key is not None else None
    report = verify_bundle(bundle, key=verifier)
    if as_json:
        # Plain write: a Rich console would wrap long lines (hex roots) at its width.
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _print(report)
    if not report:
        raise typer.Exit(EXIT_FAILED)


def _print(report: BundleReport) -> None:
    warnings = [f for f in report.findings if not f.is_failure]
    failures = [f for f in report.findings if f.is_failure]
    for f in warnings:
        err.print(f"[yellow]note:[/] {plain(f.detail)}")
    if failures:
        table = Table("finding", "detail", show_lines=False)
        for f in failures:
            table.add_row(f"[red]{f.kind}[/]", plain(f.detail))
        out.print(table)
    if report.omitted:
        out.print(f"… and {report.omitted} more findings not listed")
    tree = (
        f"{plain(report.origin or '?')} tree size {report.checkpoint_size}"
        if report.checkpoint_size is not None
        else "no readable checkpoint"
    )
    summary = f"{report.verified}/{report.events} events verified against {tree}"
    if report:
        pinned = "pinned key" if report.key_pinned else "the bundle's own key (origin not proven)"
        out.print(f"[bold green]OK[/]: {summary}, with {pinned}")
    else:
        count = len(failures) + report.omitted
        out.print(f"[bold red]FAILED[/]: {count} findings; {summary}")
