"""Risk assessment end to end: signals, the statistical and rules scorers, levels, learning."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor.errors import UsageError
from proctor.events.context import decode_context, parse_rfc3339
from proctor.events.schema import Risk
from proctor.risk.baselines import Baselines
from proctor.risk.engine import RiskEngine
from proctor.risk.signals import RiskConfig, haversine_km
from tests.risk.conftest import NETWORK, login


def _engine(scorer: str = "statistical", path: Path | None = None) -> RiskEngine:
    return RiskEngine(Baselines(path), RiskConfig(scorer=scorer), NETWORK)  # type: ignore[arg-type]


def _history(engine: RiskEngine, days: int = 30) -> None:
    """Alice logs in from Berlin on her laptop at 09h for a month; two colleagues too."""
    for d in range(days):
        for user, host in (("alice", 5), ("bob", 6), ("carol", 7)):
            ctx = engine.enrich(
                login(
                    user, f"10.1.{d % 3}.{host}", f"{user}-laptop", f"2026-10-{d + 1:02d}T09:00:00Z"
                )
            )
            engine.learn(ctx)


def _signals(risk: Risk) -> dict[str, int]:
    return {f.signal: f.points for f in risk.factors}


def test_a_usual_login_is_low_risk() -> None:
    e = _engine()
    _history(e)
    r = e.assess(e.enrich(login()))
    assert r.level == "low" and r.score == 0
    assert all(f.points <= 0 for f in r.factors)
    assert r.model == "proctor-risk/1;statistical"


def test_a_takeover_from_another_continent_at_night_is_critical_and_explained() -> None:
    e = _engine()
    _history(e)
    ctx = e.enrich(
        login(ip="200.1.2.3", device="unknown-pc", time="2026-11-23T03:00:00Z", ua="sqlmap/1.7")
    )
    r = e.assess(ctx)
    s = _signals(r)
    assert r.level == "critical" and r.score >= 85
    assert s["unfamiliar_network"] > 0 and s["unfamiliar_device"] > 0 and s["unusual_hour"] == 10
    assert [f.points for f in r.factors] == sorted((f.points for f in r.factors), reverse=True)
    ev = next(f.evidence for f in r.factors if f.signal == "unfamiliar_network")
    assert ev is not None and "200.1.2.3 (AS28573, BR)" in ev and "in 0 of this user's 30" in ev


def test_rules_scorer_names_the_new_things() -> None:
    e = _engine("rules")
    _history(e)
    r = e.assess(e.enrich(login(ip="200.1.2.3", device="unknown-pc")))
    assert _signals(r) == {"new_device": 20, "new_network": 15, "new_country": 25}
    assert r.model == "proctor-risk/1;rules"
    assert _signals(e.assess(e.enrich(login()))) == {}


def test_impossible_travel() -> None:
    e = _engine()
    e.learn(e.enrich(login(time="2026-11-23T09:00:00Z")))  # Berlin at 09:00
    r = e.assess(e.enrich(login(ip="200.1.2.3", time="2026-11-23T11:00:00Z")))
    assert _signals(r)["impossible_travel"] == 40
    km = haversine_km(52_520_000, 13_405_000, -23_550_000, -46_633_000)
    assert 10_000 < km < 10_300  # Berlin - Sao Paulo, about 10,150 km
    r = e.assess(e.enrich(login(ip="200.1.2.3", time="2026-11-24T09:00:00Z")))  # a day later
    assert "impossible_travel" not in _signals(r)


def test_assess_never_learns_and_denied_attempts_teach_nothing(tmp_path: Path) -> None:
    e = _engine(path=tmp_path / "b.sqlite")
    _history(e, 5)
    before = e.baselines.user("alice").version
    attack = e.enrich(login(ip="200.1.2.3", device="unknown-pc"))
    first = e.assess(attack)
    for _ in range(50):  # an attacker retrying: assessed (and denied) fifty times
        e.assess(attack)
    assert e.baselines.user("alice").version == before
    assert e.assess(attack) == first


def test_network_lists_sensitivity_and_dangerous_sql() -> None:
    e = _engine()
    base = {
        "principal": {"id": "erin"},
        "resource": {"type": "table", "name": "hr.salaries", "sensitivity": "restricted"},
        "time": "2026-11-23T10:00:00Z",
        "network": {"ip": "203.0.113.9"},
    }
    cases = [
        (
            {"class": "write", "operation": "DELETE", "sql": {"has_where": False}},
            "unbounded_write",
            25,
        ),
        ({"class": "ddl", "operation": "DROP TABLE"}, "destructive", 25),
        ({"class": "ddl", "operation": "CREATE INDEX"}, "ddl", 15),
        ({"class": "admin", "operation": "ALTER ROLE"}, "admin", 20),
        ({"class": "read", "sql": {"functions": ["PG_READ_FILE"]}}, "server_file_function", 35),
        (
            {"class": "write", "operation": "COPY", "sql": {"copy_program": True}},
            "copy_program",
            40,
        ),
    ]
    for action, signal, points in cases:
        r = e.assess(decode_context({**base, "action": action}))
        s = _signals(r)
        assert s.pop(signal) == points, (action, r.factors)
        assert s == {"denied_ip": 60, "restricted_resource": 20}, s
        assert r.score == min(100, points + 80) and r.level == "critical"


def test_failures_volume_rate_and_external_signals() -> None:
    e = _engine()
    now = parse_rfc3339("2026-11-23T10:05:00Z")
    for t in (1, 2, 3):
        e.baselines.record_auth_failure("alice", now - t * 60 * 10**9)  # three in 3 minutes
    for k in range(30):
        statement = login(session_start=False, activity={"statements_per_minute": 5 + k % 3})
        e.learn(statement, rows=100 + k)
    ctx = login(
        time="2026-11-23T10:05:00Z",
        activity={"session_rows": 50_000, "statements_per_minute": 120},
        signals={"idp_risk": "high"},
    )
    s = _signals(e.assess(ctx))
    assert s["auth_failures"] == 15
    assert s["data_volume"] == 40  # ten times past the usual limit counts double
    assert s["request_rate"] == 15 and s["idp_risk_high"] == 35
    assert _signals(e.assess(login(activity={"session_rows": 1200})))["data_volume"] == 20
    ctx = login(signals={"idp_risk": "medium", "device_compliance_lost": True})
    assert _signals(e.assess(ctx))["device_compliance_lost"] == 25


@pytest.mark.parametrize(
    ("score", "level"), [(0, "low"), (29, "low"), (30, "medium"), (60, "high"), (85, "critical")]
)
def test_levels(score: int, level: str) -> None:
    assert _engine().level(score) == level


def test_points_can_be_reweighted_or_switched_off() -> None:
    cfg = RiskConfig(points={"anonymizer": 0, "denied_ip": 99})
    e = RiskEngine(Baselines(), cfg, NETWORK)
    assert _signals(e.assess(login(ip="185.220.101.4", device=None))) == {}
    assert _signals(e.assess(login(ip="203.0.113.1", device=None)))["denied_ip"] == 99


def test_sensitivity_comes_from_the_config_when_the_caller_gives_none() -> None:
    cfg = RiskConfig(sensitivity=(("hr/*", "restricted"), ("*.customers", "confidential")))
    e = RiskEngine(Baselines(), cfg, NETWORK)
    base = {"principal": {"id": "a"}, "action": {"class": "read"}, "time": "2026-11-23T10:00:00Z"}

    def label(resource: dict[str, object]) -> str | None:
        return e.enrich(decode_context({**base, "resource": resource})).resource.sensitivity

    assert label({"type": "table", "name": "salaries", "database": "hr"}) == "restricted"
    assert (
        label({"type": "table", "name": "public.customers", "database": "shop"}) == "confidential"
    )
    assert label({"type": "table", "name": "public.orders", "database": "shop"}) == "internal"
    given = {"type": "table", "name": "salaries", "database": "hr", "sensitivity": "public"}
    assert label(given) == "public"  # what the caller says stands
    ctx = e.enrich(
        decode_context({**base, "resource": {"type": "table", "name": "x", "database": "hr"}})
    )
    assert {f.signal for f in e.assess(ctx).factors} == {"restricted_resource"}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"hour_prior": 0}, "hour_prior"),
        ({"beta": 0}, "beta"),
        ({"min_history": 0}, "min_history"),
        ({"medium": 70, "high": 60}, "medium < high"),
        ({"points": {"denied_ip": 500}}, "denied_ip"),
        ({"sensitivity": (("hr/*", "secret"),)}, "secret"),
    ],
)
def test_bad_risk_settings_are_refused(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        RiskConfig(**settings)  # type: ignore[arg-type]
