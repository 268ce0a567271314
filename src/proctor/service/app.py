"""The FastAPI application: state, authentication, error mapping, and the routers.

Every route reads the one :class:`ServiceState` from ``app.state``; errors of Proctor's tree
become JSON ``{"error": "..."}`` with a status from :func:`_status`. Nothing internal (paths,
tracebacks, tokens) reaches a client: an unexpected exception is logged here and answered
with a bare 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from proctor.errors import (
    InputError,
    ProctorError,
    PrunedError,
    StorageError,
    UsageError,
)
from proctor.events.jsonschema import event_schema_components
from proctor.ledger.ledger import Ledger
from proctor.privacy.keys import KeyStore
from proctor.retention.service import Retention
from proctor.service.auth import Caller, Forbidden, OidcRoles, Unauthenticated, authenticate
from proctor.service.tokens import Role, TokenStore

__all__ = [
    "API_VERSION",
    "ERRORS",
    "ApiError",
    "ErrorOut",
    "ServiceState",
    "caller",
    "create_app",
    "state_of",
]

log = logging.getLogger("proctor.service")

API_VERSION: Final = "1.0.0"


class ErrorOut(BaseModel):
    """Why a request was refused (never a path, a traceback or a token)."""

    error: str


# Every route may answer with these; a route documents its own successes (and a 422 of another
# shape, like ingest's per-item result).
ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "bad request"),
        (401, "no valid bearer token"),
        (403, "the caller's roles do not allow this"),
        (404, "not found"),
        (410, "pruned by retention (the answer says which rule and archive)"),
        (413, "the body is too large"),
        (415, "unsupported media type"),
        (422, "invalid input"),
        (503, "the ledger cannot take or serve this now; nothing was stored"),
    )
}


class ApiError(ProctorError):
    """An answer with a chosen HTTP status (404 for an unknown index, 413 for a large body)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ServiceState:
    """What the routes work on: the ledger (open for appending), tokens, limits."""

    ledger: Ledger
    tokens: TokenStore
    instance: str
    """This instance's name in the events it records (``gateway`` in proctor.toml)."""
    max_body_bytes: int = 32 << 20
    max_items: int = 10_000
    oidc: OidcRoles | None = None
    sessions: SessionControl | None = None
    keys: KeyStore | None = None
    """Per-subject keys, when personal fields are sealed (``[privacy]``)."""
    retention: Retention | None = None
    """Rules, holds and runs, with ``[retention]``."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Parts made on first use (the searcher); each has a ``close()``, run by :meth:`close`."""

    def close(self) -> None:
        """Close what the routes opened on first use."""
        for part in self.extras.values():
            part.close()
        self.extras.clear()


@dataclass(frozen=True)
class SessionControl:
    """The gateway's session registry, when the API runs beside a gateway."""

    list: Callable[[], list[dict[str, Any]]]
    revoke: Callable[[str | None, str | None, str], int]
    """(user, session, reason) → how many sessions were cut."""


def state_of(request: Request) -> ServiceState:
    """The service state of the app serving ``request``."""
    state: ServiceState = request.app.state.proctor
    return state


async def caller(request: Request) -> Caller:
    """FastAPI dependency: the authenticated caller, or a 401."""
    state = state_of(request)
    try:
        who = await authenticate(request.headers.get("authorization"), state.tokens, state.oidc)
    except Unauthenticated as exc:
        log.info("refused %s %s: %s", request.method, request.url.path, exc)
        raise
    request.state.caller = who
    return who


def role(needed: Role) -> Callable[..., Awaitable[Caller]]:
    """FastAPI dependency: the caller, who must hold ``needed`` (or ``admin``)."""

    async def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
        who.require(needed)
        return who

    return check


# The first class in this order that an error is an instance of gives its HTTP status.
_STATUSES: Final[tuple[tuple[type[ProctorError], int], ...]] = (
    (PrunedError, 410),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (StorageError, 503),
    (InputError, 422),
    (UsageError, 400),
)


def _status(exc: ProctorError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    return next((status for kind, status in _STATUSES if isinstance(exc, kind)), 500)


def _message(exc: ProctorError) -> str:
    if isinstance(exc, StorageError):
        # The store's message names files; the client needs only to know nothing was kept.
        log.error("storage failure: %s", exc)
        return "the ledger cannot take or serve this now; nothing was stored"
    if isinstance(exc, Unauthenticated):
        return "authentication required: send Authorization: Bearer <token>"
    return str(exc)


def create_app(state: ServiceState) -> FastAPI:
    """The audit service's API over ``state``."""
    from proctor.service import (  # noqa: PLC0415 (they import us)
        audit_routes,
        ingest_routes,
        retention_routes,
        search_routes,
    )

    app = FastAPI(
        title="Proctor audit service",
        version=API_VERSION,
        description=(
            "Ingest access records from other systems into Proctor's verifiable ledger, "
            "search them, export them, and hand auditors evidence they verify offline. "
            "Authenticate with `Authorization: Bearer <token>` (an API token from "
            "`proctor tokens create`, or an OIDC JWT). No endpoint changes or deletes an event."
        ),
        openapi_url="/openapi.json",
        responses=ERRORS,
        docs_url=None,
        redoc_url=None,
    )
    app.state.proctor = state

    @app.exception_handler(ProctorError)
    async def proctor_error(request: Request, exc: ProctorError) -> Response:
        status = _status(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": _message(exc)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return JSONResponse({"error": "; ".join(problems) or "invalid request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error"}, status_code=500)

    @app.get(
        "/healthz",
        tags=["service"],
        summary="Liveness (no authentication)",
        openapi_extra={"security": []},
    )
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(ingest_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(retention_routes.router)
    app.include_router(search_routes.router)
    app.openapi = lambda: _document(app)  # type: ignore[method-assign]
    return app


def _document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document with the event schema (docs/event-schema.json) as components
    and a bearer security scheme, built once."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    # Without the per-kind rules (which parts each kind needs), which the service checks on
    # every item: docs/event-schema.json has them for validators in other languages.
    events = event_schema_components("#/components/schemas/{name}", kind_rules=False)
    for name, definition in events.items():
        if name in schemas:
            raise RuntimeError(f"OpenAPI component {name!r} is defined twice")
        schemas[name] = definition
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (prt_…) or an OIDC JWT",
        }
    }
    document["security"] = [{"bearer": []}]
    app.openapi_schema = document
    return document
