"""``proctor verify`` and ``proctor verify-receipt``: what an auditor runs."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from proctor.cli._app import EXIT_FAILED, app, err, handled, out
from proctor.cli.options import LedgerDir, ledger_dir
from proctor.errors import EventError, UsageError, VerificationError
from proctor.events.canonical import canonicalize
from proctor.ledger.ledger import DB_NAME, load_verifier
from proctor.ledger.note import Verifier
from proctor.ledger.receipt import Receipt, verify_receipt
from proctor.ledger.store import SqliteStore
from proctor.ledger.verify import Report, verify_ledger

KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key", help="Trusted verifier key file (NAME+KEYID+BASE64).", show_default=False
    ),
]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


@app.command()
@handled
def verify(
    ledger: LedgerDir = None,
    key: KeyOpt = None,
    since_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--since-checkpoint",
            help="A checkpoint saved earlier: prove the ledger is an append-only extension of it.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
) -> None:
    """Re-hash every entry, rebuild the tree, check every checkpoint; exit 0 only when clean."""
    d = ledger_dir(ledger)
    saved = _read(since_checkpoint, "checkpoint") if since_checkpoint is not None else None
    store = SqliteStore(d / DB_NAME, readonly=True)
    try:
        if key is not None:
            verifier = load_verifier(key)
        else:
            vkey = store.get_meta("vkey")
            if vkey is None:
                raise UsageError(f"{d} records no verifier key; pass --key")
            verifier = Verifier.from_vkey(vkey)
            if not as_json:
                err.print(
                    "[yellow]note:[/] checking against the key recorded in the ledger; "
                    "pass --key with the key you trust for an independent check"
                )
        report = _run(store, verifier, saved, progress=not as_json and sys.stderr.isatty())
    finally:
        store.close()
    if as_json:
        # Plain write: a Rich console would wrap long lines (hex roots) at its width.
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _print(report)
    if not report:
        raise typer.Exit(EXIT_FAILED)


def _run(store: SqliteStore, verifier: Verifier, saved: bytes | None, *, progress: bool) -> Report:
    with Progress(
        TextColumn("verifying"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not progress,
    ) as bar:
        task = bar.add_task("verify", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return verify_ledger(
            store, [verifier], verifier.name, saved_checkpoint=saved, progress=tick
        )


def _print(report: Report) -> None:
    failures = [f for f in report.findings if f.is_failure]
    if report.findings:
        table = Table("finding", "entries", "detail", show_lines=False)
        for f in report.findings:
            where = (
                ""
                if f.first is None
                else f"{f.first}"
                if f.first == f.last
                else f"{f.first}..{f.last}"
            )
            style = "red" if f.is_failure else "cyan" if f.kind == "pruned" else "yellow"
            table.add_row(f"[{style}]{f.kind}[/]", where, f.detail.replace("[", r"\["))
        out.print(table)
    pruned = f" (and {report.pruned} pruned by retention)" if report.pruned else ""
    summary = (
        f"{report.entries} entries{pruned}, {report.valid_checkpoints}/{report.checkpoints} "
        f"checkpoints verified, signed tree size {report.verified_size}"
    )
    if failures:
        out.print(f"[bold red]FAILED[/]: {len(failures)} findings; {summary}")
    else:
        out.print(f"[bold green]OK[/]: {summary}")


@app.command("verify-receipt")
@handled
def verify_receipt_cmd(
    receipt: Annotated[Path, typer.Argument(help="A C2SP tlog-proof file.")],
    key: Annotated[Path, typer.Option("--key", help="The ledger's verifier key file.")],
    entry: Annotated[Path, typer.Option("--entry", help="The entry: its bytes or its event JSON.")],
) -> None:
    """Check offline that an entry is in the ledger, with the verifier key alone."""
    verifier = load_verifier(key)
    parsed = Receipt.parse(_read(receipt, "receipt"))
    data = _read(entry, "entry")
    candidates = [data, data.rstrip(b"\n")]
    with contextlib.suppress(EventError):
        candidates.append(canonicalize(data))  # an event saved pretty-printed still counts
    last: VerificationError | None = None
    for candidate in dict.fromkeys(candidates):
        try:
            cp = verify_receipt(parsed, candidate, [verifier])
        except VerificationError as exc:
            last = exc
            continue
        out.print(
            f"[bold green]OK[/]: entry {parsed.index} is in {cp.origin} "
            f"(signed tree size {cp.size}, root {cp.root.hex()})"
        )
        return
    assert last is not None
    raise last
