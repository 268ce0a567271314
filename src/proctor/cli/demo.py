"""``proctor demo``: the whole story, against the local PostgreSQL, in a scratch directory.

A real gateway (embedded, with its own ledger and the example policies) in front of a scratch
database; users with different risk go through it (see :mod:`proctor.cli.demo_gateway`) and
every decision is shown with its risk factors. Then the ledger the gateway wrote: a signed
checkpoint, a receipt for a refused statement checked with the public key alone, a full
verification, and two attacks on copies (an edited decision, a rollback that hides the newest
entries) with what verification says about each.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.panel import Panel
from rich.table import Table

from proctor.cli._app import EXIT_FAILED, app, handled, out
from proctor.cli.demo_audit import auditor_questions, erasure, other_sources, running_api
from proctor.cli.demo_gateway import (
    SCRATCH_DB,
    GatewayStory,
    analyst_reads,
    contractor_revoked,
    dba_ddl,
    login_from_abroad,
    ordinary_month,
    prepare_database,
    running_gateway,
    write_config,
)
from proctor.errors import UsageError, VerificationError
from proctor.events.canonical import canonical_bytes, decode_event
from proctor.ledger.ledger import DB_NAME, VKEY_NAME, Ledger, load_verifier
from proctor.ledger.note import Verifier
from proctor.ledger.receipt import Receipt, verify_receipt
from proctor.ledger.store import SqliteStore
from proctor.ledger.verify import Report, verify_ledger

_REPO_POLICIES = Path(__file__).resolve().parents[3] / "examples" / "policies"


def _step(n: int, title: str) -> None:
    out.print()
    out.rule(f"[bold]{n}. {title}")


def _verify(directory: Path, verifier: Verifier, saved: str | None = None) -> Report:
    store = SqliteStore(directory / DB_NAME, readonly=True)
    try:
        return verify_ledger(store, [verifier], verifier.name, saved_checkpoint=saved)
    finally:
        store.close()


def _show(report: Report) -> None:
    if not report.findings:
        out.print(
            f"[bold green]OK[/]: {report.entries} entries re-hashed, "
            f"{report.valid_checkpoints} checkpoints verified, no findings"
        )
        return
    table = Table("finding", "entries", "detail")
    for f in report.findings:
        where = "" if f.first is None else f"{f.first}..{f.last}"
        table.add_row(f.kind, where, f.detail)
    out.print(table)
    out.print("[bold green]OK[/]" if report else "[bold red]FAILED[/]")


def _attacker(path: Path, *statements: tuple[str, tuple[int, ...]]) -> None:
    """Edit the database file directly, the way someone with disk access could."""
    db = sqlite3.connect(path, isolation_level=None)
    for trig in ("entries_append_only_u", "entries_append_only_d", "checkpoints_append_only_d"):
        db.execute(f"DROP TRIGGER {trig}")
    for sql, args in statements:
        db.execute(sql, args)
    db.close()


def _ledger_story(base: Path, ledger_dir: Path, note: str, last: int) -> bool:
    """Steps 10-14: checkpoint, a receipt, full verification and two attacks on copies."""
    ok = True
    verifier = load_verifier(ledger_dir / VKEY_NAME)
    _step(10, "Signed checkpoint (C2SP tlog-checkpoint in a signed note)")
    out.print(Panel(note.rstrip("\n"), expand=False))
    saved = note

    _step(11, "Receipt for a refused statement, checked with the public key alone")
    with Ledger(ledger_dir) as lg:
        target = next(
            (i for i, d in lg.entries() if b'"effect":"deny"' in d and b'"kind":"decision"' in d),
            last,
        )
        receipt = lg.prove(target)
        entry = lg.entry(target)
    (base / f"entry-{target}.tlog-proof").write_text(receipt.text())
    out.print(Panel(receipt.text().rstrip("\n"), title=f"entry {target}", expand=False))
    cp = verify_receipt(Receipt.parse(receipt.text()), entry, [verifier])
    out.print(f"[bold green]OK[/]: entry {target} is in {cp.origin} at tree size {cp.size}")
    forged = decode_event(entry.replace(b'"deny"', b'"allow"'))
    try:
        verify_receipt(receipt, canonical_bytes(forged), [verifier])
        out.print("[bold red]a forged entry passed the receipt check[/]")
        ok = False
    except VerificationError as exc:
        out.print(f"the same receipt with 'deny' changed to 'allow': [red]rejected[/] ({exc})")

    _step(12, "Full verification of everything the gateway recorded")
    report = _verify(ledger_dir, verifier, saved)
    _show(report)
    ok &= bool(report)

    _step(13, f"Attack 1: a copy where entry {target}'s 'deny' became 'allow'")
    copy1 = base / "tampered-copy"
    shutil.copytree(ledger_dir, copy1, ignore=shutil.ignore_patterns("*.sock"))
    _attacker(
        copy1 / DB_NAME,
        (
            "UPDATE entries SET data = CAST(replace(CAST(data AS TEXT), '\"deny\"', "
            "'\"allow\"') AS BLOB) WHERE idx = ?",
            (target,),
        ),
    )
    report = _verify(copy1, verifier)
    _show(report)
    ok &= not report and any(f.kind == "modified-entry" for f in report.findings)

    _step(14, "Attack 2: a rollback that removes the newest entries and their checkpoints")
    copy2 = base / "rolled-back-copy"
    shutil.copytree(ledger_dir, copy2, ignore=shutil.ignore_patterns("*.sock"))
    _attacker(
        copy2 / DB_NAME,
        ("DELETE FROM entries WHERE idx > ?", (last - 3,)),
        ("DELETE FROM checkpoints WHERE size > ?", (last - 3,)),
    )
    out.print("verified on its own, the shortened copy looks complete:")
    alone = _verify(copy2, verifier)
    _show(alone)
    out.print("verified against the checkpoint the auditor saved in step 10:")
    report = _verify(copy2, verifier, saved)
    _show(report)
    ok &= not report

    return ok


@app.command()
@handled
def demo(
    workdir: Annotated[
        Path | None, typer.Option("--dir", help="Keep the demo's files here (default: temp).")
    ] = None,
    policies: Annotated[
        Path | None, typer.Option("--policies", help="Policy directory (default: the examples).")
    ] = None,
    database: Annotated[
        str, typer.Option("--database", help="Scratch database to (re)create on PostgreSQL.")
    ] = SCRATCH_DB,
) -> None:
    """Run users through a real gateway, then verify and attack its ledger."""
    source = policies or _REPO_POLICIES
    if not source.is_dir():
        raise UsageError(f"no policies at {source}; pass --policies DIR")
    base = workdir or Path(tempfile.mkdtemp(prefix="proctor-demo-"))
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise UsageError(f"{workdir} is not empty; the demo needs a fresh directory")
    base.mkdir(parents=True, exist_ok=True)
    try:
        prepare_database(database)
    except psycopg.Error as exc:
        raise UsageError(
            f"the demo needs PostgreSQL on 127.0.0.1:5432 (user postgres): {exc}"
        ) from None
    config, passwords = write_config(base, source, database)
    ledger_dir = base / "ledger"

    _step(1, "A gateway in front of PostgreSQL")
    with running_gateway(config) as (runtime, embedded):
        out.print(
            f"proctor serve: 127.0.0.1:{embedded.port} → PostgreSQL 127.0.0.1:5432 "
            f"database {database}; users alice (analyst), bob (DBA), carol (contractor); "
            f"policies from {source}; ledger {ledger_dir}"
        )
        story = GatewayStory(runtime, embedded, passwords, database)
        _step(2, "An analyst's ordinary month (what the risk baselines learn)")
        ordinary_month(story, sessions=20)
        _step(3, "The analyst reads")
        home = analyst_reads(story)
        _step(4, "A risky login: the analyst's password, from another continent")
        login_from_abroad(story, home)
        _step(5, "A DBA runs DDL")
        dba_ddl(story)
        _step(6, "A contractor, revoked in the middle of a transaction")
        contractor_revoked(story, base / "admin.sock")
        embedded.stop()
        ok = story.ok
        with running_api(runtime, base) as audit:
            _step(7, "The audit service: other sources flow into the same ledger")
            indexes = other_sources(audit)
            _step(8, "An auditor's questions: an OCSF export, an evidence bundle")
            auditor_questions(audit, indexes)
            _step(9, "GDPR erasure of the analyst's personal data")
            erasure(audit, "alice")
            ok &= audit.ok
        note = runtime.ledger.checkpoint()
        last = runtime.ledger.size() - 1

    ok &= _ledger_story(base, ledger_dir, note, last)

    out.print()
    out.print(f"files kept in {base}; scratch database {database} kept on PostgreSQL")
    if not ok:
        out.print("[bold red]the demo did not go as expected[/]")
        raise typer.Exit(EXIT_FAILED)
    out.print("[bold green]demo complete[/]: every check behaved as expected")
