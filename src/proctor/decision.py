"""One request, decided and recorded: context → risk → policy → ledger event.

:class:`Decider` is what the gateway calls for every request::

    decided = decider.evaluate(ctx)              # enrich, score, decide (no I/O but baselines)
    index = await ledger.append_async(decided.event)   # no log, no access: durable first
    ... enforce decided.decision ...

The decision event (kind ``decision``) carries who, what, the risk with its factors, the
decision with its policies and revision, and the request context itself (minus the fields
configured as redacted) in ``input``, so :func:`replay` can re-run the policy evaluation of any
recorded decision against the revision that made it and say whether it reproduces.

Replay re-evaluates the *policy* decision from the recorded context and the recorded risk; the
risk score itself is not recomputed, because it depends on the baselines at that moment,
which later activity has changed. The recorded factors say how it was made.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from proctor.errors import UsageError
from proctor.events.clock import ClockSource
from proctor.events.context import DecisionInput, RequestContext
from proctor.events.ids import format_time, new_event_id
from proctor.events.schema import (
    Action,
    Actor,
    Device,
    Event,
    Links,
    Risk,
    Source,
    Target,
)
from proctor.ledger.ledger import Ledger
from proctor.policy.archive import PolicyArchive
from proctor.policy.engine import Decision, EngineConfig, PolicyEngine
from proctor.policy.live import LivePolicies
from proctor.policy.loader import PolicyBundle
from proctor.risk.engine import RiskEngine

__all__ = [
    "REDACTABLE",
    "Decided",
    "Decider",
    "Replay",
    "policy_reloaded_event",
    "record_reloads",
    "replay",
]

REDACTABLE: Final = frozenset(
    {
        "principal.display_name",
        "principal.attributes",
        "principal.token_issuer",
        "device.user_agent",
        "device.id",
        "network.ip",
        "network.geo",
        "resource.objects",
        "action.sql.objects",
        "action.sql.functions",
    }
)
"""Context fields that may be left out of decision events (they are optional)."""


@dataclass(frozen=True)
class Decided:
    """A decided request: the enriched context, its risk, the decision and the event to log."""

    context: RequestContext
    risk: Risk
    decision: Decision
    event: Event


class Decider:
    """Risk engine + policy engine + the decision event; safe to share between threads."""

    def __init__(
        self,
        policies: LivePolicies | PolicyEngine,
        risk: RiskEngine,
        *,
        clock: ClockSource | None = None,
        redact: Sequence[str] = (),
        gateway: str | None = None,
    ) -> None:
        unknown = sorted(set(redact) - REDACTABLE)
        if unknown:
            fields = ", ".join(sorted(REDACTABLE))
            raise UsageError(f"cannot redact {unknown[0]!r}: redactable fields are {fields}")
        self._policies = policies
        self.risk = risk
        self.clock = clock or ClockSource()
        self.redact = tuple(sorted(set(redact)))
        self.gateway = gateway

    @property
    def engine(self) -> PolicyEngine:
        """The policy engine in force now."""
        p = self._policies
        return p.engine if isinstance(p, LivePolicies) else p

    def evaluate(
        self,
        ctx: RequestContext,
        *,
        approved: bool = False,
        parent_id: str | None = None,
    ) -> Decided:
        """Enrich, score and decide one request and build its decision event."""
        ctx = self.risk.enrich(ctx)
        risk = self.risk.assess(ctx)
        self.risk.observe(ctx, risk)
        decision = self.engine.decide(ctx, risk, approved=approved)
        return Decided(ctx, risk, decision, self.event(ctx, risk, decision, approved, parent_id))

    def event(
        self,
        ctx: RequestContext,
        risk: Risk,
        decision: Decision,
        approved: bool = False,
        parent_id: str | None = None,
    ) -> Event:
        """The ``decision`` ledger event of a decided request."""
        now, clock = self.clock.now()
        p, res, net, dev = ctx.principal, ctx.resource, ctx.network, ctx.device
        actor = Actor(
            id=p.id,
            kind=p.kind,
            display_name=None if "principal.display_name" in self.redact else p.display_name,
            roles=p.roles,
            groups=p.groups,
            auth_method=p.auth_method,
            mfa=p.mfa,
            mfa_time=None,  # kept in input.context in the caller's own spelling
            device=None
            if dev is None or dev.id is None or "device.id" in self.redact
            else Device(id=dev.id, managed=dev.managed, compliant=dev.compliant),
            ip=None if net is None or "network.ip" in self.redact else net.ip,
            geo=None if net is None or "network.geo" in self.redact else net.geo,
        )
        target = Target(
            type=res.type,
            name=res.name,
            database=res.database,
            objects=() if "resource.objects" in self.redact else res.objects[:1024],
            sensitivity=res.sensitivity,
        )
        part = decision.event_part()
        if self.redact:  # evidence and error texts may quote what was redacted
            secrets = _redacted_values(ctx, self.redact)
            risk = msgspec.structs.replace(
                risk,
                factors=tuple(
                    msgspec.structs.replace(f, evidence=_scrub(f.evidence, secrets))
                    for f in risk.factors
                ),
            )
            part = msgspec.structs.replace(
                part, reasons=tuple(_scrub(r, secrets) or "-" for r in part.reasons)
            )
        config = self.engine.config
        return Event(
            id=new_event_id(),
            kind="decision",
            time=format_time(now),
            clock=clock,
            actor=actor,
            target=target,
            action=Action(class_=ctx.action.class_, operation=ctx.action.operation),
            risk=risk,
            decision=part,
            source=Source(system="proctor", gateway=self.gateway),
            links=Links(session_id=ctx.session_id, parent_id=parent_id)
            if ctx.session_id is not None or parent_id is not None
            else None,
            input=DecisionInput(
                context=self._redacted(ctx),
                approved=approved,
                redacted=self.redact,
                timezone=config.timezone,
                mfa_fresh_s=config.mfa_fresh_s,
            ),
            attributes={"policy.revision": decision.revision} if decision.revision else {},
        )

    def _redacted(self, ctx: RequestContext) -> RequestContext:
        if not self.redact:
            return ctx
        doc: dict[str, Any] = msgspec.to_builtins(ctx)
        for path in self.redact:
            *parents, leaf = path.split(".")
            node: Any = doc
            for name in parents:
                node = node.get(name) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(leaf, None)
        return msgspec.convert(doc, RequestContext)


def policy_reloaded_event(
    old: str, new: str, clock: ClockSource, *, policies: int, files: int
) -> Event:
    """The ``policy.reloaded`` event: which revision replaced which (texts are archived)."""
    now, quality = clock.now()
    return Event(
        id=new_event_id(),
        kind="policy.reloaded",
        time=format_time(now),
        clock=quality,
        source=Source(system="proctor"),
        attributes={
            "policy.revision": new,
            "policy.previous": old,
            "policy.count": str(policies),
            "policy.files": str(files),
        },
    )


def record_reloads(live: LivePolicies, ledger: Ledger, clock: ClockSource | None = None) -> None:
    """Have every reload of ``live`` write its ``policy.reloaded`` event to ``ledger`` first."""
    source = clock or ClockSource()

    def record(old: str, new: PolicyBundle) -> None:
        event = policy_reloaded_event(
            old, new.revision, source, policies=len(new.policies), files=len(new.files)
        )
        ledger.append(event)

    live.on_reload = record


def _redacted_values(ctx: RequestContext, redact: Sequence[str]) -> list[str]:
    """The texts of the redacted fields, longest first (so a value inside another goes too)."""
    p, net, dev, sql = ctx.principal, ctx.network, ctx.device, ctx.action.sql
    geo = net.geo if net else None
    found: dict[str, list[object]] = {
        "principal.display_name": [p.display_name],
        "principal.attributes": list(p.attributes.values()),
        "principal.token_issuer": [p.token_issuer],
        "device.user_agent": [dev.user_agent if dev else None],
        "device.id": [dev.id if dev else None],
        "network.ip": [net.ip if net else None],
        "network.geo": [geo.country, geo.city, f"AS{geo.asn}" if geo.asn else None] if geo else [],
        "resource.objects": list(ctx.resource.objects),
        "action.sql.objects": list(sql.objects) if sql else [],
        "action.sql.functions": list(sql.functions) if sql else [],
    }
    values = {str(v) for path in redact for v in found.get(path, []) if v}
    return sorted(values, key=len, reverse=True)


def _scrub(text: str | None, secrets: Sequence[str]) -> str | None:
    if text is None:
        return None
    for secret in secrets:
        # Whole values only: a redacted "DE" must not turn DELETE into "[redacted]LETE".
        text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", "[redacted]", text)
    return text


@dataclass(frozen=True)
class Replay:
    """The outcome of replaying a recorded decision."""

    recorded: Event
    decision: Decision | None
    reproduced: bool
    differences: tuple[str, ...]
    notes: tuple[str, ...] = ()


def replay(event: Event, archive: PolicyArchive) -> Replay:
    """Re-evaluate a recorded decision against the policy revision that made it."""
    rec = event.decision
    if event.kind != "decision" or rec is None or event.input is None or event.risk is None:
        raise UsageError(f"event {event.id} is not a recorded decision with its input")
    revision = rec.policy_revision
    if not revision:
        raise UsageError(f"event {event.id} names no policy revision")
    bundle = archive.get(revision)
    if bundle is None:
        raise UsageError(f"policy revision {revision[:16]} is not in the archive")
    given = event.input
    config = EngineConfig(timezone=given.timezone, mfa_fresh_s=given.mfa_fresh_s)
    engine = PolicyEngine(bundle, config)
    got = engine.decide(given.context, event.risk, approved=given.approved)
    diffs = []
    if got.effect != rec.effect:
        diffs.append(f"effect: recorded {rec.effect}, replayed {got.effect}")
    if sorted(got.policies[:64]) != sorted(rec.policies):  # events keep at most 64
        diffs.append(f"policies: recorded {list(rec.policies)}, replayed {list(got.policies)}")
    if sorted(got.obligations) != sorted(rec.obligations):
        diffs.append(
            f"obligations: recorded {list(rec.obligations)}, replayed {list(got.obligations)}"
        )
    if got.revision != revision:
        diffs.append(f"revision: recorded {revision[:16]}, replayed under {got.revision[:16]}")
    notes = []
    if given.redacted:  # the policies may have read them: say so, reproduced or not
        notes.append(f"fields redacted from the record: {', '.join(given.redacted)}")
    return Replay(event, got, not diffs, tuple(diffs), tuple(notes))
