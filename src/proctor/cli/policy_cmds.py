"""``proctor policy validate|test|explain|schema``: CI and a magnifying glass for policies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
import yaml
from rich.table import Table

from proctor.cli._app import EXIT_FAILED, EXIT_INPUT, app, err, handled, out
from proctor.errors import InputError, UsageError
from proctor.events.context import RequestContext
from proctor.events.schema import Risk
from proctor.policy.cases import Case, load_cases, run_cases
from proctor.policy.engine import Decision, PolicyEngine
from proctor.policy.loader import PolicyBundle, PolicyError, load_policies
from proctor.policy.schema import SCHEMA_TEXT
from proctor.risk.baselines import Baselines
from proctor.risk.engine import RiskEngine

policy_app = typer.Typer(help="Check, test and explain Cedar policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

PoliciesOpt = Annotated[
    Path | None,
    typer.Option(
        "--policies",
        envvar="PROCTOR_POLICIES",
        help="Directory of .cedar files (or set PROCTOR_POLICIES).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _load(directory: Path) -> PolicyBundle:
    """Load policies; on failure print every problem (not only the first) and exit 3."""
    try:
        return load_policies(directory)
    except PolicyError as exc:
        for problem in exc.problems:
            err.print(f"[bold red]error:[/] {_esc(problem)}")
        raise typer.Exit(EXIT_INPUT) from None


@policy_app.command("validate")
@handled
def validate(
    directory: Annotated[Path, typer.Argument(help="Directory of .cedar files.")],
    as_json: JsonOpt = False,
) -> None:
    """Parse and check every policy against Proctor's schema; print each problem as FILE:LINE."""
    bundle = _load(directory)
    if as_json:
        print(json.dumps(_bundle_json(bundle), indent=2))
        return
    out.print(
        f"OK: {len(bundle.policies)} policies in {len(bundle.files)} files,"
        f" revision {bundle.revision[:16]}"
    )


@policy_app.command("test")
@handled
def test(
    cases_file: Annotated[
        Path, typer.Argument(help="YAML file of requests and expected decisions.")
    ],
    policies: PoliciesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide every case and compare; exit 1 when any decision differs from what is expected."""
    cases = load_cases(cases_file)
    directory = policies
    if directory is None and cases.policies is not None:
        directory = (cases_file.parent / cases.policies).resolve()
    if directory is None:
        raise UsageError("no policies: give --policies DIR or 'policies:' in the cases file")
    engine = PolicyEngine(_load(directory))
    results = run_cases(engine, cases.cases)
    failed = [r for r in results if not r.passed]
    if as_json:
        rows = [
            {
                "name": r.case.name,
                "passed": r.passed,
                "mismatches": list(r.mismatches),
                "decision": decision_json(r.decision),
            }
            for r in results
        ]
        print(json.dumps({"revision": engine.revision, "cases": rows}, indent=2))
    else:
        table = Table("case", "effect", "policies", "result")
        for r in results:
            verdict = (
                "[green]pass[/]" if r.passed else "[red]FAIL[/]\n" + _esc("\n".join(r.mismatches))
            )
            table.add_row(
                _esc(r.case.name), r.decision.effect, _esc(", ".join(r.decision.policies)), verdict
            )
        out.print(table)
        out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@policy_app.command("explain")
@handled
def explain(
    request_file: Annotated[
        Path, typer.Argument(help="YAML or JSON: one case (request, risk, approved), no expect.")
    ],
    policies: PoliciesOpt = None,
    baselines: Annotated[
        Path | None,
        typer.Option("--baselines", help="Baselines file (e.g. LEDGER/baselines.sqlite)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide one request and show why: determining policies, reasons, obligations, risk.

    The risk comes from the file's ``risk`` when it has one; otherwise the risk engine scores
    the request, against the baselines given with --baselines (or none: a user never seen).
    """
    if policies is None:
        raise UsageError("no policies: give --policies DIR or set PROCTOR_POLICIES")
    case = load_case(request_file, risk_optional=True)
    engine = PolicyEngine(_load(policies))
    ctx, risk = case.request, case.risk
    if baselines is not None and not baselines.is_file():
        raise UsageError(f"no baselines file {baselines}")  # never create an empty one
    if not case.risk_given:
        scorer = RiskEngine(Baselines(baselines))
        ctx = scorer.enrich(ctx)
        risk = scorer.assess(ctx)
    decision = engine.decide(ctx, risk, approved=case.approved)
    if as_json:
        doc = decision_json(decision, engine.bundle)
        doc["risk"] = msgspec.to_builtins(risk)
        print(json.dumps(doc, indent=2))
        return
    print_decision(decision, engine.bundle, risk)


@policy_app.command("schema")
def schema() -> None:
    """Print Proctor's Cedar schema (entities, actions, context)."""
    print(SCHEMA_TEXT, end="")


# -- helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OneCase:
    """A single request read from a file, and whether it carried its own risk."""

    request: RequestContext
    risk: Risk
    approved: bool
    risk_given: bool


def load_case(path: Path, *, risk_optional: bool = False) -> OneCase:
    """A single request file: ``request`` (required), ``risk``, ``approved``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML or JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with 'request' (and 'risk', 'approved')")
    given = "risk" in raw
    if not given and not risk_optional:
        raise InputError(f"{path}: no 'risk'")
    raw = {"name": path.name, "expect": {"effect": "deny"}, **raw}  # expect is not used
    try:
        case = msgspec.convert(raw, type=Case)
    except msgspec.ValidationError as exc:
        raise InputError(f"{path}: {exc}") from None
    return OneCase(case.request, case.risk, case.approved, given)


def print_decision(d: Decision, bundle: PolicyBundle, risk: Risk) -> None:
    """A decision for people: effect, why, which policy where, obligations, risk factors."""
    colour = {"allow": "green", "deny": "red", "step_up": "yellow"}[d.effect]
    out.print(f"[bold {colour}]{d.effect.upper()}[/]  ({d.eval_us} µs, revision {d.revision[:16]})")
    for reason in d.reasons:
        out.print(f"  why: {_esc(reason)}")
    for pid in d.policies:
        p = bundle.policies[pid]
        out.print(f"  policy [bold]{_esc(pid)}[/] ({p.effect}) at {_esc(p.file)}:{p.line}")
    if d.obligations:
        out.print(f"  obligations: {_esc(', '.join(d.obligations))}")
    if d.recheck_s is not None:
        out.print(f"  re-decided after {d.recheck_s} s")
    for e in d.errors:
        out.print(f"  [red]error:[/] {_esc(e)}")
    out.print(f"risk {risk.score} ({risk.level})" + (f", model {risk.model}" if risk.model else ""))
    if risk.factors:
        table = Table("signal", "points", "evidence")
        for f in risk.factors:
            table.add_row(_esc(f.signal), str(f.points), _esc(f.evidence or ""))
        out.print(table)


def decision_json(d: Decision, bundle: PolicyBundle | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "effect": d.effect,
        "policies": list(d.policies),
        "reasons": list(d.reasons),
        "obligations": list(d.obligations),
        "recheck_s": d.recheck_s,
        "revision": d.revision,
        "eval_us": d.eval_us,
        "errors": list(d.errors),
    }
    if bundle is not None:
        doc["locations"] = {
            pid: f"{bundle.policies[pid].file}:{bundle.policies[pid].line}" for pid in d.policies
        }
    return doc


def _bundle_json(bundle: PolicyBundle) -> dict[str, Any]:
    return {
        "revision": bundle.revision,
        "files": sorted(bundle.files),
        "policies": [
            {
                "id": p.id,
                "file": p.file,
                "line": p.line,
                "effect": p.effect,
                "reason": p.reason,
                "on_deny": p.on_deny,
                "obligations": list(p.obligations),
                "recheck_s": p.recheck_s,
            }
            for p in bundle.policies.values()
        ],
    }


def _esc(text: str) -> str:
    return text.replace("[", r"\[")
