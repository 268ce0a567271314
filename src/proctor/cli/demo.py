"""``proctor demo``: the ledger end to end, in a scratch directory.

Until the gateway exists the demo drives the engine and the ledger the way the gateway will:
keys, sample access events appended, live decisions for users with different risk (each
recorded, one replayed), a signed checkpoint, a receipt checked with the public key alone, a
full verification, then two attacks on copies (an edited decision, a rollback that hides the
newest entries) and what verification says about each.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from proctor.cli._app import EXIT_FAILED, app, handled, out
from proctor.cli.demo_decisions import run_decisions
from proctor.cli.ledger_cmds import read_events
from proctor.errors import UsageError, VerificationError
from proctor.events.canonical import canonical_bytes, decode_event
from proctor.events.schema import Event
from proctor.ledger.ledger import DB_NAME, Ledger, load_signer, load_verifier, write_key_pair
from proctor.ledger.note import Signer, Verifier
from proctor.ledger.receipt import Receipt, verify_receipt
from proctor.ledger.store import SqliteStore
from proctor.ledger.verify import Report, verify_ledger

ORIGIN = "proctor.demo/ledger"
_REPO_EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "events.jsonl"
_REPO_POLICIES = Path(__file__).resolve().parents[3] / "examples" / "policies"


def _step(n: int, title: str) -> None:
    out.print()
    out.rule(f"[bold]{n}. {title}")


def _who(e: Event) -> str:
    return "" if e.actor is None else e.actor.id


def _what(e: Event) -> str:
    if e.decision is not None:
        return f"{e.decision.effect} ({', '.join(e.decision.policies) or 'no policy'})"
    if e.outcome is not None:
        return f"outcome {e.outcome.status}"
    return ""


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


@app.command()
@handled
def demo(
    events: Annotated[
        Path | None, typer.Option("--events", help="Events to append (JSON lines).")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option("--dir", help="Keep the demo's files here (default: temp).")
    ] = None,
) -> None:
    """Append sample events, checkpoint, prove, verify, then tamper with copies."""
    source = events or _REPO_EXAMPLES
    if not source.exists():
        raise UsageError(f"no sample events at {source}; pass --events FILE")
    base = workdir or Path(tempfile.mkdtemp(prefix="proctor-demo-"))
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise UsageError(f"{workdir} is not empty; the demo needs a fresh directory")
    ok = True

    _step(1, "Keys")
    skey, vkey = write_key_pair(Signer.generate(ORIGIN), base / "keys")
    verifier = load_verifier(vkey)
    out.print(f"signer key {skey} (0600); auditors get only {vkey}:\n  {verifier.vkey}")

    _step(2, "Append access events")
    ledger_dir = base / "ledger"
    Ledger.init(ledger_dir, load_signer(skey))
    batch = read_events(source)
    with Ledger(ledger_dir, signer=load_signer(skey)) as lg:
        first = lg.append_many(batch)
        note = lg.checkpoint()
    table = Table("index", "kind", "actor", "decision / outcome", "risk")
    for i, e in enumerate(batch, start=first):
        risk = "" if e.risk is None else f"{e.risk.score} {e.risk.level}"
        table.add_row(str(i), e.kind, _who(e), _what(e), risk)
    out.print(table)

    _step(3, "Live decisions: risk, Cedar policies, each one recorded")
    ok &= run_decisions(ledger_dir, skey, _REPO_POLICIES)
    with Ledger(ledger_dir, signer=load_signer(skey)) as lg:
        note = lg.checkpoint()
        last = lg.size() - 1

    _step(4, "Signed checkpoint (C2SP tlog-checkpoint in a signed note)")
    out.print(Panel(note.rstrip("\n"), expand=False))
    saved = note

    _step(5, "Receipt for one decision, checked with the public key alone")
    target = next(
        (i for i, e in enumerate(batch, first) if e.decision and e.decision.effect == "deny"),
        first,
    )
    with Ledger(ledger_dir) as lg:
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

    _step(6, "Full verification")
    report = _verify(ledger_dir, verifier, saved)
    _show(report)
    ok &= bool(report)

    _step(7, f"Attack 1: a copy where entry {target}'s 'deny' became 'allow'")
    copy1 = base / "tampered-copy"
    shutil.copytree(ledger_dir, copy1)
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

    _step(8, "Attack 2: a rollback that removes the newest entries and their checkpoints")
    copy2 = base / "rolled-back-copy"
    shutil.copytree(ledger_dir, copy2)
    _attacker(
        copy2 / DB_NAME,
        ("DELETE FROM entries WHERE idx > ?", (last - 3,)),
        ("DELETE FROM checkpoints WHERE size > ?", (last - 3,)),
    )
    out.print("verified on its own, the shortened copy looks complete:")
    alone = _verify(copy2, verifier)
    _show(alone)
    out.print("verified against the checkpoint the auditor saved in step 3:")
    report = _verify(copy2, verifier, saved)
    _show(report)
    ok &= not report

    out.print()
    out.print(f"files kept in {base}")
    if not ok:
        out.print("[bold red]the demo did not go as expected[/]")
        raise typer.Exit(EXIT_FAILED)
    out.print("[bold green]demo complete[/]: every check behaved as expected")
