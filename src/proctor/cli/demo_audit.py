"""The audit-service part of ``proctor demo``: other sources in, an auditor's questions out.

The API runs beside the demo's gateway on the same ledger, over a real loopback socket. A
Kubernetes API server's audit webhook and a PostgreSQL server's pgaudit log send their
records; an auditor exports one as OCSF and takes an evidence bundle that verifies with the
public key alone (and names a tampered event); then the analyst's personal data is erased
and her sealed fields become unreadable while every proof still holds.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from rich.table import Table

from proctor.cli._app import out, plain
from proctor.events import format_time, now_ns
from proctor.evidence import verify_bundle, write_bundle
from proctor.runtime import Runtime
from proctor.service import ApiServer, ServiceState, TokenStore, create_app
from proctor.service.server import BackgroundLoop

__all__ = ["AuditStory", "running_api"]

MASTER_KEY_NAME: Final = "master.key"

_K8S_ITEMS: Final = (
    b'{"level":"Metadata","auditID":"6f2b1a0e-93c4-4a57-8d0b-2e5c7f1a9b34",'
    b'"stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/shop/deployments/api",'
    b'"verb":"patch","user":{"username":"system:serviceaccount:ci:deployer",'
    b'"groups":["system:serviceaccounts","system:authenticated"]},"sourceIPs":["10.8.0.14"],'
    b'"userAgent":"kubectl/v1.31.2","objectRef":{"resource":"deployments","namespace":"shop",'
    b'"name":"api","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},'
    b'"code":200},"requestReceivedTimestamp":"{t}","stageTimestamp":"{t}",'
    b'"annotations":{"authorization.k8s.io/decision":"allow",'
    b'"authorization.k8s.io/reason":"RBAC: allowed by RoleBinding deployer/ci"}}',
    b'{"level":"Metadata","auditID":"0d7f0b8e-1c2d-4e3f-8a9b-0c1d2e3f4a5b",'
    b'"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/secrets/admin",'
    b'"verb":"get","user":{"username":"copilot-bot","groups":["ai-agents",'
    b'"system:authenticated"]},"sourceIPs":["192.0.2.10"],"userAgent":"agent/1.0",'
    b'"objectRef":{"resource":"secrets","namespace":"kube-system","name":"admin",'
    b'"apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure",'
    b'"reason":"Forbidden","code":403},"requestReceivedTimestamp":"{t}",'
    b'"stageTimestamp":"{t}","annotations":{"authorization.k8s.io/decision":"forbid",'
    b'"authorization.k8s.io/reason":""}}',
    b'{"level":"Metadata","auditID":"broken","stage":"ResponseComplete","verb":7}',
)
_PGAUDIT: Final = (
    b'{t},"etl","shop",24180,"192.0.2.44:53912",6630f1a2.5e74,7,"SELECT",{t},3/1204,0,LOG,'
    b'00000,"AUDIT: SESSION,12,1,READ,SELECT,TABLE,public.customers,""SELECT name FROM '
    b'customers WHERE email = \'ada@example.com\'"",<not logged>",,,,,,,,,"psql",'
    b'"client backend",,0\n'
    b'{t},"etl","shop",24180,"192.0.2.44:53912",6630f1a2.5e74,8,"idle",{t},3/1205,0,LOG,'
    b'00000,"disconnection: session time: 0:00:01.000",,,,,,,,,"psql","client backend",,0\n'
)


@dataclass
class AuditStory:
    """The running API, two tokens, and whether every step went as expected."""

    runtime: Runtime
    url: str
    tokens: dict[str, str]
    base: Path
    ok: bool = True

    def client(self, role: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=60
        )

    def expect(self, what: str, good: bool) -> None:
        out.print(f"  {'[green]✓[/]' if good else '[bold red]✗[/]'} {what}")
        self.ok &= good


@contextlib.contextmanager
def running_api(runtime: Runtime, base: Path) -> Iterator[AuditStory]:
    """The audit API on the runtime's ledger, with an ingest and an auditor token."""
    tokens = TokenStore(base / "tokens.sqlite")
    made = {role: tokens.create(f"demo-{role}", role)[1] for role in ("ingest", "auditor", "admin")}
    state = ServiceState(
        ledger=runtime.ledger, tokens=tokens, instance="proctor-demo", keys=runtime.keys
    )
    server = ApiServer(create_app(state), "127.0.0.1:0")
    loop = BackgroundLoop()
    try:
        host, port = loop.run(server.start())
        yield AuditStory(runtime, f"http://{host}:{port}", made, base)
    finally:
        loop.run(server.close())
        loop.stop()
        tokens.close()


def _now_text() -> bytes:
    return format_time(now_ns()).encode()


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*(plain(str(row.get(c, ""))) for c in columns))
    out.print(table)


def other_sources(story: AuditStory) -> list[int]:
    """A Kubernetes audit webhook batch and pgaudit log records into the ledger."""
    now = _now_text()
    body = (
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
        + b",".join(item.replace(b"{t}", now) for item in _K8S_ITEMS)
        + b"]}"
    )
    with story.client("ingest") as c:
        k8s = c.post("/v1/ingest/k8s", params={"cluster": "prod-eu"}, content=body).json()
        log_time = now[:23].replace(b"T", b" ") + b" UTC"
        pg = c.post(
            "/v1/ingest/pgaudit",
            params={"server": "shop-db"},
            content=_PGAUDIT.replace(b"{t}", log_time),
        ).json()
    out.print("POST /v1/ingest/k8s (the API server's audit webhook, 3 audit events):")
    _table(k8s["accepted"], ("item", "index", "id"))
    for r in k8s["rejected"]:
        out.print(f"  item {r['item']} refused, nothing of it stored: {plain(r['error'])}")
    story.expect(
        "2 audit events stored, the malformed one refused alone", len(k8s["accepted"]) == 2
    )
    out.print(
        f"POST /v1/ingest/pgaudit (csvlog): {len(pg['accepted'])} stored, "
        f"{pg['skipped']} non-audit line skipped"
    )
    indexes = [a["index"] for a in k8s["accepted"]] + [a["index"] for a in pg["accepted"]]
    with story.client("auditor") as c:
        events = [c.get(f"/v1/entries/{i}").json()["event"] for i in indexes]
    pg_event = events[-1]
    statement = pg_event.get("action", {}).get("statement", "")
    out.print(f"  pgaudit statement as recorded: [cyan]{plain(statement)}[/] (original kept whole)")
    story.expect(
        "the literal 'ada@example.com' is not in the recorded statement", "ada@" not in statement
    )
    return indexes


def auditor_questions(story: AuditStory, indexes: list[int]) -> None:
    """An OCSF export of the refused secret read, and an evidence bundle verified offline."""
    denied = indexes[1]
    with story.client("auditor") as c:
        ocsf = c.get("/v1/export", params={"format": "ocsf", "from": denied, "to": denied + 1})
    record = json.loads(ocsf.content.splitlines()[0])
    out.print(f"GET /v1/export?format=ocsf (entry {denied}, the agent's refused secret read):")
    shown = {
        k: record.get(k)
        for k in ("class_name", "class_uid", "type_uid", "activity_name", "status", "severity")
    }
    out.print(f"  {plain(json.dumps(shown))}")
    story.expect(
        "OCSF type_uid = class_uid × 100 + activity_id",
        record["type_uid"] == record["class_uid"] * 100 + record["activity_id"],
    )

    bundle = story.base / "evidence.zip"
    summary = write_bundle(
        story.runtime.ledger, sorted(indexes), bundle, query="demo: other sources"
    )
    out.print(f"proctor evidence: {summary.count} events, proofs and checkpoint in {bundle.name}")
    report = verify_bundle(bundle, key=story.runtime.ledger.verifier)
    story.expect(
        "proctor verify-bundle with the pinned public key: every event proven", bool(report)
    )
    tampered = story.base / "evidence-tampered.zip"
    _tamper(bundle, tampered, b'"effect":"deny"', b'"effect":"allow"')
    report = verify_bundle(tampered, key=story.runtime.ledger.verifier)
    for finding in report.findings[:3]:
        out.print(f"  tampered copy: [red]{plain(finding.kind)}[/] {plain(finding.detail)}")
    story.expect("the tampered copy is refused and the event named", not report)


def _tamper(src: Path, dst: Path, old: bytes, new: bytes) -> None:
    """Copy a bundle with one byte string replaced in its events (what an insider might try)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "events.jsonl":
                data = data.replace(old, new, 1)
            zout.writestr(info, data)


def sealed_entry(story: AuditStory, subject: str) -> int:
    """The index of ``subject``'s first sealed event (its session start, say)."""
    for index, data in story.runtime.ledger.entries():
        event = json.loads(data)
        if event.get("sealed", {}).get("subject") == subject:
            return index
    raise LookupError(subject)


def erasure(story: AuditStory, subject: str) -> None:
    """GDPR erasure of ``subject``: sealed fields readable before, unreadable after."""
    index = sealed_entry(story, subject)
    with story.client("auditor") as c:
        before = c.get(f"/v1/entries/{index}", params={"unseal": "true"}).json()
    email = before["event"].get("actor", {}).get("email") or before["event"].get("actor", {}).get(
        "ip"
    )
    out.print(
        f"entry {index} unsealed by an auditor (recorded): {plain(subject)} → {plain(str(email))}"
    )
    with story.client("admin") as c:
        done = c.post(
            "/v1/erasures", json={"subject": subject, "reason": "GDPR art. 17 request #88"}
        ).json()
        after = c.get(f"/v1/entries/{index}", params={"unseal": "true"}).json()
        record = c.get(f"/v1/entries/{done['index']}").json()["event"]
    out.print(
        f"POST /v1/erasures: {len(done['key_ids'])} key(s) destroyed, recorded at index "
        f"{done['index']} ({record['kind']}, by {record['actor']['id']})"
    )
    story.expect(
        f"entry {index} now reads 'erased'; its bytes and proofs are unchanged",
        after["personal"] == "erased" and after["entry"] == before["entry"],
    )
