"""Score a request's risk: every signal's points, summed and clipped to 0–100, with a level.

``assess`` is read-only: it looks at the user's and the population's baselines and never
changes them. ``learn`` is the only way in, and the caller runs it only for requests that
were allowed and succeeded (see :mod:`proctor.risk.baselines`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Literal
from zoneinfo import ZoneInfo

import msgspec

from proctor._lru import Lru
from proctor.events.context import (
    NetworkInfo,
    RequestContext,
    Resource,
    Sensitivity,
    parse_rfc3339,
)
from proctor.events.schema import Factor, Risk
from proctor.risk.alerts import AccountAlert, AccountAlerts
from proctor.risk.baselines import Baselines, SessionFacts
from proctor.risk.freeman import HIERARCHY, score_session
from proctor.risk.network import NetworkClassifier
from proctor.risk.signals import COMMON_SIGNALS, RULE_SIGNALS, Inputs, RiskConfig

__all__ = ["MODEL_VERSION", "RiskEngine", "session_values"]

MODEL_VERSION: Final = "proctor-risk/1"
_FEATURE_SIGNAL: Final = {"ip": "unfamiliar_network", "device": "unfamiliar_device"}
_FEATURE_SIGNAL_UA: Final = "unfamiliar_client"
_RANK: Final[dict[Sensitivity, int]] = {
    "public": 0,
    "internal": 1,
    "confidential": 2,
    "restricted": 3,
}


def session_values(ctx: RequestContext) -> dict[str, str]:
    """The session-start feature values of a request (only those it has)."""
    values: dict[str, str] = {}
    net = ctx.network
    if net is not None:
        if net.ip is not None:
            values["ip"] = net.ip
        if net.geo is not None:
            if net.geo.asn is not None:
                values["asn"] = str(net.geo.asn)
            if net.geo.country is not None:
                values["country"] = net.geo.country
    dev = ctx.device
    if dev is not None:
        if dev.id is not None:
            values["device"] = dev.id
        if dev.user_agent:
            values["user_agent"] = dev.user_agent
            values["ua_product"] = dev.user_agent.split("/", 1)[0].split(" ", 1)[0]
    return values


class RiskEngine:
    """Risk scoring over shared baselines; safe to share between threads."""

    def __init__(
        self,
        baselines: Baselines,
        config: RiskConfig | None = None,
        network: NetworkClassifier | None = None,
        timezone: str = "UTC",
    ) -> None:
        self.baselines = baselines
        self.config = config or RiskConfig()
        self.network = network or NetworkClassifier()
        self._zone = ZoneInfo(timezone)
        self.model = f"{MODEL_VERSION};{self.config.scorer}"
        self.alerts = AccountAlerts(self.config.alert_lifetime_s)
        self._labels: Lru[tuple[str | None, str], Sensitivity] = Lru(4096)

    def enrich(self, ctx: RequestContext) -> RequestContext:
        """Fill in what the caller left out from the configuration: resource sensitivity,
        network labels and geo."""
        res = ctx.resource
        if res.sensitivity is None:
            label = self._sensitivity(res)
            ctx = msgspec.structs.replace(
                ctx, resource=msgspec.structs.replace(res, sensitivity=label)
            )
        net = ctx.network
        if net is None or net.ip is None:
            return ctx
        labels = net.labels or self.network.labels(net.ip)
        geo = net.geo or self.network.geo.lookup(net.ip)
        if labels == net.labels and geo is net.geo:
            return ctx
        return msgspec.structs.replace(ctx, network=NetworkInfo(ip=net.ip, labels=labels, geo=geo))

    def most_sensitive(self, database: str | None, names: Sequence[str]) -> tuple[str, Sensitivity]:
        """Of the objects ``names`` in ``database``, the most sensitive one and its label
        (``("", "internal")`` for none): what a statement touching them is as sensitive as."""
        best = ""
        label: Sensitivity = "internal"
        for name in names:
            found = self._sensitivity(Resource(type="table", name=name, database=database))
            if not best or _RANK[found] > _RANK[label]:
                best, label = name, found
        return best, label

    def _sensitivity(self, res: Resource) -> Sensitivity:
        """The first configured pattern matching ``database/name`` (or ``name``) wins.

        Cached by (database, name): the patterns are fixed for this engine, and the gateway
        asks for every object of every statement."""
        key = (res.database, res.name)
        found = self._labels.get(key)
        if found is not None:
            return found
        full = f"{res.database}/{res.name}" if res.database else res.name
        label: Sensitivity = "internal"
        for pattern, candidate in self.config.sensitivity:
            if fnmatch.fnmatchcase(full, pattern) or fnmatch.fnmatchcase(res.name, pattern):
                label = candidate
                break
        self._labels.put(key, label)
        return label

    def assess(self, ctx: RequestContext) -> Risk:
        """The request's risk score, level and factors (largest contribution first)."""
        cfg = self.config
        user = self.baselines.user(ctx.principal.id)
        time_ns = parse_rfc3339(ctx.time)
        since = time_ns - cfg.failure_window_s * 1_000_000_000
        inputs = Inputs(
            ctx=ctx,
            user=user,
            population=self.baselines.population,
            values=session_values(ctx),
            hour=self._hour(time_ns),
            time_ns=time_ns,
            failures=self.baselines.failures(ctx.principal.id, since),
            network=self.network,
            config=cfg,
        )
        factors = [f for s in COMMON_SIGNALS if (f := s(inputs)) is not None]
        if cfg.scorer == "rules":
            factors += [f for s in RULE_SIGNALS if (f := s(inputs)) is not None]
        else:
            factors += self._statistical(inputs)
        cap = cfg.pts("account_risk")
        alert = self.alerts.factor(ctx.principal.id, ctx.session_id, time_ns, cap)
        if alert is not None:
            factors.append(alert)
        factors.sort(key=lambda f: (-f.points, f.signal))
        score = max(0, min(100, sum(f.points for f in factors)))
        return Risk(score=score, level=self.level(score), factors=tuple(factors), model=self.model)

    def observe(self, ctx: RequestContext, risk: Risk) -> AccountAlert | None:
        """Raise an account alert when this request's account signals reach ``high``
        (see :mod:`proctor.risk.alerts`); the decider calls it after every assessment."""
        net = ctx.network
        return self.alerts.observe(
            ctx.principal.id,
            ctx.session_id,
            net.ip if net is not None else None,
            risk.factors,
            self.config.high,
            parse_rfc3339(ctx.time),
        )

    def level(self, score: int) -> Literal["low", "medium", "high", "critical"]:
        """``low``, ``medium``, ``high`` or ``critical`` by the configured thresholds."""
        cfg = self.config
        if score >= cfg.critical:
            return "critical"
        if score >= cfg.high:
            return "high"
        return "medium" if score >= cfg.medium else "low"

    def learn(self, ctx: RequestContext, *, rows: int | None = None) -> None:
        """Teach the baselines an allowed, successful request (session start or statement)."""
        user = ctx.principal.id
        if ctx.session_start:
            net = ctx.network
            geo = net.geo if net else None
            facts = SessionFacts(
                values=session_values(ctx),
                hour=self._hour(parse_rfc3339(ctx.time)),
                time_ns=parse_rfc3339(ctx.time),
                lat_e6=geo.lat_e6 if geo else None,
                lon_e6=geo.lon_e6 if geo else None,
            )
            self.baselines.learn_session(user, facts)
        if rows is not None:
            self.baselines.learn_statement(user, rows, ctx.activity.statements_per_minute)

    def _hour(self, time_ns: int) -> int:
        return datetime.fromtimestamp(time_ns // 1_000_000_000, UTC).astimezone(self._zone).hour

    def _statistical(self, i: Inputs) -> list[Factor]:
        cfg = self.config
        out = []
        for fs in score_session(
            i.values, i.user, i.population, beta=cfg.beta, points_per_bit=cfg.points_per_bit
        ):
            if fs.points == 0:
                continue
            signal = _FEATURE_SIGNAL.get(fs.feature, _FEATURE_SIGNAL_UA)
            level = HIERARCHY[fs.feature][0][0]
            value = i.values.get(level, "")
            where = [f"AS{i.values['asn']}"] if fs.feature == "ip" and "asn" in i.values else []
            if fs.feature == "ip" and "country" in i.values:
                where.append(i.values["country"])
            desc = f"{fs.feature} {value}" + (f" ({', '.join(where)})" if where else "")
            evidence = (
                f"{desc}: in {i.user.count(level, value)} of this user's {i.user.sessions}"
                f" sessions; likelihood ratio {fs.ratio:.3g} ({fs.bits:+.1f} bits)"
            )
            out.append(Factor(signal=signal, points=fs.points, evidence=evidence))
        return out
