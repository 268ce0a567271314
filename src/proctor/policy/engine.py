"""Decide a request with Cedar: allow, deny or step up, and say why.

Cedar answers Allow or Deny and names the policies that determined it. Proctor adds:

* **default deny**: no permit that applies → deny, "no policy permits this";
* **fail closed**: any evaluation error (a bad request, a policy that fails at run time) →
  deny with the error recorded. Cedar skips a policy whose condition errors, which for a
  forbid would mean allowing, so this matters;
* **step-up**: a deny whose determining forbids are all ``@on_deny("step_up")`` becomes
  ``step_up`` (fresh MFA or an approval would allow it) and their reasons tell the user how;
* **obligations** and **recheck** from the determining permits' annotations.

The engine holds one immutable :class:`PolicyBundle`; a reload swaps the whole engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import cedarpy

from proctor.events.context import RequestContext, parse_rfc3339
from proctor.events.schema import Decision as DecisionPart
from proctor.events.schema import Risk
from proctor.policy.loader import PolicyBundle
from proctor.policy.schema import RESOURCE_ENTITY, cedar_schema

__all__ = ["NO_PERMIT", "Decision", "EngineConfig", "PolicyEngine"]

NO_PERMIT: Final = "no policy permits this"
_MAX_ERROR: Final = 400  # cedarpy may quote the whole request in an error: keep records small

Effect = Literal["allow", "deny", "step_up"]


@dataclass(frozen=True)
class Decision:
    """A policy decision that explains itself."""

    effect: Effect
    policies: tuple[str, ...]
    reasons: tuple[str, ...]
    obligations: tuple[str, ...] = ()
    recheck_s: int | None = None
    revision: str = ""
    eval_us: int = 0
    errors: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        """True only for ``allow``."""
        return self.effect == "allow"

    def event_part(self) -> DecisionPart:
        """The ``decision`` part of a ledger event."""
        return DecisionPart(
            effect=self.effect,
            reasons=self.reasons[:64],
            policies=self.policies[:64],
            obligations=self.obligations,
            policy_revision=self.revision,
            eval_us=self.eval_us,
        )


@dataclass(frozen=True)
class EngineConfig:
    """Settings that turn a request context into Cedar's context."""

    timezone: str = "UTC"
    """Zone for ``context.time.hour`` and ``weekday``."""
    mfa_fresh_s: int = 900
    """An MFA at most this old counts as ``context.mfa.fresh``."""


class PolicyEngine:
    """Decides requests against one policy bundle; safe to share between threads."""

    def __init__(self, bundle: PolicyBundle, config: EngineConfig | None = None) -> None:
        self.bundle = bundle
        self.config = config or EngineConfig()
        self._zone = ZoneInfo(self.config.timezone)
        self._schema = cedar_schema()

    @property
    def revision(self) -> str:
        """The bundle's revision (SHA-256 of schema and policy files)."""
        return self.bundle.revision

    def decide(self, ctx: RequestContext, risk: Risk, *, approved: bool = False) -> Decision:
        """The decision for one request; never raises for a bad request (it is denied)."""
        start = time.perf_counter_ns()
        try:
            request = self.cedar_request(ctx, risk, approved=approved)
            entities = self.cedar_entities(ctx)
            result = cedarpy.is_authorized(request, self.bundle.cedar, entities, self._schema)
        except (ValueError, TypeError, OverflowError) as exc:
            return self._finish(start, "deny", (), (), errors=(_short(str(exc)),))
        errors = tuple(_short(e) for e in result.diagnostics.errors)
        ids = tuple(result.diagnostics.reasons)
        if errors or result.decision not in (cedarpy.Decision.Allow, cedarpy.Decision.Deny):
            return self._finish(start, "deny", ids, (), errors=errors or ("no decision",))
        if result.decision == cedarpy.Decision.Allow:
            return self._allow(start, ids)
        return self._deny(start, ids)

    # -- results -----------------------------------------------------------------------------

    def _allow(self, start: int, ids: Sequence[str]) -> Decision:
        policies = [self.bundle.policies[i] for i in ids]
        obligations: list[str] = []
        for p in policies:
            obligations.extend(o for o in p.obligations if o not in obligations)
        rechecks = [p.recheck_s for p in policies if p.recheck_s is not None]
        reasons = tuple(p.reason or f"permitted by {p.id}" for p in policies)
        return self._finish(
            start,
            "allow",
            tuple(ids),
            reasons,
            obligations=tuple(obligations),
            recheck_s=min(rechecks, default=None),
        )

    def _deny(self, start: int, ids: Sequence[str]) -> Decision:
        if not ids:
            return self._finish(start, "deny", (), (NO_PERMIT,))
        policies = [self.bundle.policies[i] for i in ids]
        effect: Effect = "step_up" if all(p.on_deny == "step_up" for p in policies) else "deny"
        # A hard deny wins over a curable one: show only the forbids that decided it.
        shown = [p for p in policies if effect == "step_up" or p.on_deny == "deny"]
        reasons = tuple(p.reason or f"forbidden by {p.id}" for p in shown)
        return self._finish(start, effect, tuple(p.id for p in shown), reasons)

    def _finish(
        self,
        start: int,
        effect: Effect,
        ids: tuple[str, ...],
        reasons: tuple[str, ...],
        *,
        obligations: tuple[str, ...] = (),
        recheck_s: int | None = None,
        errors: tuple[str, ...] = (),
    ) -> Decision:
        if errors:
            reasons = tuple(f"policy evaluation error: {e}" for e in errors)
        return Decision(
            effect=effect,
            policies=ids,
            reasons=reasons,
            obligations=obligations if effect == "allow" else (),
            recheck_s=recheck_s,
            revision=self.bundle.revision,
            eval_us=(time.perf_counter_ns() - start) // 1000,
            errors=errors,
        )

    # -- the request in Cedar's terms -------------------------------------------------------

    def cedar_request(
        self, ctx: RequestContext, risk: Risk, *, approved: bool = False
    ) -> dict[str, Any]:
        """Principal, action, resource and context as cedarpy takes them."""
        now_ns = parse_rfc3339(ctx.time)
        local = datetime.fromtimestamp(now_ns // 1_000_000_000, UTC).astimezone(self._zone)
        p = ctx.principal
        mfa_age = -1
        if p.mfa and p.mfa_time is not None:
            mfa_age = max(0, (now_ns - parse_rfc3339(p.mfa_time)) // 1_000_000_000)
        dev = ctx.device
        net = ctx.network
        network: dict[str, Any] = {
            "labels": list(net.labels) if net else [],
            "country": (net.geo.country or "") if net and net.geo else "",
            "asn": (net.geo.asn or 0) if net and net.geo else 0,
        }
        if net is not None and net.ip is not None:
            network["ip"] = {"__extn": {"fn": "ip", "arg": net.ip}}
        sql = ctx.action.sql
        context = {
            "risk": {
                "score": risk.score,
                "level": risk.level,
                "factors": [f.signal for f in risk.factors if f.points > 0],
            },
            "mfa": {
                "present": p.mfa,
                "fresh": 0 <= mfa_age <= self.config.mfa_fresh_s,
                "age_s": mfa_age,
            },
            "auth_method": p.auth_method,
            "device": {
                "known": dev is not None and dev.id is not None,
                "managed": dev is not None and dev.managed,
                "compliant": dev is not None and dev.compliant,
            },
            "network": network,
            "time": {"hour": local.hour, "weekday": local.isoweekday()},
            "operation": ctx.action.operation or "",
            "sql": {
                "statement_count": sql.statement_count if sql else 0,
                "has_where": sql.has_where if sql else True,
                "objects": list(sql.objects) if sql else [],
                "functions": list(sql.functions) if sql else [],
                "writes_in_cte": sql.writes_in_cte if sql else False,
                "copy_program": sql.copy_program if sql else False,
            },
            "approved": approved,
        }
        return {
            "principal": _uid("User", p.id),
            "action": _uid("Action", ctx.action.class_),
            "resource": _uid(RESOURCE_ENTITY[ctx.resource.type], ctx.resource.name),
            "context": context,
        }

    def cedar_entities(self, ctx: RequestContext) -> str:
        """The request's entities as Cedar entity JSON: the user and the resource."""
        p = ctx.principal
        parents = [{"type": "Role", "id": r} for r in p.roles]
        parents += [{"type": "Group", "id": g} for g in p.groups]
        entities: list[dict[str, Any]] = [
            {
                "uid": {"type": "User", "id": p.id},
                "attrs": {"name": p.display_name or p.id, "kind": p.kind},
                "parents": parents,
                "tags": dict(p.attributes),
            }
        ]
        entities += [{"uid": x, "attrs": {}, "parents": []} for x in parents]
        res = ctx.resource
        kind = RESOURCE_ENTITY[res.type]
        attrs: dict[str, Any] = {"sensitivity": res.sensitivity}
        res_parents: list[dict[str, str]] = []
        if kind == "Table":
            attrs["database"] = res.database or ""
            if res.database:
                db = {"type": "Database", "id": res.database}
                res_parents.append(db)
                entities.append(
                    {"uid": db, "attrs": {"sensitivity": res.sensitivity}, "parents": []}
                )
        entities.append(
            {"uid": {"type": kind, "id": res.name}, "attrs": attrs, "parents": res_parents}
        )
        return json.dumps(entities)


def _uid(kind: str, name: str) -> dict[str, str]:
    return {"type": kind, "id": name}


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
