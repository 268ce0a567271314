"""Proctor events as OCSF 1.8.0 events (Open Cybersecurity Schema Framework).

Every kind maps to one class (docs/exports.md has the table and the reasons):

====================  ============================================  ==========================
kind                  class                                         activity
====================  ============================================  ==========================
session.start         3002 Authentication                           1 Logon (Success)
auth.failed           3002 Authentication                           1 Logon (Failure)
session.end           3002 Authentication                           2 Logoff
session.revoked       3002 Authentication                           2 Logoff (Access Revoked)
query/decision/       6005 Datastore Activity (database targets)    from action.class/operation
outcome/ingest        6003 API Activity (k8s, http, mcp targets)    Create/Read/Update/Delete
                      0 Base Event (no or other target)             99 Other
policy.reloaded       3004 Entity Management                        3 Update (the policy set)
retention.pruned      1008 Event Log Activity                       2 Delete
erasure               1008 Event Log Activity                       2 Delete (a subject's key)
checkpoint            1008 Event Log Activity                       99 Other ("Checkpoint")
====================  ============================================  ==========================

Events use the ``datetime`` and ``security_control`` profiles (``metadata.profiles``): the
RFC 3339 ``time_dt`` keeps the nanoseconds that ``time`` (epoch ms) drops, and decisions fill
``action_id``/``disposition_id``/``policy``/``risk_*``. What OCSF has no attribute for goes to
``unmapped`` under its Proctor field path. The tests validate every example event against
JSON Schemas generated from the OCSF 1.8.0 schema export.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Final

import msgspec

from proctor.errors import EventError
from proctor.events.canonical import decode_event
from proctor.events.schema import SCHEMA, Actor, Event
from proctor.exports._common import (
    PRODUCT,
    VENDOR,
    VERSION,
    db_target,
    http_target,
    level,
    parse_endpoint,
    summary,
    time_ms,
)

__all__ = ["OCSF_VERSION", "PROFILES", "OcsfFormatter", "to_ocsf"]

OCSF_VERSION: Final = "1.8.0"
PROFILES: Final = ("datetime", "security_control")

Obj = dict[str, Any]

_CLASSES: Final[dict[int, tuple[str, int, str]]] = {
    # class_uid: (class caption, category_uid, category caption)
    0: ("Base Event", 0, "Uncategorized"),
    1008: ("Event Log Activity", 1, "System Activity"),
    3002: ("Authentication", 3, "Identity & Access Management"),
    3004: ("Entity Management", 3, "Identity & Access Management"),
    6003: ("API Activity", 6, "Application Activity"),
    6005: ("Datastore Activity", 6, "Application Activity"),
}
# Activity captions per class, as the schema's activity_id enums spell them.
_ACTIVITIES: Final[dict[int, dict[int, str]]] = {
    0: {99: "Other"},
    1008: {2: "Delete", 99: "Other"},
    3002: {1: "Logon", 2: "Logoff"},
    3004: {3: "Update"},
    6003: {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
    6005: {
        1: "Read",
        2: "Update",
        3: "Connect",
        4: "Query",
        5: "Write",
        6: "Create",
        7: "Delete",
        99: "Other",
    },
}
OTHER: Final = 99
_SEVERITY: Final = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_RISK_LEVEL_ID: Final = {"low": 1, "medium": 2, "high": 3, "critical": 4}
_RISK_LEVEL: Final = {1: "Low", 2: "Medium", 3: "High", 4: "Critical"}
_USER_TYPE: Final = {"human": (1, "User"), "service": (4, "Service"), "agent": (99, "Agent")}
# OCSF auth_protocol_id (Authentication class); anything else is 99 with Proctor's own name.
_AUTH_PROTOCOL: Final = {
    "oidc": (4, "OpenID"),
    "saml": (5, "SAML"),
    "oauth2": (6, "OAUTH 2.0"),
    "jwt": (6, "OAUTH 2.0"),
    "ldap": (12, "LDAP"),
    "kerberos": (2, "Kerberos"),
    "ntlm": (1, "NTLM"),
    "radius": (10, "RADIUS"),
}
_RELATIONAL: Final = frozenset(
    {"postgres", "postgresql", "mysql", "mariadb", "sqlserver", "mssql", "oracle", "sqlite"}
    | {"cockroachdb", "clickhouse", "snowflake", "bigquery"}
)
# OCSF email_t is ASCII local@domain.tld; an address it would refuse stays in `unmapped`.
_EMAIL_RE: Final = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+@[A-Za-z0-9-]+\.[A-Za-z0-9.-]+")
_UNKNOWN_USER: Final[Obj] = {"uid": "unknown", "type_id": 0, "type": "Unknown"}


def to_ocsf(event: Event, *, index: int | None = None, log_name: str | None = None) -> Obj:
    """One OCSF event (a JSON-ready dict) for a Proctor event.

    ``index`` (the ledger index) becomes ``metadata.sequence``; ``log_name`` (e.g. the
    ledger's origin) names the log in ``metadata.log_name``.
    """
    class_uid, activity_id, activity_name = _classify(event)
    class_name, category_uid, category_name = _CLASSES[class_uid]
    lvl = level(event)
    out: Obj = {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "class_uid": class_uid,
        "class_name": class_name,
        # OCSF: type_uid = class_uid * 100 + activity_id; its caption is "Class: Activity".
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {_ACTIVITIES[class_uid].get(activity_id, 'Other')}",
        "severity_id": int(lvl),
        "severity": _SEVERITY[int(lvl)],
        "time": time_ms(event.time),
        "time_dt": event.time,
        "timezone_offset": 0,
        "message": summary(event),
        "metadata": _metadata(event, index, log_name),
    }
    _status(event, out)
    _security_control(event, out)
    _raw_data(event, out)
    builder = _BUILDERS[class_uid]
    builder(event, out)
    unmapped = _unmapped(event)
    if unmapped:
        out["unmapped"] = unmapped
    return out


class OcsfFormatter:
    """Export driver plug-in: one OCSF JSON object per line."""

    name: Final = "ocsf"

    def __init__(self, *, log_name: str | None = None) -> None:
        self._log_name = log_name
        self._encoder = msgspec.json.Encoder()

    def format(self, index: int, raw: bytes) -> bytes:
        """The OCSF JSON line for the ledger entry ``raw`` at ``index``."""
        event = decode_event(raw)
        return self._encoder.encode(to_ocsf(event, index=index, log_name=self._log_name)) + b"\n"


# -- classification -------------------------------------------------------------------------


def _classify(event: Event) -> tuple[int, int, str]:  # noqa: PLR0911 (the kind table)
    """(class_uid, activity_id, activity_name)."""
    kind = event.kind
    if kind in ("session.start", "auth.failed"):
        return 3002, 1, "Logon"
    if kind in ("session.end", "session.revoked"):
        return 3002, 2, "Logoff"
    if kind == "policy.reloaded":
        return 3004, 3, "Update"
    if kind in ("retention.pruned", "erasure"):
        return 1008, 2, "Delete"
    if kind == "checkpoint":
        return 1008, OTHER, "Checkpoint"
    # query, decision, outcome, ingest: by what was accessed.
    if db_target(event):
        return (6005, *_datastore_activity(event))
    if http_target(event):
        return (6003, *_api_activity(event))
    return 0, OTHER, kind


def _operation(event: Event) -> tuple[str, str]:
    """(action class, operation upper-cased); empty strings when absent."""
    if event.action is None:
        return "", ""
    return event.action.class_, (event.action.operation or "").upper()


def _datastore_activity(event: Event) -> tuple[int, str]:  # noqa: PLR0911 (a table)
    cls, op = _operation(event)
    verb = op.split(" ", 1)[0]
    if cls == "connect":
        return 3, "Connect"
    if cls == "read":
        # A SQL read returns a filtered subset: OCSF "Query" (Read is one known record).
        return 4, "Query"
    if cls == "write":
        if verb == "INSERT":
            return 6, "Create"
        if verb == "UPDATE":
            return 2, "Update"
        if verb in ("DELETE", "TRUNCATE"):
            return 7, "Delete"
        return 5, "Write"
    # DDL, admin, transaction control, utility: no OCSF activity; keep Proctor's name.
    return OTHER, op or cls or event.kind


def _api_activity(event: Event) -> tuple[int, str]:
    cls, op = _operation(event)
    verb = op.lower()
    if verb in ("create", "post", "insert"):
        return 1, "Create"
    if verb in ("get", "list", "watch", "head", "read") or (cls == "read" and not verb):
        return 2, "Read"
    if verb in ("update", "patch", "put"):
        return 3, "Update"
    if verb in ("delete", "deletecollection"):
        return 4, "Delete"
    if cls == "read":
        return 2, "Read"
    return OTHER, op.lower() or cls or event.kind


# -- shared parts ---------------------------------------------------------------------------


def _metadata(event: Event, index: int | None, log_name: str | None) -> Obj:
    meta: Obj = {
        "version": OCSF_VERSION,
        "product": {"name": PRODUCT, "vendor_name": VENDOR, "version": VERSION},
        "profiles": list(PROFILES),
        "uid": event.id,
        "original_time": event.time,
        "event_code": event.kind,
        "log_version": SCHEMA,
        "log_provider": event.source.system if event.source is not None else "proctor",
    }
    if log_name is not None:
        meta["log_name"] = log_name
    if index is not None:
        meta["sequence"] = index
    session_id = _session_id(event)
    if session_id is not None:
        meta["correlation_uid"] = session_id
    if event.flags:
        meta["labels"] = list(event.flags)
    if event.source is not None and event.source.gateway is not None:
        meta["reporter"] = {"name": event.source.gateway}
    if event.original is not None:
        meta["log_format"] = event.original.format
    received = event.attributes.get("proctor.received_at")
    if received is not None:
        # An attribute is free text: one that is no event time stays in unmapped.attributes.
        with contextlib.suppress(EventError):
            meta["logged_time"] = time_ms(received)
    return meta


def _session_id(event: Event) -> str | None:
    if event.session is not None:
        return event.session.id
    if event.links is not None:
        return event.links.session_id
    return None


def _status(event: Event, out: Obj) -> None:
    outcome = event.outcome
    if outcome is not None:
        if outcome.status == "ok":
            out["status_id"], out["status"] = 1, "Success"
        elif outcome.status == "error":
            out["status_id"], out["status"] = 2, "Failure"
        else:  # cancelled, revoked: OCSF has only Success/Failure/Other
            out["status_id"], out["status"] = OTHER, outcome.status.capitalize()
        if outcome.sqlstate is not None:
            out["status_code"] = outcome.sqlstate
        if outcome.message is not None:
            out["status_detail"] = outcome.message
        return
    decision = event.decision
    if decision is not None:
        if decision.effect == "allow":
            out["status_id"], out["status"] = 1, "Success"
        elif decision.effect == "deny":
            out["status_id"], out["status"] = 2, "Failure"
        else:
            out["status_id"], out["status"] = OTHER, "Step-up required"
        out["status_detail"] = "; ".join(decision.reasons)
        return
    # A query is not decided yet, an ingested record may not say: no status then.
    if event.kind not in ("query", "ingest"):
        out["status_id"], out["status"] = 1, "Success"


def _security_control(event: Event, out: Obj) -> None:
    """The security_control profile: what the control did and why."""
    decision = event.decision
    if decision is not None:
        if event.kind == "session.revoked":
            action, disposition = (2, "Denied"), (24, "Access Revoked")
        elif decision.effect == "allow":
            action, disposition = (1, "Allowed"), (1, "Allowed")
        elif decision.effect == "deny":
            action, disposition = (2, "Denied"), (2, "Blocked")
        else:  # step_up: held until the obligation (MFA) is met
            action, disposition = (2, "Denied"), (23, "Challenge")
        out["action_id"], out["action"] = action
        out["disposition_id"], out["disposition"] = disposition
        policies = [
            {"uid": p, "name": p, **_revision(decision.policy_revision)} for p in decision.policies
        ]
        if policies:
            out["policy"] = {**policies[0], "is_applied": True}
            out["authorizations"] = [{"decision": decision.effect, "policy": p} for p in policies]
        elif decision.effect == "deny" and event.kind != "ingest":
            out["policy"] = {
                "name": "default deny",
                "type": "default",
                "is_applied": True,
                **_revision(decision.policy_revision),
            }
    risk = event.risk
    if risk is not None:
        out["risk_score"] = risk.score
        out["risk_level_id"] = _RISK_LEVEL_ID[risk.level]
        out["risk_level"] = _RISK_LEVEL[out["risk_level_id"]]
        if risk.factors:
            out["risk_details"] = "; ".join(
                f"{f.signal} {f.points:+d}" + (f" ({f.evidence})" if f.evidence else "")
                for f in risk.factors
            )


def _revision(revision: str | None) -> Obj:
    return {"version": revision} if revision is not None else {}


def _raw_data(event: Event, out: Obj) -> None:
    """An ingested record's original and its digest (the hash the ledger leaf commits to)."""
    if event.source is not None and event.source.original_sha256 is not None:
        out["raw_data_hash"] = {
            "algorithm_id": 3,
            "algorithm": "SHA-256",
            "value": event.source.original_sha256,
        }
    if event.original is not None:
        out["raw_data"] = event.original.data
        out["raw_data_size"] = len(event.original.data)


def _ocsf_email(text: str) -> bool:
    return text.isascii() and _EMAIL_RE.fullmatch(text) is not None


def _user(actor: Actor | None) -> Obj:
    if actor is None:
        return dict(_UNKNOWN_USER)
    type_id, type_name = _USER_TYPE[actor.kind]
    user: Obj = {"uid": actor.id, "name": actor.id, "type_id": type_id, "type": type_name}
    if actor.display_name is not None:
        user["display_name"] = actor.display_name
    if actor.email is not None and _ocsf_email(actor.email):
        user["email_addr"] = actor.email
    groups = [{"name": g, "type": "group"} for g in actor.groups]
    groups += [{"name": r, "type": "role"} for r in actor.roles]
    if groups:
        user["groups"] = groups
    return user


def _actor(event: Event) -> Obj:
    actor: Obj = {"user": _user(event.actor)}
    if event.session is not None:
        session: Obj = {"uid": event.session.id}
        if event.session.started is not None:
            session["created_time"] = time_ms(event.session.started)
        if event.actor is not None and event.actor.mfa:
            session["is_mfa"] = True
        actor["session"] = session
        if event.session.client is not None:
            actor["app_name"] = event.session.client
    return actor


def _src_endpoint(event: Event, *, required: bool) -> Obj | None:
    actor = event.actor
    endpoint: Obj = {}
    if actor is not None and actor.ip is not None:
        endpoint["ip"] = actor.ip
        geo = actor.geo
        if geo is not None:
            location: Obj = {}
            if geo.country is not None:
                location["country"] = geo.country
            if geo.city is not None:
                location["city"] = geo.city
            if location and geo.lat_e6 is not None and geo.lon_e6 is not None:
                location["lat"] = geo.lat_e6 / 1e6
                location["long"] = geo.lon_e6 / 1e6
            if location:
                endpoint["location"] = location
            if geo.asn is not None:
                endpoint["autonomous_system"] = {"number": geo.asn}
    if not endpoint:
        # Datastore and API Activity require a source endpoint; say plainly it is unknown.
        return {"name": "unknown"} if required else None
    return endpoint


def _dst_endpoint(event: Event) -> Obj | None:
    """The endpoint the client reached: the gateway (or the source system that logged it)."""
    endpoint: Obj = {}
    address = parse_endpoint(event.source.address if event.source is not None else None)
    if address is not None:
        endpoint["ip"], endpoint["port"] = address.ip, address.port
    if event.target is not None:
        if event.target.name is not None:
            endpoint["name"] = event.target.name
        endpoint["svc_name"] = event.target.type
    return endpoint or None


def _set(out: Obj, key: str, value: Obj | None) -> None:
    if value is not None:
        out[key] = value


def _duration(event: Event, out: Obj) -> None:
    if event.outcome is not None and event.outcome.duration_us is not None:
        out["duration"] = event.outcome.duration_us // 1000  # OCSF duration: milliseconds


# -- class builders -------------------------------------------------------------------------


def _authentication(event: Event, out: Obj) -> None:
    out["user"] = _user(event.actor)
    out["actor"] = _actor(event)
    _set(out, "src_endpoint", _src_endpoint(event, required=False))
    dst = _dst_endpoint(event)
    target = event.target
    if target is not None:
        out["service"] = {"name": target.name or target.type}
    elif dst is None:  # the class needs a service or a destination endpoint
        dst = {"name": event.source.gateway if event.source and event.source.gateway else PRODUCT}
    _set(out, "dst_endpoint", dst)
    if event.session is not None:
        out["session"] = out["actor"]["session"]
    actor = event.actor
    if actor is not None:
        if event.kind in ("session.start", "auth.failed"):
            out["is_mfa"] = actor.mfa
        method = actor.auth_method
        if method is not None:
            proto_id, proto = _AUTH_PROTOCOL.get(method.lower(), (OTHER, method))
            out["auth_protocol_id"], out["auth_protocol"] = proto_id, proto
    out["logon_type_id"], out["logon_type"] = 3, "Network"
    out["is_remote"] = True
    if event.kind == "session.end" and event.session is not None:
        if event.session.started is not None:
            out["start_time"] = time_ms(event.session.started)
        out["end_time"] = out["time"]
    _duration(event, out)


def _datastore(event: Event, out: Obj) -> None:
    target = event.target
    assert target is not None  # db_target() chose this class
    out["actor"] = _actor(event)
    out["src_endpoint"] = _src_endpoint(event, required=True)
    _set(out, "dst_endpoint", _dst_endpoint(event))
    relational = target.type in _RELATIONAL
    out["database"] = {
        "name": target.database or target.name or target.type,
        "type_id": 1 if relational else 99,
        "type": "Relational" if relational else target.type,
    }
    if target.objects:
        out["table"] = {"name": target.objects[0]}
        out["type_id"], out["type"] = 3, "Table"
    else:
        out["type_id"], out["type"] = 1, "Database"
    action = event.action
    if action is not None and action.statement is not None:
        query: Obj = {"query_string": action.statement}
        if action.fingerprint is not None:
            query["uid"] = action.fingerprint
        query["name"] = action.operation or action.class_
        out["query_info"] = query
    _duration(event, out)


def _api(event: Event, out: Obj) -> None:
    target = event.target
    assert target is not None  # http_target() chose this class
    attrs = event.attributes
    out["actor"] = _actor(event)
    out["src_endpoint"] = _src_endpoint(event, required=True)
    _set(out, "dst_endpoint", _dst_endpoint(event))
    action = event.action
    operation = (action.operation or action.class_) if action is not None else event.kind
    api: Obj = {
        "operation": operation,
        "service": {"name": target.name or target.type},
        "request": {"uid": attrs.get("k8s.audit_id") or attrs.get("http.request_id") or event.id},
    }
    status = attrs.get("http.status")
    if status is not None and status.isdigit():
        api["response"] = {"code": int(status)}
    out["api"] = api
    resources = []
    for name in target.objects:
        resource: Obj = {"name": name, "type": target.type}
        if target.database is not None:
            resource["namespace"] = target.database
        resources.append(resource)
    if resources:
        out["resources"] = resources
    agent = attrs.get("k8s.user_agent") or attrs.get("http.user_agent")
    if agent is not None:
        out["http_request"] = {"user_agent": agent}
    _duration(event, out)


def _entity_management(event: Event, out: Obj) -> None:
    attrs = event.attributes
    entity: Obj = {"uid": "proctor/policies", "name": "policy set", "type": "Policy"}
    previous = attrs.get("policy.previous_revision")
    out["entity"] = {**entity, "version": previous} if previous else dict(entity)
    out["entity_result"] = {**entity, "version": attrs["policy.revision"]}
    if event.actor is not None:
        out["actor"] = _actor(event)
    _set(out, "src_endpoint", _src_endpoint(event, required=False))


def _event_log(event: Event, out: Obj) -> None:
    out["log_provider"] = PRODUCT
    out["log_name"] = out["metadata"].get("log_name", "proctor ledger")
    out["log_type_id"], out["log_type"] = 2, "Application"
    if event.actor is not None:
        out["actor"] = _actor(event)
    _set(out, "src_endpoint", _src_endpoint(event, required=False))


def _base(event: Event, out: Obj) -> None:
    """Base Event has no actor/endpoint attributes: those parts stay in ``unmapped``."""


_BUILDERS: Final = {
    0: _base,
    1008: _event_log,
    3002: _authentication,
    3004: _entity_management,
    6003: _api,
    6005: _datastore,
}


# -- unmapped -------------------------------------------------------------------------------


def _unmapped(event: Event) -> Obj:
    """Proctor fields no OCSF attribute above carries, under their Proctor field paths.

    Parts OCSF maps only in part and differently per class (target, action, risk, decision,
    source, links) are kept whole, so an OCSF consumer loses nothing of the record.
    """
    extra: Obj = {"clock": msgspec.to_builtins(event.clock)}
    actor = event.actor
    if actor is not None:
        part: Obj = {"kind": actor.kind}
        if actor.auth_method is not None:
            part["auth_method"] = actor.auth_method
        if actor.mfa_time is not None:
            part["mfa_time"] = actor.mfa_time
        if actor.device is not None:
            part["device"] = msgspec.to_builtins(actor.device)
        if actor.email is not None and not _ocsf_email(actor.email):
            part["email"] = actor.email
        if actor.geo is not None and actor.ip is None:
            part["geo"] = msgspec.to_builtins(actor.geo)
        extra["actor"] = part
    if event.session is not None and event.session.protocol is not None:
        extra["session"] = {"protocol": event.session.protocol}
    target = event.target
    if target is not None:
        extra["target"] = msgspec.to_builtins(target)
    if event.action is not None:
        extra["action"] = msgspec.to_builtins(event.action)
    if event.risk is not None:
        extra["risk"] = msgspec.to_builtins(event.risk)
    if event.decision is not None:
        extra["decision"] = msgspec.to_builtins(event.decision)
    if event.outcome is not None and event.outcome.rows is not None:
        extra["outcome"] = {"rows": event.outcome.rows}
        if event.outcome.duration_us is not None:
            extra["outcome"]["duration_us"] = event.outcome.duration_us
    elif event.outcome is not None and event.outcome.duration_us is not None:
        extra["outcome"] = {"duration_us": event.outcome.duration_us}
    if event.source is not None:
        extra["source"] = msgspec.to_builtins(event.source)
    if event.links is not None:
        extra["links"] = msgspec.to_builtins(event.links)
    if event.original is not None:
        extra["original"] = {"format": event.original.format, "encoding": event.original.encoding}
    if event.input is not None:
        extra["input"] = msgspec.to_builtins(event.input)
    if event.attributes:
        extra["attributes"] = dict(event.attributes)
    return extra
