"""Fetching a key set from a real HTTP server on a loopback socket, and from a file."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from proctor.config import OidcConfig
from proctor.identity.jwks import JwksClient, fetch_jwks
from proctor.identity.oidc import KeysUnavailable, TokenError
from tests.identity.idp import AUDIENCE, ISSUER, Idp, ec_key


@pytest.fixture
def idp() -> Iterator[Idp]:
    server = Idp(ec_key("e1"))
    yield server
    server.close()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_fetch_over_http_and_from_a_file(idp: Idp, tmp_path: Path) -> None:
    assert list(fetch_jwks(idp.url, 5)) == ["e1"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(idp.document))
    assert list(fetch_jwks(str(path), 5)) == ["e1"]


@pytest.mark.parametrize(("status", "reason"), [(302, "302"), (500, "500")])
def test_redirects_and_errors_are_failures(idp: Idp, status: int, reason: str) -> None:
    idp.status = status
    with pytest.raises(OSError, match=reason):
        fetch_jwks(idp.url, 5)


def test_unreachable_provider() -> None:
    with pytest.raises(OSError):
        fetch_jwks(f"http://127.0.0.1:{closed_port()}/jwks.json", 5)


def _client(url: str) -> JwksClient:
    config = OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=url, jwks_refetch_s=60)
    return JwksClient(config, url)


def test_concurrent_logins_share_one_fetch(idp: Idp) -> None:
    client = _client(idp.url)

    async def main() -> list[object]:
        return await asyncio.gather(
            *(client.key("e1") for _ in range(5)),
            client.key("unknown"),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    client.close()
    assert all(r == idp.document["keys"][0] for r in results[:5])
    assert isinstance(results[5], TokenError) and not isinstance(results[5], KeysUnavailable)
    assert idp.fetched() == 1 and client.fetches == 1


def test_a_provider_that_is_down_fails_closed_and_is_not_asked_again_at_once() -> None:
    client = _client(f"http://127.0.0.1:{closed_port()}/jwks.json")

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(KeysUnavailable, match="cannot be fetched"):
                await client.key("e1")

    asyncio.run(main())
    client.close()
    assert client.fetches == 1
