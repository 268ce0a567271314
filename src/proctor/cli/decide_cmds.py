"""``proctor decide`` and ``proctor replay``: decisions as ledger records, and their replay.

``decide`` runs one request through the whole engine (risk with the ledger's baselines, the
policies, the decision event) and appends the event to the ledger, as the gateway does for
every statement. ``replay`` finds a recorded decision by its event id and re-runs it against
the policy revision that made it. Beside the ledger live ``baselines.sqlite`` (what is normal
per user) and ``policies.sqlite`` (every policy revision used).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from proctor.cli._app import EXIT_FAILED, app, handled, out
from proctor.cli.options import LedgerDir, SignerKey, ledger_dir, open_ledger
from proctor.cli.policy_cmds import (
    JsonOpt,
    PoliciesOpt,
    decision_json,
    load_case,
    print_decision,
)
from proctor.decision import Decider, replay
from proctor.errors import EventError, UsageError
from proctor.events.canonical import decode_event
from proctor.events.schema import Event
from proctor.ledger.ledger import Ledger
from proctor.policy.archive import PolicyArchive
from proctor.policy.live import LivePolicies
from proctor.risk.baselines import Baselines
from proctor.risk.engine import RiskEngine
from proctor.runtime import ARCHIVE_NAME, BASELINES_NAME


@app.command("decide")
@handled
def decide(
    request_file: Annotated[Path, typer.Argument(help="YAML or JSON: request (and approved).")],
    policies: PoliciesOpt = None,
    ledger: LedgerDir = None,
    signer_key: SignerKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide one request with risk and policies, and record the decision in the ledger."""
    if policies is None:
        raise UsageError("no policies: give --policies DIR or set PROCTOR_POLICIES")
    d = ledger_dir(ledger)
    case = load_case(request_file, risk_optional=True)
    if case.risk_given:
        raise UsageError(f"{request_file}: 'risk' is computed by decide, not given")
    # The ledger first: it checks the directory is one (and takes the writer's lock) before
    # its side files are created in it.
    with open_ledger(d, signer_key, write=True) as lg:
        archive = PolicyArchive(d / ARCHIVE_NAME)
        baselines = Baselines(d / BASELINES_NAME)
        try:
            live = LivePolicies(policies, archive=archive)
            decider = Decider(live, RiskEngine(baselines))
            decided = decider.evaluate(case.request, approved=case.approved)
            index = lg.append(decided.event)
        finally:
            baselines.close()
            archive.close()
    if as_json:
        doc = {"index": index, "event_id": decided.event.id, **decision_json(decided.decision)}
        print(json.dumps(doc, indent=2))
        return
    print_decision(decided.decision, live.engine.bundle, decided.risk)
    out.print(f"recorded as event {decided.event.id} at ledger index {index}")


@app.command("replay")
@handled
def replay_cmd(
    event_id: Annotated[str, typer.Argument(help="The decision event's id.")],
    ledger: LedgerDir = None,
    archive_file: Annotated[
        Path | None,
        typer.Option("--archive", help="Policy archive (default: LEDGER/policies.sqlite)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-run a recorded decision against its policy revision; exit 1 if it does not reproduce."""
    d = ledger_dir(ledger)
    path = archive_file or d / ARCHIVE_NAME
    if not path.exists():
        raise UsageError(f"no policy archive at {path}")
    with Ledger(d) as lg:
        event = _find(lg, event_id)
    archive = PolicyArchive(path)
    try:
        result = replay(event, archive)
    finally:
        archive.close()
    rec = event.decision
    assert rec is not None and result.decision is not None
    if as_json:
        doc = {
            "event_id": event.id,
            "reproduced": result.reproduced,
            "differences": list(result.differences),
            "notes": list(result.notes),
            "recorded": {"effect": rec.effect, "policies": list(rec.policies)},
            "replayed": decision_json(result.decision),
        }
        print(json.dumps(doc, indent=2))
    elif result.reproduced:
        out.print(
            f"[green]reproduced[/]: {rec.effect} by {', '.join(rec.policies) or 'no policy'}"
            f" under revision {(rec.policy_revision or '')[:16]}"
        )
    else:
        out.print("[red]does not reproduce[/]:")
        for diff in result.differences:
            out.print("  " + diff.replace("[", r"\["))
    if not as_json:
        for note in result.notes:
            out.print("  note: " + note.replace("[", r"\["))
    if not result.reproduced:
        raise typer.Exit(EXIT_FAILED)


def _find(lg: Ledger, event_id: str) -> Event:
    """The event with this id (newest first: recent decisions are asked about most)."""
    needle = f'"id":"{event_id}"'.encode()
    for start in range(lg.size(), 0, -4096):
        for _, data in reversed(list(lg.entries(max(0, start - 4096), start))):
            if needle in data:
                try:
                    event = decode_event(data)
                except EventError:
                    continue
                if event.id == event_id:
                    return event
    raise UsageError(f"no event {event_id} in the ledger")
