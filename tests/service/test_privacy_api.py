"""GDPR erasure through the API: sealed at rest, unsealed on request, erased for good."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proctor.privacy import DEFAULT_FIELDS, KeyStore, Sealer
from tests.service.conftest import Api, example_events


@pytest.fixture
def sealing_api(api: Api) -> Iterator[Api]:
    keys = KeyStore(api.ledger.directory / "keys.sqlite", bytes(32))
    api.ledger.sealer = Sealer(keys.key_for, DEFAULT_FIELDS)
    api.state.keys = keys
    yield api
    keys.close()


def _alice_session(api: Api) -> int:
    event = next(e for e in example_events() if e["kind"] == "session.start")
    assert event["actor"]["email"] == "alice.martin@corp.example"
    with api.client("ingest") as c:
        index: int = c.post("/v1/events", json=event).json()["accepted"][0]["index"]
    return index


def test_personal_fields_are_sealed_at_rest_and_unsealed_on_request(sealing_api: Api) -> None:
    index = _alice_session(sealing_api)
    with sealing_api.client("auditor") as c:
        stored = c.get(f"/v1/entries/{index}").json()
        opened = c.get(f"/v1/entries/{index}", params={"unseal": "true"}).json()
    assert "alice.martin@corp.example" not in stored["entry"]
    assert stored["personal"] == "sealed" and "email" not in stored["event"]["actor"]
    assert stored["event"]["sealed"]["subject"] == "u-1042"
    assert opened["personal"] == "unsealed"
    assert opened["event"]["actor"]["email"] == "alice.martin@corp.example"
    assert opened["event"]["actor"]["ip"] == "10.20.30.40"


def test_an_erasure_is_recorded_and_leaves_a_verifying_ledger(sealing_api: Api) -> None:
    index = _alice_session(sealing_api)
    with sealing_api.client("auditor") as c:
        refused = c.post("/v1/erasures", json={"subject": "u-1042", "reason": "art. 17"})
    assert refused.status_code == 403
    with sealing_api.client("admin") as c:
        done = c.post("/v1/erasures", json={"subject": "u-1042", "reason": "art. 17 #88"}).json()
        again = c.post("/v1/erasures", json={"subject": "u-1042", "reason": "twice"})
        erased = c.get(f"/v1/entries/{index}", params={"unseal": "true"}).json()
        record = c.get(f"/v1/entries/{done['index']}").json()["event"]
        report = c.get("/v1/verify").json()
    assert done["subject"] == "u-1042" and len(done["key_ids"]) == 1
    assert again.status_code == 400 and "no keys held" in again.json()["error"]
    assert erased["personal"] == "erased" and "email" not in erased["event"]["actor"]
    assert record["kind"] == "erasure"
    assert record["actor"]["id"] == "token:test-admin"
    assert record["attributes"]["erasure.key_id"] == done["key_ids"][0]
    assert record["decision"]["reasons"] == ["art. 17 #88"]
    assert report["ok"] is True


def test_erasure_without_sealing_is_404(api: Api) -> None:
    with api.client("admin") as c:
        answer = c.post("/v1/erasures", json={"subject": "u-1", "reason": "r"})
    assert answer.status_code == 404
    assert "not sealed here" in answer.json()["error"]
