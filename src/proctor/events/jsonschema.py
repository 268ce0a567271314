"""Export the event schema as JSON Schema (draft 2020-12) for validators in other languages.

``python -m proctor.events.jsonschema [PATH]`` rewrites docs/event-schema.json (or PATH).
The body comes from ``msgspec.json.schema(Event)``; the kind-specific rules of
:mod:`proctor.events.schema` are added as ``if``/``then`` clauses. Checks that JSON Schema cannot
state (real calendar dates, IP syntax, UUID bits, no trailing newline) stay in the decoder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from proctor.events.schema import EVENT_KINDS, REQUIRED_ATTRIBUTES, REQUIRED_FIELDS, SCHEMA, Event

__all__ = [
    "SCHEMA_ID",
    "event_json_schema",
    "event_schema_components",
    "main",
    "render_json_schema",
]

SCHEMA_ID: Final = "urn:proctor:schema:proctor.access:v1"
DEFAULT_OUTPUT: Final = Path(__file__).resolve().parents[3] / "docs" / "event-schema.json"


_NOT_NULL: Final = ["array", "boolean", "integer", "number", "object", "string"]


def _require(node: dict[str, Any], path: Sequence[str]) -> None:
    """Add to ``node`` that the dotted ``path`` is present and not null."""
    head, rest = path[0], path[1:]
    required: list[str] = node.setdefault("required", [])
    if head not in required:
        required.append(head)
    properties: dict[str, Any] = node.setdefault("properties", {})
    if rest:
        child = properties.setdefault(head, {"type": "object"})
        _require(child, rest)
    else:
        # "any type but null", spelled as the types it may be: generators that build values
        # from a schema (schemathesis, hypothesis-jsonschema) model this, not a bare `not`.
        properties.setdefault(head, {"type": _NOT_NULL})


def _kind_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for kind in EVENT_KINDS:
        then: dict[str, Any] = {}
        for dotted in REQUIRED_FIELDS.get(kind, ()):
            _require(then, dotted.split("."))
        if keys := REQUIRED_ATTRIBUTES.get(kind, ()):
            then.setdefault("required", []).append("attributes")
            then.setdefault("properties", {})["attributes"] = {
                "required": list(keys),
                "properties": {key: {"minLength": 1} for key in keys},
            }
        if then:
            rules.append({"if": {"properties": {"kind": {"const": kind}}}, "then": then})
    return rules


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of one ``proctor.access/v1`` event."""
    body = msgspec.json.schema(Event)
    body["$defs"]["Event"]["allOf"] = _kind_rules()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"Proctor access event ({SCHEMA})",
        **body,
    }


def event_schema_components(ref_template: str, *, kind_rules: bool = True) -> dict[str, Any]:
    """The event's definitions for embedding (e.g. in an OpenAPI document's components),
    with references spelled by ``ref_template`` (``"#/components/schemas/{name}"``).

    Without ``kind_rules`` the per-kind ``if``/``then`` clauses are left out (schemathesis
    cannot generate values for twelve of them at once); the decoder enforces them anyway.
    """
    _, components = msgspec.json.schema_components([Event], ref_template=ref_template)
    if kind_rules:
        components["Event"]["allOf"] = _kind_rules()
    return components


def render_json_schema() -> str:
    """The exact text of docs/event-schema.json: sorted keys, 2-space indent, final newline."""
    return json.dumps(event_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the schema file; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m proctor.events.jsonschema")
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    output: Path = args.output
    output.write_text(render_json_schema(), encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
