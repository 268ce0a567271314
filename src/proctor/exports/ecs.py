"""Proctor events as Elastic Common Schema (ECS 9.0.0) documents.

Categorization uses only ECS's allowed values (``event.kind`` ``event``; ``event.category`` and
``event.type`` from the ECS categorization tables, each type one the category expects):

=====================  ===========================  =======================================
kind                   event.category               event.type
=====================  ===========================  =======================================
session.start          authentication, session      start
auth.failed            authentication               start (event.outcome failure)
session.end            authentication, session      end
session.revoked        session                      end
query/decision/        database (database targets)  access, change (writes and DDL)
outcome/ingest         api (k8s, http, mcp)         access/change/creation/deletion
                                                    + allowed/denied for decisions
policy.reloaded        configuration                change
retention.pruned,      database (the ledger)        change
erasure
checkpoint             database (the ledger)        info
=====================  ===========================  =======================================

ECS has no database field set: the target, the statement and the session live under the
custom ``proctor.*`` object (custom fields beside ECS's, as ECS recommends), policies under
``rule.*``, the risk score in ``event.risk_score``. Attribute keys become ``labels`` with dots
written as underscores (label keys must not nest).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from proctor.errors import EventError
from proctor.events.canonical import decode_event
from proctor.events.schema import SCHEMA, Event
from proctor.exports._common import (
    PRODUCT,
    VENDOR,
    VERSION,
    db_target,
    http_target,
    level,
    parse_endpoint,
    summary,
    time_ns,
)

__all__ = ["ECS_VERSION", "EcsFormatter", "to_ecs"]

ECS_VERSION: Final = "9.0.0"
DATASET: Final = "proctor.access"

Obj = dict[str, Any]

_LOG_LEVEL: Final = {1: "informational", 2: "notice", 3: "warning", 4: "error", 5: "critical"}


def to_ecs(event: Event, *, index: int | None = None) -> Obj:
    """One ECS document (a JSON-ready dict) for a Proctor event; ``index`` is the ledger index."""
    categories, types, outcome = _categorize(event)
    lvl = level(event)
    ev: Obj = {
        "kind": "event",
        "action": event.kind,
        "id": event.id,
        "dataset": DATASET,
        "module": "proctor",
        "provider": event.source.system if event.source is not None else "proctor",
        "severity": int(lvl),
        "outcome": outcome,
    }
    if categories:
        ev["category"], ev["type"] = categories, types
    if index is not None:
        ev["sequence"] = index
    received = event.attributes.get("proctor.received_at")
    if received is not None and _is_time(received):
        ev["created"] = received  # when Proctor read an ingested record (ECS event.created)
    doc: Obj = {
        "@timestamp": event.time,
        "ecs": {"version": ECS_VERSION},
        "message": summary(event),
        "event": ev,
        "log": {"level": _LOG_LEVEL[int(lvl)]},
        "observer": _observer(event),
    }
    custom: Obj = {"schema": SCHEMA, "clock": msgspec.to_builtins(event.clock)}
    if index is not None:
        custom["index"] = index
    _risk_and_decision(event, ev, doc, custom)
    _outcome(event, ev, doc, custom)
    _who(event, doc, custom)
    _where(event, doc, custom)
    _original(event, ev)
    if event.flags:
        doc["tags"] = list(event.flags)
    if event.attributes:
        doc["labels"] = {k.replace(".", "_"): v for k, v in event.attributes.items()}
        custom["attributes"] = dict(event.attributes)
    if event.links is not None:
        custom["links"] = msgspec.to_builtins(event.links)
    if event.input is not None:
        custom["input"] = msgspec.to_builtins(event.input)
    doc["proctor"] = custom
    related = _related(event, doc)
    if related:
        doc["related"] = related
    return doc


class EcsFormatter:
    """Export driver plug-in: one ECS JSON document per line (Elasticsearch bulk-ready)."""

    name: Final = "ecs"

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()

    def format(self, index: int, raw: bytes) -> bytes:
        """The ECS JSON line for the ledger entry ``raw`` at ``index``."""
        return self._encoder.encode(to_ecs(decode_event(raw), index=index)) + b"\n"


def _is_time(text: str) -> bool:
    try:
        time_ns(text)
    except EventError:
        return False
    return True


# -- categorization ---------------------------------------------------------------------------


def _categorize(event: Event) -> tuple[list[str], list[str], str]:  # noqa: PLR0911 (a table)
    """(event.category, event.type, event.outcome) from ECS's allowed values."""
    kind = event.kind
    if kind == "session.start":
        return ["authentication", "session"], ["start"], "success"
    if kind == "auth.failed":
        return ["authentication"], ["start"], "failure"
    if kind == "session.end":
        return ["authentication", "session"], ["end"], _status_outcome(event, "success")
    if kind == "session.revoked":
        return ["session"], ["end"], "success"  # Proctor ended it, as it meant to
    if kind == "policy.reloaded":
        return ["configuration"], ["change"], "success"
    if kind in ("retention.pruned", "erasure"):
        return ["database"], ["change"], "success"
    if kind == "checkpoint":
        return ["database"], ["info"], "success"
    outcome = _status_outcome(event, "unknown")
    if db_target(event):
        return ["database"], [_db_type(event)], outcome
    if http_target(event):
        types = [_api_type(event)]
        decision = event.decision
        if decision is not None and kind == "decision":
            if decision.effect == "allow":
                types.append("allowed")
            elif decision.effect == "deny":
                types.append("denied")
        return ["api"], types, outcome
    return [], [], outcome  # ECS: leave categorization empty when nothing fits


def _status_outcome(event: Event, default: str) -> str:
    if event.outcome is not None:
        return "success" if event.outcome.status == "ok" else "failure"
    decision = event.decision
    if decision is not None:
        if decision.effect == "allow":
            return "success"
        if decision.effect == "deny":
            return "failure"
    return default  # a query before its decision, a step-up awaiting MFA


def _db_type(event: Event) -> str:
    cls = event.action.class_ if event.action is not None else ""
    return "change" if cls in ("write", "ddl", "admin") else "access"


def _api_type(event: Event) -> str:
    action = event.action
    if action is None:
        return "info"
    verb = (action.operation or "").lower()
    if verb in ("create", "post"):
        return "creation"
    if verb in ("delete", "deletecollection"):
        return "deletion"
    if verb in ("update", "patch", "put") or action.class_ in ("write", "ddl", "admin"):
        return "change"
    if action.class_ == "read" or verb in ("get", "list", "watch"):
        return "access"
    return "info"


# -- field sets -----------------------------------------------------------------------------


def _observer(event: Event) -> Obj:
    observer: Obj = {"product": PRODUCT, "vendor": VENDOR, "version": VERSION}
    if event.source is not None and event.source.gateway is not None:
        observer["name"] = event.source.gateway
    return observer


def _risk_and_decision(event: Event, ev: Obj, doc: Obj, custom: Obj) -> None:
    risk = event.risk
    if risk is not None:
        ev["risk_score"] = risk.score
        ev["risk_score_norm"] = risk.score  # Proctor's scale is already 0-100
        custom["risk"] = msgspec.to_builtins(risk)
    decision = event.decision
    if decision is None:
        return
    ev["reason"] = "; ".join(decision.reasons)
    names = list(decision.policies)
    if not names and decision.effect == "deny" and event.kind != "ingest":
        names = ["default deny"]
    if names:
        rule: Obj = {"id": names, "name": names, "ruleset": "proctor"}
        if decision.policy_revision is not None:
            rule["version"] = decision.policy_revision
        doc["rule"] = rule
    custom["decision"] = msgspec.to_builtins(decision)


def _outcome(event: Event, ev: Obj, doc: Obj, custom: Obj) -> None:
    out = event.outcome
    if out is None:
        return
    custom["outcome"] = msgspec.to_builtins(out)
    if out.duration_us is not None:
        ev["duration"] = out.duration_us * 1000  # ECS event.duration: nanoseconds
        ev["end"] = event.time
    if out.status == "error" and (out.sqlstate is not None or out.message is not None):
        error: Obj = {}
        if out.sqlstate is not None:
            error["code"] = out.sqlstate
        if out.message is not None:
            error["message"] = out.message
        doc["error"] = error


def _who(event: Event, doc: Obj, custom: Obj) -> None:
    actor = event.actor
    if actor is None:
        return
    user: Obj = {"id": actor.id, "name": actor.id}
    if actor.display_name is not None:
        user["full_name"] = actor.display_name
    if actor.email is not None:
        user["email"] = actor.email
    if actor.roles:
        user["roles"] = list(actor.roles)
    if actor.groups:
        user["group"] = {"name": list(actor.groups)}
    doc["user"] = user
    part: Obj = {"kind": actor.kind, "mfa": actor.mfa}
    for name in ("auth_method", "mfa_time"):
        value = getattr(actor, name)
        if value is not None:
            part[name] = value
    if actor.device is not None:
        part["device"] = msgspec.to_builtins(actor.device)
    custom["actor"] = part
    if actor.ip is not None:
        source: Obj = {"ip": actor.ip, "address": actor.ip}
        geo = actor.geo
        if geo is not None:
            g: Obj = {}
            if geo.country is not None:
                g["country_iso_code"] = geo.country
            if geo.city is not None:
                g["city_name"] = geo.city
            if geo.lat_e6 is not None and geo.lon_e6 is not None:
                g["location"] = {"lat": geo.lat_e6 / 1e6, "lon": geo.lon_e6 / 1e6}
            if g:
                source["geo"] = g
            if geo.asn is not None:
                source["as"] = {"number": geo.asn}
        doc["source"] = source
        doc["client"] = {"ip": actor.ip, "address": actor.ip, "user": {"id": actor.id}}


def _where(event: Event, doc: Obj, custom: Obj) -> None:
    address = parse_endpoint(event.source.address if event.source is not None else None)
    if address is not None:
        doc["destination"] = {
            "ip": address.ip,
            "port": address.port,
            "address": event.source.address if event.source is not None else address.ip,
        }
    target = event.target
    if target is not None:
        custom["target"] = msgspec.to_builtins(target)
        if target.type in ("k8s", "kubernetes"):
            orchestrator: Obj = {"type": "kubernetes"}
            if target.name is not None:
                orchestrator["cluster"] = {"name": target.name}
            if target.database is not None:
                orchestrator["namespace"] = target.database
            if target.objects:
                kind, _, name = target.objects[0].rpartition("/")
                orchestrator["resource"] = {"name": name, **({"type": kind} if kind else {})}
            doc["orchestrator"] = orchestrator
    if event.action is not None:
        custom["action"] = msgspec.to_builtins(event.action)
    session = event.session
    if session is not None:
        custom["session"] = msgspec.to_builtins(session)
        if session.started is not None and event.kind == "session.end":
            doc["event"]["start"] = session.started
            doc["event"]["end"] = event.time
    agent = event.attributes.get("k8s.user_agent") or event.attributes.get("http.user_agent")
    if agent is None and session is not None:
        agent = session.client
    if agent is not None:
        doc["user_agent"] = {"original": agent}
    status = event.attributes.get("http.status")
    if status is not None and status.isdigit():
        doc["http"] = {"response": {"status_code": int(status)}}


def _original(event: Event, ev: Obj) -> None:
    if event.source is not None and event.source.original_sha256 is not None:
        ev["hash"] = event.source.original_sha256
    if event.original is not None and event.original.encoding == "utf-8":
        ev["original"] = event.original.data


def _related(event: Event, doc: Obj) -> Obj:
    related: Obj = {}
    if event.actor is not None:
        related["user"] = [event.actor.id]
    ips = [doc.get("source", {}).get("ip"), doc.get("destination", {}).get("ip")]
    known = [ip for ip in ips if ip is not None]
    if known:
        related["ip"] = list(dict.fromkeys(known))
    if event.source is not None and event.source.original_sha256 is not None:
        related["hash"] = [event.source.original_sha256]
    return related
