"""Deciding with Cedar: default deny, fail closed, step-up, obligations, context mapping."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from proctor.events.schema import Factor, Risk
from proctor.policy.engine import NO_PERMIT, EngineConfig, PolicyEngine
from proctor.policy.loader import load_policy_texts
from tests.policy.conftest import request
from tests.policy.conftest import request as request_ctx

LOW = Risk(score=5, level="low")
Make = Callable[..., PolicyEngine]

READ = '@id("read") @reason("may read") @obligation("max_rows:50") @recheck("10m")\n'
READ += 'permit(principal in Role::"analyst", action == Action::"read", resource);\n'


def test_default_deny_names_no_policy(engine_for: Make) -> None:
    d = engine_for(p=READ).decide(request(action={"class": "write"}), LOW)
    assert (d.effect, d.policies, d.reasons) == ("deny", (), (NO_PERMIT,))
    assert not d.allowed


def test_allow_carries_reasons_obligations_recheck_and_revision(engine_for: Make) -> None:
    more = '@id("read2") @obligation("read_only; max_rows:50") @recheck("2m")\n'
    more += 'permit(principal, action == Action::"read", resource);\n'
    engine = engine_for(p=READ + more)
    d = engine.decide(request(), LOW)
    assert d.effect == "allow"
    assert sorted(d.policies) == ["read", "read2"]
    assert set(d.reasons) == {"may read", "permitted by read2"}
    assert sorted(d.obligations) == ["max_rows:50", "read_only"]  # union, no duplicates
    assert d.recheck_s == 120  # the shortest grant
    assert d.revision == engine.revision
    part = d.event_part()
    assert part.effect == "allow" and part.policy_revision == engine.revision


def test_forbid_wins_and_step_up_only_when_every_forbid_is_curable(engine_for: Make) -> None:
    curable = '@id("mfa") @reason("needs MFA") @on_deny("step_up")\n'
    curable += "forbid(principal, action, resource) unless { context.mfa.fresh };\n"
    hard = '@id("crit") @reason("critical") forbid(principal, action, resource)'
    hard += ' when { context.risk.level == "critical" };\n'
    engine = engine_for(p=READ + curable + hard)
    d = engine.decide(request(), LOW)
    assert (d.effect, d.policies, d.reasons, d.obligations) == (
        "step_up",
        ("mfa",),
        ("needs MFA",),
        (),
    )
    d = engine.decide(request(), Risk(score=99, level="critical"))
    assert (d.effect, d.policies, d.reasons) == ("deny", ("crit",), ("critical",))
    fresh = {"id": "alice", "roles": ["analyst"], "mfa": True, "mfa_time": "2026-11-23T09:50:00Z"}
    assert engine.decide(request(principal=fresh), LOW).effect == "allow"
    stale = {**fresh, "mfa_time": "2026-11-23T09:40:00Z"}  # 20 minutes > the 15 allowed
    assert engine.decide(request(principal=stale), LOW).effect == "step_up"


def test_an_erroring_forbid_denies_instead_of_being_skipped(engine_for: Make) -> None:
    # Cedar skips a policy whose condition fails at run time; for a forbid that would allow.
    overflow = '@id("overflow") forbid(principal, action, resource)'
    overflow += " when { context.risk.score * 9223372036854775807 > 1 };\n"
    d = engine_for(p=READ + overflow).decide(request(), Risk(score=50, level="medium"))
    assert d.effect == "deny"
    assert d.errors and "overflow" in d.errors[0]
    assert d.reasons[0].startswith("policy evaluation error:")


def test_context_maps_risk_network_time_device_and_tags(engine_for: Make) -> None:
    text = """
@id("all") permit(principal, action, resource)
when {
  context.risk.factors.contains("new_device") && !context.risk.factors.contains("old") &&
  context.network has ip && context.network.ip.isInRange(ip("10.0.0.0/8")) &&
  context.network.labels.contains("corp") && context.network.country == "DE" &&
  context.network.asn == 3320 && context.time.hour == 11 && context.time.weekday == 1 &&
  context.device.known && context.device.managed && !context.device.compliant &&
  principal.hasTag("dept") && principal.getTag("dept") == "finance" &&
  principal.kind == "agent" && resource.sensitivity == "confidential" &&
  resource in Database::"shop" && context.operation == "SELECT" &&
  context.sql.functions.contains("lower") && context.sql.statement_count == 1
};
"""
    engine = PolicyEngine(
        load_policy_texts({"a.cedar": text}), EngineConfig(timezone="Europe/Berlin")
    )
    ctx = request(
        principal={"id": "bot", "kind": "agent", "attributes": {"dept": "finance"}},
        network={"ip": "10.9.8.7", "labels": ["corp"], "geo": {"country": "DE", "asn": 3320}},
        device={"id": "laptop-1", "managed": True},
        resource={"type": "table", "name": "t", "database": "shop", "sensitivity": "confidential"},
        action={"class": "read", "operation": "SELECT", "sql": {"functions": ["lower"]}},
    )
    risk = Risk(
        score=30,
        level="medium",
        factors=(Factor(signal="new_device", points=20), Factor(signal="old", points=-5)),
    )
    d = engine.decide(ctx, risk)
    assert d.effect == "allow", d
    # one fact off: no permit
    other = request(
        principal={"id": "bot", "kind": "agent", "attributes": {"dept": "sales"}},
        network={"ip": "10.9.8.7", "labels": ["corp"], "geo": {"country": "DE", "asn": 3320}},
        device={"id": "laptop-1", "managed": True},
        resource={"type": "table", "name": "t", "database": "shop", "sensitivity": "confidential"},
        action={"class": "read", "operation": "SELECT", "sql": {"functions": ["lower"]}},
    )
    assert engine.decide(other, risk).effect == "deny"


def test_requests_without_network_or_sql_get_neutral_values(engine_for: Make) -> None:
    text = '@id("x") permit(principal, action, resource) when { !(context.network has ip) && '
    text += 'context.network.country == "" && context.sql.statement_count == 0 && '
    text += "context.mfa.age_min == -1 };"
    assert engine_for(p=text).decide(request(), LOW).effect == "allow"


@pytest.mark.parametrize("approved", [False, True])
def test_approval_is_in_the_context(engine_for: Make, approved: bool) -> None:
    text = '@id("x") permit(principal, action, resource) when { context.approved };'
    effect = engine_for(p=text).decide(request(), LOW, approved=approved).effect
    assert effect == ("allow" if approved else "deny")


def test_built_requests_conform_to_the_schema_and_caches_change_nothing() -> None:
    # Cedar checks requests against the schema only with validate_requests; every request this
    # engine builds must pass that check and decide the same, cached or not.
    from proctor.policy.cases import load_cases, run_cases
    from proctor.policy.loader import load_policies
    from tests.policy.conftest import EXAMPLES

    cases = load_cases(EXAMPLES / "policy-tests" / "cases.yaml").cases
    bundle = load_policies(EXAMPLES / "policies")
    results = []
    for cfg in (
        EngineConfig(validate_requests=True, cache_size=0),
        EngineConfig(validate_requests=False, cache_size=0),
        EngineConfig(),
    ):
        engine = PolicyEngine(bundle, cfg)
        for _ in range(2):  # the second pass is served by the caches
            got = run_cases(engine, cases)
            assert all(r.passed for r in got), [r.mismatches for r in got if not r.passed]
            results.append([(r.decision.effect, r.decision.policies) for r in got])
    assert all(r == results[0] for r in results)


def test_only_the_context_the_policies_read_is_sent(engine_for: Make) -> None:
    engine = engine_for(
        p='@id("x") permit(principal, action, resource) when { context.risk.score < 50 };'
    )
    assert engine.bundle.context_keys == {"risk"}
    request = engine.cedar_request(request_ctx(), LOW)
    assert json.loads(request["context"]) == {"risk": {"score": 5, "level": "low", "factors": []}}


def test_an_unknown_context_attribute_in_a_has_check_denies_without_crashing(
    engine_for: Make,
) -> None:
    text = '@id("x") permit(principal, action, resource) when { context has foo || '
    text += "context.risk.score < 50 };"
    engine = engine_for(p=text)
    assert engine.decide(request(), LOW).effect == "allow"
    strict = PolicyEngine(engine.bundle, EngineConfig(validate_requests=True))
    assert strict.decide(request(), LOW).effect == "allow"


def test_an_mfa_from_the_future_is_not_fresh(engine_for: Make) -> None:
    engine = engine_for(
        p='@id("x") permit(principal, action, resource) when { context.mfa.fresh };'
    )
    future = {"id": "alice", "mfa": True, "mfa_time": "2027-11-23T10:00:00Z"}
    assert engine.decide(request(principal=future), LOW).effect == "deny"
    skewed = {"id": "alice", "mfa": True, "mfa_time": "2026-11-23T10:00:30Z"}  # 30 s ahead
    assert engine.decide(request(principal=skewed), LOW).effect == "allow"
