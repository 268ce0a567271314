"""The audit API over a real socket: roles on every endpoint, ingest per item, reads recorded."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import httpx
import msgspec
import pytest

from proctor.events import decode_event
from proctor.ledger.ledger import DB_NAME
from proctor.ledger.receipt import Receipt, verify_receipt
from proctor.service.ingest_routes import SUBMITTED_BY
from tests.ingest.test_kubernetes import PATCH, event_list
from tests.ingest.test_pgaudit import SELECT
from tests.service.conftest import Api, example_events

# Every endpoint with a request that is valid once authorized.
ENDPOINTS = [
    ("POST", "/v1/events", "ingest"),
    ("GET", "/v1/entries/0", "auditor"),
    ("GET", "/v1/checkpoint", "auditor"),
    ("GET", "/v1/verify", "auditor"),
    ("GET", "/v1/export", "auditor"),
    ("GET", "/v1/sessions", "auditor"),
    ("POST", "/v1/sessions/revoke", "admin"),
    ("POST", "/v1/ingest/k8s", "ingest"),
    ("POST", "/v1/ingest/pgaudit", "ingest"),
    ("POST", "/v1/erasures", "admin"),
    ("GET", "/v1/holds", "auditor"),
    ("POST", "/v1/holds", "admin"),
    ("POST", "/v1/holds/ACME-1/release", "admin"),
    ("POST", "/v1/retention/run", "admin"),
    ("GET", "/v1/search?q=kind:query", "auditor"),
    ("GET", "/v1/search/counts", "auditor"),
]
# Answered 404 here once authorized: no gateway runs beside this API, nothing is sealed.
ABSENT = {
    "/v1/sessions",
    "/v1/sessions/revoke",
    "/v1/erasures",
    "/v1/holds",
    "/v1/holds/ACME-1/release",
    "/v1/retention/run",
}


def _one_event() -> dict[str, object]:
    return next(e for e in example_events() if e["kind"] == "decision")


def _call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/events"): {"json": _one_event()},
        ("POST", "/v1/sessions/revoke"): {"json": {"user": "alice"}},
        ("POST", "/v1/ingest/k8s"): {"content": event_list(PATCH)},
        ("POST", "/v1/ingest/pgaudit"): {"content": SELECT},
        ("POST", "/v1/erasures"): {"json": {"subject": "u-1042", "reason": "test"}},
        ("POST", "/v1/holds"): {
            "json": {"case_id": "C-1", "selector": "actor:u", "description": "d"}
        },
        ("POST", "/v1/holds/ACME-1/release"): {"json": {"reason": "done"}},
    }
    return client.request(method, path, **bodies.get((method, path), {}))


def test_the_role_matrix_covers_every_endpoint(api: Api) -> None:
    document = httpx.get(f"{api.url}/openapi.json").json()
    routes = {
        (method.upper(), path.replace("{index}", "0").replace("{case_id}", "ACME-1"))
        for path, methods in document["paths"].items()
        for method in methods
    }
    assert routes - {("GET", "/healthz")} == {(m, p.split("?")[0]) for m, p, _ in ENDPOINTS}


@pytest.mark.parametrize(("method", "path", "needs"), ENDPOINTS)
@pytest.mark.parametrize("who", [None, "revoked", "ingest", "auditor", "admin"])
def test_every_endpoint_admits_exactly_its_roles(
    api: Api, method: str, path: str, needs: str, who: str | None
) -> None:
    with api.client("ingest") as c:  # an entry at index 0 for the read endpoints
        assert c.post("/v1/events", json=_one_event()).status_code == 200
    with api.client(who) as client:
        response = _call(client, method, path)
    if who in (None, "revoked"):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {
            "error": "authentication required: send Authorization: Bearer <token>"
        }
    elif who in ("admin", needs):
        assert response.status_code == (404 if path in ABSENT else 200), response.text
    else:
        assert response.status_code == 403
        assert response.json() == {"error": f"this needs the {needs} role"}


def test_health_needs_no_token(api: Api) -> None:
    with api.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}


def test_malformed_authorization_headers_are_401(api: Api) -> None:
    token = api.bearer["admin"].split(" ", 1)[1]
    for header in (token, f"Basic {token}", "Bearer", "Bearer " + "x" * 20000):
        with httpx.Client(base_url=api.url, headers={"Authorization": header}) as c:
            assert c.get("/v1/checkpoint").status_code == 401


# --- ingest ---------------------------------------------------------------------------------


def test_a_batch_stores_the_valid_items_and_names_each_refused_one(api: Api) -> None:
    events = example_events()
    bad = dict(events[1], time="yesterday")
    reserved = next(e for e in events if e["kind"] == "checkpoint")
    body = [events[0], bad, events[2], reserved, "not an object"]
    with api.client("ingest") as c:
        response = c.post("/v1/events", json=body)
    assert response.status_code == 200
    result = response.json()
    assert [(a["item"], a["id"]) for a in result["accepted"]] == [
        (0, events[0]["id"]),
        (2, events[2]["id"]),
    ]
    errors = {r["item"]: r["error"] for r in result["rejected"]}
    assert errors.keys() == {1, 3, 4}
    assert errors[1].endswith("at `$.time`")
    assert "written only by the ledger itself" in errors[3]
    assert "Expected `object`" in errors[4]
    assert api.ledger.size() == 2
    stored = [decode_event(api.ledger.entry(a["index"])) for a in result["accepted"]]
    assert [e.id for e in stored] == [events[0]["id"], events[2]["id"]]
    assert all(e.attributes[SUBMITTED_BY] == "token:test-ingest" for e in stored)


def test_json_lines_report_line_numbers(api: Api) -> None:
    events = example_events()
    lines = [json.dumps(events[0]), "", "{broken", json.dumps(events[3])]
    with api.client("ingest") as c:
        response = c.post(
            "/v1/events",
            content="\n".join(lines) + "\n",
            headers={"Content-Type": "application/x-ndjson"},
        )
    result = response.json()
    assert [a["item"] for a in result["accepted"]] == [1, 4]
    assert [r["item"] for r in result["rejected"]] == [3]
    assert "invalid JSON" in result["rejected"][0]["error"]


def test_when_nothing_is_valid_nothing_is_stored(api: Api) -> None:
    forged = dict(_one_event(), attributes={SUBMITTED_BY: "token:someone-else"})
    with api.client("ingest") as c:
        response = c.post("/v1/events", json=[{"kind": "query"}, forged])
    assert response.status_code == 422
    assert response.json()["accepted"] == []
    assert "is set by the service" in response.json()["rejected"][1]["error"]
    assert api.ledger.size() == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status", "message"),
    [
        (b"[" + b"1," * 200 + b"1]", "application/json", 413, "at most 100 per request"),
        (b"x" * (33 << 20), "application/json", 413, "larger than the"),
        (b"<xml/>", "application/xml", 415, "not 'application/xml'"),
        (b"", "application/json", 422, "invalid JSON"),
        (b"[1,", "application/json", 422, "not a JSON array"),
        (b"\n\n", "application/x-ndjson", 422, "holds no events"),
    ],
)
def test_bad_bodies_are_refused_whole(
    api: Api, content: bytes, content_type: str, status: int, message: str
) -> None:
    with api.client("ingest") as c:
        response = c.post("/v1/events", content=content, headers={"Content-Type": content_type})
    assert response.status_code == status
    body = response.json()
    assert message in (body.get("error") or body["rejected"][0]["error"])
    assert api.ledger.size() == 0


def test_a_ledger_that_cannot_write_answers_503_and_acknowledges_nothing(api: Api) -> None:
    # A real storage failure: the database refuses every new entry.
    db = sqlite3.connect(api.ledger.directory / DB_NAME)
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON entries BEGIN SELECT RAISE(ABORT, 'disk'); END"
    )
    db.commit()
    db.close()
    with api.client("ingest") as c:
        response = c.post("/v1/events", json=[_one_event()])
    assert response.status_code == 503
    assert response.json() == {
        "error": "the ledger cannot take or serve this now; nothing was stored"
    }


# --- reads ----------------------------------------------------------------------------------


def test_an_entry_comes_with_a_receipt_that_verifies(api: Api) -> None:
    with api.client("ingest") as c:
        index = c.post("/v1/events", json=_one_event()).json()["accepted"][0]["index"]
    with api.client("auditor") as c:
        body = c.get(f"/v1/entries/{index}").json()
        missing = c.get("/v1/entries/999")
    assert body["index"] == index
    assert body["event"] == msgspec.json.decode(body["entry"])
    checkpoint = verify_receipt(
        Receipt.parse(body["receipt"]), body["entry"].encode(), [api.ledger.verifier]
    )
    assert checkpoint.size > index
    assert missing.status_code == 404
    assert "no entry at index 999" in missing.json()["error"]


def test_every_read_is_recorded_before_it_is_answered(api: Api) -> None:
    with api.client("auditor") as c:
        assert c.get("/v1/verify").json()["ok"] is True
    event = decode_event(api.ledger.entry(api.ledger.size() - 1))
    assert event.kind == "query"
    assert event.actor is not None and event.actor.id == "token:test-auditor"
    assert event.actor.roles == ("auditor",) and event.actor.ip == "127.0.0.1"
    assert event.target is not None and event.target.type == "proctor-api"
    assert event.action is not None and event.action.operation == "verify"


def test_the_checkpoint_is_a_signed_note_of_the_ledger(api: Api) -> None:
    with api.client("ingest") as c:
        c.post("/v1/events", json=[_one_event()] * 3)
    with api.client("auditor") as c:
        note = c.get("/v1/checkpoint")
    assert note.headers["content-type"].startswith("text/plain")
    lines = note.text.splitlines()
    assert lines[0] == api.ledger.origin
    assert lines[1] == "3"


def test_exports_stream_every_entry_in_the_chosen_format(api: Api) -> None:
    events = [e for e in example_events() if e["kind"] not in ("checkpoint", "erasure")]
    events = [e for e in events if e["kind"] != "retention.pruned"]
    with api.client("ingest") as c:
        assert c.post("/v1/events", json=events).status_code == 200
    size = api.ledger.size()
    with api.client("auditor") as c:
        jsonl = c.get("/v1/export", params={"to": size})
        ocsf = c.get("/v1/export", params={"format": "ocsf", "from": 2, "to": 5})
        cef = c.get("/v1/export", params={"format": "cef", "to": 3})
    assert jsonl.headers["content-type"] == "application/x-ndjson"
    assert jsonl.content.splitlines() == [data for _, data in api.ledger.entries(0, size)]
    records = [json.loads(line) for line in ocsf.content.splitlines()]
    assert [r["metadata"]["sequence"] for r in records] == [2, 3, 4]
    assert all(r["type_uid"] == r["class_uid"] * 100 + r["activity_id"] for r in records)
    assert [line[:6] for line in cef.text.splitlines()] == ["CEF:0|"] * 3
