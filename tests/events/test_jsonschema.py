"""jsonschema.py: docs/event-schema.json is exactly what the code generates."""

from __future__ import annotations

import json
from pathlib import Path

from proctor.events import EVENT_KINDS, Event
from proctor.events.jsonschema import SCHEMA_ID, event_json_schema, main, render_json_schema
from proctor.events.schema import REQUIRED_ATTRIBUTES, REQUIRED_FIELDS

DOC = Path(__file__).parents[2] / "docs" / "event-schema.json"
REGENERATE = ".venv/bin/python -m proctor.events.jsonschema"


def test_committed_schema_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == render_json_schema(), (
        f"{DOC} is stale: the event structs changed. Regenerate it with `{REGENERATE}` "
        "and commit the result."
    )


def test_schema_header_and_root() -> None:
    schema = event_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert "proctor.access/v1" in schema["title"]
    assert schema["$ref"] == "#/$defs/Event"


def test_event_properties_use_json_names() -> None:
    defs = event_json_schema()["$defs"]
    event = defs["Event"]
    assert set(event["properties"]) == {"schema", *Event.__struct_fields__}
    assert event["properties"]["schema"] == {"enum": ["proctor.access/v1"]}
    assert sorted(event["properties"]["kind"]["enum"]) == sorted(EVENT_KINDS)
    assert event["additionalProperties"] is False
    assert "class" in defs["Action"]["properties"]
    assert "class_" not in defs["Action"]["properties"]


def test_kind_rules_become_if_then_clauses() -> None:
    rules = event_json_schema()["$defs"]["Event"]["allOf"]
    by_kind = {rule["if"]["properties"]["kind"]["const"]: rule["then"] for rule in rules}
    assert set(by_kind) == set(REQUIRED_FIELDS) | set(REQUIRED_ATTRIBUTES)
    ingest = by_kind["ingest"]
    assert ingest["required"] == ["source"]
    assert ingest["properties"]["source"]["required"] == ["original_sha256"]
    erasure = by_kind["erasure"]["properties"]["attributes"]
    assert erasure["required"] == ["erasure.key_id"]


def test_main_writes_the_rendered_text(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert main([str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text == render_json_schema()
    assert text.endswith("}\n")
    assert json.loads(text) == json.loads(json.dumps(event_json_schema()))
