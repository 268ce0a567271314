"""ecs.py: only ECS fields (and ``proctor.*``), only allowed categorization values.

The tables below are transcribed from the ECS 9.x reference (elastic.co/docs/reference/ecs:
"ECS categorization field: event.kind / event.category / event.type / event.outcome", and each
category's "Expected event types"); the field names from its field reference.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from proctor.exports.ecs import ECS_VERSION, to_ecs
from tests.exports.conftest import EXAMPLES, example, hostile

KINDS = {"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"}
CATEGORIES = {
    "api",
    "authentication",
    "configuration",
    "database",
    "driver",
    "file",
    "host",
    "iam",
    "intrusion_detection",
    "library",
    "malware",
    "network",
    "package",
    "process",
    "registry",
    "session",
    "threat",
    "vulnerability",
    "web",
}
TYPES = {
    "access",
    "admin",
    "allowed",
    "change",
    "connection",
    "creation",
    "deletion",
    "denied",
    "device",
    "end",
    "error",
    "group",
    "indicator",
    "info",
    "installation",
    "protocol",
    "start",
    "user",
}
OUTCOMES = {"failure", "success", "unknown"}
EXPECTED_TYPES = {
    "api": {"access", "admin", "allowed", "change", "creation", "deletion", "denied"}
    | {"end", "info", "start", "user"},
    "authentication": {"start", "end", "info"},
    "configuration": {"access", "change", "creation", "deletion", "info"},
    "database": {"access", "change", "info", "error"},
    "session": {"start", "end", "info"},
}
ECS_FIELDS = {
    "@timestamp",
    "message",
    "tags",
    "ecs.version",
    "event.kind",
    "event.category",
    "event.type",
    "event.action",
    "event.outcome",
    "event.id",
    "event.dataset",
    "event.module",
    "event.provider",
    "event.severity",
    "event.sequence",
    "event.reason",
    "event.risk_score",
    "event.risk_score_norm",
    "event.duration",
    "event.start",
    "event.created",
    "event.end",
    "event.original",
    "event.hash",
    "log.level",
    "observer.name",
    "observer.product",
    "observer.vendor",
    "observer.version",
    "rule.id",
    "rule.name",
    "rule.ruleset",
    "rule.version",
    "error.code",
    "error.message",
    "user.id",
    "user.name",
    "user.full_name",
    "user.email",
    "user.roles",
    "user.group.name",
    "source.ip",
    "source.address",
    "source.geo.country_iso_code",
    "source.geo.city_name",
    "source.geo.location",
    "source.as.number",
    "client.ip",
    "client.address",
    "client.user.id",
    "destination.ip",
    "destination.port",
    "destination.address",
    "orchestrator.type",
    "orchestrator.cluster.name",
    "orchestrator.namespace",
    "orchestrator.resource.name",
    "orchestrator.resource.type",
    "user_agent.original",
    "http.response.status_code",
    "related.user",
    "related.ip",
    "related.hash",
}
OPAQUE = {"labels", "proctor", "source.geo.location"}  # custom or a geo_point value


def leaves(doc: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in OPAQUE:
            paths += leaves(value, path + ".")
        else:
            paths.append(path)
    return paths


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_every_example_uses_ecs_fields_and_allowed_values(index: int) -> None:
    doc = to_ecs(EXAMPLES[index], index=index)
    for path in leaves(doc):
        assert path in ECS_FIELDS or path.split(".")[0] in OPAQUE, path
    ev = doc["event"]
    assert ev["kind"] in KINDS
    assert ev["outcome"] in OUTCOMES
    assert set(ev.get("category", [])) <= CATEGORIES
    assert set(ev.get("type", [])) <= TYPES
    for category in ev.get("category", []):
        assert set(ev["type"]) <= EXPECTED_TYPES[category], (category, ev["type"])
    assert doc["ecs"]["version"] == ECS_VERSION
    assert doc["@timestamp"] == EXAMPLES[index].time
    assert isinstance(ev["severity"], int) and 1 <= ev["severity"] <= 5
    assert all("." not in key for key in doc.get("labels", {}))  # label keys must not nest
    assert doc["proctor"]["index"] == index == ev["sequence"]


def test_every_kind_is_categorized() -> None:
    for event in EXAMPLES:
        assert to_ecs(event)["event"].get("category"), event.kind


def test_field_mapping_of_a_denied_connection() -> None:
    doc = to_ecs(example("decision", 4))
    ev = doc["event"]
    assert (ev["category"], ev["type"], ev["outcome"]) == (["database"], ["access"], "failure")
    assert ev["risk_score"] == 85 and ev["reason"].startswith("risk 85")
    assert doc["rule"] == {
        "id": ["deny-high-risk-login"],
        "name": ["deny-high-risk-login"],
        "ruleset": "proctor",
        "version": "c3f1a9e",
    }
    assert doc["user"] == {
        "id": "u-2210",
        "name": "u-2210",
        "full_name": "Carol Souza",
        "email": "carol.souza@corp.example",
        "roles": ["support"],
    }
    assert doc["source"]["geo"] == {
        "country_iso_code": "BR",
        "city_name": "São Paulo",
        "location": {"lat": -23.55052, "lon": -46.633308},
    }
    assert doc["destination"] == {"ip": "10.0.0.5", "port": 5432, "address": "10.0.0.5:5432"}
    assert doc["proctor"]["target"]["sensitivity"] == "confidential"
    assert doc["log"]["level"] == "error"


def test_session_end_and_failures() -> None:
    end = to_ecs(example("session.end"))
    assert end["event"]["start"] == "2026-11-23T09:40:11.004519876Z"
    assert end["event"]["duration"] == 5731005356 * 1000  # nanoseconds
    failed = to_ecs(example("auth.failed"))
    assert failed["event"]["outcome"] == "failure"
    assert failed["error"] == {
        "code": "28P01",
        "message": 'password authentication failed for user "postgres"',
    }


def test_received_time_of_an_ingested_record_is_event_created() -> None:
    assert to_ecs(example("ingest", 1))["event"]["created"] == "2026-11-23T11:21:10.000000000Z"
    assert "created" not in to_ecs(example("ingest", 0))["event"]


def test_kubernetes_ingest() -> None:
    doc = to_ecs(example("ingest"))
    assert doc["event"]["category"] == ["api"] and doc["event"]["provider"] == "k8s-audit"
    assert doc["orchestrator"]["resource"] == {"name": "payments-api", "type": "deployments"}
    assert doc["http"]["response"]["status_code"] == 200
    assert doc["labels"]["k8s_audit_id"] == "6f2b1a0e-93c4-4a57-8d0b-2e5c7f1a9b34"
    assert doc["event"]["hash"] == doc["related"]["hash"][0]


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_hostile_text_stays_inside_its_fields(index: int) -> None:
    text = msgspec.json.encode(to_ecs(hostile(EXAMPLES[index])))
    assert b"\n" not in text and b"\r" not in text
    for path in leaves(msgspec.json.decode(text)):
        assert path in ECS_FIELDS or path.split(".")[0] in OPAQUE, path
