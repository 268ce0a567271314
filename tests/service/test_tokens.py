"""tokens.py: tokens are shown once, stored hashed, checked in constant time, revocable."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from proctor.errors import UsageError
from proctor.service.tokens import TokenStore, UnknownToken


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "tokens.sqlite")


def test_a_created_token_checks_and_only_its_hash_is_stored(store: TokenStore) -> None:
    record, token = store.create("ci-pipeline", "ingest")
    assert token.startswith(f"prt_{record.id}_")
    assert store.check(token) == record
    secret = token.rsplit("_", 1)[1]
    store.close()
    raw = store.path.read_bytes()  # closing folded the WAL into the file
    assert secret.encode() not in raw
    assert record.id.encode() in raw


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # another secret
        lambda t: "prt_0123456789abcdef_" + t.rsplit("_", 1)[1],  # another id
        lambda t: t + "x",
        lambda t: t.replace("prt_", "prx_"),
        lambda t: "",
    ],
)
def test_a_wrong_token_is_refused_with_one_message(store: TokenStore, mangle: object) -> None:
    _, token = store.create("auditor-1", "auditor")
    with pytest.raises(UnknownToken, match=r"^invalid token$"):
        store.check(mangle(token))  # type: ignore[operator]


def test_revoked_and_expired_tokens_are_refused(store: TokenStore) -> None:
    _, token = store.create("old", "admin", ttl_s=60)
    assert store.check(token).role == "admin"
    with pytest.raises(UnknownToken):
        store.check(token, now=time.time() + 61)
    store.revoke("old")
    with pytest.raises(UnknownToken):
        store.check(token)
    assert [r.state(time.time()) for r in store.list()] == ["revoked"]
    with pytest.raises(UsageError, match="revoked already"):
        store.revoke("old")


@pytest.mark.parametrize(
    ("name", "role", "message"),
    [
        ("ok", "root", "role: 'root' is not one of admin, auditor, ingest"),
        ("has space", "admin", "name: "),
        ("0123456789abcdef", "admin", "looks like a token id"),
    ],
)
def test_bad_names_and_roles_are_usage_errors(
    store: TokenStore, name: str, role: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        store.create(name, role)


def test_names_are_unique_and_revoke_needs_a_known_token(store: TokenStore) -> None:
    store.create("twice", "auditor")
    with pytest.raises(UsageError, match="exists already"):
        store.create("twice", "ingest")
    with pytest.raises(UsageError, match="no token named"):
        store.revoke("nobody")
