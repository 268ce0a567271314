"""OpenID Connect tokens: check a signed JWT and make the principal it proves (sans-IO).

A token login takes three steps, each a plain function or plain state:

1. :func:`read_header` reads the (not yet verified) JOSE header: its ``alg`` must be on the
   configured allow-list, which holds public-key algorithms only (``config.py`` refuses
   ``none`` and every ``HS*``), and its ``kid`` names the signing key. Header fields that point
   at keys (``jku``, ``x5u``, ``jwk``, RFC 7515 §4.1) are ignored: keys come only from the
   configured JWKS. PyJWT refuses critical extensions (``crit``) it does not implement.
2. :class:`KeySet` holds the provider's keys and says when they may be fetched again
   (``jwks.py`` does the fetching).
3. :func:`check_token` verifies the signature with that key, bound to the header's algorithm,
   then ``iss``, ``aud``, ``exp`` (required), ``nbf`` and ``iat`` with leeway (RFC 7519 §4.1),
   and that the user claim names the user of the StartupMessage. Roles, groups and MFA (the
   ``amr`` claim, RFC 8176) become the principal's.

Every failure is a :class:`TokenError` whose message is safe to record and to show the client:
it never contains the token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from jwt import PyJWK

from proctor.config import OidcConfig
from proctor.errors import InputError
from proctor.events.context import Principal
from proctor.events.ids import format_time

__all__ = [
    "MAX_JWKS_BYTES",
    "KeySet",
    "KeysUnavailable",
    "TokenError",
    "TokenLogin",
    "check_token",
    "parse_jwks",
    "read_header",
]

log = logging.getLogger(__name__)

MAX_JWKS_BYTES: Final = 1 << 20
"""A key set larger than this is refused (providers publish a few keys, a few KiB)."""
_MAX_KEYS: Final = 100
_MAX_NAMES: Final = 256  # Principal.roles / groups bounds (events/context.py)
_MAX_NAME: Final = 256


class TokenError(InputError):
    """A token that does not log its bearer in (SQLSTATE 28P01); the message names why."""

    sqlstate = "28P01"
    client_fault = True
    """Whether the client is to blame (risk baselines count such failures)."""


class KeysUnavailable(TokenError):
    """The provider's keys cannot be had, so no token can be checked (SQLSTATE 28000)."""

    sqlstate = "28000"
    client_fault = False


@dataclass(frozen=True)
class TokenLogin:
    """What a valid token proves: who, and until when (Unix seconds, leeway included)."""

    principal: Principal
    expires: float


@dataclass
class KeySet:
    """The provider's signing keys by ``kid``, and when they may be fetched again.

    Keys are used for ``refresh_s`` after a fetch. A token naming a ``kid`` not in the set
    (the provider rotated its keys) asks for a fetch, but fetches are at least ``refetch_s``
    apart, whatever asks: a flood of made-up key ids costs the provider one request per
    ``refetch_s``. When keys are past their time and cannot be fetched, no token is accepted
    (fail closed). Times are monotonic seconds.
    """

    refresh_s: float
    refetch_s: float
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched: float | None = None
    tried: float | None = None
    error: str | None = None
    """Why the last fetch failed (None once one succeeds)."""

    def fresh(self, now: float) -> bool:
        """Whether the keys fetched last may still be used."""
        return self.fetched is not None and now - self.fetched < self.refresh_s

    def wants_fetch(self, kid: str, now: float) -> bool:
        """Whether to fetch before looking ``kid`` up (and whether that is allowed yet)."""
        if self.fresh(now) and kid in self.keys:
            return False
        return self.tried is None or now - self.tried >= self.refetch_s

    def begin(self, now: float) -> None:
        """A fetch starts now."""
        self.tried = now

    def loaded(self, keys: dict[str, dict[str, Any]], now: float) -> None:
        """A fetch brought these keys (they replace the old ones: rotation drops keys)."""
        self.keys, self.fetched, self.error = keys, now, None

    def failed(self, reason: str) -> None:
        """The fetch started last failed (the keys held are kept while fresh)."""
        self.error = reason

    def key(self, kid: str, now: float) -> dict[str, Any]:
        """The JWK named ``kid``; TokenError or KeysUnavailable when there is none to use."""
        if self.fresh(now) and kid in self.keys:
            return self.keys[kid]
        if self.error is not None:
            raise KeysUnavailable(f"the identity provider's keys cannot be fetched: {self.error}")
        if not self.fresh(now):
            raise KeysUnavailable("the identity provider's keys are not available")
        raise TokenError("the token's key id (kid) is not in the identity provider's key set")


def parse_jwks(data: bytes) -> dict[str, dict[str, Any]]:
    """The usable signing keys of a JWK set (RFC 7517 §5), by ``kid``; ValueError if none.

    Skipped: keys without a ``kid``, keys for encryption (``use`` other than ``sig``), symmetric
    keys (``oct``) and keys PyJWT cannot read.
    """
    if len(data) > MAX_JWKS_BYTES:
        raise ValueError("the key set is larger than 1 MiB")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the key set is not JSON") from None
    found = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(found, list):
        raise ValueError('the key set has no "keys" list')
    keys: dict[str, dict[str, Any]] = {}
    for jwk in found[:_MAX_KEYS]:
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or kid in keys:
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("kty") == "oct":
            continue
        try:
            PyJWK(jwk)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            log.warning("key %r of the identity provider cannot be read: %s", kid[:64], exc)
            continue
        keys[kid] = jwk
    if not keys:
        raise ValueError("the key set has no usable signing key")
    return keys


def read_header(token: str, config: OidcConfig) -> tuple[str, str]:
    """The ``kid`` and ``alg`` of a token's header, once the algorithm is an accepted one."""
    if len(token) > config.max_token_bytes:
        raise TokenError(f"the token is longer than {config.max_token_bytes} bytes")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("the password is not a well-formed signed token (JWT)") from None
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in config.algorithms:
        shown = _shown(alg)
        raise TokenError(
            f"the token's algorithm {shown} is not accepted ({', '.join(config.algorithms)})"
        )
    if not isinstance(kid, str) or not 0 < len(kid) <= _MAX_NAME:
        raise TokenError("the token's header names no signing key (kid)")
    return kid, alg


# PyJWT's exceptions, most specific first, as reasons fit to record and to show.
_REASONS: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "the token expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidIssuerError, "the token was not issued by the configured issuer"),
    (jwt.InvalidAudienceError, "the token is not meant for this gateway (aud)"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted"),
    (jwt.InvalidKeyError, "the token's signing key is not acceptable"),
    (jwt.DecodeError, "the token is malformed"),
)


def check_token(
    token: str, alg: str, jwk: Mapping[str, Any], user: str | None, config: OidcConfig
) -> TokenLogin:
    """Verify ``token`` with ``jwk`` and make the principal it proves for ``user``.

    ``user`` is the name a database client connects as, which the user claim must equal;
    ``None`` (the HTTP API, where no name is sent beside the token) takes the claim's name.
    """
    if jwk.get("alg", alg) != alg:
        raise TokenError("the token's algorithm is not the one its key is for")
    try:
        key = PyJWK(dict(jwk), algorithm=alg)  # the key verifies with this algorithm only
    except (jwt.PyJWTError, ValueError, TypeError):
        raise TokenError("the token's algorithm does not fit its signing key") from None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=config.audience,
            issuer=config.issuer,
            leeway=config.leeway_s,
            options={"require": ["exp", "iss", "aud"], "enforce_minimum_key_length": True},
        )
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"the token has no {exc.claim} claim") from None
    except jwt.PyJWTError as exc:
        reason = next((r for kind, r in _REASONS if isinstance(exc, kind)), "the token is invalid")
        raise TokenError(reason) from None
    name = _claim(claims, config.user_claim)
    if name is None:
        raise TokenError(f"the token has no {config.user_claim} claim")
    if not isinstance(name, str) or not name:
        raise TokenError(f"the token's {config.user_claim} claim is not a name")
    if user is not None and name != user:
        raise TokenError(f"the token's {config.user_claim} claim is not the user name {user!r}")
    amr = claims.get("amr")
    mfa = isinstance(amr, list) and "mfa" in amr
    auth_time = claims.get("auth_time")
    mfa_time = None
    if mfa and isinstance(auth_time, int) and not isinstance(auth_time, bool) and auth_time > 0:
        mfa_time = format_time(auth_time * 1_000_000_000)
    principal = Principal(
        id=name,
        kind="human",
        roles=_names(claims, config.roles_claim),
        groups=_names(claims, config.groups_claim),
        auth_method="jwt",
        mfa=mfa,
        mfa_time=mfa_time,
        token_issuer=config.issuer,
    )
    return TokenLogin(principal, float(int(claims["exp"]) + config.leeway_s))


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by its name, or by a dotted path into nested objects (``realm_access.roles``)
    when no claim has that name."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _names(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A roles or groups claim: absent is none; a name or a list of names; anything else
    refuses the login (a garbled claim must not quietly change what the user may do)."""
    value = _claim(claims, name)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or len(value) > _MAX_NAMES
        or not all(isinstance(v, str) and 0 < len(v) <= _MAX_NAME for v in value)
    ):
        raise TokenError(f"the token's {name} claim is not a list of names")
    return tuple(dict.fromkeys(value))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 24 and text.isprintable() else "(unreadable)"
