"""Decision latency: risk scoring plus the Cedar decision, at 10, 100 and 1,000 policies.

    .venv/bin/python bench/bench_decision.py [--quick] [--no-doc]

Baselines for 10,000 users are learned first (a few sessions each), then requests from
random users are decided in one thread. Side by side, in the same run, each step alone:
``RiskEngine.assess``, ``PolicyEngine.decide``, building the decision event, its canonical
bytes, and a bare ``cedarpy.is_authorized`` call on a prepared request (the floor the engine
stands on). A full run rewrites the decision figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import cedarpy

from benchlib import ROOT, Latency, fmt_us, log, machine_info, markdown_table, update_doc
from proctor.decision import Decider
from proctor.events.canonical import canonical_bytes
from proctor.events.context import RequestContext, decode_context
from proctor.policy.engine import EngineConfig, PolicyEngine
from proctor.policy.loader import PolicyBundle, load_policy_texts
from proctor.risk.baselines import Baselines
from proctor.risk.engine import RiskEngine
from proctor.risk.network import GeoRow, GeoTable, NetworkClassifier

BEGIN = "<!-- BEGIN DECISION FIGURES: written by bench/bench_decision.py -->"
END = "<!-- END DECISION FIGURES -->"
GOAL_P50, GOAL_P99 = 50.0, 250.0


def policies(n: int) -> dict[str, str]:
    """``n`` policies like a real set: per-team permits, risk and SQL guards, a few step-ups."""
    out = []
    for k in range(n):
        team = f"team{k % 50}"
        kind = k % 10
        if kind < 6:
            out.append(
                f'@id("p{k}") @reason("{team} reads its tables") @recheck("15m")\n'
                f'permit(principal in Role::"{team}",'
                f' action in [Action::"connect", Action::"read"], resource)'
                f' when {{ resource.sensitivity != "restricted"'
                f" && context.time.hour >= {k % 6} }};"
            )
        elif kind < 8:
            out.append(
                f'@id("p{k}") @reason("{team} writes") @obligation("max_rows:{1000 + k}")\n'
                f'permit(principal in Group::"{team}-writers", action == Action::"write", resource)'
                f" when {{ context.sql.has_where }};"
            )
        elif kind == 8:
            out.append(
                f'@id("p{k}") @reason("risk above {60 + k % 30} needs MFA") @on_deny("step_up")\n'
                f"forbid(principal, action, resource) when {{ context.risk.score > {60 + k % 30} }}"
                f" unless {{ context.mfa.fresh }};"
            )
        else:
            out.append(
                f'@id("p{k}") @reason("no {team} access from outside")\n'
                f'forbid(principal in Role::"{team}", action, resource)'
                f' when {{ context.network.country == "K{k % 7}" }};'
            )
    return {"bench.cedar": "\n\n".join(out) + "\n"}


def world(users: int, rng: random.Random) -> tuple[RiskEngine, list[RequestContext]]:
    """A risk engine whose baselines know ``users`` users, and requests from them."""
    geo = GeoTable(
        [
            GeoRow(f"{10 + c}.0.0.0/8", country=cc, lat_e6=lat, lon_e6=0, asn=64500 + c)
            for c, (cc, lat) in enumerate(
                (("DE", 52_000_000), ("US", 40_000_000), ("GB", 51_000_000))
            )
        ]
    )
    engine = RiskEngine(Baselines(), network=NetworkClassifier({"corp": ["10.0.0.0/8"]}, geo=geo))
    requests = []
    for u in range(users):
        home = 10 + u % 3
        for s in range(3):
            ctx = decode_context(
                {
                    "principal": {"id": f"u{u}", "roles": [f"team{u % 50}"]},
                    "action": {"class": "connect"},
                    "resource": {"type": "database", "name": "shop"},
                    "time": f"2026-11-{1 + s:02d}T09:00:00Z",
                    "network": {"ip": f"{home}.{u % 256}.{s}.1"},
                    "device": {"id": f"d{u}", "user_agent": "psql/16"},
                    "session_start": True,
                }
            )
            engine.learn(engine.enrich(ctx))
    for _ in range(2000):
        u = rng.randrange(users)
        requests.append(
            decode_context(
                {
                    "principal": {
                        "id": f"u{u}",
                        "roles": [f"team{u % 50}"],
                        "groups": [f"team{u % 50}-writers"],
                    },
                    "action": {
                        "class": rng.choice(("read", "read", "write")),
                        "operation": "SELECT",
                        "sql": {"objects": ["public.orders"], "has_where": rng.random() < 0.9},
                    },
                    "resource": {"type": "table", "name": "public.orders", "database": "shop"},
                    "time": f"2026-11-23T{rng.randrange(24):02d}:00:00Z",
                    "network": {"ip": f"{10 + rng.randrange(3)}.{u % 256}.{rng.randrange(4)}.1"},
                    "device": {
                        "id": f"d{u}" if rng.random() < 0.9 else "other",
                        "user_agent": "psql/16",
                    },
                }
            )
        )
    return engine, requests


def timed(fn: Callable[[Any], object], items: Sequence[Any], rounds: int) -> Latency:
    """Per-call latency over ``rounds`` passes (after one warm-up pass over every item)."""
    for x in items:
        fn(x)
    ns = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for x in items:
            t = clock()
            fn(x)
            ns.append(clock() - t)
    return Latency.of_ns(ns)


def measure(
    n: int,
    *,
    bundle: PolicyBundle,
    cached: PolicyEngine,
    uncached: PolicyEngine,
    risk: RiskEngine,
    requests: Sequence[RequestContext],
    rounds: int,
) -> list[list[str]]:
    """Each step alone, then whole decisions with and without the exact-result caches."""
    enriched = [risk.enrich(c) for c in requests]
    scored = [(c, risk.assess(c)) for c in enriched]
    prepared = [
        (uncached.cedar_request(c, r), cedarpy.Entities.from_json_str(uncached.cedar_entities(c)))
        for c, r in scored
    ]
    slow, fast = Decider(uncached, risk), Decider(cached, risk)
    decided = [fast.evaluate(c) for c in requests[:500]]
    parts: list[tuple[str, Callable[[Any], object], Sequence[Any]]] = [
        ("whole decision, every Cedar call made (Decider.evaluate)", slow.evaluate, requests),
        (
            "whole decision, repeated requests (Decider.evaluate, caches warm)",
            fast.evaluate,
            requests,
        ),
        ("RiskEngine.enrich + assess", lambda c: risk.assess(risk.enrich(c)), requests),
        ("PolicyEngine.decide, no cache", lambda cr: uncached.decide(cr[0], cr[1]), scored),
        (
            "cedarpy.is_authorized alone, prepared request and entities (floor)",
            lambda p: cedarpy.is_authorized(p[0], bundle.cedar, p[1]),
            prepared,
        ),
        ("decision event built", lambda d: fast.event(d.context, d.risk, d.decision), decided),
        ("canonical_bytes(event)", lambda d: canonical_bytes(d.event), decided),
    ]
    rows = []
    for what, fn, items in parts:
        lat = timed(fn, items, rounds)
        rows.append([str(n), what, fmt_us(lat.p50_us), fmt_us(lat.p99_us)])
        log(f"{n} policies: {what}: p50 {lat.p50_us:.0f} µs, p99 {lat.p99_us:.0f} µs")
    return rows


def run(sizes: Sequence[int], users: int, rounds: int) -> tuple[str, list[list[str]]]:
    rng = random.Random(11)
    t0 = time.perf_counter()
    risk, requests = world(users, rng)
    log(f"baselines for {users:,} users in {time.perf_counter() - t0:.1f} s")
    rows: list[list[str]] = []
    for n in sizes:
        bundle = load_policy_texts(policies(n))
        cached = PolicyEngine(bundle)
        uncached = PolicyEngine(bundle, EngineConfig(cache_size=0))
        rows += measure(
            n,
            bundle=bundle,
            cached=cached,
            uncached=uncached,
            risk=risk,
            requests=requests,
            rounds=rounds,
        )
    table = markdown_table(["Policies", "Step", "p50", "p99"], rows)
    return table, rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="1,000 users, one round")
    ap.add_argument("--no-doc", action="store_true", help="print only")
    args = ap.parse_args(argv)
    users, rounds = (1000, 1) if args.quick else (10_000, 3)
    table, _ = run((10, 100, 1000), users, rounds)
    info = machine_info(ROOT / "docs")
    machine = "\n".join(f"- {k}: {v}" for k, v in info.items())
    figures = (
        f"### Decisions ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {users:,} users' baselines,"
        f" one thread)\n\n{machine}\n\n{table}\n\n"
        f"Goals: p50 ≤ {GOAL_P50:.0f} µs, p99 ≤ {GOAL_P99:.0f} µs for a whole decision."
    )
    print(figures)
    if not args.quick and not args.no_doc:
        doc = ROOT / "docs" / "benchmarks.md"
        update_doc(doc, figures, "# Benchmarks\n", BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
