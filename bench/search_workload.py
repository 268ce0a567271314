"""Synthetic but realistic gateway traffic for the search benchmark.

Sessions of one actor on one target: ``session.start``, then for each statement the gateway's
three events (``query``, ``decision``, ``outcome``), then ``session.end``. Actors follow a
Zipf-like law (a few service accounts and heavy users make most of the traffic, most people
little); targets are skewed too; about 95% of decisions allow, 3% deny and 2% ask for step-up,
with risk scores mostly low and high ones going with denials. Statements come from a few
hundred shapes over a dozen tables (each shape has its fingerprint); one shape is rare (a
``DROP TABLE`` on a production table, a few dozen times in the whole run).

Events are built as plain dicts and written by msgspec with sorted keys, which is the
canonical form for these ASCII-keyed, float-free events (checked against
``canonicalize`` on a sample), so ten million of them take minutes, not an hour.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from benchlib import _uuid7_text
from proctor.events.canonical import canonicalize
from proctor.events.ids import format_time

_ENCODER = msgspec.json.Encoder(order="sorted")
NS = 1_000_000_000

FIRST = (
    "Alice",
    "Bob",
    "Carol",
    "Dave",
    "Erin",
    "Frank",
    "Grace",
    "Heidi",
    "Ivan",
    "Judy",
    "Mallory",
    "Niaj",
    "Olivia",
    "Peggy",
    "Rupert",
    "Sybil",
    "Trent",
    "Victor",
    "Walter",
    "Yara",
    "Zoe",
    "Amir",
    "Bea",
    "Chen",
    "Dara",
    "Emeka",
    "Farah",
    "Goran",
    "Hana",
    "Ines",
)
LAST = (
    "Martin",
    "Stone",
    "Souza",
    "Kim",
    "Novak",
    "Okafor",
    "Ito",
    "Larsen",
    "Rossi",
    "Dubois",
    "Weber",
    "Silva",
    "Haddad",
    "Kowalski",
    "Nguyen",
    "Garcia",
    "Smith",
    "Jones",
    "Brown",
    "Tanaka",
    "Ivanova",
    "Moreau",
    "Costa",
    "Fischer",
)

# (name, database, type, sensitivity, tables, weight)
TARGETS: tuple[tuple[str, str, str, str, tuple[str, ...], int], ...] = (
    (
        "analytics-prod",
        "analytics",
        "postgres",
        "confidential",
        ("sales.orders", "sales.customers", "sales.regions", "web.sessions"),
        30,
    ),
    (
        "billing-prod",
        "billing",
        "postgres",
        "restricted",
        ("billing.invoices", "billing.payments", "billing.accounts"),
        20,
    ),
    ("crm-prod", "crm", "postgres", "confidential", ("crm.contacts", "crm.deals"), 15),
    ("hr-db", "hr", "postgres", "restricted", ("hr.employees", "hr.salaries", "hr.reviews"), 4),
    (
        "prod-db",
        "app",
        "postgres",
        "restricted",
        ("public.users", "public.accounts", "public.audit_log", "public.sessions"),
        20,
    ),
    (
        "staging-db",
        "app",
        "postgres",
        "internal",
        ("public.users", "public.accounts", "staging.tmp_import"),
        8,
    ),
    ("legacy-dwh", "dwh", "postgres", "internal", ("dwh.fact_sales", "dwh.dim_date"), 3),
)

SHAPES = (
    ("read", "SELECT", "SELECT {c} FROM {t} WHERE id = $1", 40),
    ("read", "SELECT", "SELECT {c}, count(*) FROM {t} WHERE created_at >= $1 GROUP BY {c}", 15),
    ("read", "SELECT", "SELECT * FROM {t} ORDER BY created_at DESC LIMIT $1", 10),
    ("read", "SELECT", "SELECT {c} FROM {t} JOIN {t2} USING (id) WHERE {t2}.status = $1", 6),
    ("write", "UPDATE", "UPDATE {t} SET {c} = $1 WHERE id = $2", 10),
    ("write", "INSERT", "INSERT INTO {t} ({c}, created_at) VALUES ($1, $2)", 8),
    ("write", "DELETE", "DELETE FROM {t} WHERE id = $1", 3),
    ("ddl", "ALTER TABLE", "ALTER TABLE {t} ADD COLUMN {c}_v2 text", 1),
    ("ddl", "CREATE INDEX", "CREATE INDEX ON {t} ({c})", 1),
    ("admin", "GRANT", "GRANT SELECT ON {t} TO analyst", 1),
    ("utility", "COPY", "COPY {t} TO STDOUT WITH (FORMAT csv)", 2),
)
COLUMNS = ("status", "email", "region", "total", "owner_id", "amount", "name", "score")
ROLES = (("analyst", 55), ("engineer", 20), ("support", 15), ("dba", 4), ("service", 6))
GROUPS = ("data-analytics", "platform", "customer-care", "finance", "security", "sre")

RARE_STATEMENT = "DROP TABLE public.audit_log"
RARE_FINGERPRINT = hashlib.sha256(RARE_STATEMENT.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Actor:
    id: str
    name: str
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    ips: tuple[str, ...]
    kind: str


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Workload:
    """``n`` events over ``days`` days ending at ``end_ns``, reproducible from ``seed``."""

    def __init__(self, n: int, *, end_ns: int, days: int = 30, actors: int = 5000, seed: int = 1):
        self.n = n
        self.end_ns = end_ns
        self.start_ns = end_ns - days * 86_400 * NS
        self.rng = random.Random(seed)
        rng = self.rng
        self.actors: list[Actor] = []
        for i in range(actors):
            service = i < 20  # the 20 heaviest are service accounts
            role = "service" if service else rng.choices(*zip(*ROLES, strict=True))[0]
            roles = (role,) if rng.random() < 0.8 else (role, rng.choice(ROLES)[0])
            ips = tuple(
                f"10.{rng.randint(0, 63)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                for _ in range(rng.randint(1, 2))
            )
            if rng.random() < 0.05:  # works from outside now and then
                ips += (f"203.0.113.{rng.randint(1, 254)}",)
            self.actors.append(
                Actor(
                    id=f"svc-{i:03d}" if service else f"u-{i:05d}",
                    name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                    roles=tuple(dict.fromkeys(roles)),
                    groups=tuple(rng.sample(GROUPS, rng.randint(1, 2))),
                    ips=ips,
                    kind="service" if service else "human",
                )
            )
        # Zipf-like: weight 1/(rank+1)^0.9, so the top actor has a few percent of the traffic
        self.actor_weights = [1 / (r + 1) ** 0.9 for r in range(actors)]
        self.cum_weights = list(itertools.accumulate(self.actor_weights))
        self.counts: collections.Counter[str] = collections.Counter()  # events per actor
        self.denies: collections.Counter[str] = collections.Counter()  # denials per actor
        self.recent_denies: collections.Counter[str] = collections.Counter()  # in the last day
        self.statements = 0
        self._prefixes: dict[int, str] = {}
        self.target_weights = [t[5] for t in TARGETS]
        self.shape_weights = [s[3] for s in SHAPES]
        self.rare_every = max(n // 120, 1)  # ~40 rare statements (a third of events are decisions)
        check = Workload.__new__(Workload)
        check.__dict__.update(self.__dict__)
        check.counts, check.denies, check.recent_denies = (collections.Counter() for _ in range(3))
        for data in itertools.islice(check.events(), 300):
            if canonicalize(data) != data:
                raise RuntimeError("generated event is not canonical")

    def _time(self, ns: int) -> str:
        sec, frac = divmod(ns, NS)
        prefix = self._prefixes.get(sec)
        if prefix is None:
            if len(self._prefixes) > 4096:
                self._prefixes.clear()
            prefix = self._prefixes[sec] = format_time(sec * NS)[:20]
        return f"{prefix}{frac:09d}Z"

    def events(self) -> Iterator[bytes]:
        """The canonical bytes of every event, in ledger order."""
        rng = random.Random(self.rng.random())
        step = (self.end_ns - self.start_ns) // max(self.n, 1)
        i = 0
        day_ago = self.end_ns - 86_400 * NS
        while i < self.n:
            actor = rng.choices(self.actors, cum_weights=self.cum_weights)[0]
            target = rng.choices(TARGETS, self.target_weights)[0]
            session = _uuid7_text((self.start_ns + i * step) // 1_000_000, i + (1 << 40))
            statements = rng.randint(1, 40) if actor.kind == "human" else rng.randint(5, 60)
            ip = rng.choice(actor.ips)
            base = self._base(actor, target, session, ip)
            for kind, extra in self._session(rng, actor, target, session, statements):
                if i >= self.n:
                    return
                t = self.start_ns + i * step + rng.randint(0, step)
                ev = {
                    **base,
                    **extra,
                    "id": _uuid7_text(t // 1_000_000, i),
                    "kind": kind,
                    "time": self._time(t),
                }
                self.counts[actor.id] += 1
                if kind == "decision" and extra["decision"]["effect"] == "deny":  # type: ignore[index]
                    self.denies[actor.id] += 1
                    if t >= day_ago:
                        self.recent_denies[actor.id] += 1
                yield _ENCODER.encode(ev)
                i += 1

    def _base(
        self, actor: Actor, target: tuple[object, ...], session: str, ip: str
    ) -> dict[str, object]:
        name, database, ttype, sensitivity = target[:4]
        a: dict[str, object] = {
            "id": actor.id,
            "kind": actor.kind,
            "display_name": actor.name,
            "roles": list(actor.roles),
            "groups": list(actor.groups),
            "auth_method": "scram",
            "ip": ip,
        }
        return {
            "schema": "proctor.access/v1",
            "clock": {"source": "system"},
            "actor": a,
            "target": {
                "type": ttype,
                "name": name,
                "database": database,
                "sensitivity": sensitivity,
            },
            "links": {"session_id": session},
            "source": {"system": "proctor", "gateway": "gw-eu-1", "address": "10.0.0.5:5432"},
        }

    def _session(
        self,
        rng: random.Random,
        actor: Actor,
        target: tuple[object, ...],
        session: str,
        statements: int,
    ) -> Iterator[tuple[str, dict[str, object]]]:
        yield "session.start", {"session": {"id": session, "protocol": "postgres/3.0"}}
        base_target = {
            "type": target[2],
            "name": target[0],
            "database": target[1],
            "sensitivity": target[3],
        }
        tables: tuple[str, ...] = target[4]  # type: ignore[assignment]
        for _ in range(statements):
            self.statements += 1
            if self.statements % self.rare_every == 0:
                cls, op, stmt = "ddl", "DROP TABLE", RARE_STATEMENT
            else:
                cls, op, shape, _ = rng.choices(SHAPES, self.shape_weights)[0]
                stmt = shape.format(
                    t=rng.choice(tables), t2=rng.choice(tables), c=rng.choice(COLUMNS)
                )
            action = {
                "class": cls,
                "operation": op,
                "statement": stmt,
                "fingerprint": _fingerprint(stmt),
            }
            words = stmt.replace("(", " ").replace(",", " ").split()
            objects = sorted({w for w in words if "." in w and w[0].isalpha()})
            tgt = {"target": {**base_target, "objects": objects}} if objects else {}
            score, effect, reason, policies = self._decide(rng, actor, target, cls)
            level = (
                "low"
                if score < 30
                else "medium"
                if score < 60
                else "high"
                if score < 85
                else "critical"
            )
            yield "query", {"action": action, **tgt}
            yield (
                "decision",
                {
                    "action": action,
                    "risk": {
                        "score": score,
                        "level": level,
                        "model": "baseline-2026.11",
                        "factors": [{"signal": "sensitive_target", "points": min(score, 30)}],
                    },
                    "decision": {"effect": effect, "reasons": [reason]}
                    | ({"policies": policies} if policies else {}),
                    **tgt,
                },
            )
            if effect == "allow":
                ok = rng.random() < 0.98
                outcome = {
                    "status": "ok" if ok else "error",
                    "rows": rng.choice((0, 1, 1, 1, 12, 250, 4000, 150000)) if ok else 0,
                    "duration_us": rng.randint(150, 900_000),
                }
                if not ok:
                    outcome["sqlstate"] = rng.choice(("57014", "23505", "40P01"))
                    outcome["message"] = "canceling statement due to statement timeout"
            else:
                outcome = {
                    "status": "error",
                    "sqlstate": "42501",
                    "message": f"permission denied: {reason}",
                    "duration_us": rng.randint(50, 400),
                }
            yield "outcome", {"action": action, "outcome": outcome, **tgt}
        yield "session.end", {"session": {"id": session}}

    def _decide(
        self, rng: random.Random, actor: Actor, target: tuple[object, ...], cls: str
    ) -> tuple[int, str, str, list[str]]:
        roll = rng.random()
        if cls == "ddl" and "dba" not in actor.roles:
            roll = min(roll, 0.02 + rng.random() * 0.04)
        if roll < 0.03:
            score = rng.randint(70, 100)
            return score, "deny", f"risk {score} too high for {target[3]} data on {target[0]}", []
        if roll < 0.05:
            score = rng.randint(45, 80)
            return score, "step_up", "unusual time and place: MFA required", ["mfa-on-risk"]
        score = int(rng.triangular(0, 60, 8))
        role = actor.roles[0]
        return score, "allow", f"role {role} may {cls} on {target[0]}", [f"{role}-{cls}"]
