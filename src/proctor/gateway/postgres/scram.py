"""SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both sides, sans-IO; and md5.

* :class:`ScramServer` checks a client against a stored verifier in PostgreSQL's format
  (``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``, base64), so a password never
  reaches Proctor in the clear and the verifier alone cannot log in.
* :class:`ScramClient` logs the gateway into the upstream server with its own password.
* :func:`make_verifier` builds a verifier (``proctor users hash``).

Written here rather than taken from a library: the exchange is four short messages over
hashlib's PBKDF2 and HMAC, and the drivers that implement it (psycopg, asyncpg) keep the
client half private and have no server half.

Channel binding (``SCRAM-SHA-256-PLUS``) is not offered, so clients send the ``n`` or ``y``
GS2 header; PostgreSQL ignores the SCRAM user name (the startup packet names the user) and so
does Proctor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Final

from proctor.errors import InputError, UsageError

__all__ = [
    "MECHANISM",
    "AuthError",
    "ScramClient",
    "ScramServer",
    "Verifier",
    "make_verifier",
    "md5_response",
    "parse_verifier",
]

MECHANISM: Final = "SCRAM-SHA-256"
DEFAULT_ITERATIONS: Final = 4096  # PostgreSQL's scram_iterations default
_NONCE_BYTES: Final = 18
_MOCK_SECRET: Final = secrets.token_bytes(32)


class AuthError(InputError):
    """Authentication failed, or a SCRAM message broke RFC 5802 (SQLSTATE 28P01)."""

    sqlstate = "28P01"


@dataclass(frozen=True)
class Verifier:
    """A stored SCRAM-SHA-256 verifier: what the server keeps instead of the password."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def __str__(self) -> str:
        return (
            f"{MECHANISM}${self.iterations}:{_b64(self.salt)}"
            f"${_b64(self.stored_key)}:{_b64(self.server_key)}"
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise AuthError(f"{what} is not base64") from None


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


def _prep(password: str) -> bytes:
    """SASLprep (RFC 4013), reduced: NFKC with non-ASCII spaces mapped to a space.

    PostgreSQL falls back to the raw bytes when SASLprep rejects a password; an ASCII password
    (the usual case) is unchanged either way.
    """
    if password.isascii():
        return password.encode()
    mapped = "".join(" " if unicodedata.category(c) == "Zs" else c for c in password)
    return unicodedata.normalize("NFKC", mapped).encode()


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes, bytes]:
    """ClientKey, StoredKey, ServerKey (RFC 5802 §3)."""
    salted = hashlib.pbkdf2_hmac("sha256", _prep(password), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return client_key, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key")


def make_verifier(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> Verifier:
    """The verifier PostgreSQL would store for ``password``."""
    if not password:
        raise UsageError("an empty password cannot be used")
    if iterations < 4096:
        raise UsageError("SCRAM needs at least 4096 iterations (RFC 7677)")
    salt = salt or secrets.token_bytes(16)
    _, stored, server = _keys(password, salt, iterations)
    return Verifier(iterations, salt, stored, server)


def parse_verifier(text: str) -> Verifier:
    """Read ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>``; UsageError if malformed."""
    try:
        mech, params, keys = text.split("$")
        iters, salt = params.split(":")
        stored, server = keys.split(":")
        v = Verifier(
            int(iters),
            base64.b64decode(salt, validate=True),
            base64.b64decode(stored, validate=True),
            base64.b64decode(server, validate=True),
        )
    except ValueError:
        raise UsageError(
            "not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<stored>:<server>)"
        ) from None
    if mech != MECHANISM or v.iterations < 1 or len(v.stored_key) != 32 or len(v.server_key) != 32:
        raise UsageError("not a SCRAM-SHA-256 verifier: wrong mechanism, iterations or key size")
    return v


def _attributes(message: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in message.split(","):
        name, eq, value = part.partition("=")
        if len(name) != 1 or not eq:
            raise AuthError(f"{what}: malformed attribute {part[:20]!r}")
        out.setdefault(name, value)
    return out


class ScramServer:
    """The server half: checks one client's proof against a verifier.

    With ``verifier=None`` (an unknown user) the exchange runs against a made-up verifier and
    fails at the end, as PostgreSQL does, so an observer cannot tell unknown users apart.
    """

    def __init__(self, verifier: Verifier | None, user: str = "") -> None:
        self._known = verifier is not None
        # An unknown user gets the same made-up salt every time (keyed by a per-process
        # secret, as PostgreSQL keys its mock salt), so repeated tries cannot tell it apart.
        mock_salt = hmac.digest(_MOCK_SECRET, user.encode(), "sha256")[:16]
        self._v = verifier or Verifier(
            DEFAULT_ITERATIONS, mock_salt, secrets.token_bytes(32), b"\x00" * 32
        )
        self._nonce = ""
        self._first_bare = ""
        self._server_first = ""
        self._gs2 = ""

    def first(self, client_first: bytes) -> bytes:
        """Take the client-first-message; return the server-first-message."""
        try:
            text = client_first.decode()
        except UnicodeDecodeError:
            raise AuthError("SCRAM client-first-message is not UTF-8") from None
        cb, _, rest = text.partition(",")
        authzid, _, bare = rest.partition(",")
        if cb not in ("n", "y"):
            raise AuthError("channel binding is not offered: use SCRAM-SHA-256")
        if authzid:
            raise AuthError("SCRAM authorization identities are not supported")
        if bare.startswith("m="):
            raise AuthError("SCRAM extensions (m=) are not supported")  # RFC 5802 §5.1
        attrs = _attributes(bare, "SCRAM client-first-message")
        nonce = attrs.get("r", "")
        if "n" not in attrs:
            raise AuthError("SCRAM client-first-message has no user name attribute")
        if not nonce or not all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce):
            raise AuthError("SCRAM client-first-message has no valid nonce")
        self._gs2 = f"{cb},,"
        self._first_bare = bare
        self._nonce = nonce + base64.b64encode(secrets.token_bytes(_NONCE_BYTES)).decode()
        self._server_first = f"r={self._nonce},s={_b64(self._v.salt)},i={self._v.iterations}"
        return self._server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        """Take the client-final-message; return the server-final-message or raise AuthError."""
        if not self._server_first:
            raise AuthError("SCRAM client-final-message before client-first-message")
        try:
            text = client_final.decode()
        except UnicodeDecodeError:
            raise AuthError("SCRAM client-final-message is not UTF-8") from None
        without_proof, sep, proof_part = text.rpartition(",p=")
        if not sep:
            raise AuthError("SCRAM client-final-message has no proof")
        attrs = _attributes(without_proof, "SCRAM client-final-message")
        if _unb64(attrs.get("c", ""), "channel binding") != self._gs2.encode():
            raise AuthError("SCRAM channel binding does not match")
        if attrs.get("r") != self._nonce:
            raise AuthError("SCRAM nonce does not match")
        proof = _unb64(proof_part, "SCRAM proof")
        auth = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(self._v.stored_key, auth)
        if len(proof) != len(signature):
            raise AuthError("password authentication failed")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), self._v.stored_key)
        if not (ok and self._known):
            raise AuthError("password authentication failed")
        return f"v={_b64(_hmac(self._v.server_key, auth))}".encode()


class ScramClient:
    """The client half, for the gateway's login to the upstream server."""

    def __init__(self, password: str) -> None:
        self._password = password
        self._nonce = base64.b64encode(secrets.token_bytes(_NONCE_BYTES)).decode()
        self._first_bare = f"n=,r={self._nonce}"
        self._server_signature = b""
        self.verified = False
        """True once the server proved it holds the verifier (server-final checked)."""

    def first(self) -> bytes:
        """The client-first-message."""
        return f"n,,{self._first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        """Take the server-first-message; return the client-final-message."""
        text = server_first.decode(errors="replace")
        attrs = _attributes(text, "SCRAM server-first-message")
        nonce, salt, iters = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise AuthError("upstream SCRAM nonce does not extend ours")
        if not iters.isdigit() or not 1 <= int(iters) <= 1_000_000:  # bounded work
            raise AuthError("upstream SCRAM iteration count is invalid")
        client_key, stored, server_key = _keys(
            self._password, _unb64(salt, "upstream SCRAM salt"), int(iters)
        )
        without_proof = f"c=biws,r={nonce}"  # biws: base64 of the "n,," GS2 header
        auth = f"{self._first_bare},{text},{without_proof}".encode()
        proof = bytes(a ^ b for a, b in zip(client_key, _hmac(stored, auth), strict=True))
        self._server_signature = _hmac(server_key, auth)
        return f"{without_proof},p={_b64(proof)}".encode()

    def check(self, server_final: bytes) -> None:
        """Check the server-final-message proves the server knew the verifier."""
        attrs = _attributes(server_final.decode(errors="replace"), "SCRAM server-final-message")
        if "e" in attrs:
            raise AuthError(f"upstream SCRAM error: {attrs['e']}")
        got = _unb64(attrs.get("v", ""), "upstream SCRAM signature")
        if not self._server_signature or not hmac.compare_digest(got, self._server_signature):
            raise AuthError("upstream server's SCRAM signature is wrong")
        self.verified = True


def md5_response(user: str, password: str, salt: bytes) -> bytes:
    """PostgreSQL's md5 password answer: ``md5`` + md5(md5(password + user) + salt)."""
    inner = hashlib.md5((password + user).encode(), usedforsecurity=False).hexdigest()
    outer = hashlib.md5(inner.encode() + salt, usedforsecurity=False).hexdigest()
    return b"md5" + outer.encode()
