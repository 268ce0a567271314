"""SCRAM-SHA-256 both ways, and verifiers PostgreSQL itself made."""

from __future__ import annotations

import hashlib

import pytest

from proctor.errors import UsageError
from proctor.gateway.postgres.scram import (
    AuthError,
    ScramClient,
    ScramServer,
    make_verifier,
    md5_response,
    parse_verifier,
)
from tests.gateway.postgres.conftest import DB, pg_direct


def exchange(server: ScramServer, client: ScramClient) -> None:
    final = server.final(client.final(server.first(client.first())))
    client.check(final)


def test_a_password_logs_in_and_a_wrong_one_does_not() -> None:
    v = make_verifier("s3cret")
    exchange(ScramServer(v), client := ScramClient("s3cret"))
    assert client.verified
    with pytest.raises(AuthError, match="password authentication failed"):
        exchange(ScramServer(v), ScramClient("s3cret!"))
    with pytest.raises(AuthError):  # an unknown user fails even with the "right" answer
        exchange(ScramServer(None, "ghost"), ScramClient("s3cret"))


def test_verifier_made_by_postgresql_is_read_and_works() -> None:
    with pg_direct() as db:
        db.execute("SET password_encryption = 'scram-sha-256'")
        role = f"proctor_scram_{DB}"
        db.execute(f"CREATE ROLE {role} PASSWORD 'pg-made-pw'")
        row = db.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role]).fetchone()
        db.execute(f"DROP ROLE {role}")
    assert row is not None
    v = parse_verifier(row[0])
    assert str(v) == row[0]
    exchange(ScramServer(v), ScramClient("pg-made-pw"))


def test_unknown_users_get_a_stable_salt() -> None:
    def salt(user: str) -> str:
        first = ScramServer(None, user).first(b"n,,n=,r=abc").decode()
        return first.split(",")[1]

    assert salt("ghost") == salt("ghost") != salt("other")


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        (b"p=tls-server-end-point,,n=,r=abc", "channel binding"),
        (b"n,a=admin,n=,r=abc", "authorization"),
        (b"n,,m=ext,n=,r=abc", "extensions"),
        (b"n,,r=abc", "user name"),
        (b"n,,n=,r=a b", "nonce"),
        (b"\xff", "UTF-8"),
    ],
)
def test_malformed_client_first_messages(message: bytes, needle: str) -> None:
    with pytest.raises(AuthError, match=needle):
        ScramServer(make_verifier("pw")).first(message)


def test_bad_verifiers_are_named() -> None:
    for text in ("md5abc", "SCRAM-SHA-256$x:y$z:w", "SCRAM-SHA-256$4096:AAAA$AAAA:AAAA"):
        with pytest.raises(UsageError, match="SCRAM-SHA-256 verifier"):
            parse_verifier(text)
    with pytest.raises(UsageError, match="empty"):
        make_verifier("")


def test_md5_answer_matches_postgresql() -> None:
    # PostgreSQL's documented rule: "md5" + md5(md5(password + user) + salt), hex digests
    inner = hashlib.md5(b"pwu").hexdigest().encode()
    expected = b"md5" + hashlib.md5(inner + b"\x01\x02\x03\x04").hexdigest().encode()
    assert md5_response("u", "pw", b"\x01\x02\x03\x04") == expected
