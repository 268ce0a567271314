"""``proctor erase``: GDPR erasure of one subject's personal data (docs/privacy.md)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from proctor.cli._app import app, handled, out, plain
from proctor.cli.serve_cmds import ConfigOpt, load_or_exit
from proctor.errors import UsageError
from proctor.privacy.erasure import erase_subject
from proctor.runtime import close_ledger, open_ledger

__all__ = ["erase"]


@app.command("erase")
@handled
def erase(
    config: ConfigOpt,
    subject: Annotated[str, typer.Option("--subject", help="The subject (actor id) to erase.")],
    reason: Annotated[str, typer.Option("--reason", help="Recorded in the erasure event.")],
    by: Annotated[
        str | None, typer.Option("--by", help="Who asks (default: the login name).")
    ] = None,
) -> None:
    """Destroy a subject's keys: their sealed personal fields become unreadable for good, the
    ledger still verifies, and the erasure is recorded. Stop `proctor serve` first, or use
    the API (POST /v1/erasures), which erases while it runs."""
    loaded = load_or_exit(config)
    if loaded.config.privacy is None:
        raise UsageError("privacy: personal fields are not sealed (no [privacy] in the config)")
    ledger, keys = open_ledger(loaded)
    try:
        assert keys is not None
        done = erase_subject(
            keys,
            ledger.append,
            subject,
            reason=reason,
            by=by or getpass.getuser(),
            instance=loaded.config.gateway,
        )
    finally:
        close_ledger(ledger, keys)
    out.print(
        f"erased {plain(subject)}: {len(done.key_ids)} key(s) destroyed, "
        f"recorded at ledger index {done.index}"
    )
