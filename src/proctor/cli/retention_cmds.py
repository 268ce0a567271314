"""``proctor retention …``: prune by the retention rules, legal holds, archive verification."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from proctor.cli._app import EXIT_FAILED, app, handled, out, plain
from proctor.cli.options import LedgerDir, SignerKey, ledger_dir, open_ledger
from proctor.errors import UsageError
from proctor.events.ids import format_time, now_ns
from proctor.ledger.ledger import Ledger, load_verifier
from proctor.retention.archive import verify_archive
from proctor.retention.config import LoadedRetention, load_retention
from proctor.retention.holds import (
    HOLDS_NAME,
    Hold,
    HoldStore,
    place_hold,
    release_hold,
)
from proctor.retention.run import RetentionLimits, RetentionResult, run_retention
from proctor.retention.search_holds import SearchMatcher, check_selector

retention_app = typer.Typer(help="Retention pruning and legal holds.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")

RulesOpt = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        help=r"A TOML file with a \[retention] section (proctor.toml itself works).",
        show_default=False,
    ),
]
HoldsOpt = Annotated[
    Path | None,
    typer.Option(
        "--holds", help="Hold database (default: LEDGER/holds.sqlite).", show_default=False
    ),
]
ByOpt = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="Who acts (recorded in the ledger; default: your login name).",
        show_default=False,
    ),
]
CaseOpt = Annotated[str, typer.Option("--case", help="The case id, e.g. ACME-42.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded in the ledger).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _holds_path(d: Path, given: Path | None, loaded: LoadedRetention | None = None) -> Path:
    if given is not None:
        return given
    if loaded is not None and loaded.config.holds is not None:
        return loaded.path(loaded.config.holds)
    return d / HOLDS_NAME


def _when(text: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--as-of {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise UsageError(f"--as-of {text!r} needs a time zone (Z or +HH:MM)")
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


@retention_app.command("run")
@handled
def run(
    *,
    ledger: LedgerDir = None,
    signer_key: SignerKey = None,
    rules: RulesOpt = None,
    archive: Annotated[
        Path | None,
        typer.Option(
            "--archive",
            help="Archive directory (default: the rules' archive_dir).",
            show_default=False,
        ),
    ] = None,
    holds: HoldsOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be pruned and why it stops there.")
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="With --dry-run: judge ages as of this RFC 3339 time.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Archive and prune what the rules expire and no legal hold covers."""
    d = ledger_dir(ledger)
    if rules is None:
        raise UsageError("no retention rules: pass --rules FILE (a TOML file with [retention])")
    if as_of is not None and not dry_run:
        raise UsageError("--as-of is for --dry-run only: a real run judges ages as of now")
    loaded = load_retention(rules)
    archive_dir = archive if archive is not None else loaded.path(loaded.config.archive_dir)
    hold_path = _holds_path(d, holds, loaded)
    now = now_ns() if as_of is None else _when(as_of)
    # A dry run records nothing, not even an empty hold database (it may bring the derived
    # search index up to date, to judge holds given as search queries).
    store = HoldStore(None if dry_run and not hold_path.exists() else hold_path)
    lg = Ledger(d) if dry_run else open_ledger(d, signer_key, write=True)
    with store, lg, contextlib.closing(SearchMatcher(lg)) as matcher:
        result = run_retention(
            lg,
            loaded.config.rules,
            store,
            matcher,
            archive_dir,
            now,
            dry_run=dry_run,
            limits=RetentionLimits.of(loaded.config),
        )
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        _print_run(result)


def _print_run(result: RetentionResult) -> None:
    verb = "would prune" if result.dry_run else "pruned"
    for s in result.steps:
        rules = ", ".join(f"{name} ×{n}" for name, n in sorted(s.rules.items()))
        where = (
            ""
            if s.archive is None
            else f" → {s.archive.path.name}, recorded at index {s.event_index}"
        )
        out.print(plain(f"{verb} entries {s.first}–{s.below - 1} ({rules}){where}"))
    if not result.steps:
        out.print("nothing to prune")
    if result.stop is not None:
        out.print(plain(str(result.stop)))
    floor = f"floor {result.floor_before} → {result.floor_after}"
    if result.dry_run:
        out.print(f"{floor} (dry run: nothing changed)")
    else:
        out.print(f"{floor}; {result.swept} entry bodies deleted")


@retention_app.command("hold")
@handled
def hold(
    *,
    case: CaseOpt,
    query: Annotated[
        str,
        typer.Option(
            "--query",
            help="What the hold covers: actor:ID session:UUID index:A-B since:TIME until:TIME.",
        ),
    ],
    reason: ReasonOpt,
    by: ByOpt = None,
    ledger: LedgerDir = None,
    signer_key: SignerKey = None,
    holds: HoldsOpt = None,
) -> None:
    """Place a legal hold: what it covers is not pruned until it is released."""
    d = ledger_dir(ledger)
    with HoldStore(_holds_path(d, holds)) as store, open_ledger(d, signer_key, write=True) as lg:
        placed = place_hold(
            lg, store, case, query, reason, by or getpass.getuser(), check=check_selector
        )
    out.print(
        plain(f"hold for case {placed.case_id} placed, recorded at index {placed.placed_index}")
    )


@retention_app.command("release")
@handled
def release(
    *,
    case: CaseOpt,
    reason: ReasonOpt,
    by: ByOpt = None,
    ledger: LedgerDir = None,
    signer_key: SignerKey = None,
    holds: HoldsOpt = None,
) -> None:
    """Release a case's legal hold (it is kept, marked released)."""
    d = ledger_dir(ledger)
    with HoldStore(_holds_path(d, holds)) as store, open_ledger(d, signer_key, write=True) as lg:
        done = release_hold(lg, store, case, reason, by or getpass.getuser())
    assert done.released is not None
    out.print(
        plain(f"hold for case {case} released, recorded at index {done.released.ledger_index}")
    )


def _hold_dict(h: Hold) -> dict[str, object]:
    r = h.released
    return {
        "case_id": h.case_id,
        "active": h.active,
        "selector": h.selector,
        "description": h.description,
        "placed_by": h.placed_by,
        "placed": format_time(h.placed_ns),
        "placed_index": h.placed_index,
        "released_by": None if r is None else r.by,
        "released": None if r is None else format_time(r.at_ns),
        "release_reason": None if r is None else r.reason,
        "released_index": None if r is None else r.ledger_index,
    }


@retention_app.command("holds")
@handled
def list_holds(
    ledger: LedgerDir = None,
    holds: HoldsOpt = None,
    every: Annotated[bool, typer.Option("--all", help="Released holds too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List legal holds in force (with --all, released ones too)."""
    path = _holds_path(ledger_dir(ledger), holds)
    found: list[Hold] = []
    if path.exists():
        with HoldStore(path) as store:
            found = store.holds() if every else store.active()
    if as_json:
        sys.stdout.write(json.dumps([_hold_dict(h) for h in found], indent=2) + "\n")
        return
    if not found:
        out.print("no holds" if every else "no holds in force")
        return
    table = Table("case", "state", "covers", "placed", "reason")
    for h in found:
        r = h.released
        state = "in force" if r is None else f"released by {r.by} ({r.reason})"
        recorded = "not recorded" if h.placed_index is None else f"index {h.placed_index}"
        placed = f"{h.placed_by}, {format_time(h.placed_ns)[:19]}Z, {recorded}"
        table.add_row(*(plain(x) for x in (h.case_id, state, h.selector, placed, h.description)))
    out.print(table)


@retention_app.command("verify-archive")
@handled
def verify_archive_cmd(
    file: Annotated[Path, typer.Argument(help="An archive-FIRST-BELOW.zip file.")],
    key: Annotated[Path, typer.Option("--key", help="The ledger's verifier key file.")],
    as_json: JsonOpt = False,
) -> None:
    """Check an archive on its own: every entry proved against its signed checkpoint."""
    report = verify_archive(file, load_verifier(key))
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        for note in report.notes:
            out.print(f"[yellow]note:[/] {plain(note)}")
        for problem in report.problems:
            out.print(f"[red]problem:[/] {plain(problem)}")
        if report:
            out.print(
                f"[bold green]OK[/]: entries {report.first}–{(report.below or 0) - 1} of "
                f"{plain(report.origin or '')} ({report.entries} entries, signed tree size "
                f"{report.checkpoint_size})"
            )
        else:
            out.print(f"[bold red]FAILED[/]: {len(report.problems)} problems")
    if not report:
        raise typer.Exit(EXIT_FAILED)
