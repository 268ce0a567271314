"""Kubernetes audit events (``audit.k8s.io/v1``) as ``proctor.access/v1`` ingest events.

The API server's webhook backend POSTs an ``EventList`` (``kind``, ``apiVersion``,
``metadata``, ``items``); a log-backend line is a single ``Event``. Either body goes to
:func:`normalize_k8s_audit`, which returns one result per audit event, in order. The body is
decoded once with its items as ``msgspec.Raw``, so each item's ``original`` is exactly the bytes
the API server sent for that item, and each item is then decoded on its own: a bad item is an
:class:`~proctor.ingest._common.IngestError` naming its index and field, the others still map.

Mapping (docs/ingest.md has the table): ``user`` is the actor (``impersonatedUser`` goes to
attributes), ``sourceIPs[0]`` its address, ``objectRef`` the target, ``verb`` the operation,
the ``authorization.k8s.io/decision``/``reason`` annotations the decision, ``responseStatus``
the outcome, ``requestReceivedTimestamp`` the event time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeVar

import msgspec

from proctor.errors import UsageError
from proctor.events import Action, Actor, Decision, Event, Outcome, Target, format_time
from proctor.events.context import ActionClass
from proctor.ingest._common import (
    MAX_NAME,
    MAX_OPERATION,
    Draft,
    IngestError,
    Received,
    Result,
    compressed_ip,
    name,
    names,
    rfc3339_ns,
)

__all__ = ["K8sOptions", "normalize_k8s_audit"]

API_VERSION: Final = "audit.k8s.io/v1"
_STAGES: Final = frozenset({"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"})
_DECISION: Final = "authorization.k8s.io/decision"
_REASON: Final = "authorization.k8s.io/reason"
_EFFECTS: Final[dict[str, Literal["allow", "deny"]]] = {"allow": "allow", "forbid": "deny"}

# Action classes by verb (resource verbs, and lowercase HTTP methods of non-resource requests).
_READ_VERBS: Final = frozenset({"get", "list", "watch", "head", "options"})
_WRITE_VERBS: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})
_WRITE_VERBS_HTTP: Final = frozenset({"post", "put"})
# Verbs that grant or assume privileges (RBAC escalate/bind, impersonation, CSR approval).
_ADMIN_VERBS: Final = frozenset({"impersonate", "escalate", "bind", "approve", "sign"})
# Subresources that run code in a pod, reach into it, or mint credentials.
_ADMIN_SUBRESOURCES: Final = frozenset(
    {"exec", "attach", "portforward", "proxy", "ephemeralcontainers", "token"}
)
# Writes to these API groups change who may do what (admin) or the API itself (ddl).
_ADMIN_GROUPS: Final = frozenset(
    {"rbac.authorization.k8s.io", "admissionregistration.k8s.io", "certificates.k8s.io"}
)
_DDL_GROUPS: Final = frozenset({"apiextensions.k8s.io"})
_SERVICE_GROUPS: Final = frozenset({"system:serviceaccounts", "system:nodes"})


@dataclass(frozen=True, kw_only=True)
class K8sOptions:
    """How audit events of one cluster are mapped."""

    cluster: str | None = None
    """The cluster's name (``target.name``): the webhook body does not carry it."""
    agent_users: frozenset[str] = frozenset()
    """User names recorded as actor kind ``agent`` (AI agents acting through the API)."""
    agent_groups: frozenset[str] = frozenset()
    """Members of these groups are recorded as kind ``agent``."""

    def __post_init__(self) -> None:
        if self.cluster is not None and len(self.cluster) > MAX_NAME:
            raise UsageError(f"cluster name is longer than {MAX_NAME} characters")


# The audit.k8s.io/v1 types, as far as they are mapped. Unknown fields (requestObject,
# responseObject, user.extra, objectRef.uid…) are ignored here and kept in the original.
class _UserInfo(msgspec.Struct, kw_only=True):
    username: str | None = None
    uid: str | None = None
    groups: list[str] | None = None


class _ObjectReference(msgspec.Struct, kw_only=True):
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    api_group: str | None = msgspec.field(default=None, name="apiGroup")
    api_version: str | None = msgspec.field(default=None, name="apiVersion")
    subresource: str | None = None


class _Status(msgspec.Struct, kw_only=True):
    status: str | None = None
    message: str | None = None
    reason: str | None = None
    code: int | None = None


class _AuditEvent(msgspec.Struct, kw_only=True):
    kind: str | None = None
    api_version: str | None = msgspec.field(default=None, name="apiVersion")
    level: str | None = None
    audit_id: str | None = msgspec.field(default=None, name="auditID")
    stage: str | None = None
    request_uri: str | None = msgspec.field(default=None, name="requestURI")
    verb: str | None = None
    user: _UserInfo | None = None
    impersonated_user: _UserInfo | None = msgspec.field(default=None, name="impersonatedUser")
    source_ips: list[str] | None = msgspec.field(default=None, name="sourceIPs")
    user_agent: str | None = msgspec.field(default=None, name="userAgent")
    object_ref: _ObjectReference | None = msgspec.field(default=None, name="objectRef")
    response_status: _Status | None = msgspec.field(default=None, name="responseStatus")
    request_received: str | None = msgspec.field(default=None, name="requestReceivedTimestamp")
    stage_timestamp: str | None = msgspec.field(default=None, name="stageTimestamp")
    annotations: dict[str, str] | None = None


class _Body(msgspec.Struct, kw_only=True):
    kind: str | None = None
    api_version: str | None = msgspec.field(default=None, name="apiVersion")
    items: list[msgspec.Raw] | None = None


_BODY_DECODER: Final = msgspec.json.Decoder(_Body)
_EVENT_DECODER: Final = msgspec.json.Decoder(_AuditEvent)


_T = TypeVar("_T")


def _decode(decoder: msgspec.json.Decoder[_T], data: bytes) -> _T:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:  # msgspec's messages name types, not values
        reason, _, path = str(exc).rpartition(" - at `")
        if not reason:
            reason, path = str(exc), "$"
        raise IngestError(reason, field=path.rstrip("`")) from None
    except msgspec.DecodeError:
        raise IngestError("not valid JSON", field="$") from None
    except UnicodeError:
        raise IngestError("not valid UTF-8", field="$") from None
    except RecursionError:  # msgspec stops at Python's recursion limit (~1000 levels)
        raise IngestError("JSON nested too deeply", field="$") from None


def normalize_k8s_audit(
    body: bytes, *, received: Received, options: K8sOptions | None = None
) -> list[Result]:
    """Map an ``EventList`` (or one ``Event``) body; one result per audit event, in order.

    A body that is not an ``audit.k8s.io/v1`` EventList or Event raises
    :class:`~proctor.ingest._common.IngestError` (answer the webhook with 400); a bad item is
    an ``IngestError`` in the list, located at its index.
    """
    head = _decode(_BODY_DECODER, body)
    if head.api_version != API_VERSION:
        raise IngestError(f"expected {API_VERSION}", field="$.apiVersion")
    if head.kind == "EventList":
        if head.items is None:
            raise IngestError("an EventList needs items", field="$.items")
        raws = [bytes(item) for item in head.items]
    elif head.kind == "Event":
        raws = [body]
    else:
        raise IngestError("expected kind EventList or Event", field="$.kind")
    options = options or K8sOptions()
    results: list[Result] = []
    for index, raw in enumerate(raws):
        try:
            results.append(_event(raw, received, options))
        except IngestError as exc:
            results.append(exc.at(index))
    return results


def _required(value: str | None, field: str) -> str:
    if not value:
        raise IngestError("required", field=field)
    return value


def _event(raw: bytes, received: Received, options: K8sOptions) -> Event:
    event = _decode(_EVENT_DECODER, raw)
    if event.api_version not in (None, API_VERSION):
        raise IngestError(f"expected {API_VERSION}", field="$.apiVersion")
    if event.kind not in (None, "Event"):
        raise IngestError("expected kind Event", field="$.kind")
    stage = _required(event.stage, "$.stage")
    if stage not in _STAGES:
        raise IngestError("unknown audit stage", field="$.stage")
    verb = name(_required(event.verb, "$.verb"), "$.verb", MAX_OPERATION)
    time_ns = rfc3339_ns(
        _required(event.request_received, "$.requestReceivedTimestamp"),
        "$.requestReceivedTimestamp",
    )
    stage_ns = None
    if event.stage_timestamp:
        stage_ns = rfc3339_ns(event.stage_timestamp, "$.stageTimestamp")

    draft = Draft(system="k8s-audit", fmt="k8s.audit", raw=raw, received=received)
    draft.attr("k8s.audit_id", _required(event.audit_id, "$.auditID"))
    draft.attr("k8s.stage", stage)
    draft.attr("k8s.level", event.level)
    draft.attr("k8s.request_uri", event.request_uri)
    draft.attr("k8s.user_agent", event.user_agent)
    if stage_ns is not None:
        draft.attr("k8s.stage_timestamp", format_time(stage_ns))
    ref = event.object_ref or _ObjectReference()
    draft.attr("k8s.api_group", ref.api_group)
    draft.attr("k8s.api_version", ref.api_version)
    return draft.build(
        time_ns=time_ns,
        actor=_actor(event, draft, options),
        target=_target(ref, options),
        action=Action(class_=_action_class(verb, ref), operation=verb),
        decision=_decision(event.annotations or {}, draft),
        outcome=_outcome(event, stage, time_ns, stage_ns, draft),
    )


def _actor(event: _AuditEvent, draft: Draft, options: K8sOptions) -> Actor:
    user = event.user or _UserInfo()
    username = name(_required(user.username, "$.user.username"), "$.user.username")
    groups = names(user.groups or [], "$.user.groups")
    draft.attr("k8s.user_uid", user.uid)
    if (imp := event.impersonated_user) is not None:
        # The authenticated user acted; whom they impersonated is recorded beside them.
        draft.attr("k8s.impersonated_user", imp.username)
        draft.attr("k8s.impersonated_groups", ",".join(imp.groups or []))
    ips = []
    for i, text in enumerate(event.source_ips or []):
        ip = compressed_ip(text)
        if ip is None:
            raise IngestError("not an IP address", field=f"$.sourceIPs[{i}]")
        ips.append(ip)
    if len(ips) > 1:  # the first is the client; proxies it came through follow
        draft.attr("k8s.source_ips", ",".join(ips))
    return Actor(
        id=username,
        kind=_actor_kind(username, groups, options),
        groups=groups,
        ip=ips[0] if ips else None,
    )


def _actor_kind(
    username: str, groups: tuple[str, ...], options: K8sOptions
) -> Literal["human", "agent", "service"]:
    """``agent`` as configured; ``service`` for service accounts, nodes and the control plane
    (``system:`` users other than ``system:anonymous``); everyone else ``human``."""
    if username in options.agent_users or not options.agent_groups.isdisjoint(groups):
        return "agent"
    if username.startswith("system:") and username != "system:anonymous":
        return "service"
    if not _SERVICE_GROUPS.isdisjoint(groups):
        return "service"
    return "human"


def _target(ref: _ObjectReference, options: K8sOptions) -> Target:
    objects: tuple[str, ...] = ()
    if ref.resource:
        path = "/".join(p for p in (ref.resource, ref.name, ref.subresource) if p)
        objects = (name(path, "$.objectRef"),)
    namespace = name(ref.namespace, "$.objectRef.namespace") if ref.namespace else None
    return Target(type="k8s", name=options.cluster, database=namespace, objects=objects)


def _action_class(verb: str, ref: _ObjectReference) -> ActionClass:
    """The class of a request; an unknown verb is ``admin``, the class policies guard most."""
    if verb in _ADMIN_VERBS or ref.subresource in _ADMIN_SUBRESOURCES:
        return "admin"
    if verb in _READ_VERBS:
        return "read"
    if verb in _WRITE_VERBS or verb in _WRITE_VERBS_HTTP:
        if ref.api_group in _ADMIN_GROUPS:
            return "admin"
        if ref.api_group in _DDL_GROUPS:
            return "ddl"
        return "write"
    return "admin"


def _decision(annotations: dict[str, str], draft: Draft) -> Decision | None:
    decided = annotations.get(_DECISION)
    if decided is None:
        return None
    effect = _EFFECTS.get(decided)
    if effect is None:
        raise IngestError("expected allow or forbid", field=f'$.annotations["{_DECISION}"]')
    reason = annotations.get(_REASON) or f"Kubernetes authorization: {decided}"
    return Decision(effect=effect, reasons=(draft.text("decision.reasons", reason),))


def _outcome(
    event: _AuditEvent, stage: str, time_ns: int, stage_ns: int | None, draft: Draft
) -> Outcome | None:
    status = event.response_status
    if status is None:
        return None  # RequestReceived: nothing has happened yet
    code = status.code
    draft.attr("http.status", code)
    draft.attr("k8s.status_reason", status.reason)
    if stage == "Panic" or status.status == "Failure" or (code is not None and code >= 400):
        result: Literal["ok", "error"] = "error"
    elif (code is not None and 100 <= code < 400) or status.status == "Success":
        result = "ok"
    else:
        return None  # a status without a code or a verdict says nothing about the result
    duration = None
    if stage in ("ResponseComplete", "Panic") and stage_ns is not None and stage_ns >= time_ns:
        duration = (stage_ns - time_ns) // 1000
    message = draft.text("outcome.message", status.message) if status.message else None
    return Outcome(status=result, duration_us=duration, message=message)
