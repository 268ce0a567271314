"""Kubernetes audit webhook bodies: every field mapped, each item's exact bytes kept, bad items
named by index and field while the others still map."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor.errors import ProctorError, UsageError
from proctor.events import Event, parse_time
from proctor.ingest import IngestError, K8sOptions, Received, normalize_k8s_audit

from .helpers import RECEIVED, checked

OPTIONS = K8sOptions(cluster="prod-eu-cluster", agent_groups=frozenset({"ai-agents"}))

# Three items as the API server's webhook backend sends them (compact Go JSON, items without
# kind/apiVersion): a patch by a service account allowed by RBAC, the RequestReceived stage of
# a human's exec into a pod, and a forbidden read of a secret.
PATCH = (
    b'{"level":"Metadata","auditID":"6f2b1a0e-93c4-4a57-8d0b-2e5c7f1a9b34",'
    b'"stage":"ResponseComplete",'
    b'"requestURI":"/apis/apps/v1/namespaces/payments/deployments/payments-api?fieldManager=kubectl",'
    b'"verb":"patch","user":{"username":"system:serviceaccount:ci:deployer",'
    b'"uid":"0a4b8c3e-5f1d-4c2e-9a7b-1d2e3f4a5b6c",'
    b'"groups":["system:serviceaccounts","system:serviceaccounts:ci","system:authenticated"],'
    b'"extra":{"authentication.kubernetes.io/credential-id":["JTI=1c3f"]}},'
    b'"sourceIPs":["10.8.0.14","10.8.0.2"],"userAgent":"kubectl/v1.31.2 (linux/amd64)",'
    b'"objectRef":{"resource":"deployments","namespace":"payments","name":"payments-api",'
    b'"apiGroup":"apps","apiVersion":"v1"},'
    b'"responseStatus":{"metadata":{},"code":200},'
    b'"requestReceivedTimestamp":"2026-11-23T11:19:58.412377Z",'
    b'"stageTimestamp":"2026-11-23T11:19:58.431254Z",'
    b'"annotations":{"authorization.k8s.io/decision":"allow",'
    b'"authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \\"deployer/ci\\" of ClusterRole'
    b' \\"edit\\" to ServiceAccount \\"deployer/ci\\""}}'
)
EXEC = (
    b'{"level":"Request","auditID":"a1d0c6e8-4f8c-4b39-9a0e-77c1a2b3c4d5",'
    b'"stage":"RequestReceived",'
    b'"requestURI":"/api/v1/namespaces/payments/pods/api-7d9f/exec?command=sh&stdin=true",'
    b'"verb":"create","user":{"username":"alice@example.com","groups":["sre","system:authenticated"]},'
    b'"impersonatedUser":{"username":"payments-admin","groups":["payments"]},'
    b'"sourceIPs":["2001:DB8::7"],"userAgent":"kubectl/v1.31.2",'
    b'"objectRef":{"resource":"pods","namespace":"payments","name":"api-7d9f",'
    b'"apiVersion":"v1","subresource":"exec"},'
    b'"requestReceivedTimestamp":"2026-11-23T12:19:58.000001+01:00",'
    b'"stageTimestamp":"2026-11-23T11:19:58.000001Z"}'
)
FORBIDDEN = (
    b'{"level":"Metadata","auditID":"0d7f0b8e-1c2d-4e3f-8a9b-0c1d2e3f4a5b",'
    b'"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/secrets/admin-token",'
    b'"verb":"get","user":{"username":"copilot-bot","groups":["ai-agents","system:authenticated"]},'
    b'"sourceIPs":["192.0.2.10"],"userAgent":"agent/1.0",'
    b'"objectRef":{"resource":"secrets","namespace":"kube-system","name":"admin-token",'
    b'"apiVersion":"v1"},'
    b'"responseStatus":{"metadata":{},"status":"Failure","message":"secrets \\"admin-token\\" is'
    b' forbidden: User \\"copilot-bot\\" cannot get resource \\"secrets\\"","reason":"Forbidden",'
    b'"details":{"name":"admin-token","kind":"secrets"},"code":403},'
    b'"requestReceivedTimestamp":"2026-11-23T11:20:00.100000Z",'
    b'"stageTimestamp":"2026-11-23T11:20:00.102500Z",'
    b'"annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}'
)


def event_list(*items: bytes) -> bytes:
    return (
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
        + b",".join(items)
        + b"]}"
    )


def normalize(body: bytes) -> list[Any]:
    return normalize_k8s_audit(body, received=RECEIVED, options=OPTIONS)


def test_webhook_batch_transcript() -> None:
    body = event_list(PATCH, EXEC, FORBIDDEN)
    patch, exec_, forbidden = normalize(body)

    patch = checked(patch, PATCH, "k8s-audit")
    assert patch.original is not None and patch.original.format == "k8s.audit"
    assert patch.time == "2026-11-23T11:19:58.412377000Z"
    assert patch.actor is not None
    assert patch.actor.id == "system:serviceaccount:ci:deployer"
    assert patch.actor.kind == "service"
    assert patch.actor.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:ci",
        "system:authenticated",
    )
    assert patch.actor.ip == "10.8.0.14"
    assert patch.target is not None
    assert (patch.target.type, patch.target.name, patch.target.database) == (
        "k8s",
        "prod-eu-cluster",
        "payments",
    )
    assert patch.target.objects == ("deployments/payments-api",)
    assert patch.action is not None
    assert (patch.action.class_, patch.action.operation) == ("write", "patch")
    assert patch.decision is not None and patch.decision.effect == "allow"
    assert patch.decision.reasons == (
        'RBAC: allowed by RoleBinding "deployer/ci" of ClusterRole "edit" to ServiceAccount '
        '"deployer/ci"',
    )
    assert patch.outcome is not None
    assert (patch.outcome.status, patch.outcome.duration_us) == ("ok", 18877)
    assert patch.attributes == {
        "k8s.audit_id": "6f2b1a0e-93c4-4a57-8d0b-2e5c7f1a9b34",
        "k8s.stage": "ResponseComplete",
        "k8s.level": "Metadata",
        "k8s.request_uri": "/apis/apps/v1/namespaces/payments/deployments/payments-api"
        "?fieldManager=kubectl",
        "k8s.user_agent": "kubectl/v1.31.2 (linux/amd64)",
        "k8s.stage_timestamp": "2026-11-23T11:19:58.431254000Z",
        "k8s.api_group": "apps",
        "k8s.api_version": "v1",
        "k8s.user_uid": "0a4b8c3e-5f1d-4c2e-9a7b-1d2e3f4a5b6c",
        "k8s.source_ips": "10.8.0.14,10.8.0.2",
        "http.status": "200",
        "proctor.received_at": "2026-11-23T11:21:10.000000000Z",
    }
    assert patch.flags == ()
    assert patch.clock.source == "system"
    # user.extra may name credentials: kept in the original only.
    assert "JTI" not in json.dumps(patch.attributes)

    exec_ = checked(exec_, EXEC, "k8s-audit")
    assert exec_.time == "2026-11-23T11:19:58.000001000Z"  # +01:00 converted to UTC
    assert exec_.actor is not None
    assert (exec_.actor.id, exec_.actor.kind, exec_.actor.ip) == (
        "alice@example.com",
        "human",
        "2001:db8::7",  # compressed lowercase
    )
    assert exec_.target is not None and exec_.target.objects == ("pods/api-7d9f/exec",)
    assert exec_.action is not None
    assert (exec_.action.class_, exec_.action.operation) == ("admin", "create")
    assert exec_.decision is None and exec_.outcome is None  # nothing decided or done yet
    assert exec_.attributes["k8s.impersonated_user"] == "payments-admin"
    assert exec_.attributes["k8s.impersonated_groups"] == "payments"
    assert "k8s.source_ips" not in exec_.attributes

    forbidden = checked(forbidden, FORBIDDEN, "k8s-audit")
    assert forbidden.actor is not None and forbidden.actor.kind == "agent"
    assert forbidden.action is not None and forbidden.action.class_ == "read"
    assert forbidden.decision is not None
    assert forbidden.decision.effect == "deny"
    assert forbidden.decision.reasons == ("Kubernetes authorization: forbid",)
    assert forbidden.outcome is not None
    assert forbidden.outcome.status == "error"
    assert forbidden.outcome.duration_us == 2500
    assert forbidden.outcome.message is not None
    assert forbidden.outcome.message.startswith('secrets "admin-token" is forbidden')
    assert forbidden.attributes["http.status"] == "403"
    assert forbidden.attributes["k8s.status_reason"] == "Forbidden"


def test_single_event_from_the_log_backend_keeps_the_whole_body() -> None:
    body = b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",' + PATCH[1:] + b"\n"
    (event,) = normalize(body)
    checked(event, body, "k8s-audit")


def test_item_bytes_are_exact_even_with_whitespace_and_unicode() -> None:
    item = PATCH.replace(b'"verb":"patch"', b'"verb" :  "patch"').replace(
        b"kubectl/v1.31.2 (linux/amd64)", "kubectl/v1.31.2 (Zürich ✓)".encode()
    )
    body = b'{ "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [ ' + item + b" ] }"
    (event,) = normalize(body)
    event = checked(event, item, "k8s-audit")
    assert event.attributes["k8s.user_agent"] == "kubectl/v1.31.2 (Zürich ✓)"


def test_empty_list() -> None:
    assert normalize(event_list()) == []


def _with(item: bytes, change: dict[str, Any]) -> bytes:
    obj = json.loads(item)
    for path, value in change.items():
        node = obj
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return json.dumps(obj).encode()


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"objectRef.resource": 7},
            "item 1: $.objectRef.resource: Expected `str | null`, got `int`",
        ),
        ({"user.username": _DELETE}, "item 1: $.user.username: required"),
        ({"user": _DELETE}, "item 1: $.user.username: required"),
        ({"auditID": ""}, "item 1: $.auditID: required"),
        ({"stage": "Done"}, "item 1: $.stage: unknown audit stage"),
        ({"verb": _DELETE}, "item 1: $.verb: required"),
        ({"verb": "x" * 65}, "item 1: $.verb: longer than 64 characters"),
        ({"sourceIPs": ["10.0.0.1", "10.0.0.300"]}, "item 1: $.sourceIPs[1]: not an IP address"),
        (
            {"requestReceivedTimestamp": "2026-11-23 11:19:58Z"},
            "item 1: $.requestReceivedTimestamp: expected an RFC 3339 date-time",
        ),
        (
            {"requestReceivedTimestamp": "2026-02-30T11:19:58Z"},
            "item 1: $.requestReceivedTimestamp: not a valid date and time "
            "(leap seconds are refused)",
        ),
        (
            {"stageTimestamp": "2026-12-31T23:59:60Z"},
            "item 1: $.stageTimestamp: not a valid date and time (leap seconds are refused)",
        ),
        (
            {"annotations": {"authorization.k8s.io/decision": "maybe"}},
            'item 1: $.annotations["authorization.k8s.io/decision"]: expected allow or forbid',
        ),
        ({"user.username": "u" * 257}, "item 1: $.user.username: longer than 256 characters"),
        ({"user.groups": ["g"] * 257}, "item 1: $.user.groups: more than 256 entries"),
        (
            {"user.groups": ["ok", "g" * 257]},
            "item 1: $.user.groups[1]: longer than 256 characters",
        ),
        ({"objectRef.name": "n" * 300}, "item 1: $.objectRef: longer than 256 characters"),
        ({"apiVersion": "audit.k8s.io/v1beta1"}, "item 1: $.apiVersion: expected audit.k8s.io/v1"),
        ({"kind": "Policy"}, "item 1: $.kind: expected kind Event"),
        ({"annotations": {"a": 1}}, "item 1: $.annotations[...]: Expected `str`, got `int`"),
    ],
)
def test_a_bad_item_is_named_and_spoils_nothing(change: dict[str, Any], message: str) -> None:
    body = event_list(PATCH, _with(FORBIDDEN, change), EXEC)
    first, bad, last = normalize(body)
    checked(first, PATCH, "k8s-audit")
    checked(last, EXEC, "k8s-audit")
    assert isinstance(bad, IngestError)
    assert str(bad) == message
    assert bad.item == 1


def test_errors_never_quote_the_record() -> None:
    secret = "hunter2-in-a-user-name"
    body = event_list(_with(PATCH, {"user.username": secret * 20, "verb": secret * 5}))
    (bad,) = normalize(body)
    assert isinstance(bad, IngestError)
    assert secret not in str(bad)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "$: not valid JSON"),
        (b'{"kind":"EventList",', "$: not valid JSON"),
        (b"[]", "$: Expected `object`, got `array`"),
        (b'{"kind":"EventList","items":[]}', "$.apiVersion: expected audit.k8s.io/v1"),
        (
            b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}',
            "$.apiVersion: expected audit.k8s.io/v1",
        ),
        (
            b'{"kind":"Status","apiVersion":"audit.k8s.io/v1"}',
            "$.kind: expected kind EventList or Event",
        ),
        (
            b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}',
            "$.items: an EventList needs items",
        ),
        (
            b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":{}}',
            "$.items: Expected `array | null`, got `object`",
        ),
    ],
)
def test_a_bad_body_raises(body: bytes, message: str) -> None:
    with pytest.raises(IngestError) as caught:
        normalize(body)
    assert str(caught.value) == message


def test_deep_nesting_is_an_input_error() -> None:
    body = event_list(b'{"requestObject":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(IngestError) as caught:
        normalize(body)
    assert str(caught.value) == "$: JSON nested too deeply"


@pytest.mark.parametrize(
    ("verb", "ref", "expected"),
    [
        ("get", {"resource": "pods"}, "read"),
        ("list", {"resource": "secrets"}, "read"),
        ("watch", {"resource": "configmaps"}, "read"),
        ("get", {"resource": "pods", "subresource": "log"}, "read"),
        ("create", {"resource": "pods"}, "write"),
        ("update", {"resource": "deployments", "apiGroup": "apps"}, "write"),
        ("delete", {"resource": "namespaces"}, "write"),
        ("deletecollection", {"resource": "pods"}, "write"),
        ("create", {"resource": "pods", "subresource": "eviction"}, "write"),
        ("get", {"resource": "pods", "subresource": "exec"}, "admin"),
        ("create", {"resource": "pods", "subresource": "portforward"}, "admin"),
        ("create", {"resource": "serviceaccounts", "subresource": "token"}, "admin"),
        ("create", {"resource": "rolebindings", "apiGroup": "rbac.authorization.k8s.io"}, "admin"),
        ("get", {"resource": "clusterroles", "apiGroup": "rbac.authorization.k8s.io"}, "read"),
        ("escalate", {"resource": "roles", "apiGroup": "rbac.authorization.k8s.io"}, "admin"),
        ("impersonate", {"resource": "users"}, "admin"),
        (
            "update",
            {"resource": "certificatesigningrequests", "apiGroup": "certificates.k8s.io"},
            "admin",
        ),
        (
            "create",
            {"resource": "customresourcedefinitions", "apiGroup": "apiextensions.k8s.io"},
            "ddl",
        ),
        ("post", None, "write"),
        ("get", None, "read"),
        ("frobnicate", {"resource": "pods"}, "admin"),
    ],
)
def test_action_class(verb: str, ref: dict[str, str] | None, expected: str) -> None:
    change: dict[str, Any] = {"verb": verb, "objectRef": ref if ref else _DELETE}
    (event,) = normalize(event_list(_with(PATCH, change)))
    assert isinstance(event, Event) and event.action is not None
    assert event.action.class_ == expected
    if ref is None:
        assert event.target is not None and event.target.objects == ()


@pytest.mark.parametrize(
    ("username", "groups", "kind"),
    [
        ("system:serviceaccount:ci:deployer", [], "service"),
        ("system:node:worker-3", ["system:nodes"], "service"),
        ("system:kube-scheduler", [], "service"),
        ("system:anonymous", ["system:unauthenticated"], "human"),
        ("bob", ["system:serviceaccounts"], "service"),
        ("bob", ["dev"], "human"),
        ("bob", ["ai-agents"], "agent"),
        ("system:serviceaccount:ai:copilot", ["ai-agents"], "agent"),
    ],
)
def test_actor_kind(username: str, groups: list[str], kind: str) -> None:
    change = {"user": {"username": username, "groups": groups}}
    (event,) = normalize(event_list(_with(PATCH, change)))
    assert isinstance(event, Event) and event.actor is not None
    assert event.actor.kind == kind


def test_agent_users_option() -> None:
    options = K8sOptions(agent_users=frozenset({"copilot"}))
    item = _with(PATCH, {"user": {"username": "copilot"}})
    (event,) = normalize_k8s_audit(event_list(item), received=RECEIVED, options=options)
    assert isinstance(event, Event) and event.actor is not None
    assert event.actor.kind == "agent"
    assert event.target is not None and event.target.name is None  # no cluster configured


@pytest.mark.parametrize(
    ("status", "stage", "expected"),
    [
        ({"code": 201}, "ResponseComplete", "ok"),
        ({"code": 304}, "ResponseComplete", "ok"),
        ({"code": 404, "status": "Failure"}, "ResponseComplete", "error"),
        ({"code": 500}, "Panic", "error"),
        ({"status": "Success"}, "ResponseComplete", "ok"),
        ({"status": "Failure"}, "ResponseComplete", "error"),
        ({"metadata": {}}, "ResponseComplete", None),
        ({"code": 200}, "Panic", "error"),
    ],
)
def test_outcome(status: dict[str, Any], stage: str, expected: str | None) -> None:
    (event,) = normalize(event_list(_with(PATCH, {"responseStatus": status, "stage": stage})))
    assert isinstance(event, Event)
    assert (event.outcome.status if event.outcome else None) == expected


def test_watch_in_progress_has_no_duration() -> None:
    item = _with(PATCH, {"stage": "ResponseStarted", "verb": "watch"})
    (event,) = normalize(event_list(item))
    assert isinstance(event, Event) and event.outcome is not None
    assert event.outcome.duration_us is None


def test_free_text_is_cut_flagged_and_named() -> None:
    item = _with(
        FORBIDDEN,
        {
            "responseStatus.message": "m" * 5000,
            "userAgent": "a" * 4097,
            "annotations": {
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": "r" * 9000,
            },
        },
    )
    (event,) = normalize(event_list(item))
    event = checked(event, item, "k8s-audit")
    assert event.flags == ("truncated",)
    assert event.outcome is not None and event.outcome.message == "m" * 4096
    assert event.decision is not None and event.decision.reasons == ("r" * 4096,)
    assert event.attributes["k8s.user_agent"] == "a" * 4096
    assert event.attributes["proctor.truncated"] == (
        "attributes.k8s.user_agent,decision.reasons,outcome.message"
    )


def test_time_skew_and_receive_context() -> None:
    received = Received(at_ns=parse_time("2026-11-23T11:18:00.000000000Z"))
    (event,) = normalize_k8s_audit(event_list(PATCH), received=received, options=OPTIONS)
    assert isinstance(event, Event)
    assert event.flags == ("time_skew",)  # 118 s ahead of receipt: beyond the 60 s default
    assert event.source is not None
    assert (event.source.gateway, event.source.address) == (None, None)
    tolerant = Received(at_ns=received.at_ns, future_skew_ns=120 * 10**9)
    (event,) = normalize_k8s_audit(event_list(PATCH), received=tolerant, options=OPTIONS)
    assert isinstance(event, Event) and event.flags == ()


def test_received_and_options_are_checked_as_usage_errors() -> None:
    with pytest.raises(UsageError, match="receive context"):
        Received(at_ns=0, address="10.0.0.1")  # no port
    with pytest.raises(UsageError, match="receive context"):
        Received(at_ns=0, gateway="g" * 300)
    with pytest.raises(UsageError, match="receive context"):
        Received(at_ns=10**21)  # beyond year 9999
    with pytest.raises(UsageError, match="future_skew_ns"):
        Received(at_ns=0, future_skew_ns=-1)
    with pytest.raises(UsageError, match="cluster name"):
        K8sOptions(cluster="c" * 257)


def test_an_item_too_large_for_the_original_is_refused() -> None:
    huge = _with(PATCH, {"requestObject": {"data": "x" * (1 << 20)}})
    first, bad = normalize(event_list(huge, PATCH))
    assert isinstance(first, IngestError)
    assert str(first).startswith("item 0: $: larger than an event's original can hold")
    checked(bad, PATCH, "k8s-audit")


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_proctor_errors(data: bytes) -> None:
    try:
        results = normalize(data)
    except ProctorError:
        return
    assert all(isinstance(r, Event | IngestError) for r in results)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "auditID": st.text(max_size=10) | _json,
        "stage": st.sampled_from(["RequestReceived", "ResponseComplete", "Panic", "x"]) | _json,
        "verb": st.text(max_size=10) | _json,
        "user": st.fixed_dictionaries(
            {}, optional={"username": st.text(max_size=10) | _json, "groups": _json}
        )
        | _json,
        "sourceIPs": st.lists(st.sampled_from(["10.0.0.1", "::1", "x"])) | _json,
        "objectRef": st.dictionaries(
            st.sampled_from(["resource", "namespace", "name", "apiGroup", "subresource"]),
            st.text(max_size=10) | _json,
        )
        | _json,
        "responseStatus": st.dictionaries(
            st.sampled_from(["code", "status", "message", "reason"]), _json
        )
        | _json,
        "requestReceivedTimestamp": st.sampled_from(
            ["2026-11-23T11:19:58.412377Z", "2026-11-23T11:19:58+14:00", "nope"]
        )
        | _json,
        "annotations": st.dictionaries(
            st.sampled_from(["authorization.k8s.io/decision", "authorization.k8s.io/reason"]),
            st.sampled_from(["allow", "forbid", "?"]) | _json,
        )
        | _json,
    },
)


@settings(max_examples=150)
@given(st.lists(_fields, max_size=4))
def test_random_items_map_or_are_named(items: list[dict[str, Any]]) -> None:
    raws = [json.dumps(item).encode() for item in items]
    results = normalize(event_list(*raws))
    assert len(results) == len(items)
    for index, (raw, result) in enumerate(zip(raws, results, strict=True)):
        if isinstance(result, IngestError):
            assert result.item == index
            assert str(result).startswith(f"item {index}: $")
        else:
            checked(result, raw, "k8s-audit")
