"""Other sources through the API: the Kubernetes audit webhook and pgaudit log records."""

from __future__ import annotations

from proctor.events import decode_event, original_bytes
from tests.ingest.test_kubernetes import EXEC, FORBIDDEN, PATCH, event_list
from tests.ingest.test_pgaudit import CONNECT, PASSWORD, SELECT
from tests.service.conftest import Api


def test_the_k8s_webhook_stores_each_audit_event_with_its_original(api: Api) -> None:
    broken = PATCH.replace(b'"verb":"patch"', b'"verb":7')
    body = event_list(PATCH, broken, FORBIDDEN, EXEC)
    with api.client("ingest") as c:
        answer = c.post(
            "/v1/ingest/k8s",
            params={"cluster": "prod-eu"},
            content=body,
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code == 200
    result = answer.json()
    assert [a["item"] for a in result["accepted"]] == [0, 2, 3]
    assert [r["item"] for r in result["rejected"]] == [1]
    assert "verb" in result["rejected"][0]["error"]
    stored = [decode_event(api.ledger.entry(a["index"])) for a in result["accepted"]]
    assert [e.source.system for e in stored if e.source] == ["k8s-audit"] * 3
    assert stored[1].decision is not None and stored[1].decision.effect == "deny"
    assert stored[0].target is not None and stored[0].target.name == "prod-eu"
    assert [original_bytes(e.original) for e in stored if e.original] == [PATCH, FORBIDDEN, EXEC]
    assert all(e.attributes["proctor.submitted_by"] == "token:test-ingest" for e in stored)
    assert stored[0].source is not None and stored[0].source.address.startswith("127.0.0.1:")


def test_a_body_that_is_no_event_list_is_refused_whole(api: Api) -> None:
    with api.client("ingest") as c:
        answer = c.post("/v1/ingest/k8s", content=b'{"kind":"Pod"}')
    assert answer.status_code == 422
    assert api.ledger.size() == 0


def test_pgaudit_csvlog_records_are_stored_redacted_and_other_lines_skipped(api: Api) -> None:
    with api.client("ingest") as c:
        answer = c.post(
            "/v1/ingest/pgaudit",
            params={"server": "shop-db"},
            content=SELECT + CONNECT + PASSWORD,
            headers={"Content-Type": "text/plain"},
        )
    result = answer.json()
    assert answer.status_code == 200, result
    assert (len(result["accepted"]), result["skipped"], result["rejected"]) == (2, 1, [])
    select, password = (decode_event(api.ledger.entry(a["index"])) for a in result["accepted"])
    assert select.action is not None and "bob@example.com" not in (select.action.statement or "")
    assert password.action is not None and password.action.statement == "ALTER ROLE bob PASSWORD $1"
    assert select.target is not None and select.target.name == "shop-db"


def test_stderr_logs_need_their_prefix(api: Api) -> None:
    line = (
        b"2026-11-23 11:20:40.123 UTC [24180] alice@shop LOG:  AUDIT: SESSION,1,1,READ,SELECT,"
        b",,SELECT 1,<not logged>\n"
    )
    with api.client("ingest") as c:
        missing = c.post("/v1/ingest/pgaudit", params={"format": "stderr"}, content=line)
        bad = c.post(
            "/v1/ingest/pgaudit", params={"format": "stderr", "prefix": "%Z"}, content=line
        )
        good = c.post(
            "/v1/ingest/pgaudit",
            params={"format": "stderr", "prefix": "%m [%p] %q%u@%d "},
            content=line,
        )
    assert missing.status_code == 422 and "needs the server's log_line_prefix" in missing.text
    assert bad.status_code == 400
    assert good.status_code == 200, good.text
    assert len(good.json()["accepted"]) == 1
