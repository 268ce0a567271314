"""A real audit API: a ledger in tmp_path, a token store, uvicorn on a loopback port.

The server runs on its own event loop in a thread (as ``proctor serve`` runs it on the
gateway's loop); tests talk to it over a real socket with httpx.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from proctor.ledger.ledger import Ledger
from proctor.ledger.note import Signer
from proctor.service import ApiServer, ServiceState, TokenStore, create_app
from proctor.service.server import BackgroundLoop

EXAMPLES = Path(__file__).parents[2] / "examples" / "events.jsonl"


def example_events() -> list[dict[str, Any]]:
    """Every example event, as parsed JSON (fresh copies)."""
    return [json.loads(line) for line in EXAMPLES.read_bytes().splitlines()]


@dataclass
class Api:
    """A running API and what it serves."""

    url: str
    ledger: Ledger
    tokens: TokenStore
    state: ServiceState
    bearer: dict[str, str]
    """Role (and ``revoked``) → its Authorization header."""

    def client(self, role: str | None = None) -> httpx.Client:
        """An HTTP client that authenticates as ``role`` (None: anonymous)."""
        headers = {"Authorization": self.bearer[role]} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    signer = Signer.generate("audit.test.example/ledger")
    directory = tmp_path / "ledger"
    Ledger.init(directory, signer)
    ledger = Ledger(directory, signer=signer)
    tokens = TokenStore(directory / "tokens.sqlite")
    bearer = {}
    for role in ("admin", "auditor", "ingest"):
        bearer[role] = "Bearer " + tokens.create(f"test-{role}", role)[1]
    bearer["revoked"] = "Bearer " + tokens.create("test-revoked", "admin")[1]
    tokens.revoke("test-revoked")
    state = ServiceState(ledger=ledger, tokens=tokens, instance="audit-test", max_items=100)
    server = ApiServer(create_app(state), "127.0.0.1:0")
    loop = BackgroundLoop()
    host, port = loop.run(server.start())
    try:
        yield Api(f"http://{host}:{port}", ledger, tokens, state, bearer)
    finally:
        loop.run(server.close())
        loop.stop()
        state.close()
        tokens.close()
        ledger.close()
