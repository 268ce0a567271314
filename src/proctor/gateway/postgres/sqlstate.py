"""Every SQLSTATE Proctor itself sends to a client, in one table (PostgreSQL Appendix A)."""

from __future__ import annotations

from typing import Final

__all__ = [
    "ADMIN_SHUTDOWN",
    "AUDIT_UNAVAILABLE",
    "CONNECTION_REJECTED",
    "FEATURE_NOT_SUPPORTED",
    "INSUFFICIENT_PRIVILEGE",
    "INVALID_AUTHORIZATION",
    "INVALID_PASSWORD",
    "PROTOCOL_VIOLATION",
    "READ_ONLY",
    "STEP_UP",
    "SYNTAX_ERROR",
    "TOO_MANY_CONNECTIONS",
    "UNDEFINED_DATABASE",
]

INSUFFICIENT_PRIVILEGE: Final = "42501"  # a statement denied by policy
STEP_UP: Final = "28000"  # invalid_authorization_specification: allowed after a step-up
SYNTAX_ERROR: Final = "42601"  # does not parse: refused, fail closed
READ_ONLY: Final = "25006"  # read_only_sql_transaction: a write on a read_only grant
FEATURE_NOT_SUPPORTED: Final = "0A000"  # e.g. the FunctionCall message, replication
PROTOCOL_VIOLATION: Final = "08P01"
CONNECTION_REJECTED: Final = "08004"  # sqlserver_rejected_establishment_of_sqlconnection
INVALID_PASSWORD: Final = "28P01"  # noqa: S105 (an error code, not a password)
INVALID_AUTHORIZATION: Final = "28000"  # the connection itself is denied
UNDEFINED_DATABASE: Final = "3D000"
AUDIT_UNAVAILABLE: Final = "58000"  # system_error: the ledger cannot record, so nothing runs
ADMIN_SHUTDOWN: Final = "57P01"  # the session was revoked
TOO_MANY_CONNECTIONS: Final = "53300"
