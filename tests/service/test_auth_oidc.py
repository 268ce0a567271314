"""OIDC JWTs on the API: checked against the provider's JWKS, roles mapped to API roles."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from proctor.config import OidcConfig
from proctor.events import decode_event
from proctor.identity.jwks import JwksClient
from proctor.service.auth import OidcRoles
from tests.identity.idp import AUDIENCE, ISSUER, Idp, claims, ec_key, rsa_key
from tests.service.conftest import Api

KEY = ec_key("api-1")


@pytest.fixture
def idp() -> Iterator[Idp]:
    provider = Idp(KEY)
    yield provider
    provider.close()


@pytest.fixture
def oidc_api(api: Api, idp: Idp) -> Iterator[Api]:
    config = OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=idp.url, roles_claim="roles")
    keys = JwksClient(config, idp.url)
    api.state.oidc = OidcRoles(config, keys, {"auditor": ("audit-team",), "admin": ("root",)})
    yield api
    keys.close()


def _get(api: Api, token: str, path: str = "/v1/checkpoint") -> httpx.Response:
    return httpx.get(f"{api.url}{path}", headers={"Authorization": f"Bearer {token}"})


def test_a_provider_role_grants_its_api_role(oidc_api: Api) -> None:
    token = KEY.sign(claims("dana", roles=["audit-team"]))
    assert _get(oidc_api, token).status_code == 200
    refused = httpx.post(
        f"{oidc_api.url}/v1/events", json={}, headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 403
    assert refused.json() == {"error": "this needs the ingest role"}


def test_a_valid_token_granting_no_role_is_forbidden(oidc_api: Api) -> None:
    answer = _get(oidc_api, KEY.sign(claims("eve", roles=["sales"])))
    assert answer.status_code == 403
    assert answer.json() == {"error": "eve holds no role that grants access to this API"}


@pytest.mark.parametrize(
    "token",
    [
        KEY.sign(claims("dana", roles=["root"], lifetime=-120)),  # expired
        KEY.sign(claims("dana", roles=["root"], aud="someone-else")),
        rsa_key("other").sign(claims("dana", roles=["root"]), kid="api-1"),  # not its key
        KEY.sign(claims("dana", roles=["root"]), kid="unknown"),
        "not.a.jwt",
    ],
)
def test_bad_tokens_are_401(oidc_api: Api, token: str) -> None:
    assert _get(oidc_api, token).status_code == 401


def test_reads_by_a_person_are_recorded_under_their_name(oidc_api: Api) -> None:
    token = KEY.sign(claims("dana", roles=["root"]))
    assert _get(oidc_api, token, "/v1/verify").json()["ok"] is True
    event = decode_event(oidc_api.ledger.entry(oidc_api.ledger.size() - 1))
    assert event.actor is not None
    assert (event.actor.id, event.actor.kind, event.actor.auth_method) == (
        "oidc:dana",
        "human",
        "jwt",
    )
