"""Token checks and the key cache's rules, without sockets."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from proctor.config import OidcConfig
from proctor.identity.oidc import (
    KeySet,
    KeysUnavailable,
    TokenError,
    check_token,
    parse_jwks,
    read_header,
)
from tests.identity.idp import (
    AUDIENCE,
    ISSUER,
    claims,
    ec_key,
    ed_key,
    hmac_signed,
    rsa_key,
    unsigned,
)

CONFIG = OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://127.0.0.1:1/")


def login(token: str, jwk: dict[str, Any], user: str = "dana", config: OidcConfig = CONFIG) -> Any:
    _, alg = read_header(token, config)
    return check_token(token, alg, jwk, user, config)


@pytest.mark.parametrize(
    "make", [lambda: rsa_key("r1"), lambda: ec_key("e1"), lambda: ed_key("d1")]
)
def test_each_default_algorithm_logs_in_with_roles_and_groups(make: Any) -> None:
    key = make()
    token = key.sign(claims("dana", roles=["analyst", "analyst"], groups="contractors"))
    done = login(token, key.jwk)
    p = done.principal
    assert (p.id, p.roles, p.groups, p.auth_method) == (
        "dana",
        ("analyst",),
        ("contractors",),
        "jwt",
    )
    assert p.token_issuer == ISSUER and not p.mfa
    assert done.expires == json.loads(_payload(token))["exp"] + CONFIG.leeway_s


def _payload(token: str) -> bytes:
    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_leeway_accepts_a_token_just_expired_and_refuses_later() -> None:
    key = ec_key("e1")
    now = int(time.time())
    assert login(key.sign(claims("dana", exp=now - 10)), key.jwk).expires == now + 20
    with pytest.raises(TokenError, match="the token expired"):
        login(key.sign(claims("dana", exp=now - 60)), key.jwk)
    with pytest.raises(TokenError, match="not valid yet"):
        login(key.sign(claims("dana", nbf=now + 60)), key.jwk)
    with pytest.raises(TokenError, match="not valid yet"):
        login(key.sign(claims("dana", iat=now + 60)), key.jwk)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"iss": "https://evil.example"}, "not issued by the configured issuer"),
        ({"aud": "someone-else"}, r"not meant for this gateway \(aud\)"),
        ({"exp": None}, "has no exp claim"),
        ({"preferred_username": None}, "has no preferred_username claim"),
        ({"preferred_username": "mallory"}, "preferred_username claim is not the user name"),
        ({"roles": {"admin": True}}, "roles claim is not a list of names"),
        ({"groups": ["", "x"]}, "groups claim is not a list of names"),
    ],
)
def test_claims_that_refuse(change: dict[str, Any], reason: str) -> None:
    key = ec_key("e1")
    body = {k: v for k, v in {**claims("dana"), **change}.items() if v is not None}
    token = key.sign(body)
    with pytest.raises(TokenError, match=reason) as info:
        login(token, key.jwk)
    assert token not in str(info.value) and info.value.sqlstate == "28P01"


def test_an_audience_list_may_name_the_gateway_among_others() -> None:
    key = ec_key("e1")
    assert login(key.sign(claims("dana", aud=["other", AUDIENCE])), key.jwk).principal.id == "dana"


def test_claim_paths_and_mfa() -> None:
    config = OidcConfig(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url="http://127.0.0.1:1/",
        user_claim="email",
        roles_claim="realm_access.roles",
    )
    key = ec_key("e1")
    body = claims(
        "dana@example.com",
        email="dana@example.com",
        realm_access={"roles": ["dba"]},
        amr=["pwd", "mfa"],
        auth_time=1_700_000_000,
    )
    p = login(key.sign(body), key.jwk, "dana@example.com", config).principal
    assert p.roles == ("dba",) and p.mfa and p.mfa_time == "2023-11-14T22:13:20.000000000Z"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (unsigned(claims("dana"), "r1"), "algorithm 'none' is not accepted"),
        (hmac_signed(claims("dana"), rsa_key("r1").public_pem, "r1"), "'HS256' is not accepted"),
        ("not-a-token", "not a well-formed signed token"),
        ("x" * 20000, "longer than 16384 bytes"),
        (rsa_key("r1").sign(claims("dana"), kid=None), r"names no signing key \(kid\)"),
        (rsa_key("r1").sign(claims("dana"), crit=["exp"]), "not a well-formed signed token"),
    ],
)
def test_headers_that_refuse(token: str, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        read_header(token, CONFIG)


def test_the_key_decides_the_algorithm() -> None:
    rsa, ec = rsa_key("r1"), ec_key("e1")
    # A token claiming ES256 cannot be checked with an RSA key, whatever its kid says.
    forged = ec.sign(claims("dana"), kid="r1")
    with pytest.raises(TokenError, match="not the one its key is for"):
        login(forged, rsa.jwk)
    without_alg = {k: v for k, v in rsa.jwk.items() if k != "alg"}
    with pytest.raises(TokenError, match="does not fit its signing key"):
        login(forged, without_alg)
    # A signature by another key of the same kind does not verify.
    with pytest.raises(TokenError, match="signature does not verify"):
        login(ec_key("e2").sign(claims("dana"), kid="e1"), ec.jwk)


@pytest.mark.filterwarnings("ignore:The RSA key is 1024 bits")
def test_short_rsa_keys_are_refused() -> None:
    weak = rsa_key("w1", bits=1024)
    with pytest.raises(TokenError, match="signing key is not acceptable"):
        login(weak.sign(claims("dana")), weak.jwk)


def test_parse_jwks_keeps_signing_keys_only() -> None:
    good = ec_key("e1").jwk
    doc = {
        "keys": [
            good,
            {**rsa_key("r1").jwk, "use": "enc"},
            {"kty": "oct", "kid": "h1", "k": "c2VjcmV0"},
            {**ec_key("e2").jwk, "kid": None},
            {"kty": "RSA", "kid": "bad", "n": "AQAB"},
            "garbage",
            {**ec_key("e3").jwk, "kid": "e1"},  # a second e1 does not replace the first
        ]
    }
    assert parse_jwks(json.dumps(doc).encode()) == {"e1": good}
    for data, reason in [
        (b"{", "not JSON"),
        (b"[]", 'no "keys" list'),
        (b'{"keys": []}', "no usable signing key"),
        (b" " * (1 << 20) + b"{}", "larger than 1 MiB"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_jwks(data)


def test_key_set_fetches_when_due_and_no_more_often_than_refetch_s() -> None:
    ks = KeySet(refresh_s=300, refetch_s=30)
    assert ks.wants_fetch("k1", 0)
    ks.begin(0)
    ks.loaded({"k1": {"kty": "x"}}, 0)
    assert not ks.wants_fetch("k1", 10) and ks.key("k1", 10) == {"kty": "x"}
    # An unknown kid: no refetch before refetch_s has passed since the last fetch …
    assert not ks.wants_fetch("k2", 10)
    with pytest.raises(TokenError, match="not in the identity provider's key set") as info:
        ks.key("k2", 10)
    assert info.value.client_fault
    # … then one, and again none for the next refetch_s.
    assert ks.wants_fetch("k2", 30)
    ks.begin(30)
    ks.loaded({"k2": {"kty": "y"}}, 30)  # rotation: k1 is gone
    assert ks.key("k2", 31) == {"kty": "y"} and not ks.wants_fetch("k9", 59)
    with pytest.raises(TokenError):
        ks.key("k1", 31)
    # Keys past refresh_s are fetched again even for a known kid.
    assert ks.wants_fetch("k2", 330)


def test_key_set_fails_closed_when_the_provider_is_down() -> None:
    ks = KeySet(refresh_s=100, refetch_s=10)
    ks.begin(0)
    ks.failed("connection refused")
    with pytest.raises(KeysUnavailable, match="connection refused") as info:
        ks.key("k1", 1)
    assert info.value.sqlstate == "28000" and not info.value.client_fault
    ks.begin(10)
    ks.loaded({"k1": {}}, 10)
    ks.begin(50)
    ks.failed("timed out")
    assert ks.key("k1", 60) == {}  # fresh keys are kept through a failed refetch
    with pytest.raises(KeysUnavailable, match="timed out"):
        ks.key("k1", 110)  # … but not past refresh_s
