"""Retention while the service runs: holds placed and released, runs on demand, verify."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proctor.events import canonical_bytes
from proctor.retention.config import RetentionConfig, RetentionRule
from proctor.retention.service import Retention
from tests.retention.conftest import event
from tests.service.conftest import Api


@pytest.fixture
def retaining_api(api: Api, tmp_path: Path) -> Iterator[Api]:
    config = RetentionConfig(
        rules=(RetentionRule(name="queries-30d", kinds=("query",), keep_days=30),), interval_s=0
    )
    retention = Retention(api.ledger, config, tmp_path / "archive", None)
    api.state.retention = retention
    yield api
    retention.close()


def _old_queries(api: Api, n: int, actor: str = "u-1") -> None:
    events = [event("query", age_days=90, actor=actor) for _ in range(n)]
    with api.client("ingest") as c:
        body = b"\n".join(canonical_bytes(e) for e in events)
        answer = c.post(
            "/v1/events", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
    assert len(answer.json()["accepted"]) == n


def test_a_hold_stops_pruning_until_released_and_the_ledger_verifies(retaining_api: Api) -> None:
    api = retaining_api
    _old_queries(api, 5, actor="u-1")
    _old_queries(api, 5, actor="u-2")
    with api.client("admin") as c:
        held = c.post(
            "/v1/holds",
            json={"case_id": "ACME-42", "selector": "actor:u-2", "description": "litigation"},
        )
        assert held.status_code == 200, held.text
        dry = c.post("/v1/retention/run").json()
        assert dry["dry_run"] is True and api.ledger.floor() == 0
        assert c.post("/v1/retention/run").json()["dry_run"] is True  # no endpoint prunes
        ran = api.state.retention.run().to_dict()  # what the schedule does
        assert ran["floor_after"] == 5  # the first held entry stops the floor
        assert "ACME-42" in str(ran["stop"])
        listed = c.get("/v1/holds").json()
        assert [h["case_id"] for h in listed] == ["ACME-42"]
        released = c.post("/v1/holds/ACME-42/release", json={"reason": "settled"})
        assert released.json()["released"] is not None
        again = api.state.retention.run().to_dict()
        assert again["floor_after"] >= 10
        report = c.get("/v1/verify").json()
        pruned = c.get("/v1/entries/0")
    assert report["ok"] is True and report["pruned"] >= 10, report
    assert pruned.status_code == 410 and "pruned" in pruned.json()["error"]


def test_without_retention_the_endpoints_are_404(api: Api) -> None:
    with api.client("admin") as c:
        assert c.get("/v1/holds").status_code == 404
        assert c.post("/v1/retention/run").status_code == 404


def test_a_hold_given_as_a_search_query_blocks_what_it_matches(retaining_api: Api) -> None:
    api = retaining_api
    _old_queries(api, 4, actor="u-1")
    _old_queries(api, 3, actor="u-7")
    _old_queries(api, 4, actor="u-1")
    with api.client("admin") as c:
        bad = c.post(
            "/v1/holds", json={"case_id": "X-1", "selector": "actr:u-7", "description": "typo"}
        )
        held = c.post(
            "/v1/holds",
            json={
                "case_id": "ACME-77",
                "selector": "actor:u-7 kind:query since:3650d",
                "description": "regulator request",
            },
        )
    ran = api.state.retention.run().to_dict()
    assert bad.status_code == 422 and "actr" in bad.json()["error"]
    assert held.status_code == 200, held.text
    assert ran["floor_after"] == 4  # u-7's first query is at index 4
    assert "ACME-77" in str(ran["stop"])
