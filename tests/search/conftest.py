"""Shared pieces: varied events in a real ledger, and its search index."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proctor.events.canonical import decode_event
from proctor.events.ids import format_time, new_event_id
from proctor.events.schema import (
    Action,
    Actor,
    Clock,
    Decision,
    Event,
    Links,
    Outcome,
    Risk,
    Session,
    Source,
    Target,
)
from proctor.ledger.appender import AppenderConfig
from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer
from proctor.search.index import SearchIndex, catch_up

ORIGIN = "test.example/search"
NOW_NS = 1_795_000_000 * 1_000_000_000  # 2026-11-18: "now" for relative times in tests
BASE_NS = NOW_NS - 3 * 86_400 * 1_000_000_000  # events span the three days before it

ACTORS = ("alice", "alina", "bob", "carol", "svc-etl", "Alice")
ROLES = ("analyst", "dba", "support", "admin")
GROUPS = ("data", "ops", "billing-team")
TARGETS = ("prod-db", "prod-dwh", "staging-db", "analytics")
DATABASES = ("sales", "billing", "hr")
OBJECTS = ("public.users", "sales.orders", "billing.invoices", "hr.salaries")
IPS = ("10.0.0.1", "10.0.7.9", "10.20.30.40", "192.168.1.5", "2001:db8::1", "2001:db8:1::7")
WORDS = ("select", "drop", "table", "users", "orders", "grant", "delete", "from", "where", "id")
REASONS = (
    "role analyst may read sales",
    "no policy permits this request",
    "ddl needs mfa within the last hour",
    "risk too high for restricted data",
)
OPS = ("SELECT", "DROP TABLE", "DELETE", "GRANT", "patch")
SQLSTATES = ("42501", "28P01", "57014", "0A000")


def _statement(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))


def make_event(rng: random.Random, i: int) -> Event:
    """One valid event of a random kind, with the parts its kind requires and some others."""
    kind = rng.choice(("session.start", "query", "decision", "outcome", "auth.failed"))
    jitter = rng.randint(-600, 600) * 1_000_000_000 if rng.random() < 0.1 else 0
    t = format_time(BASE_NS + i * 500_000_000_000 // 1000 + jitter)
    session_id = f"00000000-0000-4000-8000-{rng.randint(0, 30):012x}"
    actor = Actor(
        id=rng.choice(ACTORS),
        kind="human",
        display_name=rng.choice(("Alice Martin", "Bob Stone", None)),
        roles=tuple(rng.sample(ROLES, rng.randint(0, 2))),
        groups=tuple(rng.sample(GROUPS, rng.randint(0, 2))),
        ip=rng.choice((*IPS, None)),
    )
    target = Target(
        type=rng.choice(("postgres", "k8s")),
        name=rng.choice((*TARGETS, None)),
        database=rng.choice((*DATABASES, None)),
        objects=tuple(rng.sample(OBJECTS, rng.randint(0, 2))),
        sensitivity=rng.choice(("internal", "restricted", None)),
    )
    action = Action(
        class_=rng.choice(("read", "write", "ddl", "admin")),
        operation=rng.choice((*OPS, None)),
        statement=_statement(rng) if rng.random() < 0.8 else None,
        fingerprint=rng.choice(("fp-a", "fp-b", "fp-rare" if rng.random() < 0.1 else "fp-c")),
    )
    score = rng.randint(0, 100)
    level = (
        "low" if score < 30 else "medium" if score < 60 else "high" if score < 85 else "critical"
    )
    risk = Risk(score=score, level=level)
    decision = Decision(
        effect=rng.choice(("allow", "allow", "deny", "step_up")),
        reasons=tuple(rng.sample(REASONS, rng.randint(1, 2))),
        policies=tuple(rng.sample(("p-read", "p-ddl", "p-admin"), rng.randint(0, 2))),
    )
    outcome = Outcome(
        status=rng.choice(("ok", "error", "cancelled")),
        rows=rng.choice((None, 0, 5, 1500, 100_000)),
        duration_us=rng.randint(10, 5_000_000),
        sqlstate=rng.choice((*SQLSTATES, None)),
        message=rng.choice(("permission denied for table users", "canceled by user", None)),
    )
    parts: dict[str, object] = {}
    if kind == "session.start":
        parts = {"actor": actor, "session": Session(id=session_id), "target": target}
    elif kind == "query":
        parts = {"actor": actor, "action": action, "target": target}
    elif kind == "decision":
        parts = {"actor": actor, "action": action, "target": target, "risk": risk}
        parts["decision"] = decision
    elif kind == "outcome":
        parts = {"outcome": outcome, "action": action, "target": target}
    else:
        parts = {"actor": actor, "outcome": outcome}
    if rng.random() < 0.7:
        parts["links"] = Links(session_id=session_id)
    return Event(
        id=new_event_id(),
        kind=kind,  # type: ignore[arg-type]
        time=t,
        clock=Clock(source="system"),
        source=Source(system=rng.choice(("proctor", "pgaudit"))),
        flags=("time_skew",) if rng.random() < 0.05 else (),
        **parts,  # type: ignore[arg-type]
    )


def make_events(n: int, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    return [make_event(rng, i) for i in range(n)]


def new_ledger(directory: Path) -> Signer:
    signer = Signer.generate(ORIGIN)
    Ledger.init(directory, signer)
    return signer


def append(directory: Path, signer: Signer, events: list[Event]) -> None:
    config = AppenderConfig(checkpoint_interval_ms=0)
    with Ledger(directory, signer=signer, config=config, max_time_skew_ms=10**12) as lg:
        for i in range(0, len(events), 200):
            lg.append_many(events[i : i + 200])


@dataclass(repr=False)
class Indexed:
    """A ledger with events and its caught-up index, open for queries."""

    directory: Path
    ledger: Ledger
    index: SearchIndex
    events: list[tuple[int, Event]]  # as stored in the ledger


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Indexed]:
    d = tmp_path_factory.mktemp("search") / "ledger"
    signer = new_ledger(d)
    append(d, signer, make_events(600))
    with Ledger(d) as lg:
        catch_up(lg)
        stored = [(i, decode_event(b)) for i, b in lg.entries()]
        with SearchIndex(lg) as index:
            yield Indexed(d, lg, index, stored)
