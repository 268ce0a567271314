"""``proctor serve``, ``proctor sessions …`` and ``proctor users hash``."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import signal
import ssl
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from proctor.cli._app import EXIT_USAGE, app, err, handled, out, plain
from proctor.cli.policy_cmds import JsonOpt
from proctor.config import ApiConfig, ConfigError, Loaded, load_config
from proctor.errors import UsageError
from proctor.events import Event
from proctor.gateway.postgres.scram import make_verifier
from proctor.gateway.postgres.server import ADMIN_SOCKET_NAME, Gateway, admin_request
from proctor.identity.jwks import JwksClient
from proctor.ingest import IngestError
from proctor.ingest.syslog_server import SyslogLimits, SyslogListener
from proctor.ledger.ledger import Ledger
from proctor.privacy.keys import KeyStore
from proctor.retention.service import Retention
from proctor.runtime import close_ledger, open_ledger, open_runtime
from proctor.service import (
    TOKENS_NAME,
    ApiServer,
    ServiceState,
    SessionControl,
    TokenStore,
    create_app,
)
from proctor.service.auth import OidcRoles

__all__ = ["load_or_exit", "run_api", "run_gateway"]

sessions_app = typer.Typer(help="Live sessions of a running gateway.", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")
users_app = typer.Typer(help="Proctor-managed users.", no_args_is_help=True)
app.add_typer(users_app, name="users")

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="proctor.toml", envvar="PROCTOR_CONFIG"),
]


def load_or_exit(path: Path) -> Loaded:
    """Load the configuration or print every problem with its key and exit 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(
            f"[bold red]error:[/] {path}: {len(exc.problems)} problem(s) in the configuration"
        )
        for problem in exc.problems:
            err.print(f"  {plain(problem)}")
        raise typer.Exit(EXIT_USAGE) from None


def _api_state(
    loaded: Loaded, ledger: Ledger, keys: KeyStore | None, gateway: Gateway | None
) -> ServiceState:
    c = loaded.config
    api = c.api or ApiConfig()
    oidc = None
    if c.oidc is not None and api.oidc_roles:
        source = c.oidc.jwks_url or str(loaded.path(c.oidc.jwks_file or ""))
        oidc = OidcRoles(c.oidc, JwksClient(c.oidc, source), api.oidc_roles)
    sessions = None
    if gateway is not None:
        admin = gateway.admin
        sessions = SessionControl(
            list=lambda: list(admin({"op": "list"})["sessions"]),
            revoke=lambda user, session, reason: int(
                admin({"op": "revoke", "user": user, "session": session, "reason": reason})[
                    "revoked"
                ]
            ),
        )
    retention = None
    if c.retention is not None:
        retention = Retention(
            ledger,
            c.retention,
            loaded.path(c.retention.archive_dir),
            loaded.path(c.retention.holds) if c.retention.holds else None,
        )
        retention.start()
    return ServiceState(
        retention=retention,
        ledger=ledger,
        tokens=TokenStore(ledger.directory / TOKENS_NAME),
        instance=c.gateway,
        max_body_bytes=api.max_body_bytes,
        max_items=api.max_items,
        oidc=oidc,
        sessions=sessions,
        keys=keys,
    )


async def _start_api(loaded: Loaded, state: ServiceState) -> ApiServer:
    api = loaded.config.api or ApiConfig()
    server = ApiServer(
        create_app(state),
        api.address,
        tls_cert=loaded.path(api.tls_cert) if api.tls_cert else None,
        tls_key=loaded.path(api.tls_key) if api.tls_key else None,
    )
    host, port = await server.start()
    scheme = "https" if api.tls_cert else "http"
    out.print(f"audit API on {scheme}://{host}:{port} (OpenAPI at /openapi.json)")
    return server


async def _start_syslog(loaded: Loaded, ledger: Ledger) -> SyslogListener | None:
    cfg = loaded.config.syslog
    if cfg is None:
        return None
    context = None
    if cfg.tls_cert and cfg.tls_key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(loaded.path(cfg.tls_cert), loaded.path(cfg.tls_key))

    async def sink(events: list[Event]) -> None:
        await ledger.append_many_async(events)

    def refused(error: IngestError, peer: str | None) -> None:
        # IngestError names the field and offset, never the message's contents.
        logging.getLogger("proctor.ingest").warning("syslog from %s refused: %s", peer, error)

    host, _, port = cfg.address.rpartition(":")
    listener = SyslogListener(
        sink,
        host=host.strip("[]"),
        port=int(port),
        ssl=context,
        on_error=refused,
        gateway=loaded.config.gateway,
        limits=SyslogLimits(max_frame=cfg.max_frame),
    )
    try:
        await listener.start()
    except OSError as exc:
        raise UsageError(
            f"syslog.address: cannot listen on {cfg.address}: {exc.strerror}"
        ) from None
    out.print(f"syslog on {listener.host}:{listener.port} ({'TLS' if context else 'TCP'})")
    return listener


def _close_api_state(state: ServiceState | None) -> None:
    if state is not None:
        state.close()
        if state.retention is not None:
            state.retention.close()
        state.tokens.close()
        if state.oidc is not None:
            state.oidc.keys.close()


async def run_gateway(loaded: Loaded, stop: asyncio.Event) -> None:
    """Serve the gateway (and the API when ``[api]`` is configured) until ``stop`` is set."""
    if not loaded.config.listeners:
        raise UsageError("listeners: none configured (proctor serve --api-only runs the API alone)")
    runtime = open_runtime(loaded)
    state: ServiceState | None = None
    api: ApiServer | None = None
    syslog: SyslogListener | None = None
    gateway: Gateway | None = None
    try:
        gateway = Gateway(runtime)
        bound = await gateway.start()
        for (host, port), entry in zip(bound, loaded.config.listeners, strict=True):
            out.print(f"listening on {host}:{port} → upstream {entry.upstream}")
        out.print(f"admin socket: {gateway.admin_path}")
        # Retention's schedule and holds live in the state, with or without the API.
        state = _api_state(loaded, runtime.ledger, runtime.keys, gateway)
        if loaded.config.api is not None:
            api = await _start_api(loaded, state)
        syslog = await _start_syslog(loaded, runtime.ledger)
        await stop.wait()
        out.print("shutting down: ending every session")
    finally:
        # Also when a later part failed to start: nothing stays listening, every session ends.
        if syslog is not None:
            await syslog.close()
        if api is not None:
            await api.close()
        if gateway is not None:
            await gateway.close()
        _close_api_state(state)
        runtime.close()


async def run_api(loaded: Loaded, stop: asyncio.Event) -> None:
    """Serve only the audit API (no gateway) until ``stop`` is set."""
    ledger, keys = open_ledger(loaded)
    state: ServiceState | None = None
    api: ApiServer | None = None
    syslog: SyslogListener | None = None
    try:
        state = _api_state(loaded, ledger, keys, None)
        api = await _start_api(loaded, state)
        syslog = await _start_syslog(loaded, ledger)
        await stop.wait()
        out.print("shutting down")
    finally:
        if syslog is not None:
            await syslog.close()
        if api is not None:
            await api.close()
        _close_api_state(state)
        close_ledger(ledger, keys)


def _run(coro: Any) -> None:
    try:
        import uvloop  # noqa: PLC0415 (optional: the faster event loop when installed)
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


@app.command("serve")
@handled
def serve(
    config: ConfigOpt,
    api_only: Annotated[
        bool, typer.Option("--api-only", help="Run only the audit API, no gateway.")
    ] = False,
) -> None:
    """Run the gateway (and the audit API, with [api]) described by proctor.toml until
    interrupted."""
    loaded = load_or_exit(config)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await (run_api if api_only else run_gateway)(loaded, stop)

    _run(main())


def _admin(config: Path, request: dict[str, Any]) -> dict[str, Any]:
    loaded = load_or_exit(config)
    c = loaded.config
    path = (
        loaded.path(c.admin_socket)
        if c.admin_socket
        else loaded.path(c.ledger.directory) / ADMIN_SOCKET_NAME
    )
    try:
        answer = asyncio.run(admin_request(path, request))
    except OSError as exc:
        raise UsageError(f"no gateway answers on {path}: {exc.strerror or exc}") from None
    if "error" in answer:
        raise UsageError(f"the gateway refused: {answer['error']}")
    return answer


@sessions_app.command("list")
@handled
def sessions_list(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Live sessions: user, client, target, start, statements, current risk."""
    sessions = _admin(config, {"op": "list"})["sessions"]
    if as_json:
        print(json.dumps(sessions, indent=2))
        return
    table = Table("session", "user", "client", "target", "started", "statements", "denied", "risk")
    for s in sessions:
        table.add_row(
            s["id"], s["user"], s["client"], s["target"], s["started"],
            str(s["statements"]), str(s["denied"]), str(s["risk"]),
        )  # fmt: skip
    out.print(table if sessions else "no live sessions")


@sessions_app.command("revoke")
@handled
def sessions_revoke(
    config: ConfigOpt,
    user: Annotated[
        str | None, typer.Option("--user", help="Cut every session of this user.")
    ] = None,
    session: Annotated[str | None, typer.Option("--session", help="Cut this session.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Recorded and shown to the client.")] = "",
) -> None:
    """Cut live sessions now: the client gets a FATAL error, the ledger a session.revoked."""
    if (user is None) == (session is None):
        raise UsageError("give --user or --session (one of them)")
    request = {"op": "revoke", "user": user, "session": session, "reason": reason or None}
    n = _admin(config, {k: v for k, v in request.items() if v is not None})["revoked"]
    out.print(f"revoked {n} session(s)")


@users_app.command("hash")
@handled
def users_hash(
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Print the SCRAM-SHA-256 verifier of a password, for users[].scram_verifier."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the passwords differ")
    print(make_verifier(password))


def _names(value: str | None, option: str) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    for n in names:
        if not n.replace("_", "").replace("-", "").isalnum():
            raise UsageError(f"{option}: {n!r} is not a role or group name")
    return names


@users_app.command("set")
@handled
def users_set(
    config: ConfigOpt,
    user: Annotated[str, typer.Argument(help="The Proctor user whose grants change.")],
    roles: Annotated[
        str | None, typer.Option("--roles", help="Comma-separated roles (replaces them).")
    ] = None,
    groups: Annotated[
        str | None, typer.Option("--groups", help="Comma-separated groups (replaces them).")
    ] = None,
) -> None:
    """Change a user's roles or groups on the running gateway; their live sessions are
    re-decided at once and cut when no longer allowed (proctor.toml is not rewritten)."""
    request: dict[str, Any] = {"op": "set-user", "user": user}
    for key, value in (("roles", _names(roles, "--roles")), ("groups", _names(groups, "--groups"))):
        if value is not None:
            request[key] = value
    if len(request) == 2:
        raise UsageError("give --roles or --groups (or both)")
    n = _admin(config, request)["cut"]
    out.print(f"{plain(user)}'s grants changed; {n} live session(s) cut")
