"""The audit service: an HTTP API (FastAPI on uvicorn) over the ledger.

- ``tokens``         API tokens, hashed at rest, with a role each (admin, auditor, ingest).
- ``auth``           ``Authorization: Bearer`` → the caller and its roles (API token or OIDC JWT).
- ``app``            the application: state, error mapping (JSON ``{"error": …}``), routers.
- ``ingest_routes``  records from other systems → validated events → one awaited ledger append.
- ``audit_routes``   entries with receipts, checkpoints, verification, live sessions; every read
  of audit data is itself recorded before it is answered.
- ``server``         uvicorn on the running event loop, beside the gateway or alone.
- ``openapi``        writes the OpenAPI document to docs/openapi.json.

Data flows: request → ``auth`` → route → ledger (append awaited, or read) → JSON answer.
"""

from proctor.service.app import API_VERSION, ApiError, ServiceState, SessionControl, create_app
from proctor.service.auth import Caller
from proctor.service.server import ApiServer
from proctor.service.tokens import ROLES, TOKENS_NAME, ApiToken, Role, TokenStore

__all__ = [
    "API_VERSION",
    "ROLES",
    "TOKENS_NAME",
    "ApiError",
    "ApiServer",
    "ApiToken",
    "Caller",
    "Role",
    "ServiceState",
    "SessionControl",
    "TokenStore",
    "create_app",
]
