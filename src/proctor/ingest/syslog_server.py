"""A syslog TCP listener (RFC 6587, optionally TLS as RFC 5425): the asyncio shell around
:class:`~proctor.ingest.syslog.SyslogFramer` and :func:`~proctor.ingest.syslog.normalize_syslog`.

Each connection is one coroutine: read a chunk, cut it into messages, map them, ``await
sink(events)``, and only then read again. While the sink works nothing more is read, so TCP
flow control slows the sender down (back-pressure) and a message is never acknowledged at the
TCP level faster than the sink takes it. A sink that raises closes the connection: what it did
not take was never handed over. A message that does not parse or map is reported through
``on_error`` and the connection goes on; a framing error (a frame over the size limit, a
garbled length) is reported and closes the connection, since nothing after it can be cut
right. Nothing here logs message contents: only peers, counts and error locations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from proctor.events import Event, now_ns
from proctor.ingest._common import IngestError, Received
from proctor.ingest.syslog import DEFAULT_MAX_FRAME, SyslogFramer, normalize_syslog

__all__ = ["ErrorHook", "Sink", "SyslogLimits", "SyslogListener"]

log = logging.getLogger(__name__)

Sink = Callable[[list[Event]], Awaitable[object]]
"""Takes a batch of events (durably, e.g. into the ledger) before the listener reads more."""
ErrorHook = Callable[[IngestError, str | None], object]
"""Told of each message (or framing) error and the peer ``ip:port`` it came from."""


@dataclass(frozen=True, kw_only=True)
class SyslogLimits:
    """Limits of one listener."""

    max_frame: int = DEFAULT_MAX_FRAME
    """Largest message in octets; a larger frame closes its connection."""
    read_size: int = 64 * 1024
    """Bytes read at a time, which bounds one sink batch."""
    idle_timeout: float = 300.0
    """Seconds a connection may stay silent before it is closed."""

    def __post_init__(self) -> None:
        if self.max_frame < 1 or self.read_size < 1 or self.idle_timeout <= 0:
            raise ValueError("syslog limits must be positive")


_DEFAULT_LIMITS: Final = SyslogLimits()


def _address(peer: object) -> str | None:
    """A peer name from asyncio as ``ip:port`` or ``[ipv6]:port``."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return None
    host, port = str(peer[0]), int(peer[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SyslogListener:
    """Accepts syslog over TCP (TLS when ``ssl`` is given) and hands events to ``sink``."""

    def __init__(
        self,
        sink: Sink,
        *,
        host: str = "127.0.0.1",
        port: int = 6514,
        ssl: _ssl.SSLContext | None = None,
        on_error: ErrorHook | None = None,
        gateway: str | None = None,
        limits: SyslogLimits = _DEFAULT_LIMITS,
    ) -> None:
        self.sink = sink
        self.host = host
        self.port = port
        self.ssl = ssl
        self.on_error = on_error
        self.gateway = gateway
        self.limits = limits
        Received(at_ns=now_ns(), gateway=gateway)  # a bad name is a UsageError now, not later
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen; with ``port=0`` the chosen port is then in :attr:`port`."""
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, ssl=self.ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and end every connection (a read in progress is abandoned)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SyslogListener:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _report(self, error: IngestError, peer: str | None) -> None:
        if self.on_error is None:
            log.warning("syslog from %s: %s", peer, error)
            return
        try:
            self.on_error(error, peer)
        except Exception as exc:  # a broken hook must not take the connection down
            log.warning("syslog on_error hook failed: %s", type(exc).__name__)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = _address(writer.get_extra_info("peername"))
        try:
            await self._serve(reader, peer)
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, peer: str | None) -> None:
        framer = SyslogFramer(max_frame=self.limits.max_frame)
        taken = 0  # messages of this connection so far: error items count from here
        while True:
            try:
                chunk = await asyncio.wait_for(
                    reader.read(self.limits.read_size), self.limits.idle_timeout
                )
            except TimeoutError:
                log.info("syslog from %s: idle, closed after %d messages", peer, taken)
                return
            except (ConnectionError, _ssl.SSLError) as exc:
                log.info("syslog from %s: %s", peer, type(exc).__name__)
                return
            try:
                frames = framer.feed(chunk) if chunk else []
            except IngestError as exc:
                self._report(exc, peer)
                return
            if frames:
                if not await self._deliver(frames, taken, peer):
                    return
                taken += len(frames)
            if framer.failed or not chunk:
                try:  # the stream cannot be cut any further, or it ended
                    framer.end()
                except IngestError as exc:
                    self._report(exc, peer)
                return

    async def _deliver(self, frames: list[bytes], taken: int, peer: str | None) -> bool:
        """Map ``frames`` and hand the events to the sink; False when the sink failed."""
        received = Received(at_ns=now_ns(), gateway=self.gateway, address=peer)
        events: list[Event] = []
        for result in normalize_syslog(frames, received=received):
            if isinstance(result, IngestError):
                self._report(result.at(taken + (result.item or 0)), peer)
            else:
                events.append(result)
        if not events:
            return True
        try:
            await self.sink(events)
        except Exception as exc:  # not taken: close, so the sender knows nothing was kept
            log.warning(
                "syslog sink failed (%s); closing the connection from %s",
                type(exc).__name__,
                peer,
            )
            return False
        return True
