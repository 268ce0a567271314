"""Token (JWT) logins through the gateway: a real JWKS server on loopback, real psycopg clients.

Users in ``[[users]]`` log in with SCRAM; any other user sends a token signed by the identity
provider as the password. The provider here is ``tests/identity/idp.py``: keys made with
``cryptography``, tokens signed by PyJWT, the JWKS served over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.gateway.postgres.conftest import Running, certificate, run_gateway, write_config
from tests.identity.idp import (
    AUDIENCE,
    ISSUER,
    Idp,
    Key,
    claims,
    ec_key,
    ed_key,
    hmac_signed,
    rsa_key,
    unsigned,
)
from tests.identity.test_jwks import closed_port

OIDC = """
[oidc]
issuer = "{issuer}"
audience = "{audience}"
{source}
leeway_s = 0
jwks_refetch_s = {refetch}
jwks_timeout_s = 1.5
require_tls = {require_tls}
"""
RSA, EC, ED = rsa_key("r1"), ec_key("e1"), ed_key("d1")
started = contextlib.contextmanager(run_gateway)


def oidc_config(
    directory: Path,
    source: str,
    *,
    refetch: float = 2.0,
    require_tls: bool = False,
    tls: tuple[Path, Path] | None = None,
) -> Path:
    extra = OIDC.format(
        issuer=ISSUER,
        audience=AUDIENCE,
        source=source,
        refetch=refetch,
        require_tls=str(require_tls).lower(),
    )
    config = write_config(directory, extra=extra)
    if tls is not None:
        text = config.read_text().replace(
            'upstream = "pg"\n',
            f'upstream = "pg"\ntls_cert = "{tls[0]}"\ntls_key = "{tls[1]}"\n',
            1,
        )
        config.write_text(text)
    return config


@pytest.fixture
def idp() -> Iterator[Idp]:
    server = Idp(RSA, EC, ED)
    yield server
    server.close()


@pytest.fixture
def gateway(tmp_path: Path, idp: Idp) -> Iterator[Running]:
    """A gateway taking tokens from ``idp`` (over plain TCP: require_tls = false)."""
    yield from run_gateway(oidc_config(tmp_path, f'jwks_url = "{idp.url}"'))


def connect(gw: Running, user: str, token: str, **extra: str) -> psycopg.Connection[Any]:
    return psycopg.connect(gw.dsn(user, password=token, **extra), autocommit=True)


def refused(gw: Running, user: str, token: str, reason: str, **extra: str) -> None:
    with pytest.raises(psycopg.OperationalError, match=reason):
        connect(gw, user, token, **extra).close()


def ledger_text(gw: Running) -> str:
    return "\n".join(json.dumps(e) for e in gw.events())


def test_roles_in_the_token_drive_decisions(gateway: Running) -> None:
    token = RSA.sign(claims("dana", roles=["analyst"]))
    with connect(gateway, "dana", token) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="Proctor denied"):
            conn.execute("SELECT * FROM hr.salaries")  # restricted: not for analysts
        assert conn.execute("SELECT 7").fetchone() == (7,)  # the session goes on
    decisions = gateway.events("decision")
    assert [d["decision"]["effect"] for d in decisions] == ["allow", "allow", "deny", "allow"]
    actor = decisions[0]["actor"]
    assert (actor["id"], actor["roles"], actor["auth_method"]) == ("dana", ["analyst"], "jwt")
    assert decisions[0]["input"]["context"]["principal"]["token_issuer"] == ISSUER
    assert token not in ledger_text(gateway)  # the bearer token is never recorded


def test_mfa_in_the_token_counts_for_policies(gateway: Running) -> None:
    # ddl-needs-mfa (examples/policies/risk.cedar) asks for a step-up without a fresh MFA;
    # the token's amr claim (RFC 8176) and auth_time say whether and when there was one.
    plain = RSA.sign(claims("bea", roles=["dba"], amr=["pwd"]))
    step_up = psycopg.errors.InvalidAuthorizationSpecification
    with connect(gateway, "bea", plain) as conn, pytest.raises(step_up, match="MFA"):
        conn.execute("CREATE TEMP TABLE oidc_mfa (id int)")
    fresh = RSA.sign(claims("bea", roles=["dba"], amr=["pwd", "mfa"], auth_time=_now()))
    with connect(gateway, "bea", fresh) as conn:
        conn.execute("CREATE TEMP TABLE oidc_mfa (id int)")
    decided = [(d["actor"].get("mfa"), d["decision"]["effect"]) for d in gateway.events("decision")]
    assert decided == [(None, "allow"), (None, "step_up"), (True, "allow"), (True, "allow")]


@pytest.mark.parametrize("key", [EC, ED], ids=["ES256", "EdDSA"])
def test_each_default_algorithm(gateway: Running, key: Key) -> None:
    with connect(gateway, "erik", key.sign(claims("erik", groups=["contractors"]))) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # contractors only read
            conn.execute("INSERT INTO oidc_contractor VALUES (1)")


def test_a_token_without_roles_gets_no_connection(gateway: Running) -> None:
    refused(gateway, "frank", RSA.sign(claims("frank")), "Proctor denied this connection")
    assert [d["decision"]["effect"] for d in gateway.events("decision")] == ["deny"]


def _now() -> int:
    return int(time.time())


# Each case: (user to connect as, token, the reason the gateway gives).
CASES: dict[str, tuple[str, Any, str]] = {
    "expired": ("dana", lambda: RSA.sign(claims("dana", exp=_now() - 60)), "the token expired"),
    "not yet valid": (
        "dana",
        lambda: RSA.sign(claims("dana", nbf=_now() + 300)),
        "the token is not valid yet",
    ),
    "wrong issuer": (
        "dana",
        lambda: RSA.sign(claims("dana", iss="https://evil.example")),
        "the token was not issued by the configured issuer",
    ),
    "wrong audience": (
        "dana",
        lambda: RSA.sign(claims("dana", aud="another-service")),
        "the token is not meant for this gateway (aud)",
    ),
    "alg none": (
        "dana",
        lambda: unsigned(claims("dana"), "r1"),
        "the token's algorithm 'none' is not accepted",
    ),
    "HS256 with the public key": (
        "dana",
        lambda: hmac_signed(claims("dana"), RSA.public_pem, "r1"),
        "the token's algorithm 'HS256' is not accepted",
    ),
    "another key under a known kid": (
        "dana",
        lambda: ec_key("impostor").sign(claims("dana"), kid="e1"),
        "the token's signature does not verify",
    ),
    "someone else's token": (
        "dana",
        lambda: RSA.sign(claims("mallory", roles=["dba"])),
        "the token's preferred_username claim is not the user name 'dana'",
    ),
    "no user claim": (
        "dana",
        lambda: RSA.sign({k: v for k, v in claims("dana").items() if k != "preferred_username"}),
        "the token has no preferred_username claim",
    ),
    "no exp": (
        "dana",
        lambda: RSA.sign({k: v for k, v in claims("dana").items() if k != "exp"}),
        "the token has no exp claim",
    ),
    "not a token": ("dana", lambda: "hunter2", "the password is not a well-formed signed token"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_tokens_are_refused_and_recorded(gateway: Running, case: str) -> None:
    user, make, reason = CASES[case]
    token = make()
    message = f'token authentication failed for user "{user}": {reason}'
    refused(gateway, user, token, re.escape(message))
    failed = gateway.events("auth.failed")
    assert len(failed) == 1 and failed[0]["actor"] == {
        "id": user,
        "kind": "human",
        "auth_method": "jwt",
        "ip": "127.0.0.1",
    }
    outcome = failed[0]["outcome"]
    assert outcome["sqlstate"] == "28P01" and reason in outcome["message"]
    assert token not in ledger_text(gateway)
    assert gateway.events("decision") == []
    assert gateway.runtime.baselines.failures(user, 0) == 1  # the risk engine learns of it


def test_proctor_users_keep_scram(gateway: Running) -> None:
    with gateway.connect("alice") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    token = RSA.sign(claims("alice", roles=["dba"]))
    refused(gateway, "alice", token, 'password authentication failed for user "alice"')
    assert [e["actor"]["auth_method"] for e in gateway.events("auth.failed")] == ["scram"]


def test_unknown_kid_then_rotation_picked_up_by_a_rate_limited_refetch(
    gateway: Running, idp: Idp
) -> None:
    refetch = 2.0  # jwks_refetch_s of this gateway
    start = time.monotonic()
    with connect(gateway, "dana", RSA.sign(claims("dana", roles=["analyst"]))):
        pass
    assert idp.fetched() == 1
    # A flood of made-up key ids: each refused, and the provider asked at most once per
    # jwks_refetch_s (so, on any machine that is not very slow, not at all).
    bogus = ec_key("bogus")
    for i in range(6):
        token = bogus.sign(claims("dana"), kid=f"bogus-{i}")
        refused(gateway, "dana", token, r"key id \(kid\) is not in the identity provider's key set")
    assert idp.fetched() <= 1 + int((time.monotonic() - start) / refetch)
    # The provider rotates: e2 replaces r1. A token signed by e2 is accepted once a refetch
    # is due; until then it is refused as unknown.
    e2 = ec_key("e2")
    idp.publish(e2, EC, ED)
    rotated = e2.sign(claims("dana", roles=["analyst"]))
    deadline = time.monotonic() + 30
    while True:
        try:
            with connect(gateway, "dana", rotated) as conn:
                assert conn.execute("SELECT 3").fetchone() == (3,)
            break
        except psycopg.OperationalError as exc:
            assert "not in the identity provider's key set" in str(exc)
            assert time.monotonic() < deadline, "the rotated key was never fetched"
            time.sleep(0.2)
    assert idp.fetched() <= 1 + int((time.monotonic() - start) / refetch) + 1
    refused(gateway, "dana", RSA.sign(claims("dana")), "not in the identity provider's key set")


def test_a_key_file_instead_of_a_url(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [EC.jwk]}))
    token = EC.sign(claims("dana", roles=["analyst"]))
    with (
        started(oidc_config(tmp_path, f'jwks_file = "{jwks}"')) as running,
        connect(running, "dana", token) as conn,
    ):
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_identity_provider_down_fails_closed(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/jwks.json"
    with started(oidc_config(tmp_path, f'jwks_url = "{url}"')) as running:
        token = RSA.sign(claims("dana", roles=["analyst"]))
        refused(running, "dana", token, "the identity provider's keys cannot be fetched")
        [failed] = running.events("auth.failed")
        assert failed["outcome"]["sqlstate"] == "28000"
        assert "cannot be fetched" in failed["outcome"]["message"]
        # Not the client's fault: the risk engine does not count it against the user.
        assert running.runtime.baselines.failures("dana", 0) == 0
        assert running.events("decision") == []


def test_require_tls_refuses_a_token_in_clear(tmp_path: Path, idp: Idp) -> None:
    config = oidc_config(tmp_path, f'jwks_url = "{idp.url}"', require_tls=True)
    with started(config) as running:
        token = RSA.sign(claims("dana", roles=["analyst"]))
        for mode in ("disable", "prefer"):  # the listener has no TLS: prefer goes on in clear
            refused(running, "dana", token, "a token login needs a TLS connection", sslmode=mode)
        failed = running.events("auth.failed")
        assert [f["outcome"]["sqlstate"] for f in failed] == ["28000", "28000"]
        assert idp.fetched() == 0  # refused before any token was taken
        with running.connect("alice") as conn:  # SCRAM never sends the password: no TLS needed
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_require_tls_accepts_a_token_over_tls(tmp_path: Path, idp: Idp) -> None:
    tls = certificate(tmp_path)
    config = oidc_config(tmp_path, f'jwks_url = "{idp.url}"', require_tls=True, tls=tls)
    with started(config) as running:
        token = RSA.sign(claims("dana", roles=["analyst"]))
        with connect(running, "dana", token, sslmode="require") as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 4").fetchone() == (4,)


def test_the_session_ends_when_its_token_expires(gateway: Running) -> None:
    expires = _now() + 3  # leeway_s = 0 here
    conn = connect(gateway, "dana", RSA.sign(claims("dana", roles=["analyst"], exp=expires)))
    assert conn.execute("SELECT 1").fetchone() == (1,)
    deadline = time.monotonic() + 30
    with pytest.raises(psycopg.OperationalError, match="Proctor ended this session: token expired"):
        while time.monotonic() < deadline:
            conn.execute("SELECT 1")
            time.sleep(0.1)
    assert time.time() >= expires - 0.01  # not cut early
    conn.close()
    [revoked] = gateway.events("session.revoked")
    assert revoked["decision"]["reasons"] == ["token expired"]
    [end] = gateway.events("session.end")
    assert end["outcome"]["status"] == "revoked"
