"""``proctor ledger …``: create, append to, checkpoint, prove and read a ledger."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from proctor.cli._app import app, err, handled, out
from proctor.cli.options import (
    DurabilityOpt,
    LedgerDir,
    SignerKey,
    durability,
    ledger_dir,
    open_ledger,
    signer_for,
)
from proctor.errors import EventError, InputError, UsageError
from proctor.events.canonical import decode_event
from proctor.events.schema import Event
from proctor.ledger.ledger import Ledger, load_signer
from proctor.ledger.note import Signer

ledger_app = typer.Typer(help="Create and use a ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

MAX_LINE = 1 << 20  # one event line at most; larger is refused, not truncated


@ledger_app.command("init")
@handled
def init(
    ledger: LedgerDir = None,
    signer_key: SignerKey = None,
    name: Annotated[
        str, typer.Option("--name", help="Key name and origin when a new key is made.")
    ] = "proctor.local/ledger",
) -> None:
    """Create an empty ledger. Without --signer-key a new key is kept in DIR/signer.key."""
    d = ledger_dir(ledger)
    if signer_key is not None:
        Ledger.init(d, load_signer(signer_key))
    else:
        Ledger.init(d, Signer.generate(name), keep_signer=True)
    with Ledger(d) as opened:
        out.print(f"ledger {d} created; origin {opened.origin}")
        out.print(f"verifier key: {opened.verifier.vkey}")


def read_events(path: Path) -> list[Event]:
    """Every event of a JSON-lines file, or an error naming the line; nothing partial."""
    stream = sys.stdin.buffer if str(path) == "-" else None
    try:
        f = stream or path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    events: list[Event] = []
    with f:
        for number, line in enumerate(f, start=1):
            if len(line) > MAX_LINE:
                raise InputError(f"{path}:{number}: line longer than {MAX_LINE} bytes")
            if not line.strip():
                continue
            try:
                events.append(decode_event(line))
            except EventError as exc:
                raise EventError(f"{path}:{number}: {exc}") from None
    if not events:
        raise InputError(f"{path}: no events")
    return events


@ledger_app.command("append")
@handled
def append(
    file: Annotated[Path, typer.Argument(help="JSON lines, one event a line ('-': stdin).")],
    ledger: LedgerDir = None,
    signer_key: SignerKey = None,
    durability_: DurabilityOpt = "os",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Append events; prints each one's index once all are durable.

    Every line is validated first: one invalid event and nothing is written.
    """
    events = read_events(file)
    with open_ledger(ledger, signer_key, write=True, durability_=durability(durability_)) as lg:
        first = lg.append_many(events)
    indexes = list(range(first, first + len(events)))
    if as_json:
        sys.stdout.write(json.dumps(indexes) + "\n")
    else:
        for i in indexes:
            out.print(i)
    err.print(f"appended {len(events)} events at {first}..{indexes[-1]}")


@ledger_app.command("checkpoint")
@handled
def checkpoint(ledger: LedgerDir = None, signer_key: SignerKey = None) -> None:
    """Print the latest signed checkpoint (signing a new one when the key is at hand)."""
    d = ledger_dir(ledger)
    signer = signer_for(d, signer_key, required=False)
    with Ledger(d, signer=signer) as lg:
        sys.stdout.write(lg.checkpoint())


@ledger_app.command("prove")
@handled
def prove(
    index: Annotated[int, typer.Argument(help="Entry index.")],
    ledger: LedgerDir = None,
    signer_key: SignerKey = None,
) -> None:
    """Print a C2SP tlog-proof receipt for one entry."""
    d = ledger_dir(ledger)
    with Ledger(d) as lg:
        if not 0 <= index < (size := lg.size()):
            raise UsageError(f"no entry at index {index} (the ledger has {size})")
        latest = lg.latest_checkpoint()
        if latest is not None and latest.size > index:
            sys.stdout.write(lg.prove(index).text())
            return
    # No signed checkpoint covers it yet: sign one if we can.
    with open_ledger(d, signer_key, write=True) as lg:
        sys.stdout.write(lg.prove(index).text())


@ledger_app.command("entry")
@handled
def entry(
    index: Annotated[int, typer.Argument(help="Entry index.")],
    ledger: LedgerDir = None,
) -> None:
    """Print an entry's canonical bytes exactly as hashed (no newline added)."""
    with Ledger(ledger_dir(ledger)) as lg:
        data = lg.entry(index)
    sys.stdout.buffer.write(data)
    if sys.stdout.isatty():
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
