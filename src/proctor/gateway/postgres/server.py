"""The gateway as a whole: its listeners, its session registry and its admin socket.

:class:`Gateway` starts a :class:`~proctor.gateway.postgres.proxy.Listener` per configured
address over one runtime (``runtime.py``), re-decides every live session when the policies
reload, and answers administrators on a Unix socket (mode 0600, next to the ledger by
default) with one JSON object per line:

=====================================================  =======================================
request                                                answer
=====================================================  =======================================
``{"op": "list"}``                                     ``{"sessions": [{id, user, …}, …]}``
``{"op": "revoke", "user": U | "session": S,           ``{"revoked": n}``
"reason": R}``
``{"op": "recheck"}``                                  ``{"cut": n}``
``{"op": "set-user", "user": U, "roles": […],          ``{"cut": n}`` (sessions re-decided
"groups": […]}``                                       with the new roles)
=====================================================  =======================================
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import ssl
from pathlib import Path
from typing import Any, Final

import msgspec

from proctor.gateway.postgres.proxy import Listener
from proctor.gateway.postgres.sql import Analyzer
from proctor.gateway.postgres.startup import Account
from proctor.risk.alerts import AccountAlert
from proctor.runtime import Runtime
from proctor.sessions.registry import SessionRegistry

__all__ = ["ADMIN_SOCKET_NAME", "Gateway", "admin_request"]

log = logging.getLogger(__name__)

ADMIN_SOCKET_NAME: Final = "admin.sock"
_MAX_ADMIN_REQUEST: Final = 64 * 1024


class Gateway:
    """Every listener of one configuration, sharing one registry."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        cfg = runtime.loaded.config
        self.registry = SessionRegistry()
        self.analyzer = Analyzer()
        self.listeners: list[Listener] = []
        for entry in cfg.listeners:
            tls = None
            if entry.tls_cert is not None and entry.tls_key is not None:
                tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                tls.minimum_version = ssl.TLSVersion.TLSv1_2
                tls.load_cert_chain(
                    runtime.loaded.path(entry.tls_cert), runtime.loaded.path(entry.tls_key)
                )
            self.listeners.append(
                Listener(
                    entry.address,
                    runtime.logins[entry.address],
                    decider=runtime.decider,
                    ledger=runtime.ledger,
                    registry=self.registry,
                    analyzer=self.analyzer,
                    max_message=cfg.limits.max_message_bytes,
                    max_connections=cfg.limits.max_connections,
                    connect_timeout_s=cfg.limits.connect_timeout_s,
                    tls=tls,
                )
            )
        self.admin_path = (
            runtime.loaded.path(cfg.admin_socket)
            if cfg.admin_socket
            else runtime.ledger.directory / ADMIN_SOCKET_NAME
        )
        self.bound: list[tuple[str, int]] = []
        self._admin: asyncio.Server | None = None

    async def start(self) -> list[tuple[str, int]]:
        """Listen on every address and on the admin socket; the addresses bound."""
        loop = asyncio.get_running_loop()

        def reloaded(revision: str) -> None:  # runs on the policy watcher's thread
            loop.call_soon_threadsafe(
                self.registry.recheck, f"the policies changed (revision {revision[:12]})"
            )

        def alerted(alert: AccountAlert) -> None:  # runs where the risky request was decided
            loop.call_soon_threadsafe(self._alerted, alert)

        self.runtime.policies.on_swap(reloaded)
        self.runtime.decider.risk.alerts.on_alert(alerted)
        self.bound = [await listener.start() for listener in self.listeners]
        with contextlib.suppress(FileNotFoundError):
            self.admin_path.unlink()  # a stale socket from a previous run
        old = os.umask(0o177)  # the socket is created 0600: only this user administers
        try:
            self._admin = await asyncio.start_unix_server(self._answer, path=str(self.admin_path))
        finally:
            os.umask(old)
        return self.bound

    def _alerted(self, alert: AccountAlert) -> int:
        """One session of a user looked like a takeover: re-decide that user's others now."""
        why = f"{alert.user}'s account looked taken over on another session"
        cut = 0
        for live in list(self.registry):
            if live.principal.id == alert.user and live.id != alert.session_id:
                cut += self.registry.recheck_one(live, why)
        return cut

    async def close(self) -> None:
        """Stop listening and end every session."""
        if self._admin is not None:
            self._admin.close()
            await self._admin.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                self.admin_path.unlink()
        for listener in self.listeners:
            await listener.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if len(line) > _MAX_ADMIN_REQUEST:
                answer: dict[str, Any] = {"error": "request too long"}
            else:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise TypeError("a request is a JSON object")
                answer = self.admin(request)
        except (ValueError, TypeError, KeyError) as exc:
            answer = {"error": f"bad request: {exc}"}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def admin(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one admin request (see the module docstring)."""
        op = request.get("op")
        if op == "list":
            return {"sessions": [dataclasses.asdict(i) for i in self.registry.infos()]}
        if op == "revoke":
            reason = str(request.get("reason") or "no reason given")[:500]
            user, session = request.get("user"), request.get("session")
            if (user is None) == (session is None):
                return {"error": "revoke takes a user or a session, not both"}
            n = self.registry.revoke(user=user, session_id=session, reason=reason)
            log.warning("admin revoked %d session(s) (%s)", n, user or session)
            return {"revoked": n}
        if op == "recheck":
            return {"cut": self.registry.recheck("an administrator asked for a re-decision")}
        if op == "set-user":
            return self._set_user(request)
        return {"error": f"unknown op {op!r} (list, revoke, recheck, set-user)"}

    def _set_user(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("user")
        roles, groups = request.get("roles"), request.get("groups")
        for key, value in (("roles", roles), ("groups", groups)):
            if value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                return {"error": f"{key} must be a list of names"}
        if not isinstance(name, str):
            return {"error": "set-user needs a user"}
        # Later logins get the new roles too (kept in memory: proctor.toml is not rewritten).
        for login in self.runtime.logins.values():
            account = login.accounts.get(name)
            if account is not None:
                entry = msgspec.structs.replace(
                    account.entry,
                    roles=tuple(roles) if roles is not None else account.entry.roles,
                    groups=tuple(groups) if groups is not None else account.entry.groups,
                )
                login.accounts[name] = Account(entry, account.verifier)
        cut = 0
        for live in list(self.registry):
            p = live.principal
            if p.id != name:
                continue
            new = msgspec.structs.replace(
                p,
                roles=tuple(roles) if roles is not None else p.roles,
                groups=tuple(groups) if groups is not None else p.groups,
            )
            cut += self.registry.recheck_one(live, f"{name}'s roles changed", new)
        return {"cut": cut}


async def admin_request(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Send one request to a running gateway's admin socket; its answer."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    line = await reader.readline()
    writer.close()
    answer: dict[str, Any] = json.loads(line)
    return answer
