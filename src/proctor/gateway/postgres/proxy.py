"""The asyncio shell of the PostgreSQL gateway: sockets in, commands out.

Everything that decides lives in the sans-IO core (``startup.py``, ``session.py``,
``replies.py``); this module only carries out its commands (``commands.py``): read and write
the two sockets, start TLS, connect upstream, and await the ledger. Per connection:

* the handshake generator runs under ``limits.connect_timeout_s`` (a client that stalls
  half-way through its startup is dropped);
* then two pumps: client → ``Session.on_client`` → upstream, and upstream →
  ``Session.on_upstream`` → client; either side closing ends the session;
* outcome events are recorded in the background; if the ledger refuses them, the session is
  cut (no log, no access).

:class:`Connection` is also the registry's view of a live session (``sessions/registry.py``):
``recheck`` re-decides it, ``cut`` ends it with a FATAL error at once and records why. A
session logged in with a token is cut when the token expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import ssl
import struct
import time
from collections import deque
from collections.abc import Generator
from typing import Any, Final

import msgspec

from proctor.decision import Decided, Decider
from proctor.events.context import Principal
from proctor.events.ids import format_time
from proctor.events.schema import Decision as DecisionPart
from proctor.events.schema import Links, Outcome
from proctor.events.schema import Session as SessionPart
from proctor.gateway.postgres import sqlstate
from proctor.gateway.postgres.commands import (
    Command,
    OpenUpstream,
    ReadClient,
    ReadUpstream,
    Record,
    SendClient,
    SendUpstream,
    SigningKey,
    StartTLS,
    WaitCopy,
    WaitReplies,
)
from proctor.gateway.postgres.protocol import (
    CANCEL_REQUEST_CODE,
    BackendReader,
    CancelRequest,
    FrontendMessage,
    FrontendReader,
    ProtocolError,
    error_response,
)
from proctor.gateway.postgres.session import Session
from proctor.gateway.postgres.sql import Analyzer
from proctor.gateway.postgres.startup import Login, handshake
from proctor.ledger.ledger import Ledger
from proctor.sessions.registry import SessionInfo, SessionRegistry

__all__ = ["Connection", "Listener"]

log = logging.getLogger(__name__)

_READ: Final = 64 * 1024
# Wait for the peer to drain past this much unsent. Small on purpose: a FATAL written on
# revocation queues behind what is unsent, so this bounds what a cut client still reads (the
# benchmark measured ~1 MiB and a 128 ms p99 mid-stream with 1 MiB here).
_HIGH_WATER: Final = 256 * 1024
_I32 = struct.Struct("!i")


class Listener:
    """One listening address: accepts clients and runs a Connection for each."""

    def __init__(
        self,
        address: str,
        login: Login,
        *,
        decider: Decider,
        ledger: Ledger,
        registry: SessionRegistry,
        analyzer: Analyzer,
        max_message: int,
        max_connections: int,
        connect_timeout_s: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self.login = login
        self.decider = decider
        self.ledger = ledger
        self.registry = registry
        self.analyzer = analyzer
        self.max_message = max_message
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.tls = tls
        self.connections: set[Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        """Listen; the address actually bound (port 0 picks a free one)."""
        host, _, port = self.address.rpartition(":")
        self._server = await asyncio.start_server(
            self._accept, host.strip("[]"), int(port), limit=_READ
        )
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        if len(self.connections) >= self.max_connections:
            writer.write(
                error_response(
                    sqlstate.TOO_MANY_CONNECTIONS, "too many connections", severity="FATAL"
                )
            )
            await conn.close()
            return
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    async def close(self, reason: str = "the gateway is shutting down") -> None:
        """Stop accepting, cut every session of this listener, wait for them to end."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.cut(reason, None)
        for conn in list(self.connections):
            await conn.done.wait()
        if self._server is not None:
            await self._server.wait_closed()

    async def cancel(self, request: CancelRequest) -> None:
        """Route a CancelRequest to the upstream backend of the session it names."""
        for live in self.registry:
            if not isinstance(live, Connection) or live.session is None:
                continue
            pid, secret = live.session.key
            if pid == request.process_id and hmac.compare_digest(secret, request.secret):
                await live.cancel_upstream()
                return


class Connection:
    """One client connection through the gateway."""

    def __init__(
        self,
        listener: Listener,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.listener = listener
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("unknown", 0)
        self.peer: tuple[str, int] = (str(peer[0]), int(peer[1]))
        self.frontend = FrontendReader(listener.max_message)
        self.backend = BackendReader(listener.max_message)
        self.messages: deque[FrontendMessage] = deque()
        self.frames: deque[tuple[bytes, bytes]] = deque()
        self.up_reader: asyncio.StreamReader | None = None
        self.up_writer: asyncio.StreamWriter | None = None
        self.session: Session | None = None
        self.done = asyncio.Event()
        self._pumps: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._cutting = False
        self._recheck: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._answered = asyncio.Event()

    # -- LiveSession (sessions/registry.py) -----------------------------------------------------

    @property
    def id(self) -> str:
        """The session id."""
        assert self.session is not None
        return self.session.id

    @property
    def principal(self) -> Principal:
        """Who the session acts for."""
        assert self.session is not None
        return self.session.identity.principal

    def info(self) -> SessionInfo:
        """A summary for listings."""
        assert self.session is not None
        s = self.session
        return SessionInfo(
            id=s.id,
            user=s.identity.principal.id,
            client=s.identity.client_address,
            target=f"{s.identity.upstream}/{s.identity.database}",
            started=format_time(s.started_ns),
            statements=s.stats.statements,
            denied=s.stats.denied,
            risk=s.stats.last_risk,
        )

    def recheck(self, principal: Principal | None = None) -> Decided:
        """Decide the connection again; the decision is recorded in the background."""
        assert self.session is not None
        decided = self.session.recheck(principal)
        self.session.outbox.append(decided.event)
        self._flush()
        self._schedule_recheck(decided)
        return decided

    def cut(self, reason: str, decided: Decided | None) -> None:
        """End the session now (FATAL to the client, both sockets closed), then record it."""
        if self._cutting:
            return
        self._cutting = True
        message = f"Proctor ended this session: {reason}"
        with contextlib.suppress(Exception):  # the client may be gone already
            self.writer.write(
                error_response(sqlstate.ADMIN_SHUTDOWN, message[:2000], severity="FATAL")
            )
        for task in self._pumps:
            task.cancel()
        if self.session is not None and self.session.replies.queue:
            # A statement is running: closing the socket alone would not stop it (the server
            # notices only when it next writes), so cancel it too.
            self._background_task(self.cancel_upstream())
        if self.up_writer is not None:
            self.up_writer.transport.abort()  # the server rolls back what was open
        self.writer.transport.close()
        if self.session is not None:
            self.session.outbox.append(self._revoked_event(reason, decided))
            self._flush()

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Handshake, then pump both ways until either side ends."""
        try:
            result = await self._handshake()
            if isinstance(result, CancelRequest):
                await self.listener.cancel(result)
            elif isinstance(result, Session):
                self.session = result
                await self._serve(result)
        finally:
            await self.close()
            self.done.set()

    async def _handshake(self) -> Session | CancelRequest | None:
        lst = self.listener
        gen = handshake(lst.login, lst.decider, lst.analyzer, self.peer)
        try:
            async with asyncio.timeout(lst.connect_timeout_s):
                result: Session | CancelRequest | None = await self._drive(gen)
                return result
        except TimeoutError:
            self._fatal(sqlstate.PROTOCOL_VIOLATION, "the startup did not finish in time")
        except ProtocolError as exc:
            self._fatal(exc.sqlstate, f"protocol violation: {exc}")
        except (ConnectionError, EOFError):
            pass
        return None

    async def _serve(self, session: Session) -> None:
        registry = self.listener.registry
        registry.add(self)
        if session.connect is not None:
            self._schedule_recheck(session.connect)
        if session.identity.expires is not None:  # a token login ends with its token
            self._expiry = asyncio.get_running_loop().call_later(
                max(0.0, session.identity.expires - time.time()), self.cut, "token expired", None
            )
        self._flush()
        self._pumps = [
            asyncio.create_task(self._client_pump(session)),
            asyncio.create_task(self._upstream_pump(session)),
        ]
        status: Any = "ok"
        state: str | None = None
        try:
            done, _ = await asyncio.wait(self._pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception() if not task.cancelled() else None
                if isinstance(exc, ProtocolError):
                    status, state = "error", exc.sqlstate
                    self._fatal(exc.sqlstate, f"protocol violation: {exc}")
                elif exc is not None and not isinstance(exc, ConnectionError):
                    status, state = "error", None
                    log.error("session %s failed: %r", session.id, exc)
        finally:
            registry.remove(session.id)
            for timer in (self._recheck, self._expiry):
                if timer is not None:
                    timer.cancel()
            for task in self._pumps:
                task.cancel()
            await asyncio.gather(*self._pumps, return_exceptions=True)
            st = session.stats
            session.outbox.append(
                session.event(
                    "session.end",
                    session=SessionPart(id=session.id, client=session.identity.application),
                    outcome=Outcome(
                        status="revoked" if self._cutting else status,
                        rows=st.rows,
                        sqlstate=state,
                    ),
                    attributes={"session.statements": str(st.statements)},
                )
            )
            self._flush()
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)

    async def _client_pump(self, session: Session) -> None:
        while not session.closing:
            msg = await self._read_client()
            await self._drive(session.on_client(msg))
            self._flush()
        if self.up_writer is not None:
            self.up_writer.write(b"X\x00\x00\x00\x04")  # Terminate, so the server logs a clean exit

    async def _upstream_pump(self, session: Session) -> None:
        assert self.up_reader is not None
        handle = session.on_upstream
        while True:
            data = await self.up_reader.read(_READ)
            if not data:
                return
            out = b"".join([handle(kind, body) for kind, body in self.backend.frames(data)])
            if out:
                self.writer.write(out)
                if self.writer.transport.get_write_buffer_size() > _HIGH_WATER:
                    await self.writer.drain()
            self._answered.set()
            if session.outbox:
                self._flush()

    # -- carrying out commands -------------------------------------------------------------------

    async def _drive(self, gen: Generator[Command, Any, Any]) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                cmd = gen.throw(error) if error is not None else gen.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                value = await self._do(cmd)
            except Exception as exc:  # a socket error, the ledger's StorageError …: the step's
                error = exc  # generator decides (refuse, end the login) or lets it end the session

    # One branch per command, each returning that command's result.
    async def _do(self, cmd: Command) -> Any:  # noqa: PLR0911
        if isinstance(cmd, SendUpstream):
            assert self.up_writer is not None
            self.up_writer.write(cmd.data)
            if self.up_writer.transport.get_write_buffer_size() > _HIGH_WATER:
                await self.up_writer.drain()
            return None
        if isinstance(cmd, Record):
            return await self.listener.ledger.append_many_async(cmd.events)
        if isinstance(cmd, SendClient):
            self.writer.write(cmd.data)
            await self.writer.drain()
            return None
        if isinstance(cmd, WaitReplies):
            assert self.session is not None
            while self.session.replies.owed_before(cmd.batch):
                self._answered.clear()
                await self._answered.wait()
            return None
        if isinstance(cmd, WaitCopy):
            assert self.session is not None
            while self.session.replies.copy_may_start():
                self._answered.clear()
                await self._answered.wait()
            return None
        if isinstance(cmd, ReadClient):
            return await self._read_client()
        if isinstance(cmd, ReadUpstream):
            return await self._read_upstream()
        if isinstance(cmd, SigningKey):
            return await cmd.keys.key(cmd.kid)
        if isinstance(cmd, OpenUpstream):
            up = self.listener.login.upstream.config
            self.up_reader, self.up_writer = await asyncio.open_connection(
                up.host, up.port, limit=_READ
            )
            return None
        if isinstance(cmd, StartTLS):
            if self.frontend.buffered or self.messages:
                # Bytes sent after SSLRequest but before the TLS handshake would be read as
                # if they came over TLS (CVE-2021-23214): refuse.
                raise ProtocolError("unencrypted data after SSLRequest")
            assert self.listener.tls is not None
            await self.writer.start_tls(self.listener.tls)
            return None
        raise TypeError(f"unknown command {cmd!r}")

    async def _read_client(self) -> FrontendMessage:
        while not self.messages:
            data = await self.reader.read(_READ)
            if not data:
                raise ConnectionError("the client closed the connection")
            self.messages.extend(self.frontend.feed(data))
        return self.messages.popleft()

    async def _read_upstream(self) -> tuple[bytes, bytes]:
        assert self.up_reader is not None
        while not self.frames:
            data = await self.up_reader.read(_READ)
            if not data:
                raise ConnectionError("the upstream closed the connection")
            self.frames.extend(self.backend.frames(data))
        return self.frames.popleft()

    # -- helpers ---------------------------------------------------------------------------------

    def _fatal(self, state: str, message: str) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(error_response(state, message, severity="FATAL"))

    def _flush(self) -> None:
        """Record the session's queued events in the background."""
        session = self.session
        if session is None or not session.outbox:
            return
        events, session.outbox = session.outbox, []
        self._background_task(self._record(events))

    def _background_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record(self, events: list[Any]) -> None:
        try:
            await self.listener.ledger.append_many_async(events)
        except Exception as exc:
            log.error("ledger refused session events: %s", exc)
            if not self._cutting:
                self.cut("the audit ledger cannot record this session", None)

    def _revoked_event(self, reason: str, decided: Decided | None) -> Any:
        assert self.session is not None
        s = self.session
        part = DecisionPart(effect="deny", reasons=(reason[:4096],))
        if decided is not None and decided.event.decision is not None:
            # the re-decision's effect and policies, with the whole reason (why it was re-made)
            part = msgspec.structs.replace(decided.event.decision, reasons=part.reasons)
        return s.event(
            "session.revoked",
            session=SessionPart(id=s.id, client=s.identity.application),
            decision=part,
            links=Links(session_id=s.id, decision_id=decided.event.id if decided else None),
        )

    def _schedule_recheck(self, decided: Decided) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        seconds = decided.decision.recheck_s
        if seconds and not self._cutting:
            self._recheck = asyncio.get_running_loop().call_later(
                seconds,
                self.listener.registry.recheck_one,
                self,
                "the grant's recheck time ran out",
            )

    async def cancel_upstream(self) -> None:
        """Send a CancelRequest to this session's upstream backend."""
        s, up = self.session, self.listener.login.upstream.config
        if s is None or s.upstream_key is None:
            return
        pid, secret = s.upstream_key
        packet = _I32.pack(12 + len(secret)) + _I32.pack(CANCEL_REQUEST_CODE) + _I32.pack(pid)
        try:
            _, w = await asyncio.open_connection(up.host, up.port)
            w.write(packet + secret)
            await w.drain()
            w.close()
        except OSError as exc:
            log.error("cancel request to upstream %s failed: %s", up.name, exc)

    async def close(self) -> None:
        """Close both sockets."""
        for w in (self.up_writer, self.writer):
            if w is not None and not w.is_closing():
                w.close()
        for w in (self.up_writer, self.writer):
            if w is not None:
                with contextlib.suppress(OSError, ssl.SSLError):
                    await w.wait_closed()
