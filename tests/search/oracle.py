"""A brute-force evaluator of query trees over events, written from docs/search.md alone.

The search results are checked against it. Full-text matching follows FTS5's unicode61
tokenizer for ASCII text (runs of letters and digits, case-folded), which is all the test
events hold.
"""

from __future__ import annotations

import ipaddress
import re

from proctor.events.ids import parse_time
from proctor.events.schema import Event
from proctor.search.query import (
    And,
    Compare,
    Everything,
    Match,
    Network,
    Node,
    Not,
    Or,
    Text,
    TimeBound,
)

_TOKEN = re.compile(r"[0-9A-Za-z]+")


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def values(idx: int, e: Event) -> dict[str, list[object]]:
    """Every field's values for one event (missing: an empty list)."""
    a, t, act, r, d, o = e.actor, e.target, e.action, e.risk, e.decision, e.outcome
    session = e.session.id if e.session else (e.links.session_id if e.links else None)

    def one(v: object) -> list[object]:
        return [] if v is None else [v]

    return {
        "id": [e.id],
        "kind": [e.kind],
        "actor": one(a.id if a else None),
        "ip": one(a.ip if a else None),
        "role": list(a.roles) if a else [],
        "group": list(a.groups) if a else [],
        "session": one(session),
        "type": one(t.type.lower() if t else None),
        "target": one(t.name if t else None),
        "db": one(t.database if t else None),
        "object": list(t.objects) if t else [],
        "sensitivity": one(t.sensitivity if t else None),
        "class": one(act.class_ if act else None),
        "op": one(act.operation.upper() if act and act.operation else None),
        "fingerprint": one(act.fingerprint if act else None),
        "decision": one(d.effect if d else None),
        "policy": list(d.policies) if d else [],
        "risk": one(r.score if r else None),
        "level": one(r.level if r else None),
        "status": one(o.status if o else None),
        "rows": one(o.rows if o else None),
        "duration": one(o.duration_us if o else None),
        "sqlstate": one(o.sqlstate.upper() if o and o.sqlstate else None),
        "source": one(e.source.system if e.source else None),
        "flag": list(e.flags),
        "idx": [idx],
    }


def texts(e: Event) -> dict[str, str]:
    return {
        "statement": (e.action.statement or "") if e.action else "",
        "reason": "\n".join(e.decision.reasons) if e.decision else "",
        "message": (e.outcome.message or "") if e.outcome else "",
        "object": "\n".join(e.target.objects) if e.target else "",
        "name": (e.actor.display_name or "") if e.actor else "",
    }


def _phrase_in(words: list[str], phrase: list[str], prefix: bool) -> bool:
    if not phrase:
        return False
    n = len(phrase)
    for i in range(len(words) - n + 1):
        window = words[i : i + n]
        if window[:-1] != phrase[:-1]:
            continue
        last_ok = window[-1].startswith(phrase[-1]) if prefix else window[-1] == phrase[-1]
        if last_ok:
            return True
    return False


def _ip16(text: str) -> int:
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        return int(ipaddress.IPv6Address(f"::ffff:{addr}"))
    return int(addr)


def _net16(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    if net.version == 4:
        lo = ipaddress.IPv6Address(f"::ffff:{net.network_address}")
        hi = ipaddress.IPv6Address(f"::ffff:{net.broadcast_address}")
        return int(lo), int(hi)
    return int(net.network_address), int(net.broadcast_address)


def matches(node: Node, idx: int, e: Event, now_ns: int) -> bool:  # noqa: PLR0911
    if isinstance(node, Everything):
        return True
    if isinstance(node, Not):
        return not matches(node.child, idx, e, now_ns)
    if isinstance(node, And):
        return all(matches(c, idx, e, now_ns) for c in node.children)
    if isinstance(node, Or):
        return any(matches(c, idx, e, now_ns) for c in node.children)
    if isinstance(node, Match):
        vals = [str(v) for v in values(idx, e)[node.field]]
        if node.mode == "any":
            return bool(vals)
        if node.mode == "prefix":
            return any(v.startswith(node.value) for v in vals)
        return node.value in vals
    if isinstance(node, Compare):
        nums = [int(v) for v in values(idx, e)[node.field]]  # type: ignore[call-overload]
        lo = -(2**63) if node.low is None else node.low
        hi = 2**63 if node.high is None else node.high
        return any(lo <= n <= hi for n in nums)
    if isinstance(node, Network):
        lo, hi = _net16(node.network)
        return any(lo <= _ip16(str(v)) <= hi for v in values(idx, e)["ip"])
    if isinstance(node, TimeBound):
        at = node.at_ns if node.at_ns is not None else now_ns - (node.ago_ns or 0)
        t = parse_time(e.time)
        return t >= at if node.bound == "since" else t < at
    assert isinstance(node, Text)
    cols = texts(e)
    chosen = [cols[node.fts_column]] if node.fts_column else list(cols.values())
    phrase = tokens(node.text)
    return any(_phrase_in(tokens(c), phrase, node.prefix) for c in chosen)
