"""ocsf.py: every event validates against the real OCSF 1.8.0 schema, and maps as documented.

Validation: ``ocsf-json-schema`` (PyPI) ships the OCSF schema exports (1.8.0 is the newest it
packages; the same compiled export schema.ocsf.io serves) and generates a JSON Schema 2020-12
per class and profile set: required attributes, types, enums, regex-checked scalars (ip_t,
email_t, datetime_t) and no unknown attributes. ``jsonschema-rs`` validates against it. What
JSON Schema cannot say (type_uid arithmetic, captions matching their ids) is checked against
the same schema export below.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from proctor.events import Event
from proctor.exports.ocsf import OCSF_VERSION, PROFILES, to_ocsf
from tests.exports.conftest import EXAMPLES, example, hostile

SCHEMA: dict[str, Any] = get_ocsf_schema(version=OCSF_VERSION)
GENERATOR = OcsfJsonSchemaEmbedded(SCHEMA)


@functools.cache
def validator(class_uid: int) -> Any:
    name = GENERATOR.lookup_class_name_from_uid(class_uid)
    return jsonschema_rs.validator_for(GENERATOR.get_class_schema(name, list(PROFILES)))


def errors(doc: dict[str, Any]) -> list[str]:
    return [
        f"{e.instance_path}: {e.message[:200]}"
        for e in validator(doc["class_uid"]).iter_errors(doc)
    ]


def class_def(class_uid: int) -> dict[str, Any]:
    return SCHEMA["classes"][GENERATOR.lookup_class_name_from_uid(class_uid)]  # type: ignore[no-any-return]


def caption(class_uid: int, attribute: str, value: int) -> str:
    enum = class_def(class_uid)["attributes"][attribute]["enum"]
    return enum[str(value)]["caption"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_every_example_validates_against_the_ocsf_schema(index: int) -> None:
    event = EXAMPLES[index]
    doc = to_ocsf(event, index=index, log_name="test.example/ledger")
    assert errors(doc) == []
    # A round trip through JSON changes nothing (what an exporter writes is what validated).
    assert errors(msgspec.json.decode(msgspec.json.encode(doc))) == []


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_ids_and_their_captions_agree_with_the_schema(index: int) -> None:
    doc = to_ocsf(EXAMPLES[index])
    cls = doc["class_uid"]
    definition = class_def(cls)
    assert doc["class_name"] == definition["caption"]
    assert doc["type_uid"] == cls * 100 + doc["activity_id"]
    assert doc["type_name"] == caption(cls, "type_uid", doc["type_uid"])
    assert doc["category_name"] == caption(cls, "category_uid", doc["category_uid"])
    assert doc["severity"] == caption(cls, "severity_id", doc["severity_id"])
    if doc["activity_id"] != 99:  # 99 Other carries the source's own name
        assert doc["activity_name"] == caption(cls, "activity_id", doc["activity_id"])
    for attr in ("status", "action", "disposition", "risk_level"):
        if f"{attr}_id" in doc and doc[f"{attr}_id"] != 99:
            assert doc[attr] == caption(cls, f"{attr}_id", doc[f"{attr}_id"])
    assert doc["metadata"]["version"] == OCSF_VERSION == SCHEMA["version"]
    assert set(doc["metadata"]["profiles"]) <= set(definition["profiles"])


EXPECTED_CLASS = {
    # kind (first example of it): (class_uid, activity_id)
    "session.start": (3002, 1),
    "auth.failed": (3002, 1),
    "session.end": (3002, 2),
    "session.revoked": (3002, 2),
    "query": (6005, 4),
    "decision": (6005, 3),  # the first decision is on a connect
    "outcome": (6005, 4),
    "policy.reloaded": (3004, 3),
    "retention.pruned": (1008, 2),
    "erasure": (1008, 2),
    "checkpoint": (1008, 99),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_CLASS))
def test_class_and_activity_per_kind(kind: str) -> None:
    doc = to_ocsf(example(kind))
    assert (doc["class_uid"], doc["activity_id"]) == EXPECTED_CLASS[kind]


def test_ingest_maps_by_target_kubernetes_to_api_activity_pgaudit_to_datastore() -> None:
    k8s, pgaudit = (to_ocsf(example("ingest", n)) for n in (0, 1))
    assert (k8s["class_uid"], k8s["activity_id"], k8s["activity_name"]) == (6003, 3, "Update")
    assert k8s["api"]["operation"] == "patch"
    assert k8s["api"]["request"]["uid"] == "6f2b1a0e-93c4-4a57-8d0b-2e5c7f1a9b34"
    assert k8s["api"]["response"]["code"] == 200
    assert k8s["resources"] == [
        {"name": "deployments/payments-api", "type": "k8s", "namespace": "payments"}
    ]
    assert k8s["http_request"]["user_agent"].startswith("kubectl/")
    assert k8s["raw_data_hash"]["algorithm_id"] == 3
    assert (pgaudit["class_uid"], pgaudit["activity_id"]) == (6005, 5)  # COPY: Write
    assert pgaudit["src_endpoint"] == {"name": "unknown"}  # required, and not recorded
    assert pgaudit["metadata"]["logged_time"] == 1795432870000  # proctor.received_at
    assert pgaudit["metadata"]["labels"] == ["time_skew"]


def test_authentication_fields() -> None:
    doc = to_ocsf(example("session.start"), index=1, log_name="origin/x")
    assert doc["user"]["uid"] == "u-1042"
    assert doc["user"]["email_addr"] == "alice.martin@corp.example"
    assert {"name": "analyst", "type": "role"} in doc["user"]["groups"]
    assert doc["src_endpoint"]["ip"] == "10.20.30.40"
    assert doc["src_endpoint"]["location"] == {
        "country": "DE",
        "city": "Berlin",
        "lat": 52.520008,
        "long": 13.404954,
    }
    assert doc["src_endpoint"]["autonomous_system"] == {"number": 3320}
    assert doc["dst_endpoint"] == {
        "ip": "10.0.0.5",
        "port": 5432,
        "name": "analytics-prod",
        "svc_name": "postgres",
    }
    assert doc["service"] == {"name": "analytics-prod"}
    assert (doc["auth_protocol_id"], doc["auth_protocol"]) == (4, "OpenID")
    assert doc["is_mfa"] is True
    assert (doc["status_id"], doc["status"]) == (1, "Success")
    assert doc["session"]["uid"] == "01a207ad-3f7a-7095-87c2-121d91e89b54"
    assert doc["time"] == 1795425124218  # epoch ms
    assert doc["time_dt"] == "2026-11-23T09:12:04.218734512Z"  # the nanoseconds kept
    meta = doc["metadata"]
    assert meta["uid"] == "01a207ad-3f7a-7738-a2af-dc842369d3ae"
    assert meta["original_time"] == "2026-11-23T09:12:04.218734512Z"
    assert meta["sequence"] == 1 and meta["log_name"] == "origin/x"
    assert meta["product"]["name"] == "Proctor" and meta["log_provider"] == "proctor"
    assert meta["correlation_uid"] == "01a207ad-3f7a-7095-87c2-121d91e89b54"
    assert doc["unmapped"]["clock"]["uncertainty_us"] == 850
    assert doc["unmapped"]["actor"]["device"]["id"] == "LT-4471"


def test_failed_authentication() -> None:
    doc = to_ocsf(example("auth.failed"))
    assert (doc["status_id"], doc["status"], doc["status_code"]) == (2, "Failure", "28P01")
    assert "password authentication failed" in doc["status_detail"]
    assert doc["severity_id"] >= 3
    assert doc["auth_protocol_id"] == 99 and doc["auth_protocol"] == "scram-sha-256"


def test_decisions_fill_the_security_control_profile() -> None:
    allow, step_up = example("decision", 1), example("decision", 2)
    deny = example("decision", 4)
    a, s, d = to_ocsf(allow), to_ocsf(step_up), to_ocsf(deny)
    assert (a["action_id"], a["disposition_id"]) == (1, 1)
    assert (s["action_id"], s["disposition_id"], s["disposition"]) == (2, 23, "Challenge")
    assert (d["action_id"], d["disposition_id"], d["status_id"]) == (2, 2, 2)
    assert d["policy"] == {
        "uid": "deny-high-risk-login",
        "name": "deny-high-risk-login",
        "version": "c3f1a9e",
        "is_applied": True,
    }
    assert (d["risk_score"], d["risk_level_id"], d["risk_level"]) == (85, 3, "High")
    assert d["severity_id"] == 4  # high risk
    assert "new_country +35" in d["risk_details"]
    assert a["query_info"]["query_string"].startswith("SELECT region")
    assert a["table"] == {"name": "sales.orders"} and a["database"]["name"] == "analytics"


def test_revocation_and_default_deny() -> None:
    doc = to_ocsf(example("session.revoked"))
    assert (doc["activity_id"], doc["disposition_id"], doc["disposition"]) == (
        2,
        24,
        "Access Revoked",
    )
    assert doc["policy"]["name"] == "default deny"  # no determining policy
    assert (doc["status_id"], doc["status"]) == (99, "Revoked")


def test_policy_reload_is_an_entity_update() -> None:
    doc = to_ocsf(example("policy.reloaded"))
    assert doc["entity"]["version"] == "8b20d47"
    assert doc["entity_result"]["version"] == "c3f1a9e"


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_hostile_text_still_validates(index: int) -> None:
    doc = to_ocsf(hostile(EXAMPLES[index]), index=index)
    assert errors(doc) == []
    text = msgspec.json.encode(doc)
    assert b"\n" not in text  # one JSON line per event, whatever the fields hold
    assert errors(msgspec.json.decode(text)) == []


def test_event_without_target_is_a_base_event() -> None:
    event: Event = msgspec.structs.replace(example("outcome"), target=None)
    doc = to_ocsf(event)
    assert (doc["class_uid"], doc["type_uid"], doc["activity_name"]) == (0, 99, "outcome")
    assert errors(doc) == []
