"""Policy tests: requests with the decision each must get (``proctor policy test``).

A cases file is YAML::

    policies: ../policies          # optional, relative to this file
    cases:
      - name: analysts read orders
        request: {principal: {id: alice, roles: [analyst]}, action: {class: read},
                  resource: {type: table, name: public.orders}, time: "2026-11-23T10:00:00Z"}
        risk: {score: 20, level: low}          # optional, default score 0, level low
        approved: false                        # optional
        expect:
          effect: allow                        # required
          policies: [analysts-read]            # optional: exactly these determining ids
          reasons: ["analysts may read …"]     # optional: each must be among the reasons
          obligations: [read_only]             # optional: exactly these

Every field is checked; an unknown key or a wrong type is an error naming the case and the
field, so a misspelt expectation can never pass silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from proctor.errors import InputError
from proctor.events.context import RequestContext
from proctor.events.schema import Risk
from proctor.policy.engine import Decision, PolicyEngine

__all__ = ["Case", "CaseResult", "CasesFile", "load_cases", "run_cases"]


class Expect(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a case's decision must be."""

    effect: Literal["allow", "deny", "step_up"]
    policies: tuple[str, ...] | None = None
    reasons: tuple[str, ...] | None = None
    obligations: tuple[str, ...] | None = None


class Case(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One request and its expected decision."""

    name: str
    request: RequestContext
    expect: Expect
    risk: Risk = Risk(score=0, level="low")
    approved: bool = False


class CasesFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A file of cases and, optionally, the policy directory they test."""

    cases: tuple[Case, ...]
    policies: str | None = None


@dataclass(frozen=True)
class CaseResult:
    """A case, the decision it got, and what did not match (empty when it passed)."""

    case: Case
    decision: Decision
    mismatches: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when the decision matched every expectation."""
        return not self.mismatches


def load_cases(path: Path) -> CasesFile:
    """Read and check a cases file; InputError names the file, case and field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InputError(f"{path}{where}: {problem}") from None
    try:
        cases = msgspec.convert(raw, type=CasesFile)
    except msgspec.ValidationError as exc:
        raise InputError(f"{path}: {_case_path(raw, str(exc))}") from None
    if not cases.cases:
        raise InputError(f"{path}: no cases")
    return cases


def run_cases(engine: PolicyEngine, cases: Sequence[Case]) -> list[CaseResult]:
    """Decide every case and compare with its expectation."""
    results = []
    for case in cases:
        decision = engine.decide(case.request, case.risk, approved=case.approved)
        results.append(CaseResult(case, decision, _compare(case.expect, decision)))
    return results


def _compare(expect: Expect, got: Decision) -> tuple[str, ...]:
    out = []
    if got.effect != expect.effect:
        out.append(f"effect: expected {expect.effect}, got {got.effect}")
    if expect.policies is not None and sorted(expect.policies) != sorted(got.policies):
        out.append(f"policies: expected {list(expect.policies)}, got {list(got.policies)}")
    if expect.reasons is not None:
        out += [
            f"reasons: {r!r} not among {list(got.reasons)}"
            for r in expect.reasons
            if r not in got.reasons
        ]
    if expect.obligations is not None and sorted(expect.obligations) != sorted(got.obligations):
        out.append(f"obligations: expected {list(expect.obligations)}, got {list(got.obligations)}")
    return tuple(out)


def _case_path(raw: Any, message: str) -> str:
    """msgspec's ``$.cases[3].request…`` message, with the case's name when it has one."""
    marker = "at `$.cases["
    if marker not in message or not isinstance(raw, dict):
        return message
    try:
        index = int(message.split(marker, 1)[1].split("]", 1)[0])
        name = raw["cases"][index].get("name")
    except (ValueError, LookupError, AttributeError, TypeError):
        return message
    return f"case {index + 1} ({name!r}): {message}" if name else f"case {index + 1}: {message}"
