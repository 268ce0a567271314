"""A small identity provider for tests: signing keys made with ``cryptography``, tokens signed by
PyJWT, and the public keys served as a JWKS by a real HTTP server on a loopback socket."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://idp.example.test"
AUDIENCE = "proctor-test"


@dataclass(frozen=True)
class Key:
    """A signing key pair with its key id and algorithm."""

    kid: str
    alg: str
    private: Any

    @property
    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK, as a provider publishes it."""
        public = self.private.public_key()
        maker: Any = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[self.alg]
        jwk: dict[str, Any] = maker.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    @property
    def public_pem(self) -> bytes:
        """The public key in PEM (what an attacker can always get)."""
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """A token with ``claims`` signed by this key (``kid`` in the header unless given;
        a header field given as None is left out)."""
        fields = {k: v for k, v in {"kid": self.kid, **header}.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=fields)


@functools.cache
def rsa_key(kid: str, bits: int = 2048) -> Key:
    """An RSA key (made once per kid: RSA key generation is slow)."""
    return Key(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=bits))


def ec_key(kid: str) -> Key:
    """A P-256 key."""
    return Key(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def ed_key(kid: str) -> Key:
    """An Ed25519 key."""
    return Key(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


def claims(user: str, *, lifetime: float = 300, **extra: Any) -> dict[str, Any]:
    """Claims of a token for ``user`` valid from now for ``lifetime`` seconds."""
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": f"sub-{user}",
        "preferred_username": user,
        "iat": now,
        "exp": int(now + lifetime),
    }
    return {**base, **extra}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any], kid: str) -> str:
    """A token with ``alg: none`` and no signature."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."


def hmac_signed(payload: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token made by hand (PyJWT refuses PEM keys as HMAC secrets, attackers don't)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = f"{header}.{_b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


class Idp:
    """A JWKS endpoint on 127.0.0.1 that counts its requests; ``publish`` swaps the keys."""

    def __init__(self, *keys: Key) -> None:
        self.document: dict[str, Any] = {"keys": [k.jwk for k in keys]}
        self.requests = 0
        self.status = 200
        """Answer with this status (302: a redirect to another key set, 500: a failure)."""
        self.lock = threading.Lock()
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with idp.lock:
                    idp.requests += 1
                    body = json.dumps(idp.document).encode()
                    status = idp.status
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "/elsewhere.json")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def publish(self, *keys: Key) -> None:
        """Serve these keys from now on (a rotation)."""
        with self.lock:
            self.document = {"keys": [k.jwk for k in keys]}

    def fetched(self) -> int:
        """Requests served so far."""
        with self.lock:
            return self.requests

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
