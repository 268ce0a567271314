"""The decision part of ``proctor demo``: users with different risk, decided and recorded.

A month of one analyst's ordinary sessions teaches the baselines; then four requests are
decided against ``examples/policies`` and appended to the ledger: her usual read, the same
account from another continent on an unknown device at night, a DBA's DROP TABLE without and
with a fresh MFA, and a contractor reaching for confidential data. One is replayed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from proctor.cli._app import out
from proctor.decision import Decider, replay
from proctor.events.context import RequestContext, decode_context
from proctor.ledger.ledger import Ledger
from proctor.policy.archive import PolicyArchive
from proctor.policy.live import LivePolicies
from proctor.risk.baselines import Baselines
from proctor.risk.engine import RiskEngine
from proctor.risk.network import GeoRow, GeoTable, NetworkClassifier

__all__ = ["run_decisions"]

_NETWORK = NetworkClassifier(
    {"corp": ["10.0.0.0/8"]},
    anonymizers=["185.220.100.0/22"],
    geo=GeoTable(
        [
            GeoRow("10.0.0.0/8", "DE", "Berlin", 52_520_000, 13_405_000, 64500),
            GeoRow("200.1.0.0/16", "BR", "Sao Paulo", -23_550_000, -46_633_000, 28573),
        ]
    ),
)


def _ctx(
    user: dict[str, Any], action: dict[str, Any], table: str, when: str, **more: Any
) -> RequestContext:
    return decode_context(
        {
            "principal": user,
            "action": action,
            "resource": {"type": "table", "name": table, "database": "shop", **more.pop("res", {})},
            "time": when,
            **more,
        }
    )


def _teach(risk: RiskEngine) -> None:
    """Thirty working mornings of alice, from the office, on her laptop."""
    for day in range(1, 31):
        ctx = _ctx(
            {"id": "alice", "roles": ["analyst"]},
            {"class": "connect"},
            "public.orders",
            f"2026-10-{day:02d}T09:{day % 60:02d}:00Z",
            network={"ip": f"10.1.{day % 3}.5"},
            device={"id": "alice-laptop", "user_agent": "psql/16.2"},
            session_start=True,
        )
        risk.learn(risk.enrich(ctx))


def run_decisions(ledger_dir: Path, signer_key: Path, policies: Path) -> bool:
    """Decide and record the demo's requests; True when each got the expected effect."""
    from proctor.ledger.ledger import load_signer  # noqa: PLC0415 (keeps the import list short)

    archive = PolicyArchive(ledger_dir / "policies.sqlite")
    baselines = Baselines(ledger_dir / "baselines.sqlite")
    risk = RiskEngine(baselines, network=_NETWORK)
    _teach(risk)
    decider = Decider(LivePolicies(policies, archive=archive), risk)
    alice = {"id": "alice", "roles": ["analyst"]}
    laptop = {"id": "alice-laptop", "user_agent": "psql/16.2"}
    select = {"class": "read", "operation": "SELECT", "sql": {"objects": ["public.orders"]}}
    drop = {"class": "ddl", "operation": "DROP TABLE", "sql": {"objects": ["public.orders"]}}
    dba = {"id": "dana", "roles": ["dba"]}
    cases: list[tuple[str, RequestContext, str]] = [
        (
            "alice reads orders, as every morning",
            _ctx(
                alice,
                select,
                "public.orders",
                "2026-11-23T09:12:00Z",
                network={"ip": "10.1.0.5"},
                device=laptop,
            ),
            "allow",
        ),
        (
            "alice's account from Brazil, unknown device, 03:00",
            _ctx(
                alice,
                select,
                "public.orders",
                "2026-11-23T03:02:00Z",
                network={"ip": "200.1.7.9"},
                device={"id": "pc-x1", "user_agent": "sqlmap/1.7"},
            ),
            "deny",
        ),
        (
            "dana (DBA) drops a table",
            _ctx(dba, drop, "public.orders", "2026-11-23T10:00:00Z", network={"ip": "10.2.0.7"}),
            "step_up",
        ),
        (
            "dana again, after a fresh MFA",
            _ctx(
                {**dba, "mfa": True, "mfa_time": "2026-11-23T10:00:30Z"},
                drop,
                "public.orders",
                "2026-11-23T10:01:00Z",
                network={"ip": "10.2.0.7"},
            ),
            "allow",
        ),
        (
            "carl (contractor) reads customers",
            _ctx(
                {"id": "carl", "groups": ["contractors"]},
                select,
                "public.customers",
                "2026-11-23T11:00:00Z",
                network={"ip": "10.3.0.4"},
                res={"sensitivity": "confidential"},
            ),
            "deny",
        ),
    ]
    table = Table("request", "risk", "top factors", "decision", "policies / why")
    ok = True
    decided = []
    with Ledger(ledger_dir, signer=load_signer(signer_key)) as lg:
        for label, ctx, expected in cases:
            d = decider.evaluate(ctx)
            lg.append(d.event)
            decided.append(d)
            ok &= d.decision.effect == expected
            top = ", ".join(f"{f.signal} +{f.points}" for f in d.risk.factors[:3] if f.points > 0)
            colour = {"allow": "green", "deny": "red", "step_up": "yellow"}[d.decision.effect]
            why = ", ".join(d.decision.policies) or d.decision.reasons[0]
            table.add_row(
                label,
                f"{d.risk.score} {d.risk.level}",
                top or "-",
                f"[{colour}]{d.decision.effect}[/]",
                why,
            )
    out.print(table)
    out.print(
        f"each decision is a ledger event with its input; policy revision "
        f"{decider.engine.revision[:16]} is archived in {ledger_dir / 'policies.sqlite'}"
    )
    again = replay(decided[1].event, archive)
    out.print(
        f"replay of '{cases[1][0]}' (event {decided[1].event.id}): "
        + ("[green]reproduced[/]" if again.reproduced else "[red]differs[/]")
    )
    ok &= again.reproduced
    baselines.close()
    archive.close()
    return ok
