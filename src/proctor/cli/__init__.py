"""The ``proctor`` command: a thin skin over the library.

Each command parses its arguments, calls the library, prints (tables for people, ``--json``
for machines) and maps Proctor's one error root to an exit code with a one-line message:

====  =============================================================
0     success (for ``verify``: everything verified)
1     verification failed (a finding, a bad receipt or signature)
2     usage: bad argument, missing ledger or key, bad setting
3     bad input: an invalid event, a garbled note, key or receipt
4     storage: the ledger file cannot be read or written
70    an internal error (a bug); the message says where to look
====  =============================================================
"""

from __future__ import annotations

import os
import sys

from proctor.cli import (
    decide_cmds,
    demo,
    evidence_cmds,
    export_cmds,
    keys,
    ledger_cmds,
    policy_cmds,
    privacy_cmds,
    retention_cmds,
    search_cmds,
    serve_cmds,
    tokens_cmds,
    verify_cmds,
)
from proctor.cli._app import EXIT_INTERNAL, app, err

__all__ = ["app", "main"]
# imported for their @app.command()s
_COMMANDS = (
    decide_cmds,
    demo,
    evidence_cmds,
    export_cmds,
    keys,
    ledger_cmds,
    policy_cmds,
    privacy_cmds,
    retention_cmds,
    search_cmds,
    serve_cmds,
    tokens_cmds,
    verify_cmds,
)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bug: say so in one line, traceback only on request
        if os.environ.get("PROCTOR_DEBUG"):
            raise
        msg = str(exc).replace("[", r"\[")
        err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {msg} "
            "(set PROCTOR_DEBUG=1 for a traceback)"
        )
        sys.exit(EXIT_INTERNAL)
