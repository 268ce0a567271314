"""Search over the API: the index caught up before each question, pages, counts, errors."""

from __future__ import annotations

import json

from tests.service.conftest import Api, example_events


def _ingest_examples(api: Api) -> int:
    events = [e for e in example_events() if e["kind"] not in ("checkpoint", "erasure")]
    events = [e for e in events if e["kind"] != "retention.pruned"]
    with api.client("ingest") as c:
        assert c.post("/v1/events", json=events).status_code == 200
    return len(events)


def test_search_sees_what_was_just_ingested_and_pages_by_index(api: Api) -> None:
    _ingest_examples(api)
    with api.client("auditor") as c:
        first = c.get("/v1/search", params={"q": "kind:decision", "limit": 2}).json()
        rest = c.get(
            "/v1/search", params={"q": "kind:decision", "limit": 50, "after": first["next_after"]}
        ).json()
        denied = c.get("/v1/search", params={"q": "decision:deny"}).json()
    found = [h["index"] for h in first["items"] + rest["items"]]
    assert found == sorted(found, reverse=True) and len(found) == len(set(found))
    assert all(h["event"]["kind"] == "decision" for h in first["items"] + rest["items"])
    assert denied["items"] and all(
        h["event"]["decision"]["effect"] == "deny" for h in denied["items"]
    )


def test_counts_and_query_errors(api: Api) -> None:
    n = _ingest_examples(api)
    with api.client("auditor") as c:
        counts = c.get("/v1/search/counts", params={"q": "since:3650d", "by": "kind"}).json()
        bad = c.get("/v1/search", params={"q": "actr:alice"})
    # the count request was itself recorded (a read of audit data) before it was answered
    assert sum(row["count"] for row in counts) == n + 1
    assert bad.status_code == 422 and "actr" in bad.json()["error"]


def test_searches_are_recorded_and_need_the_auditor_role(api: Api) -> None:
    with api.client("ingest") as c:
        assert c.get("/v1/search", params={"q": "kind:query"}).status_code == 403
    with api.client("auditor") as c:
        assert c.get("/v1/search", params={"q": "kind:query"}).status_code == 200
    last = api.ledger.entry(api.ledger.size() - 1)
    assert b'"operation":"search"' in last and b'"statement":"kind:query"' in last


def test_export_takes_a_search(api: Api) -> None:
    _ingest_examples(api)
    with api.client("auditor") as c:
        ocsf = c.get("/v1/export", params={"format": "ocsf", "q": "decision:deny"})
        bad = c.get("/v1/export", params={"q": "risk>>1"})
    records = [json.loads(line) for line in ocsf.content.splitlines()]
    assert records and all(r["metadata"]["sequence"] >= 0 for r in records)
    with api.client("auditor") as c:
        hits = c.get("/v1/search", params={"q": "decision:deny", "order": "asc"}).json()
    assert [r["metadata"]["sequence"] for r in records] == [h["index"] for h in hits["items"]]
    assert bad.status_code == 422
