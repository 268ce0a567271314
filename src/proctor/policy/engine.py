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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import cedarpy

from proctor._lru import Lru
from proctor.events.context import RequestContext, parse_rfc3339
from proctor.events.schema import Decision as DecisionPart
from proctor.events.schema import Risk
from proctor.policy._slices import applicability, slice_set
from proctor.policy.loader import PolicyBundle
from proctor.policy.schema import RESOURCE_ENTITY, cedar_schema

__all__ = ["NO_PERMIT", "Decision", "EngineConfig", "PolicyEngine"]

NO_PERMIT: Final = "no policy permits this"
_MFA_SKEW_S: Final = 60
_MAX_ERROR: Final = 400  # cedarpy may quote the whole request in an error: keep records small

Effect = Literal["allow", "deny", "step_up"]
_Result = tuple[str, tuple[str, ...], tuple[str, ...]]


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
    validate_requests: bool = False
    """Have Cedar check every request and its entities against the schema (slower)."""
    cache_size: int = 4096
    """Decisions and parsed entity sets kept per engine (per policy revision); 0: none."""
    slice_policies: bool = True
    """Give Cedar only the policies whose scope can match the action and principal."""
    slice_cache_size: int = 1024
    """Sliced policy sets kept per engine (one per action and set of roles and groups)."""


class PolicyEngine:
    """Decides requests against one policy bundle; safe to share between threads."""

    def __init__(self, bundle: PolicyBundle, config: EngineConfig | None = None) -> None:
        self.bundle = bundle
        self.config = config or EngineConfig()
        self._zone = ZoneInfo(self.config.timezone)
        self._schema = cedar_schema()
        # Requests are built by this module from typed structs, so by default Cedar does not
        # re-check them against the schema on every call (it doubled the cost); policies were
        # checked against it at load, and tests decide with validate_requests on.
        self._request_schema = self._schema if self.config.validate_requests else None
        # A request checked against the schema needs every attribute; otherwise only those read.
        keys = None if self.config.validate_requests else bundle.context_keys
        # A key no builder makes is one the schema does not have (`context has foo` loads):
        # leaving it out is what the full context would do too.
        known = tuple(k for k in sorted(keys or ()) if k in _CONTEXT_BUILDERS)
        self._context_keys = _ALL_CONTEXT_KEYS if keys is None else known
        self._results: Lru[tuple[str, str, str, str, str], _Result] = Lru(self.config.cache_size)
        self._entities: Lru[str, cedarpy.Entities] = Lru(self.config.cache_size)
        self._entity_text: Lru[tuple[object, ...], str] = Lru(self.config.cache_size)
        # Policy sets sliced by action and principal (see _slices: exact for this schema).
        self._scopes = {pid: applicability(body) for pid, body in bundle.bodies.items()}
        # Only principals some scope names tell slices apart: the key keeps just those, so
        # users with the same roles and groups share a slice.
        self._named = frozenset(u for who, _ in self._scopes.values() if who for u in who)
        self._slices: Lru[tuple[str, frozenset[tuple[str, str]]], cedarpy.PolicySet] = Lru(
            self.config.slice_cache_size
        )

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
        except (ValueError, TypeError, OverflowError) as exc:
            return self._finish(start, "deny", (), (), errors=(_short(str(exc)),))
        # Cedar is a pure function of policies, request and entities: a result cached under
        # the exact request and entity text, in this engine (one policy revision), is exact.
        res = request["resource"]
        key = (request["action"]["id"], res["type"], res["id"], request["context"], entities)
        cached = self._results.get(key)
        if cached is None:
            p = ctx.principal
            principal = frozenset(
                [("User", p.id), *(("Role", r) for r in p.roles), *(("Group", g) for g in p.groups)]
            )
            cached = self._evaluate(request, entities, principal)
            self._results.put(key, cached)
        effect, ids, errors = cached
        if errors:
            return self._finish(start, "deny", ids, (), errors=errors)
        if effect == "allow":
            return self._allow(start, ids)
        return self._deny(start, ids)

    def _evaluate(
        self, request: dict[str, Any], entities: str, principal: frozenset[tuple[str, str]]
    ) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """Cedar's answer: effect, determining policy ids, errors (any error means deny)."""
        handle = self._entities.get(entities)
        try:
            if handle is None:
                handle = cedarpy.Entities.from_json_str(entities, self._request_schema)
                self._entities.put(entities, handle)
            policies = self._slice(request["action"]["id"], principal)
            result = cedarpy.is_authorized(request, policies, handle, self._request_schema)
        except (ValueError, TypeError, OverflowError) as exc:
            return "deny", (), (_short(str(exc)),)
        errors = tuple(_short(e) for e in result.diagnostics.errors)
        ids = tuple(result.diagnostics.reasons)
        if result.decision == cedarpy.Decision.Allow and not errors:
            return "allow", ids, ()
        if result.decision == cedarpy.Decision.Deny and not errors:
            return "deny", ids, ()
        return "deny", ids, errors or ("no decision",)

    def _slice(self, action: str, principal: frozenset[tuple[str, str]]) -> cedarpy.PolicySet:
        if not self.config.slice_policies:
            return self.bundle.cedar
        key = (action, principal & self._named)
        policies = self._slices.get(key)
        if policies is None:
            policies = slice_set(self.bundle.bodies, self._scopes, action, key[1])
            self._slices.put(key, policies)
        return policies

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
        """Principal, action, resource and context (as JSON text) as cedarpy takes them.

        Only the context attributes some policy reads are built (``PolicyBundle.context_keys``),
        unless requests are checked against the schema: less to build here and far less for
        Cedar to parse, which is most of a decision's cost.
        """
        keys = self._context_keys
        context = {k: _CONTEXT_BUILDERS[k](self, ctx, risk, approved) for k in keys}
        return {
            "principal": _uid("User", ctx.principal.id),
            "action": _uid("Action", ctx.action.class_),
            "resource": _uid(RESOURCE_ENTITY[ctx.resource.type], ctx.resource.name),
            "context": json.dumps(context, sort_keys=True, separators=(",", ":")),
        }

    def _mfa(self, ctx: RequestContext, _risk: Risk, _approved: bool) -> dict[str, Any]:
        p = ctx.principal
        age = -1
        if p.mfa and p.mfa_time is not None:
            now = parse_rfc3339(ctx.time)
            age = (now - parse_rfc3339(p.mfa_time)) // 1_000_000_000
            # A little clock skew between the identity provider and us is normal; an MFA
            # from further in the future is not evidence of anything: not fresh.
            age = 0 if -_MFA_SKEW_S <= age < 0 else age
        fresh = 0 <= age <= self.config.mfa_fresh_s
        # Minutes, not seconds: what policies need, and a value that repeats between requests.
        return {"present": p.mfa, "fresh": fresh, "age_min": age // 60 if age >= 0 else -1}

    def _time(self, ctx: RequestContext, _risk: Risk, _approved: bool) -> dict[str, Any]:
        now_s = parse_rfc3339(ctx.time) // 1_000_000_000
        local = datetime.fromtimestamp(now_s, UTC).astimezone(self._zone)
        return {"hour": local.hour, "weekday": local.isoweekday()}

    def cedar_entities(self, ctx: RequestContext) -> str:
        """The request's entities as Cedar entity JSON: the user and the resource."""
        p = ctx.principal
        key = (p.id, p.kind, p.display_name, p.roles, p.groups, *sorted(p.attributes.items()))
        text = self._entity_text.get((key, ctx.resource))
        if text is None:
            text = self._entities_json(ctx)
            self._entity_text.put((key, ctx.resource), text)
        return text

    def _entities_json(self, ctx: RequestContext) -> str:
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
        attrs: dict[str, Any] = {"sensitivity": res.sensitivity or "internal"}
        res_parents: list[dict[str, str]] = []
        if kind == "Table":
            attrs["database"] = res.database or ""
            if res.database:  # ``resource in Database::"x"``; the parent need not be listed
                res_parents.append({"type": "Database", "id": res.database})
        entities.append(
            {"uid": {"type": kind, "id": res.name}, "attrs": attrs, "parents": res_parents}
        )
        return json.dumps(entities)


def _risk(_e: PolicyEngine, _c: RequestContext, risk: Risk, _a: bool) -> dict[str, Any]:
    factors = sorted({f.signal for f in risk.factors if f.points > 0})
    return {"score": risk.score, "level": risk.level, "factors": factors}


def _device(_e: PolicyEngine, ctx: RequestContext, _r: Risk, _a: bool) -> dict[str, Any]:
    dev = ctx.device
    if dev is None:
        return {"known": False, "managed": False, "compliant": False}
    return {"known": dev.id is not None, "managed": dev.managed, "compliant": dev.compliant}


def _network(_e: PolicyEngine, ctx: RequestContext, _r: Risk, _a: bool) -> dict[str, Any]:
    net = ctx.network
    geo = net.geo if net else None
    out: dict[str, Any] = {
        "labels": sorted(net.labels) if net else [],
        "country": (geo.country or "") if geo else "",
        "asn": (geo.asn or 0) if geo else 0,
    }
    if net is not None and net.ip is not None:
        out["ip"] = {"__extn": {"fn": "ip", "arg": net.ip}}
    return out


def _sql(_e: PolicyEngine, ctx: RequestContext, _r: Risk, _a: bool) -> dict[str, Any]:
    sql = ctx.action.sql
    if sql is None:
        return {
            "statement_count": 0,
            "has_where": True,
            "objects": [],
            "functions": [],
            "writes_in_cte": False,
            "copy_program": False,
        }
    return {
        "statement_count": sql.statement_count,
        "has_where": sql.has_where,
        "objects": sorted(sql.objects),
        "functions": sorted(sql.functions),
        "writes_in_cte": sql.writes_in_cte,
        "copy_program": sql.copy_program,
    }


_Builder = Callable[[PolicyEngine, RequestContext, Risk, bool], Any]
_CONTEXT_BUILDERS: Final[dict[str, _Builder]] = {
    "risk": _risk,
    "mfa": PolicyEngine._mfa,
    "auth_method": lambda _e, ctx, _r, _a: ctx.principal.auth_method,
    "device": _device,
    "network": _network,
    "time": PolicyEngine._time,
    "operation": lambda _e, ctx, _r, _a: ctx.action.operation or "",
    "sql": _sql,
    "approved": lambda _e, _c, _r, approved: approved,
}
_ALL_CONTEXT_KEYS: Final = tuple(_CONTEXT_BUILDERS)


def _uid(kind: str, name: str) -> dict[str, str]:
    return {"type": kind, "id": name}


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
