"""``proctor tokens create|list|revoke``: API tokens for the audit service."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.table import Table

from proctor.cli._app import app, handled, out, plain
from proctor.cli.policy_cmds import JsonOpt
from proctor.cli.serve_cmds import ConfigOpt, load_or_exit
from proctor.errors import UsageError
from proctor.service.tokens import ROLES, TOKENS_NAME, TokenStore

__all__ = ["tokens_app"]

tokens_app = typer.Typer(help="API tokens for the audit service.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


def _store(config: ConfigOpt) -> TokenStore:
    loaded = load_or_exit(config)
    directory = loaded.path(loaded.config.ledger.directory)
    if not directory.is_dir():
        raise UsageError(f"ledger.directory: {directory} does not exist (run proctor serve once)")
    return TokenStore(directory / TOKENS_NAME)


def _when(ts: int | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


@tokens_app.command("create")
@handled
def tokens_create(
    config: ConfigOpt,
    name: Annotated[str, typer.Option("--name", help="Who or what holds it (unique).")],
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")],
    ttl_days: Annotated[
        int | None, typer.Option("--ttl-days", min=1, help="Expires after this many days.")
    ] = None,
) -> None:
    """Create a token and print it once: only its hash is kept."""
    store = _store(config)
    try:
        record, token = store.create(
            name, role, ttl_s=None if ttl_days is None else ttl_days * 86400
        )
    finally:
        store.close()
    typer.echo(token)
    typer.echo(
        f"token {record.id} for {record.name} ({record.role}), expires {_when(record.expires)}; "
        "store it now: it cannot be shown again",
        err=True,
    )


@tokens_app.command("list")
@handled
def tokens_list(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Every token: id, name, role, created, expires, state (never the secret)."""
    store = _store(config)
    try:
        records = store.list()
    finally:
        store.close()
    now = time.time()
    if as_json:
        rows = [
            {
                "id": r.id, "name": r.name, "role": r.role, "created": r.created,
                "expires": r.expires, "revoked": r.revoked, "state": r.state(now),
            }
            for r in records
        ]  # fmt: skip
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "name", "role", "created", "expires", "state")
    for r in records:
        table.add_row(r.id, r.name, r.role, _when(r.created), _when(r.expires), r.state(now))
    out.print(table if records else "no tokens")


@tokens_app.command("revoke")
@handled
def tokens_revoke(
    config: ConfigOpt,
    name: Annotated[str, typer.Argument(help="The token's name or id.")],
) -> None:
    """Revoke a token; the next request that carries it is refused."""
    store = _store(config)
    try:
        record = store.revoke(name)
    finally:
        store.close()
    out.print(f"revoked token {record.id} ({plain(record.name)})")
