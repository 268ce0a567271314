"""Who is calling the audit API, and may they: bearer tokens (API tokens or OIDC JWTs) → roles.

Roles (docs/service.md): ``admin`` may do everything, ``auditor`` reads (search, export,
verify, evidence), ``ingest`` only appends. No role can change or delete an event: no
endpoint does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from proctor.config import OidcConfig
from proctor.errors import InputError
from proctor.identity.jwks import JwksClient
from proctor.identity.oidc import TokenError, check_token, read_header
from proctor.service.tokens import ROLES, Role, TokenStore, UnknownToken

__all__ = ["Caller", "Forbidden", "Unauthenticated", "authenticate"]

MAX_BEARER_BYTES: Final = 16384


class Unauthenticated(InputError):
    """No credentials, or credentials that prove nothing (HTTP 401)."""


class Forbidden(InputError):
    """A known caller whose roles do not allow the request (HTTP 403)."""


@dataclass(frozen=True)
class Caller:
    """An authenticated API caller: a name for the record and the roles it holds."""

    name: str
    roles: frozenset[Role]
    method: str
    """``token`` (an API token) or ``jwt`` (an OIDC token)."""

    def require(self, role: Role) -> None:
        """Allow ``role``'s requests (``admin`` holds every role); ``Forbidden`` otherwise."""
        if role not in self.roles and "admin" not in self.roles:
            raise Forbidden(f"this needs the {role} role")


@dataclass(frozen=True)
class OidcRoles:
    """How an OIDC provider's tokens are checked and which API roles their roles grant."""

    config: OidcConfig
    keys: JwksClient
    grants: Mapping[Role, tuple[str, ...]]


async def authenticate(
    authorization: str | None, tokens: TokenStore, oidc: OidcRoles | None
) -> Caller:
    """The caller an ``Authorization: Bearer …`` header proves; ``Unauthenticated`` otherwise.

    Every refusal reads the same to the client; the reason a JWT failed is kept for the
    service's own log by the caller (``Unauthenticated`` carries it), never the token.
    """
    if not authorization:
        raise Unauthenticated("missing Authorization: Bearer token")
    if len(authorization) > MAX_BEARER_BYTES:
        raise Unauthenticated("the Authorization header is too long")
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        raise Unauthenticated("expected Authorization: Bearer <token>")
    if credentials.startswith("prt_"):
        try:
            record = tokens.check(credentials)
        except UnknownToken:
            raise Unauthenticated("invalid token") from None
        return Caller(f"token:{record.name}", frozenset({record.role}), "token")
    if oidc is None:
        raise Unauthenticated("invalid token")
    return await _jwt_caller(credentials, oidc)


async def _jwt_caller(token: str, oidc: OidcRoles) -> Caller:
    try:
        kid, alg = read_header(token, oidc.config)
        jwk = await oidc.keys.key(kid)
        login = check_token(token, alg, jwk, None, oidc.config)
    except TokenError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from None
    held = set(login.principal.roles)
    roles = frozenset(r for r in ROLES if held.intersection(oidc.grants.get(r, ())))
    if not roles:
        raise Forbidden(f"{login.principal.id} holds no role that grants access to this API")
    return Caller(f"oidc:{login.principal.id}", roles, "jwt")
