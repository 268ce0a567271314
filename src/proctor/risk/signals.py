"""The risk signals: each looks at one thing and returns points with one line of evidence.

A signal is a plain function ``(Inputs) -> Factor | None``. Points come from
:class:`RiskConfig.points` so an operator can weigh them; the defaults below are a starting
point, and ``docs/risk-evaluation.md`` shows how they trade detection for step-ups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from proctor.errors import UsageError
from proctor.events.context import RequestContext, Sensitivity
from proctor.events.schema import Factor
from proctor.risk.baselines import UserBaseline
from proctor.risk.network import NetworkClassifier

__all__ = ["DEFAULT_POINTS", "RULE_SIGNALS", "Inputs", "RiskConfig", "haversine_km"]

DEFAULT_POINTS: Final[Mapping[str, int]] = {
    "new_device": 20,
    "new_network": 15,
    "new_country": 25,
    "impossible_travel": 40,
    "unusual_hour": 10,
    "auth_failures": 15,
    "denied_ip": 60,
    "anonymizer": 30,
    "sensitive_resource": 10,
    "restricted_resource": 20,
    "ddl": 15,
    "admin": 20,
    "destructive": 25,
    "unbounded_write": 25,
    "copy_program": 40,
    "server_file_function": 35,
    "data_volume": 20,
    "request_rate": 15,
    "idp_risk_medium": 15,
    "idp_risk_high": 35,
    "device_compliance_lost": 25,
    "account_risk": 100,  # a cap: the factor is worth the other session's alert points
}

SERVER_FILE_FUNCTIONS: Final = frozenset(
    {
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_file_write",
        "lo_import",
        "lo_export",
        "dblink",
        "dblink_exec",
        "dblink_connect",
    }
)
DESTRUCTIVE_OPERATIONS: Final = frozenset({"DROP", "TRUNCATE"})


@dataclass(frozen=True)
class RiskConfig:
    """How risk is scored: which session scorer, every signal's points, the level thresholds."""

    scorer: Literal["statistical", "rules"] = "statistical"
    sensitivity: Sequence[tuple[str, Sensitivity]] = ()
    """Resource sensitivity by glob pattern over ``database/name`` or ``name``, first match
    wins, e.g. ``("hr/*", "restricted")``; unmatched resources are ``internal``."""
    points: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_POINTS))
    medium: int = 30
    """Scores from here on are ``medium``; below is ``low``."""
    high: int = 60
    critical: int = 85
    max_speed_kmh: int = 1000
    """Faster travel between two sessions' locations is impossible travel."""
    min_travel_km: int = 500
    """Shorter hops are ignored (GeoIP is coarse)."""
    failure_window_s: int = 600
    failure_threshold: int = 3
    """This many failed logins in the window raise ``auth_failures``."""
    hour_prior: float = 5.0
    """Weight of the population's hour profile in a user's (pseudo-sessions)."""
    hour_threshold: float = 0.25
    """An hour is unusual when its probability is below this share of a uniform 1/24."""
    volume_sigmas: int = 3
    min_volume_rows: int = 1000
    min_history: int = 20
    """Statements of history before volume and rate baselines are trusted."""
    beta: float = 1.0
    """Statistical scorer: how strongly a user's profile leans on the population's."""
    points_per_bit: float = 5.0
    alert_lifetime_s: int = 900
    """How long an account alert (see :mod:`proctor.risk.alerts`) weighs on the user's other
    sessions."""

    def __post_init__(self) -> None:
        """Refuse settings that would make every assessment fail or mean nothing."""
        checks: list[tuple[bool, str]] = [
            (
                0 < self.medium < self.high < self.critical <= 100,
                "need 0 < medium < high < critical <= 100",
            ),
            (self.hour_prior > 0, "hour_prior must be > 0"),
            (0 < self.hour_threshold <= 1, "hour_threshold must be in (0, 1]"),
            (self.beta > 0, "beta must be > 0"),
            (self.points_per_bit >= 0, "points_per_bit must be >= 0"),
            (self.min_history >= 1, "min_history must be >= 1"),
            (self.alert_lifetime_s > 0, "alert_lifetime_s must be > 0"),
            (self.volume_sigmas >= 0 and self.min_volume_rows >= 0, "volume limits must be >= 0"),
            (self.max_speed_kmh > 0 and self.min_travel_km >= 0, "travel limits must be > 0"),
            (
                self.failure_window_s > 0 and self.failure_threshold >= 1,
                "failure limits must be >= 1",
            ),
        ]
        for ok, problem in checks:
            if not ok:
                raise UsageError(f"risk configuration: {problem}")
        for signal, points in self.points.items():
            if not -100 <= points <= 100:
                raise UsageError(f"risk configuration: points for {signal!r} must be -100..100")
        for pattern, label in self.sensitivity:
            if label not in ("public", "internal", "confidential", "restricted"):
                raise UsageError(f"risk configuration: sensitivity {label!r} for {pattern!r}")

    def pts(self, signal: str) -> int:
        """The points of a signal (0 when switched off)."""
        return self.points.get(signal, DEFAULT_POINTS.get(signal, 0))


@dataclass(frozen=True)
class Inputs:
    """Everything a signal may look at for one request."""

    ctx: RequestContext
    user: UserBaseline
    population: UserBaseline
    values: Mapping[str, str]
    hour: int
    time_ns: int
    failures: int
    network: NetworkClassifier
    config: RiskConfig


Signal = Callable[[Inputs], Factor | None]


def _factor(i: Inputs, signal: str, evidence: str, points: int | None = None) -> Factor | None:
    p = i.config.pts(signal) if points is None else points
    return Factor(signal=signal, points=max(-100, min(100, p)), evidence=evidence) if p else None


# -- session features, rules version (the statistical scorer replaces these three) ------------


def new_device(i: Inputs) -> Factor | None:
    dev = i.values.get("device")
    if dev is None or i.user.sessions == 0 or i.user.count("device", dev):
        return None
    return _factor(i, "new_device", f"device {dev} never used by this user")


def new_network(i: Inputs) -> Factor | None:
    level = "asn" if "asn" in i.values else "ip"
    value = i.values.get(level)
    if value is None or i.user.sessions == 0 or i.user.count(level, value):
        return None
    what = f"AS{value}" if level == "asn" else value
    return _factor(i, "new_network", f"first session from {what}")


def new_country(i: Inputs) -> Factor | None:
    cc = i.values.get("country")
    if cc is None or i.user.sessions == 0 or i.user.count("country", cc):
        return None
    return _factor(i, "new_country", f"first session from {cc}")


# -- behaviour --------------------------------------------------------------------------------


def haversine_km(lat1_e6: int, lon1_e6: int, lat2_e6: int, lon2_e6: int) -> float:
    """Great-circle distance in km between two points given in micro-degrees."""
    p1, p2 = math.radians(lat1_e6 / 1e6), math.radians(lat2_e6 / 1e6)
    dp, dl = p2 - p1, math.radians((lon2_e6 - lon1_e6) / 1e6)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def impossible_travel(i: Inputs) -> Factor | None:
    net = i.ctx.network
    geo = net.geo if net else None
    u = i.user
    if geo is None or geo.lat_e6 is None or geo.lon_e6 is None:
        return None
    if u.last_lat_e6 is None or u.last_lon_e6 is None or u.last_ns is None:
        return None
    km = haversine_km(u.last_lat_e6, u.last_lon_e6, geo.lat_e6, geo.lon_e6)
    if km < i.config.min_travel_km:
        return None
    hours = max(i.time_ns - u.last_ns, 0) / 3.6e12
    speed = km / hours if hours > 0 else math.inf
    if speed <= i.config.max_speed_kmh:
        return None
    mins = round(hours * 60)
    return _factor(i, "impossible_travel", f"{km:.0f} km from the last session in {mins} min")


def unusual_hour(i: Inputs) -> Factor | None:
    pop, u, cfg = i.population, i.user, i.config
    p_pop = (pop.hours[i.hour] + 1) / (pop.sessions + 24)
    p = (u.hours[i.hour] + cfg.hour_prior * p_pop) / (u.sessions + cfg.hour_prior)
    if p >= cfg.hour_threshold / 24:
        return None
    return _factor(
        i,
        "unusual_hour",
        f"{i.hour:02d}h is rare for this user ({u.hours[i.hour]} of {u.sessions})",
    )


def auth_failures(i: Inputs) -> Factor | None:
    if i.failures < i.config.failure_threshold:
        return None
    window = i.config.failure_window_s // 60
    return _factor(i, "auth_failures", f"{i.failures} failed logins in {window} min")


def network_lists(i: Inputs) -> Factor | None:
    net = i.ctx.network
    if net is None or net.ip is None:
        return None
    if i.network.denied(net.ip):
        return _factor(i, "denied_ip", f"{net.ip} is on the deny list")
    if i.network.anonymizer(net.ip):
        return _factor(i, "anonymizer", f"{net.ip} is an anonymizer (VPN, proxy or Tor)")
    return None


def sensitivity(i: Inputs) -> Factor | None:
    label = i.ctx.resource.sensitivity
    if label == "restricted":
        return _factor(i, "restricted_resource", f"{i.ctx.resource.name} is restricted")
    if label == "confidential":
        return _factor(i, "sensitive_resource", f"{i.ctx.resource.name} is confidential")
    return None


def dangerous_action(i: Inputs) -> Factor | None:
    """The most dangerous thing about the statement (one factor, not a pile-up)."""
    a = i.ctx.action
    sql = a.sql
    op = (a.operation or "").upper()
    found: list[tuple[str, str]] = []
    if sql is not None:
        if sql.copy_program:
            found.append(("copy_program", "COPY … PROGRAM runs a program on the server"))
        funcs = sorted(SERVER_FILE_FUNCTIONS.intersection(f.lower() for f in sql.functions))
        if funcs:
            found.append(("server_file_function", f"calls {', '.join(funcs)}"))
        if a.class_ == "write" and not sql.has_where:
            found.append(("unbounded_write", f"{op or 'write'} without WHERE"))
    if op.split(" ", 1)[0] in DESTRUCTIVE_OPERATIONS:
        found.append(("destructive", op))
    if a.class_ == "admin":
        found.append(("admin", op or "administrative command"))
    elif a.class_ == "ddl":
        found.append(("ddl", op or "schema change"))
    if not found:
        return None
    signal, evidence = max(found, key=lambda f: i.config.pts(f[0]))
    return _factor(i, signal, evidence)


def _anomalous(n: int, total: int, sumsq: int, value: int, sigmas: int) -> float | None:
    """Mean + sigmas·σ of a history, or None when ``value`` is within it."""
    mean = total / n
    var = max(sumsq / n - mean * mean, 0.0)
    limit = mean + sigmas * math.sqrt(var)
    return limit if value > limit else None


def data_volume(i: Inputs) -> Factor | None:
    u, cfg = i.user, i.config
    rows = i.ctx.activity.session_rows
    if rows < cfg.min_volume_rows or u.statements < cfg.min_history:
        return None
    limit = _anomalous(u.statements, u.rows_sum, u.rows_sumsq, rows, cfg.volume_sigmas)
    if limit is None:
        return None
    # Ten times past the usual limit counts double: the size of an export is its danger.
    points = cfg.pts("data_volume") * (2 if rows >= 10 * max(limit, 1.0) else 1)
    return _factor(i, "data_volume", f"{rows} rows this session, usual up to {limit:.0f}", points)


def request_rate(i: Inputs) -> Factor | None:
    u, cfg = i.user, i.config
    rate = i.ctx.activity.statements_per_minute
    if rate is None or u.rate_n < cfg.min_history:
        return None
    limit = _anomalous(u.rate_n, u.rate_sum, u.rate_sumsq, rate, cfg.volume_sigmas)
    if limit is None:
        return None
    return _factor(i, "request_rate", f"{rate} statements/min, usual up to {limit:.0f}")


def external(i: Inputs) -> Factor | None:
    s = i.ctx.signals
    if s.device_compliance_lost:
        return _factor(i, "device_compliance_lost", "device management reports non-compliance")
    if s.idp_risk in ("medium", "high"):
        return _factor(i, f"idp_risk_{s.idp_risk}", f"identity provider risk {s.idp_risk}")
    return None


RULE_SIGNALS: Final[tuple[Signal, ...]] = (new_device, new_network, new_country)
"""The session-feature rules the statistical scorer replaces."""
COMMON_SIGNALS: Final[tuple[Signal, ...]] = (
    impossible_travel,
    unusual_hour,
    auth_failures,
    network_lists,
    sensitivity,
    dangerous_action,
    data_volume,
    request_rate,
    external,
)
